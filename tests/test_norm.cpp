// Regularisation and normalisation layers (nn/dropout.hpp, nn/batch_norm.hpp):
// gradient checks, PyTorch parity, train/eval behaviour and errors.
#include "support.hpp"

using namespace glassbox;
using Catch::Matchers::Contains;
using test::check_layer_gradients;
using test::golden;
using test::random_tensor;
using test::relative_error;

template class glassbox::nn::Dropout<float>;
template class glassbox::nn::BatchNorm<float>;

TEST_CASE("Gradient check: BatchNorm over features and over channels, training mode (double)") {
  Rng rng(21);
  nn::BatchNorm<double> bn1d(5);
  check_layer_gradients(bn1d, random_tensor(Shape{6, 5}, rng));
  nn::BatchNorm<double> bn2d(3);
  bn2d.weight().value = random_tensor(Shape{3}, rng, 0.5, 1.5);  // not the trivial initial scale
  check_layer_gradients(bn2d, random_tensor(Shape{2, 3, 4, 5}, rng));
}

TEMPLATE_TEST_CASE("PyTorch parity: BatchNorm training step, running statistics, eval", "", float, double) {
  using T = TestType;
  typename nn::BatchNorm<T>::Options bn2d_options;
  bn2d_options.momentum = T(0.2);
  nn::BatchNorm<T> bn1d(4), bn2d(3, bn2d_options);
  for (auto [bn, name] : {std::pair{&bn1d, "bn1d"}, std::pair{&bn2d, "bn2d"}}) {
    const std::string n = name;
    test::check_layer_parity(*bn, "norm", n);  // forward and backward in training mode
    CHECK(relative_error(bn->running_mean(), golden("norm", n + ".running_mean")) < test::parity_tolerance<T>);
    CHECK(relative_error(bn->running_var(), golden("norm", n + ".running_var")) < test::parity_tolerance<T>);
    Tensor<T> y;
    bn->forward(test::cast<T>(golden("norm", n + ".x")), y, Mode::eval);
    CHECK(relative_error(y, golden("norm", n + ".y_eval")) < test::parity_tolerance<T>);
  }
}

TEST_CASE("BatchNorm in eval mode is an affine map with a matching gradient") {
  nn::BatchNorm<double> bn(2);
  bn.running_mean() = Tensor<double>(Shape{2}, {1.0, -2.0});
  bn.running_var() = Tensor<double>(Shape{2}, {4.0, 0.25});
  bn.weight().value = Tensor<double>(Shape{2}, {2.0, 3.0});
  bn.bias().value = Tensor<double>(Shape{2}, {0.5, 0.0});
  const Tensor<double> x(Shape{1, 2}, {3.0, -1.0});
  Tensor<double> y, dx;
  bn.forward(x, y, Mode::eval);
  const double s0 = 2.0 / std::sqrt(4.0 + 1e-5), s1 = 3.0 / std::sqrt(0.25 + 1e-5);
  CHECK(y[0] == Approx((3.0 - 1.0) * s0 + 0.5));
  CHECK(y[1] == Approx((-1.0 + 2.0) * s1));
  bn.backward(x, y, Tensor<double>(Shape{1, 2}, {1.0, 1.0}), &dx);
  CHECK(dx[0] == Approx(s0));
  CHECK(dx[1] == Approx(s1));
}

TEST_CASE("BatchNorm errors name the layer") {
  Sequential<float> model;
  model.add<nn::BatchNorm<float>>(3);
  CHECK_THROWS_WITH(model.forward(Tensor<float>(Shape{2, 4})),
                    Contains("batch_norm_1: input has 4 features, layer expects 3"));
  CHECK_THROWS_WITH(model.forward(Tensor<float>(Shape{2, 2, 5, 5})),
                    Contains("batch_norm_1: input has 2 channels, layer expects 3"));
  CHECK_THROWS_WITH(model.forward(Tensor<float>(Shape{1, 3}), Mode::train),
                    Contains("batch_norm_1: training needs more than one value per channel"));
  CHECK_NOTHROW(model.forward(Tensor<float>(Shape{1, 3}), Mode::eval));
  CHECK_THROWS_WITH(nn::BatchNorm<float>(0), Contains("features must be positive"));
}

TEST_CASE("Dropout: inverted scaling in training, identity in eval, seeded masks") {
  Rng rng(4);
  const Tensor<double> x = random_tensor(Shape{100, 1000}, rng, 1, 2);
  nn::Dropout<double> dropout(0.3);
  Rng seed(1);
  dropout.reset_parameters(seed);
  Tensor<double> y, dx;
  dropout.forward(x, y, Mode::eval);
  CHECK(relative_error(y, x) == 0.0);

  dropout.forward(x, y, Mode::train);
  const double dropped = static_cast<double>((y.flat() == 0.0).count()) / static_cast<double>(y.size());
  CHECK(dropped == Approx(0.3).margin(0.005));  // 100,000 draws: 0.005 is 3.4 binomial standard deviations
  for (index_t i = 0; i < y.size(); ++i)
    if (y[i] != 0.0) REQUIRE(y[i] == Approx(x[i] / 0.7));
  CHECK(y.flat().mean() == Approx(x.flat().mean()).epsilon(0.01));  // expectation preserved

  const Tensor<double> dy = random_tensor(y.shape(), rng);
  dropout.backward(x, y, dy, &dx);
  for (index_t i = 0; i < dy.size(); ++i) REQUIRE(dx[i] == dy[i] * dropout.mask()[i]);

  // Same model seed, same masks; a new forward draws a new mask.
  auto masks = [&](std::uint64_t model_seed) {
    Sequential<double> model(model_seed);
    model.add<nn::Dropout<double>>(0.5);
    const Tensor<double> small = random_tensor(Shape{4, 8}, rng);
    Tensor<double> first = model.forward(small, Mode::train);
    const Tensor<double>& second = model.forward(small, Mode::train);
    std::vector<bool> pattern;
    for (index_t i = 0; i < first.size(); ++i) pattern.push_back(first[i] == 0.0);
    bool differs = false;
    for (index_t i = 0; i < first.size(); ++i) differs = differs || ((first[i] == 0.0) != (second[i] == 0.0));
    CHECK(differs);
    return pattern;
  };
  CHECK(masks(7) == masks(7));
  CHECK(masks(7) != masks(8));
  CHECK_THROWS_WITH(nn::Dropout<float>(1.0f), Contains("dropout: rate must lie in [0, 1), got 1"));
}

TEST_CASE("Gradient check: Dropout with its mask held fixed (double)") {
  Rng rng(6);
  Tensor<double> x = random_tensor(Shape{3, 10}, rng);
  const Tensor<double> r = random_tensor(Shape{3, 10}, rng);
  nn::Dropout<double> dropout(0.4);
  auto objective = [&] {
    Rng same(11);  // the same mask at every evaluation
    dropout.reset_parameters(same);
    Tensor<double> out;
    dropout.forward(x, out, Mode::train);
    return (out.flat() * r.flat()).sum();
  };
  objective();
  Tensor<double> y, dx;
  Rng same(11);
  dropout.reset_parameters(same);
  dropout.forward(x, y, Mode::train);
  dropout.backward(x, y, r, &dx);
  CHECK(test::gradient_error(dx, test::numerical_gradient(objective, x)) < test::gradient_tolerance);
}
