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

  // Attributions skip the parameters' gradients: a pending optimizer step keeps its own.
  for (Parameter<double>* p : model.parameters()) p->grad.fill(3.0);
  signed_saliency.attribute(x, targets);
  IntegratedGradients<double>(model).attribute(x, targets);
  for (Parameter<double>* p : model.parameters()) CHECK((p->grad.flat() == 3.0).all());

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
  tiny.max_bytes = 3 * forward_bytes_per_sample(model, x.shape());  // three interpolated images per pass
  IntegratedGradients<double> a(model, whole), b(model, tiny);
  const Tensor<double> ra = a.attribute(x, baseline, {0, 1, 2, 3, 0});
  const Tensor<double> rb = b.attribute(x, baseline, {0, 1, 2, 3, 0});
  CHECK(max_abs_difference(ra, rb) == 0.0);
  CHECK(a.convergence_delta() == b.convergence_delta());
  // Inputs and every layer's output (conv 18, tanh 18, flatten 18, dense 4), as values and gradients.
  CHECK(forward_bytes_per_sample(model, x.shape()) == 2 * sizeof(double) * (25 + 18 + 18 + 18 + 4));
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

TEST_CASE("gaussian_blur: normalised kernel, mirrored edges; IG with a blurred baseline stays complete",
          "[attribution]") {
  Tensor<double> impulse(Shape{1, 1, 9, 9});
  impulse.data()[4 * 9 + 4] = 1;
  const Tensor<double> blurred = gaussian_blur(impulse, 1.0);
  double norm = 0;
  for (int k = -3; k <= 3; ++k) norm += std::exp(-0.5 * k * k);
  CHECK(blurred.data()[4 * 9 + 4] == Approx(1 / (norm * norm)).epsilon(1e-12));
  CHECK(blurred.data()[4 * 9 + 5] == Approx(std::exp(-0.5) / (norm * norm)).epsilon(1e-12));
  CHECK(blurred.flat().sum() == Approx(1).epsilon(1e-12));
  const Tensor<double> flat =
      gaussian_blur(Tensor<double>(Shape{2, 3, 4, 5}, 0.25), 2.0);  // mirrored edges keep a constant
  for (double v : flat) CHECK(v == Approx(0.25).epsilon(1e-12));
  CHECK(max_abs_difference(gaussian_blur(impulse, 0.0), impulse) == 0.0);
  CHECK_THROWS_WITH(gaussian_blur(Tensor<double>(Shape{2, 4}), 1.0), Contains("(N, C, H, W)"));

  Sequential<double> model(Shape{1, 4, 4}, 3);
  model.add<nn::Flatten<double>>();
  model.add<nn::Dense<double>>(16, 3);
  Rng rng(5);
  const Tensor<double> x = random_tensor(Shape{2, 1, 4, 4}, rng);
  IntegratedGradients<double> ig(model);
  ig.set_blurred_baseline(1.0);
  const Tensor<double> attr = ig.attribute(x, {0, 2});
  const Tensor<double> baseline = gaussian_blur(x, 1.0);
  const Tensor<double>& weight = model.layer(1).parameters()[0]->value;
  for (index_t k = 0; k < 16; ++k)
    CHECK(attr.data()[16 + k] ==
          Approx(weight.matrix()(2, k) * (x.data()[16 + k] - baseline.data()[16 + k])).margin(1e-12));
  for (double d : ig.convergence_delta()) CHECK(std::abs(d) < 1e-12);
}

TEST_CASE("resize_bilinear matches torch.nn.functional.interpolate(bilinear, align_corners=False)", "[attribution]") {
  const Tensor<double> maps(Shape{1, 1, 2, 2}, {1, 2, 3, 4});
  const Tensor<double> three = resize_bilinear(maps, 3, 3);
  CHECK(max_abs_difference(three, Tensor<double>(Shape{1, 1, 3, 3}, {1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4})) < 1e-15);
  const Tensor<double> wide = resize_bilinear(maps, 2, 4);
  CHECK(max_abs_difference(wide, Tensor<double>(Shape{1, 1, 2, 4}, {1, 1.25, 1.75, 2, 3, 3.25, 3.75, 4})) < 1e-15);
}

namespace {
// Conv(1 -> 2, 2x2) on 1x3x3 images, then a linear read-out: Grad-CAM by hand.
Sequential<double> tiny_conv_net() {
  Sequential<double> model(Shape{1, 3, 3}, 8);
  model.add<nn::Conv2D<double>>(1, 2, nn::Size2{2, 2});
  model.add<nn::Flatten<double>>();
  model.add<nn::Dense<double>>(8, 3);
  return model;
}
}  // namespace

TEST_CASE("Grad-CAM equals a hand computation on a tiny network", "[attribution]") {
  Sequential<double> model = tiny_conv_net();
  Rng rng(9);
  const Tensor<double> x = random_tensor(Shape{2, 1, 3, 3}, rng);
  const std::vector<index_t> targets{1, 2};
  model.forward(x);
  const Tensor<double> activation = model.output(0);  // (2, 2, 2, 2)
  const Tensor<double>& weight = model.layer(2).parameters()[0]->value;

  GradCamOptions no_relu;
  no_relu.relu = false;
  GradCam<double> raw(model, "conv2d_1", no_relu), cam(model, 0);
  const Tensor<double> raw_map = raw.layer_map(x, targets), map = cam.layer_map(x, targets);
  REQUIRE(map.shape() == Shape{2, 1, 2, 2});
  Tensor<double> expected(Shape{2, 1, 2, 2});
  for (index_t n = 0; n < 2; ++n)
    for (index_t c = 0; c < 2; ++c) {
      // d output[t] / d A[c, i, j] = W[t, c * 4 + i * 2 + j]: the channel weight is their mean.
      double alpha = 0;
      for (index_t k = 0; k < 4; ++k) alpha += weight.matrix()(targets[static_cast<std::size_t>(n)], c * 4 + k) / 4;
      for (index_t k = 0; k < 4; ++k) expected.data()[n * 4 + k] += alpha * activation.data()[(n * 2 + c) * 4 + k];
    }
  CHECK(max_abs_difference(raw_map, expected) < 1e-14);
  for (double& v : expected) v = std::max(v, 0.0);
  CHECK(max_abs_difference(map, expected) < 1e-14);
  CHECK(expected.flat().maxCoeff() > 0);

  const Tensor<double> upsampled = cam.attribute(x, targets);  // shaped like x
  CHECK(upsampled.shape() == x.shape());
  CHECK(max_abs_difference(upsampled, resize_bilinear(expected, 3, 3)) < 1e-14);
  CHECK_THROWS_WITH(GradCam<double>(model, "dense_1").attribute(x, targets), Contains("'dense_1' outputs (2, 3)"));
  CHECK_THROWS_WITH(GradCam<double>(model, "nope"), Contains("no layer named 'nope'"));
}

TEST_CASE("LayerGradientXActivation is A * dF/dA; NeuronGradient matches central differences", "[attribution]") {
  Sequential<double> model = smooth_cnn();
  Rng rng(10);
  Tensor<double> x = random_tensor(Shape{2, 1, 5, 5}, rng);
  const std::vector<index_t> targets{3, 1};
  // Behind Flatten a linear layer: dF/dA = W[target, :].
  const Tensor<double> attr = LayerGradientXActivation<double>(model, "flatten_1").attribute(x, targets);
  model.forward(x);
  const Tensor<double> a = model.output(2);
  const Tensor<double>& weight = model.layer(3).parameters()[0]->value;
  REQUIRE(attr.shape() == Shape{2, 18});
  for (index_t n = 0; n < 2; ++n)
    for (index_t k = 0; k < 18; ++k)
      CHECK(attr.matrix()(n, k) ==
            Approx(a.matrix()(n, k) * weight.matrix()(targets[static_cast<std::size_t>(n)], k)).margin(1e-14));

  // Unit 7 of the tanh layer's (2, 3, 3) output per sample.
  NeuronGradient<double> neuron(model, 1, 7);
  const Tensor<double> analytic = neuron.attribute(x);
  const Tensor<double> numeric = numerical_gradient(
      [&] {
        model.forward(x);
        return model.output(1).data()[7] + model.output(1).data()[18 + 7];
      },
      x);
  CHECK(gradient_error(analytic, numeric) < 1e-6);
  CHECK_THROWS_WITH(NeuronGradient<double>(model, 1, 18).attribute(x), Contains("unit 18 is outside layer 'tanh_1'"));
}

TEST_CASE("LayerConductance: units sum to F(x) - F(baseline); exact at the output layer", "[attribution]") {
  Sequential<double> model = smooth_cnn();
  Rng rng(11);
  const Tensor<double> x = random_tensor(Shape{3, 1, 5, 5}, rng, -2, 2);
  const std::vector<index_t> targets{0, 2, 3};
  auto mean_abs_delta = [&](int steps) {
    LayerConductanceOptions options;
    options.steps = steps;
    LayerConductance<double> conductance(model, "conv2d_1", options);  // tanh follows: not linear
    const Tensor<double> c = conductance.attribute(x, targets);
    CHECK(c.shape() == Shape{3, 2, 3, 3});
    double sum = 0;
    for (double d : conductance.convergence_delta()) sum += std::abs(d);
    return sum / 3;
  };
  const double coarse = mean_abs_delta(4), fine = mean_abs_delta(40);
  CHECK(coarse > 1e-6);
  CHECK(fine < coarse / 50);  // the trapezoid rule: error ~ 1 / steps^2
  CHECK(fine < 1e-4);

  // At the output layer dF/dy is one-hot: the target unit carries all of F(x) - F(b).
  const Tensor<double> baseline = random_tensor(Shape{1, 1, 5, 5}, rng, -0.2, 0.2);
  LayerConductanceOptions few;
  few.steps = 3;
  few.max_bytes = 4 * forward_bytes_per_sample(model, x.shape());  // one example's path (4 points) per pass
  LayerConductance<double> output_conductance(model, 3, few);
  const Tensor<double> c = output_conductance.attribute(x, baseline, targets);
  const Tensor<double> fx = model.forward(x);
  const Tensor<double> fb = model.forward(baseline);
  for (index_t n = 0; n < 3; ++n)
    for (index_t k = 0; k < 4; ++k) {
      const bool target = k == targets[static_cast<std::size_t>(n)];
      CHECK(c.matrix()(n, k) == Approx(target ? fx.matrix()(n, k) - fb.matrix()(0, k) : 0.0).margin(1e-12));
    }
}

TEST_CASE("Occlusion and FeatureAblation on a linear model equal weight x (x - baseline)", "[attribution]") {
  Sequential<double> model(Shape{2, 3, 4}, 12);
  model.add<nn::Flatten<double>>();
  model.add<nn::Dense<double>>(24, 3);
  Rng rng(12);
  const Tensor<double> x = random_tensor(Shape{3, 2, 3, 4}, rng);
  const std::vector<index_t> targets{2, 0, 1};
  const Tensor<double>& weight = model.layer(1).parameters()[0]->value;
  auto contribution = [&](index_t n, index_t f) {
    return weight.matrix()(targets[static_cast<std::size_t>(n)], f) * (x.data()[n * 24 + f] - 0.5);
  };

  OcclusionOptions pixel;
  pixel.window_height = pixel.window_width = pixel.stride_height = pixel.stride_width = 1;
  pixel.ablation.baseline = 0.5;
  pixel.ablation.max_bytes = 5 * forward_bytes_per_sample(model, x.shape());  // five occluded images per pass
  OcclusionOptions one_channel = pixel;
  one_channel.window_channels = 1;
  const Tensor<double> single = Occlusion<double>(model, one_channel).attribute(x, targets);
  for (index_t n = 0; n < 3; ++n)
    for (index_t f = 0; f < 24; ++f) CHECK(single.data()[n * 24 + f] == Approx(contribution(n, f)).margin(1e-12));
  // By default a window spans every channel: the pixel's channels share their summed drop.
  const Tensor<double> one_pixel = Occlusion<double>(model, pixel).attribute(x, targets);
  for (index_t n = 0; n < 3; ++n)
    for (index_t c = 0; c < 2; ++c)
      for (index_t p = 0; p < 12; ++p)
        CHECK(one_pixel.data()[n * 24 + c * 12 + p] ==
              Approx(contribution(n, p) + contribution(n, 12 + p)).margin(1e-12));

  AblationOptions half;
  half.baseline = 0.5;
  const Tensor<double> each = FeatureAblation<double>(model, {}, half).attribute(x, targets);
  for (index_t n = 0; n < 3; ++n)
    for (index_t f = 0; f < 24; ++f) CHECK(each.data()[n * 24 + f] == Approx(contribution(n, f)).margin(1e-12));

  // Groups: the two channels; -1 never ablated.
  std::vector<index_t> groups(24, 0);
  for (index_t f = 12; f < 24; ++f) groups[static_cast<std::size_t>(f)] = 1;
  groups[5] = -1;
  const Tensor<double> grouped = FeatureAblation<double>(model, groups, half).attribute(x, targets);
  for (index_t n = 0; n < 3; ++n) {
    double channel0 = 0, channel1 = 0;
    for (index_t f = 0; f < 12; ++f) channel0 += f == 5 ? 0 : contribution(n, f);
    for (index_t f = 12; f < 24; ++f) channel1 += contribution(n, f);
    CHECK(grouped.data()[n * 24 + 0] == Approx(channel0).margin(1e-12));
    CHECK(grouped.data()[n * 24 + 5] == 0.0);
    CHECK(grouped.data()[n * 24 + 20] == Approx(channel1).margin(1e-12));
  }

  // A 2x2 window with stride 1: each pixel gets the mean drop of the windows covering it.
  OcclusionOptions square = pixel;
  square.window_height = square.window_width = 2;
  const Tensor<double> occluded = Occlusion<double>(model, square).attribute(x, targets);
  auto window_drop = [&](index_t n, index_t top, index_t left) {
    double drop = 0;
    for (index_t c = 0; c < 2; ++c)
      for (index_t i = top; i < top + 2; ++i)
        for (index_t j = left; j < left + 2; ++j) drop += contribution(n, c * 12 + i * 4 + j);
    return drop;
  };
  // Pixel (1, 1) lies in the four windows at (0, 0), (0, 1), (1, 0), (1, 1); pixel (0, 0) in one.
  const double mean = (window_drop(1, 0, 0) + window_drop(1, 0, 1) + window_drop(1, 1, 0) + window_drop(1, 1, 1)) / 4;
  CHECK(occluded.data()[24 + 1 * 4 + 1] == Approx(mean).margin(1e-12));
  CHECK(occluded.data()[24 + 12] == Approx(window_drop(1, 0, 0)).margin(1e-12));
  CHECK_THROWS_WITH(FeatureAblation<double>(model, {0, 1}).attribute(x, targets),
                    Contains("2 entries for 24 features"));
  CHECK_THROWS_WITH(FeatureAblation<double>(model).attribute(x, {2, 0, 3}),
                    Contains("target 3 of sample 2 is outside [0, 3)"));
  CHECK_THROWS_WITH(Occlusion<double>(model, pixel).attribute(x, {-1, 0, 0}), Contains("target -1 of sample 0"));
  OcclusionOptions big = pixel;
  big.window_height = 4;
  CHECK_THROWS_WITH(Occlusion<double>(model, big).attribute(x, targets), Contains("larger than the 3x4 image"));
}

TEST_CASE("LayerFeatureAblation ablates hidden units through a modifying hook", "[attribution]") {
  Sequential<double> model(Shape{5}, 13);
  model.add<nn::Dense<double>>(5, 6);
  model.add<nn::ReLU<double>>();
  model.add<nn::Dense<double>>(6, 3);
  Rng rng(13);
  const Tensor<double> x = random_tensor(Shape{4, 5}, rng);
  const std::vector<index_t> targets{0, 1, 2, 1};
  const Tensor<double> clean = model.forward(x);
  const Tensor<double> hidden = model.output(1);
  const Tensor<double> attr = LayerFeatureAblation<double>(model, "relu_1").attribute(x, targets);
  const Tensor<double>& weight = model.layer(2).parameters()[0]->value;
  REQUIRE(attr.shape() == Shape{4, 6});
  for (index_t n = 0; n < 4; ++n)
    for (index_t u = 0; u < 6; ++u)  // zeroing unit u removes W2[t, u] h_u from the target logit
      CHECK(attr.matrix()(n, u) ==
            Approx(weight.matrix()(targets[static_cast<std::size_t>(n)], u) * hidden.matrix()(n, u)).margin(1e-12));
  // The hook is gone afterwards: the model computes what it computed before.
  CHECK(max_abs_difference(model.forward(x), clean) == 0.0);
}
