// optim/: masks survive every optimizer step, and bad settings are rejected.
#include "support.hpp"

using namespace glassbox;
using Catch::Matchers::Contains;

TEMPLATE_TEST_CASE("Masked entries stay exactly zero through training steps", "", float, double) {
  using T = TestType;
  Parameter<T> p("dense_1.weight", Shape{2, 3});
  p.value = Tensor<T>(Shape{2, 3}, {1, 2, 3, 4, 5, 6});
  p.set_mask(Tensor<T>(Shape{2, 3}, {1, 0, 1, 0, 1, 1}));
  typename optim::SGD<T>::Options sgd_options;
  sgd_options.momentum = T(0.9);
  sgd_options.weight_decay = T(0.01);
  optim::SGD<T> sgd({&p}, T(0.1), sgd_options);
  optim::Adam<T> adam({&p}, T(0.1));
  for (int step = 0; step < 10; ++step) {
    p.grad = Tensor<T>(Shape{2, 3}, T(-1));  // pushes every weight away from zero
    if (step % 2) {
      sgd.step();
    } else {
      adam.step();
    }
    REQUIRE(p.value[1] == T(0));
    REQUIRE(p.value[3] == T(0));
  }
  CHECK(p.value[0] > T(1));  // unmasked entries did move
}

TEST_CASE("Optimizers reject bad settings and missing gradients") {
  Parameter<float> p("w", Shape{2});
  CHECK_THROWS_WITH(optim::SGD<float>({&p}, -1.f), Contains("learning rate must be >= 0"));
  optim::SGD<float>::Options nesterov;
  nesterov.nesterov = true;
  CHECK_THROWS_WITH(optim::SGD<float>({&p}, 0.1f, nesterov), Contains("nesterov momentum requires momentum > 0"));
  optim::Adam<float>::Options bad_beta;
  bad_beta.beta1 = 1.f;
  CHECK_THROWS_WITH(optim::Adam<float>({&p}, 0.1f, bad_beta), Contains("betas must lie in [0, 1)"));
  optim::SGD<float>::Options negative;
  negative.momentum = -0.9f;
  CHECK_THROWS_WITH(optim::SGD<float>({&p}, 0.1f, negative), Contains("sgd: momentum must be >= 0, got -0.9"));

  // A bad gradient anywhere leaves every parameter and the step count untouched.
  Parameter<float> good("good", Shape{2});
  good.grad.fill(1.f);
  p.grad = Tensor<float>();
  optim::Adam<float> adam({&good, &p});
  CHECK_THROWS_WITH(adam.step(), Contains("w: gradient shape () differs from value shape (2)"));
  CHECK(good.value[0] == 0.f);
  CHECK(adam.steps() == 0);
}

TEST_CASE("Learning rate can be changed between steps") {
  Parameter<double> p("w", Shape{1});
  p.value[0] = 1.0;
  optim::SGD<double> sgd({&p}, 0.5);
  p.grad[0] = 1.0;
  sgd.step();
  CHECK(p.value[0] == Approx(0.5));
  sgd.set_learning_rate(0.25);
  sgd.step();
  CHECK(p.value[0] == Approx(0.25));
  CHECK(sgd.steps() == 2);
}
