// nn/ and model/: numerical gradient checks of every layer and loss (double),
// the float instantiation, Sequential's chain rule, naming, summary and shape
// errors.
#include "support.hpp"

using namespace glassbox;
using Catch::Matchers::Contains;
using test::away_from_zero;
using test::check_layer_gradients;
using test::gradient_error;
using test::numerical_gradient;
using test::random_tensor;

// Every layer and loss compiles for float and double.
template class glassbox::nn::Dense<float>;
template class glassbox::nn::Dense<double>;
template class glassbox::nn::ReLU<float>;
template class glassbox::nn::LeakyReLU<float>;
template class glassbox::nn::Sigmoid<float>;
template class glassbox::nn::Tanh<float>;
template class glassbox::nn::GELU<float>;
template class glassbox::nn::Softmax<float>;
template class glassbox::nn::LogSoftmax<float>;
template class glassbox::nn::MSELoss<float>;
template class glassbox::nn::SoftmaxCrossEntropy<float>;
template class glassbox::nn::BCEWithLogitsLoss<float>;
template class glassbox::Sequential<float>;
template class glassbox::Sequential<double>;

namespace {

void check_loss_gradient(const nn::Loss<double>& loss, Tensor<double> z, const Tensor<double>& target) {
  Tensor<double> grad;
  loss.forward(z, target, &grad);
  auto objective = [&] { return loss.forward(z, target, nullptr); };
  INFO(loss.name());
  CHECK(gradient_error(grad, numerical_gradient(objective, z)) < test::gradient_tolerance);
}

}  // namespace

TEST_CASE("Gradient check: every layer, input and parameters (double)") {
  Rng rng(42);
  const Tensor<double> x = random_tensor(Shape{4, 7}, rng, -2, 2);
  SECTION("dense") {
    nn::Dense<double> dense(7, 5);
    check_layer_gradients(dense, x);
  }
  SECTION("dense without bias, He init") {
    nn::Dense<double> dense(7, 3, {false, nn::Init::he_normal, nn::Init::zeros});
    CHECK(dense.parameters().size() == 1);
    check_layer_gradients(dense, x);
  }
  SECTION("relu") {
    nn::ReLU<double> relu;
    check_layer_gradients(relu, away_from_zero(x));
  }
  SECTION("leaky_relu") {
    nn::LeakyReLU<double> leaky(0.2);
    check_layer_gradients(leaky, away_from_zero(x));
  }
  SECTION("sigmoid") {
    nn::Sigmoid<double> sigmoid;
    check_layer_gradients(sigmoid, x);
  }
  SECTION("tanh") {
    nn::Tanh<double> tanh_layer;
    check_layer_gradients(tanh_layer, x);
  }
  SECTION("gelu") {
    nn::GELU<double> gelu;
    check_layer_gradients(gelu, x);
  }
  SECTION("gelu, tanh approximation") {
    nn::GELU<double> gelu(nn::GELU<double>::Approximation::tanh);
    check_layer_gradients(gelu, x);
  }
  SECTION("softmax") {
    nn::Softmax<double> softmax;
    check_layer_gradients(softmax, x);
  }
  SECTION("log_softmax") {
    nn::LogSoftmax<double> log_softmax;
    check_layer_gradients(log_softmax, x);
    // Rows of exp(y) sum to 1, and a large logit does not overflow.
    Tensor<double> y, big(Shape{1, 3}, {1000, 0, -1000});
    log_softmax.forward(x, y, Mode::eval);
    for (index_t r = 0; r < y.dim(0); ++r) {
      double total = 0;
      for (index_t c = 0; c < y.dim(1); ++c) total += std::exp(y[r * y.dim(1) + c]);
      CHECK(total == Approx(1).epsilon(1e-12));
    }
    log_softmax.forward(big, y, Mode::eval);
    CHECK(y[0] == 0);
    CHECK(y[1] == -1000);
    Sequential<double> no_classes(Shape{0});
    CHECK_THROWS_WITH(no_classes.add<nn::LogSoftmax<double>>(),
                      Catch::Matchers::Contains("log_softmax_1") && Catch::Matchers::Contains("no classes"));
  }
  SECTION("affine: per channel on images, a scalar scale, a per-feature shift") {
    nn::Affine<double> per_channel(Shape{3, 1, 1});
    for (Parameter<double>* p : per_channel.parameters()) p->value = random_tensor(p->value.shape(), rng);
    check_layer_gradients(per_channel, random_tensor(Shape{2, 3, 2, 2}, rng), 1, false);
    nn::Affine<double> scale(Shape{1}, {true, false});
    scale.weight().value.fill(-1.5);
    REQUIRE(scale.parameters().size() == 1);
    check_layer_gradients(scale, x, 1, false);
    nn::Affine<double> shift(Shape{7}, {false, true});
    shift.bias().value = random_tensor(Shape{7}, rng);
    REQUIRE(shift.parameters().size() == 1);
    check_layer_gradients(shift, x, 1, false);
  }
  SECTION("elementwise layers accept any batch-first rank") {
    nn::Tanh<double> tanh_layer;
    check_layer_gradients(tanh_layer, random_tensor(Shape{2, 3, 2, 2}, rng));
  }
}

TEST_CASE("Affine: values by hand, stretched along the dimensions of 1; errors name the layer") {
  // weight (2, 1) = [2, -1], bias [0.5, 1] on one (2, 2) sample: rows scaled and shifted.
  nn::Affine<double> a(Shape{2, 1});
  a.weight().value = Tensor<double>(Shape{2, 1}, {2, -1});
  a.bias().value = Tensor<double>(Shape{2, 1}, {0.5, 1});
  const Tensor<double> x(Shape{1, 2, 2}, {1, 2, 3, 4});
  Tensor<double> y, dx;
  a.forward(x, y, Mode::eval);
  CHECK(std::vector<double>(y.begin(), y.end()) == std::vector<double>{2.5, 4.5, -2, -3});
  a.backward(x, y, Tensor<double>(Shape{1, 2, 2}, {1, 1, 1, 1}), &dx);
  CHECK(std::vector<double>(a.weight().grad.begin(), a.weight().grad.end()) == std::vector<double>{3, 7});
  CHECK(std::vector<double>(a.bias().grad.begin(), a.bias().grad.end()) == std::vector<double>{2, 2});
  CHECK(std::vector<double>(dx.begin(), dx.end()) == std::vector<double>{2, 2, -1, -1});
  CHECK(a.config() == "(2, 1) scale and shift");

  Sequential<double> m(Shape{4, 2, 2});
  CHECK_THROWS_WITH(m.add<nn::Affine<double>>(Shape{3, 1, 1}), Catch::Matchers::Contains("affine_1") &&
                                                                   Catch::Matchers::Contains("(3, 1, 1)") &&
                                                                   Catch::Matchers::Contains("(1, 4, 2, 2)"));
  CHECK_THROWS_WITH(m.add<nn::Affine<double>>(Shape{4, 1}), Catch::Matchers::Contains("do not broadcast"));
  CHECK_THROWS_WITH(nn::Affine<double>(Shape{0}), Catch::Matchers::Contains("no zero dimension"));
  CHECK_THROWS_WITH(nn::Affine<double>(Shape{2}, {false, false}), Catch::Matchers::Contains("a scale, a shift"));
}

TEST_CASE("Reshape keeps the batch and the values' order; errors name the layer") {
  nn::Reshape<double> r(Shape{3, 1, 2});
  const Tensor<double> x(Shape{2, 6}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  Tensor<double> y, dx;
  r.forward(x, y, Mode::eval);
  CHECK(y.shape() == Shape{2, 3, 1, 2});
  CHECK(std::equal(y.begin(), y.end(), x.begin()));
  r.backward(x, y, y, &dx);
  CHECK(dx.shape() == x.shape());
  CHECK(std::equal(dx.begin(), dx.end(), x.begin()));
  CHECK(r.reshapes_only());
  Sequential<double> m(Shape{5});
  CHECK_THROWS_WITH(
      m.add<nn::Reshape<double>>(Shape{2, 2}),
      Catch::Matchers::Contains("reshape_1: cannot reshape 5 values per sample (input (1, 5)) to (2, 2)"));
  CHECK_THROWS_WITH(nn::Reshape<double>(Shape{}), Catch::Matchers::Contains("rank >= 1"));
}

TEST_CASE("Dense splits a large input gradient over the batch, with the same values") {
  const int threads = num_threads();
  set_num_threads(2);
  Rng rng(3);
  nn::Dense<double> dense(5000, 3);  // 7 x 5000 input gradient: split 3 + 4 rows
  dense.reset_parameters(rng);
  const Tensor<double> x = random_tensor(Shape{7, 5000}, rng), dy = random_tensor(Shape{7, 3}, rng);
  Tensor<double> y, dx;
  dense.forward(x, y, Mode::train);
  dense.backward(x, y, dy, &dx);
  REQUIRE(dx.shape() == x.shape());
  const double* w = dense.weight().value.data();
  for (index_t i = 0; i < 7; ++i)
    for (index_t k = 0; k < 5000; k += 7) {
      double expected = 0;
      for (index_t o = 0; o < 3; ++o) expected += dy.data()[i * 3 + o] * w[o * 5000 + k];
      CHECK(dx.data()[i * 5000 + k] == Approx(expected).epsilon(1e-12));
    }
  set_num_threads(threads);
}

TEST_CASE("Gradient check: every loss (double)") {
  Rng rng(3);
  const Tensor<double> z = random_tensor(Shape{5, 4}, rng, -3, 3);
  check_loss_gradient(nn::MSELoss<double>(), z, random_tensor(Shape{5, 4}, rng));
  check_loss_gradient(nn::SoftmaxCrossEntropy<double>(), z, Tensor<double>(Shape{5}, {0, 3, 2, 2, 1}));
  check_loss_gradient(nn::BCEWithLogitsLoss<double>(), z, random_tensor(Shape{5, 4}, rng, 0, 1));
}

TEST_CASE("Stable losses: extreme logits give finite values and gradients") {
  const Tensor<double> z(Shape{2, 2}, {1000, -1000, -800, 800});
  Tensor<double> grad;
  const double ce = nn::SoftmaxCrossEntropy<double>().forward(z, Tensor<double>(Shape{2}, {0, 0}), &grad);
  CHECK(ce == Approx(800.0));  // sample 1 right with certainty, sample 2 wrong by 1600 / 2
  CHECK(grad.flat().allFinite());
  const double bce = nn::BCEWithLogitsLoss<double>().forward(z, Tensor<double>(Shape{2, 2}, {1, 0, 0, 1}), &grad);
  CHECK(bce == Approx(0.0).margin(1e-12));
  nn::Sigmoid<double> sigmoid;
  Tensor<double> y;
  sigmoid.forward(z, y, Mode::eval);
  CHECK(y.flat().allFinite());
}

TEST_CASE("Sequential backpropagates through the whole chain (double)") {
  Sequential<double> model(Shape{6}, 11);
  model.add<nn::Dense<double>>(6, 8);
  model.add<nn::Tanh<double>>();
  model.add<nn::Dense<double>>(8, 5);
  model.add<nn::GELU<double>>();
  model.add<nn::Dense<double>>(5, 3);
  model.add<nn::Softmax<double>>();
  Rng rng(9);
  Tensor<double> x = random_tensor(Shape{4, 6}, rng);
  const Tensor<double> target = random_tensor(Shape{4, 3}, rng, 0, 1);
  nn::MSELoss<double> mse;
  Tensor<double> grad;
  mse.forward(model.forward(x, Mode::train), target, &grad);
  model.backward(grad, /*want_input_grad=*/true);
  auto objective = [&] { return mse.forward(model.forward(x, Mode::train), target, nullptr); };

  const Tensor<double> input_grad = model.input_grad();
  CHECK(gradient_error(input_grad, numerical_gradient(objective, x)) < test::gradient_tolerance);
  for (Parameter<double>* p : model.parameters()) {
    INFO(p->name);
    const Tensor<double> analytic = p->grad;
    CHECK(gradient_error(analytic, numerical_gradient(objective, p->value)) < test::gradient_tolerance);
  }
}

TEST_CASE("Sequential: backward_from a hidden layer, and input-only passes that skip parameter grads") {
  Sequential<double> model(Shape{1, 5, 5}, 12);
  model.add<nn::Conv2D<double>>(1, 2, nn::Size2{3, 3});
  model.add<nn::Tanh<double>>();
  model.add<nn::Flatten<double>>();
  model.add<nn::Dense<double>>(18, 3);
  Rng rng(10);
  Tensor<double> x = random_tensor(Shape{2, 1, 5, 5}, rng);
  const Tensor<double> seed = random_tensor(Shape{2, 2, 3, 3}, rng);  // weights of the tanh layer's outputs

  // d sum(seed * tanh output) / dx and / d conv weight, against central differences.
  auto objective = [&] {
    model.forward(x);
    return (model.output(1).flat() * seed.flat()).sum();
  };
  model.forward(x);
  model.backward_from(1, seed, /*want_input_grad=*/true);
  const Tensor<double> input_grad = model.input_grad();
  const Tensor<double> weight_grad = model.parameters()[0]->grad;
  CHECK(gradient_error(input_grad, numerical_gradient(objective, x)) < test::gradient_tolerance);
  CHECK(gradient_error(weight_grad, numerical_gradient(objective, model.parameters()[0]->value)) <
        test::gradient_tolerance);
  CHECK_THROWS_WITH(model.backward_from(4, seed), Contains("layer index 4 out of range"));
  CHECK_THROWS_WITH(model.backward_from(3, seed), Contains("differs from dense_1's output shape (2, 3)"));

  // ParamGrads::skip: the same input gradient; grads and parameter-grad hooks untouched.
  const Tensor<double> out_grad = random_tensor(Shape{2, 3}, rng);
  model.forward(x);
  model.backward(out_grad, true);
  const Tensor<double> full_input_grad = model.input_grad();
  for (Parameter<double>* p : model.parameters()) p->grad.fill(7.0);
  int hook_calls = 0;
  HookHandle counter = model.add_param_grad_hook([&](const ParamGradEvent<double>&) { ++hook_calls; });
  model.forward(x);
  model.backward(out_grad, true, ParamGrads::skip);
  CHECK(test::max_abs_difference(model.input_grad(), full_input_grad) == 0.0);
  for (Parameter<double>* p : model.parameters()) CHECK((p->grad.flat() == 7.0).all());
  CHECK(hook_calls == 0);
  model.backward(out_grad);
  CHECK(hook_calls == 4);  // conv and dense weight and bias

  // The same through a fused ReLU and BatchNorm, in train mode too.
  Sequential<double> normed(Shape{1, 5, 5}, 13);
  nn::Conv2D<double>::Options relu;
  relu.activation = nn::Activation::relu;
  normed.add<nn::Conv2D<double>>(1, 2, nn::Size2{3, 3}, relu);
  normed.add<nn::BatchNorm<double>>(2);
  normed.add<nn::Flatten<double>>();
  normed.add<nn::Dense<double>>(18, 3);
  for (Mode mode : {Mode::train, Mode::eval}) {
    normed.forward(x, mode);
    normed.backward(out_grad, true);
    const Tensor<double> expected = normed.input_grad();
    for (Parameter<double>* p : normed.parameters()) p->grad.fill(7.0);
    normed.forward(x, mode);
    normed.backward(out_grad, true, ParamGrads::skip);
    CHECK(test::max_abs_difference(normed.input_grad(), expected) == 0.0);
    for (Parameter<double>* p : normed.parameters()) CHECK((p->grad.flat() == 7.0).all());
  }
}

TEST_CASE("Sequential names layers and parameters, and prints a summary") {
  Sequential<float> model(Shape{784});
  model.add<nn::Dense<float>>(784, 256);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dense<float>>(256, 128);
  model.add<nn::ReLU<float>>();
  model.add(std::make_unique<nn::Dense<float>>(128, 10), "logits");
  CHECK(model.layer(1).name() == "relu_1");
  CHECK(model.layer(2).name() == "dense_2");
  CHECK(model.layer("logits").kind() == "dense");
  const auto params = model.parameters();
  REQUIRE(params.size() == 6);
  CHECK(params[0]->name == "dense_1.weight");
  CHECK(params[3]->name == "dense_2.bias");
  CHECK(params[5]->name == "logits.bias");
  CHECK(model.parameter_count() == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);

  const std::string s = model.summary();
  CHECK_THAT(s, Contains("dense_1 (dense)"));
  CHECK_THAT(s, Contains("(None, 256)"));
  CHECK_THAT(s, Contains("200960"));
  CHECK_THAT(s, Contains("logits (dense)"));
  CHECK_THAT(s, Contains("Total params: 235146"));
  CHECK_THROWS_WITH(model.add(std::make_unique<nn::ReLU<float>>(), "logits"), Contains("'logits' already exists"));
  CHECK_THROWS_WITH(model.layer("nope"), Contains("no layer named 'nope'"));
  CHECK_THROWS_WITH(model.layer(9), Contains("index 9 out of range"));
}

TEST_CASE("Shape mismatches name the layer and the shapes") {
  SECTION("at add(), when the model's input shape is declared") {
    Sequential<float> model(Shape{784});
    model.add<nn::Dense<float>>(784, 128);
    CHECK_THROWS_WITH(model.add<nn::Dense<float>>(5408, 10),
                      Contains("dense_2: input has 128 features, layer expects 5408"));
  }
  SECTION("at forward(), with the input shape declared") {
    Sequential<float> model(Shape{784});
    model.add<nn::Dense<float>>(784, 10);
    CHECK_THROWS_WITH(model.forward(Tensor<float>(Shape{2, 10})),
                      Contains("model input: expected samples of shape (784), got a batch of shape (2, 10)"));
  }
  SECTION("at forward(), without a declared input shape") {
    Sequential<float> model;
    model.add<nn::Dense<float>>(784, 10);
    CHECK_THROWS_WITH(model.forward(Tensor<float>(Shape{2, 10})),
                      Contains("dense_1: input has 10 features, layer expects 784"));
    CHECK_THROWS_WITH(model.forward(Tensor<float>(Shape{2, 1, 28, 28})),
                      Contains("dense_1: expects input of shape (batch, 784), got (2, 1, 28, 28)"));
  }
  SECTION("labels that do not match the batch") {
    nn::SoftmaxCrossEntropy<float> ce;
    CHECK_THROWS_WITH(ce.forward(Tensor<float>(Shape{4, 10}), Tensor<float>(Shape{3}), nullptr),
                      Contains("softmax_cross_entropy: 4 rows of logits but labels of shape (3)"));
    CHECK_THROWS_WITH(ce.forward(Tensor<float>(Shape{1, 10}), Tensor<float>(Shape{1}, {10.f}), nullptr),
                      Contains("label 10 at index 0 is not a class in [0, 10)"));
    CHECK_THROWS_WITH(nn::MSELoss<float>().forward(Tensor<float>(Shape{4, 2}), Tensor<float>(Shape{4, 1}), nullptr),
                      Contains("mse: output shape (4, 2) differs from target shape (4, 1)"));
  }
  SECTION("backward before forward, and a gradient of the wrong shape") {
    Sequential<float> model;
    model.add<nn::Dense<float>>(3, 2);
    CHECK_THROWS_WITH(model.backward(Tensor<float>(Shape{1, 2})), Contains("call forward first"));
    model.forward(Tensor<float>(Shape{1, 3}), Mode::train);
    CHECK_THROWS_WITH(model.backward(Tensor<float>(Shape{1, 3})), Contains("gradient shape (1, 3) differs"));
  }
}

TEST_CASE("Sequential keeps its own copy of the input for backward") {
  Sequential<double> model(Shape{3}, 4);
  model.add<nn::Dense<double>>(3, 2);
  nn::MSELoss<double> mse;
  const Tensor<double> x(Shape{2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor<double> grad;
  mse.forward(model.forward(x, Mode::train), Tensor<double>(Shape{2, 2}), &grad);
  model.backward(grad);
  const Tensor<double> expected = model.parameters()[0]->grad;
  {
    const Tensor<double> temporary = x;
    model.forward(temporary, Mode::train);
  }  // the caller's input is gone before backward: still correct (and clean under ASan)
  model.backward(grad, true);
  CHECK(test::relative_error(model.parameters()[0]->grad, expected) < 1e-15);
  model.forward(x);
  CHECK_THROWS_WITH(model.input_grad(), Contains("call backward(grad, /*want_input_grad=*/true) first"));
}

TEST_CASE("Softmax rejects an input without classes") {
  Sequential<float> model;
  model.add<nn::Softmax<float>>();
  CHECK_THROWS_WITH(model.forward(Tensor<float>(Shape{2, 0})), Contains("softmax_1: input (2, 0) has no classes"));
}

TEST_CASE("Sequential::predict batches the input and matches forward") {
  Sequential<float> model(Shape{3}, 4);
  model.add<nn::Dense<float>>(3, 2);
  model.add<nn::Softmax<float>>();
  Rng rng(2);
  Tensor<float> x(Shape{7, 3});
  for (float& v : x) v = static_cast<float>(rng.normal());
  const Tensor<float> all = model.predict(x, 3);  // batches of 3, 3, 1
  const Tensor<float> once = model.forward(x);
  CHECK(all.shape() == Shape{7, 2});
  CHECK(test::relative_error(all, once) < 1e-6);
}
