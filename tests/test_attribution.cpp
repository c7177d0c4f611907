// inspect/attribution.hpp: saliency, gradient x input, integrated gradients
// (every rule, completeness, convergence, batching under a budget) and the
// noise tunnel, checked against numerical gradients and exact identities.
#include <cmath>

#include "support.hpp"

using namespace glassbox;
using namespace glassbox::inspect;
using Catch::Matchers::Contains;
using test::gradient_error;
using test::max_abs_difference;
using test::numerical_gradient;
using test::random_tensor;

namespace {

// A smooth nonlinear classifier on 1x5x5 images.
Sequential<double> smooth_cnn(std::uint64_t seed = 6) {
  Sequential<double> model(Shape{1, 5, 5}, seed);
  model.add<nn::Conv2D<double>>(1, 2, nn::Size2{3, 3});
  model.add<nn::Tanh<double>>();
  model.add<nn::Flatten<double>>();
  model.add<nn::Dense<double>>(18, 4);
  return model;
}

// d(sum_n output[n, targets[n]]) / dx by central differences.
Tensor<double> numeric_target_gradient(Sequential<double>& model, Tensor<double> x,
                                       const std::vector<index_t>& targets) {
  return numerical_gradient(
      [&] {
        const Tensor<double>& out = model.forward(x);
        double sum = 0;
        for (std::size_t n = 0; n < targets.size(); ++n) sum += out.matrix()(static_cast<index_t>(n), targets[n]);
        return sum;
      },
      x);
}

}  // namespace

TEST_CASE("Saliency and InputXGradient match central differences", "[attribution]") {
  Sequential<double> model = smooth_cnn();
  Rng rng(1);
  const Tensor<double> x = random_tensor(Shape{3, 1, 5, 5}, rng);
  const std::vector<index_t> targets{1, 3, 0};
  const Tensor<double> numeric = numeric_target_gradient(model, x, targets);

  Saliency<double> signed_saliency(model);
  CHECK(gradient_error(signed_saliency.attribute(x, targets), numeric) < 1e-6);
  Saliency<double> absolute(model, /*absolute=*/true);
  Tensor<double> numeric_abs = numeric;
  numeric_abs.flat() = numeric_abs.flat().abs();
  CHECK(gradient_error(absolute.attribute(x, targets), numeric_abs) < 1e-6);
  InputXGradient<double> input_x_gradient(model);
  Tensor<double> expected = numeric;
  expected.flat() *= x.flat();
  CHECK(gradient_error(input_x_gradient.attribute(x, targets), expected) < 1e-6);

  // Without targets: the predicted classes.
  CHECK(max_abs_difference(signed_saliency.attribute(x),
                           signed_saliency.attribute(x, predicted_classes(model.forward(x)))) == 0.0);
  CHECK_THROWS_WITH(signed_saliency.attribute(x, {0, 1}), Contains("2 targets for a batch of 3"));
}

TEST_CASE("integration rules integrate polynomials as they should", "[attribution]") {
  std::vector<double> a, w;
  auto integrate = [&](auto f) {
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) s += w[i] * f(a[i]);
    return s;
  };
  // Gauss-Legendre with n points is exact up to degree 2n - 1.
  integration_points(IntegrationRule::gauss_legendre, 5, a, w);
  CHECK(integrate([](double t) { return std::pow(t, 9); }) == Approx(0.1).epsilon(1e-13));
  CHECK(integrate([](double) { return 1.0; }) == Approx(1.0).epsilon(1e-14));
  for (double t : a) CHECK((t > 0 && t < 1));
  // The trapezoid rule is exact for linear functions; the midpoint rule too.
  integration_points(IntegrationRule::riemann_trapezoid, 7, a, w);
  CHECK(a.front() == 0.0);
  CHECK(a.back() == 1.0);
  CHECK(integrate([](double t) { return 3 * t + 1; }) == Approx(2.5).epsilon(1e-14));
  integration_points(IntegrationRule::riemann_middle, 7, a, w);
  CHECK(integrate([](double t) { return 3 * t + 1; }) == Approx(2.5).epsilon(1e-14));
  integration_points(IntegrationRule::riemann_left, 4, a, w);
  CHECK(a == std::vector<double>{0, 0.25, 0.5, 0.75});
  integration_points(IntegrationRule::riemann_right, 4, a, w);
  CHECK(a == std::vector<double>{0.25, 0.5, 0.75, 1.0});
  CHECK_THROWS_WITH(integration_points(IntegrationRule::riemann_trapezoid, 1, a, w), Contains("steps must be >= 2"));
}

TEST_CASE("Integrated Gradients is exactly complete on a linear model, for every rule", "[attribution]") {
  Sequential<double> model(Shape{6}, 2);
  model.add<nn::Dense<double>>(6, 3);
  Rng rng(2);
  const Tensor<double> x = random_tensor(Shape{4, 6}, rng);
  const std::vector<index_t> targets{0, 2, 1, 2};
  const Tensor<double>& weight = model.layer(0).parameters()[0]->value;
  for (IntegrationRule rule :
       {IntegrationRule::riemann_left, IntegrationRule::riemann_right, IntegrationRule::riemann_middle,
        IntegrationRule::riemann_trapezoid, IntegrationRule::gauss_legendre}) {
    IntegratedGradientsOptions options;
    options.rule = rule;
    options.steps = 7;
    IntegratedGradients<double> ig(model, options);
    ig.set_constant_baseline(0.5);
    const Tensor<double> attr = ig.attribute(x, targets);
    for (index_t n = 0; n < 4; ++n)
      for (index_t k = 0; k < 6; ++k)
        CHECK(
            attr.matrix()(n, k) ==
            Approx(weight.matrix()(targets[static_cast<std::size_t>(n)], k) * (x.matrix()(n, k) - 0.5)).margin(1e-12));
    for (double d : ig.convergence_delta()) CHECK(std::abs(d) < 1e-12);
  }
}

TEST_CASE("Integrated Gradients converges on a nonlinear model; the delta is reported per example", "[attribution]") {
  Sequential<double> model = smooth_cnn();
  Rng rng(3);
  Tensor<double> x = random_tensor(Shape{3, 1, 5, 5}, rng, -2, 2);
  auto mean_abs_delta = [&](IntegrationRule rule, int steps) {
    IntegratedGradientsOptions options;
    options.rule = rule;
    options.steps = steps;
    IntegratedGradients<double> ig(model, options);
    ig.attribute(x, {0, 1, 2});
    double sum = 0;
    for (double d : ig.convergence_delta()) sum += std::abs(d);
    return sum / 3;
  };
  const double left_20 = mean_abs_delta(IntegrationRule::riemann_left, 20);
  const double left_200 = mean_abs_delta(IntegrationRule::riemann_left, 200);
  const double middle_20 = mean_abs_delta(IntegrationRule::riemann_middle, 20);
  const double gauss_20 = mean_abs_delta(IntegrationRule::gauss_legendre, 20);
  CHECK(left_20 > 1e-4);  // not trivially complete
  CHECK(left_200 < left_20 / 5);
  CHECK(middle_20 < left_20);
  CHECK(gauss_20 < 1e-9);

  // The delta is sum(attr) - (F(x) - F(0)) for each example.
  IntegratedGradients<double> ig(model);
  const Tensor<double> attr = ig.attribute(x, {3, 3, 3});
  const Tensor<double> fx = model.forward(x);
  const Tensor<double> f0 = model.forward(Tensor<double>(Shape{1, 1, 5, 5}, 0.0));
  for (index_t n = 0; n < 3; ++n) {
    double sum = 0;
    for (index_t k = 0; k < 25; ++k) sum += attr.data()[n * 25 + k];
    CHECK(ig.convergence_delta()[static_cast<std::size_t>(n)] ==
          Approx(sum - (fx.matrix()(n, 3) - f0.matrix()(0, 3))).margin(1e-12));
  }
}

TEST_CASE("Integrated Gradients gives the same result in any chunking of the byte budget", "[attribution]") {
  Sequential<double> model = smooth_cnn();
  Rng rng(4);
  const Tensor<double> x = random_tensor(Shape{5, 1, 5, 5}, rng);
  Tensor<double> baseline = random_tensor(Shape{5, 1, 5, 5}, rng, -0.1, 0.1);  // one per example
  IntegratedGradientsOptions whole, tiny;
  whole.steps = tiny.steps = 16;
  tiny.max_bytes = 3 * 25 * sizeof(double);  // three interpolated images per pass
  IntegratedGradients<double> a(model, whole), b(model, tiny);
  const Tensor<double> ra = a.attribute(x, baseline, {0, 1, 2, 3, 0});
  const Tensor<double> rb = b.attribute(x, baseline, {0, 1, 2, 3, 0});
  CHECK(max_abs_difference(ra, rb) == 0.0);
  CHECK(a.convergence_delta() == b.convergence_delta());
  CHECK_THROWS_WITH(a.attribute(x, Tensor<double>(Shape{2, 1, 5, 5}), {}), Contains("baseline shape (2, 1, 5, 5)"));
}

TEST_CASE("NoiseTunnel: SmoothGrad, SmoothGrad-squared and VarGrad, seeded", "[attribution]") {
  Sequential<double> model = smooth_cnn();
  Rng rng(5);
  const Tensor<double> x = random_tensor(Shape{2, 1, 5, 5}, rng);
  Saliency<double> saliency(model);
  const Tensor<double> plain = saliency.attribute(x, {1, 2});

  NoiseTunnelOptions none;
  none.stdev = 0;
  none.samples = 3;
  NoiseTunnel<double> smooth_without_noise(model, saliency, none);
  CHECK(max_abs_difference(smooth_without_noise.attribute(x, {1, 2}), plain) < 1e-15);
  none.type = NoiseTunnelType::vargrad;
  NoiseTunnel<double> var_without_noise(model, saliency, none);
  CHECK(var_without_noise.attribute(x, {1, 2}).flat().abs().maxCoeff() < 1e-15);

  NoiseTunnelOptions noisy;
  noisy.stdev = 0.3;
  noisy.samples = 8;
  noisy.seed = 11;
  NoiseTunnel<double> smooth(model, saliency, noisy), again(model, saliency, noisy);
  const Tensor<double> s = smooth.attribute(x, {1, 2});
  CHECK(max_abs_difference(s, again.attribute(x, {1, 2})) == 0.0);  // same seed, same result
  CHECK(max_abs_difference(s, plain) > 1e-3);                       // the noise did something

  // SmoothGrad-squared = SmoothGrad^2 + VarGrad, element by element.
  noisy.type = NoiseTunnelType::smoothgrad_sq;
  const Tensor<double> sq = NoiseTunnel<double>(model, saliency, noisy).attribute(x, {1, 2});
  noisy.type = NoiseTunnelType::vargrad;
  const Tensor<double> var = NoiseTunnel<double>(model, saliency, noisy).attribute(x, {1, 2});
  Tensor<double> recomposed = s;
  recomposed.flat() = s.flat().square() + var.flat();
  CHECK(max_abs_difference(sq, recomposed) < 1e-12);
  CHECK(var.flat().minCoeff() >= 0.0);
}

TEMPLATE_TEST_CASE("Saliency and Integrated Gradients match PyTorch on golden vectors", "[attribution]", float,
                   double) {
  using T = TestType;
  const auto g = [](const std::string& name) { return test::cast<T>(test::golden("attribution", name)); };
  Sequential<T> model(Shape{1, 5, 5});
  model.template add<nn::Conv2D<T>>(1, 2, nn::Size2{3, 3});
  model.template add<nn::Tanh<T>>();
  model.template add<nn::Flatten<T>>();
  model.template add<nn::Dense<T>>(18, 4);
  model.layer(0).parameters()[0]->value = g("model.conv_weight");
  model.layer(0).parameters()[1]->value = g("model.conv_bias");
  model.layer(3).parameters()[0]->value = g("model.dense_weight");
  model.layer(3).parameters()[1]->value = g("model.dense_bias");
  const Tensor<T> x = g("model.x");
  std::vector<index_t> targets;
  for (double t : test::golden("attribution", "model.targets")) targets.push_back(static_cast<index_t>(t));

  Saliency<T> saliency(model);
  CHECK(test::relative_error(saliency.attribute(x, targets), test::golden("attribution", "saliency")) <
        test::parity_tolerance<T>);
  IntegratedGradientsOptions middle;
  middle.rule = IntegrationRule::riemann_middle;
  middle.steps = 16;
  IntegratedGradients<T> ig_middle(model, middle);
  CHECK(test::relative_error(ig_middle.attribute(x, targets), test::golden("attribution", "ig_middle")) <
        test::parity_tolerance<T>);
  IntegratedGradientsOptions gauss;
  gauss.steps = 8;
  IntegratedGradients<T> ig_gauss(model, gauss);
  CHECK(test::relative_error(ig_gauss.attribute(x, targets), test::golden("attribution", "ig_gauss")) <
        test::parity_tolerance<T>);
}
