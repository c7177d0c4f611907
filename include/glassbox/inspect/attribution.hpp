#pragma once
// Attribution methods with one call shape (as in Captum): construct on a model
// that outputs (N, classes), then attribute(x, targets) returns a tensor
// shaped like x. Empty targets: each sample's predicted class (on the clean
// input). Every method runs the model in eval mode; its backward passes skip
// the parameters' gradients (ParamGrads::skip), which stay as they were.
//
//   Saliency          d output[target] / d x (signed, or absolute as Captum's default)
//   InputXGradient    x * d output[target] / d x
//   IntegratedGradients  (x - b) * integral over a of d output[target] / d x at b + a (x - b),
//                     by a Riemann (left/right/middle/trapezoid) or Gauss-Legendre rule,
//                     with the convergence delta sum(attr) - (F(x) - F(b)) per example;
//                     baselines: zeros, a constant, the blurred input, or a tensor
//   NoiseTunnel       SmoothGrad / SmoothGrad-squared / VarGrad over any of the above
//
// More methods of this shape: GradCam (layer_attribution.hpp), Occlusion and
// FeatureAblation (ablation.hpp).

#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/inspect/saliency.hpp"

namespace glassbox::inspect {

// Bytes one sample of a batch shaped like batch_shape takes in a forward and
// backward pass: its input and every layer's output, each once as values and
// once as gradients. The methods below that batch many perturbed or
// interpolated copies of the input size their passes by it.
template <class T>
std::size_t forward_bytes_per_sample(Sequential<T>& model, const Shape& batch_shape) {
  Shape shape = batch_shape.sample().batched(1);
  std::size_t values = static_cast<std::size_t>(shape.size());
  for (std::size_t i = 0; i < model.size(); ++i) {
    shape = model.layer(i).output_shape(shape);
    values += static_cast<std::size_t>(shape.size());
  }
  return 2 * sizeof(T) * values;
}

namespace detail {
// Rows per forward pass that keep a pass within max_bytes (at least one).
template <class T>
index_t rows_per_pass(Sequential<T>& model, const Shape& batch_shape, std::size_t max_bytes) {
  return std::max<index_t>(1, static_cast<index_t>(max_bytes / forward_bytes_per_sample(model, batch_shape)));
}
}  // namespace detail

template <class T>
class Attribution {
 public:
  virtual ~Attribution() = default;
  virtual Tensor<T> attribute(const Tensor<T>& x, const std::vector<index_t>& targets = {}) = 0;
};

namespace detail {
// The targets to explain: the given ones, checked, or the predicted classes.
// Runs x once to check the model outputs (N, classes) and every target is a class.
template <class T>
std::vector<index_t> resolve_targets(Sequential<T>& model, const Tensor<T>& x, const std::vector<index_t>& targets) {
  if (x.rank() < 2 || x.dim(0) == 0)
    throw Error(fmt::format("attribution: expected a non-empty batch, got input of shape {}", x.shape().str()));
  const Tensor<T>& out = model.forward(x, Mode::eval);
  if (out.rank() != 2)
    throw Error(fmt::format("attribution: the model's output must be (N, classes), got {}", out.shape().str()));
  if (targets.empty()) return predicted_classes(out);
  if (static_cast<index_t>(targets.size()) != x.dim(0))
    throw Error(fmt::format("attribution: {} targets for a batch of {}", targets.size(), x.dim(0)));
  for (std::size_t n = 0; n < targets.size(); ++n)
    if (targets[n] < 0 || targets[n] >= out.dim(1))
      throw Error(fmt::format("attribution: target {} of sample {} is outside [0, {})", targets[n], n, out.dim(1)));
  return targets;
}

// The baseline of each example: one sample's shape (1, ...) shared by every
// example, or x's own shape (one baseline per example).
template <class T>
class BaselineRows {
 public:
  BaselineRows(const Tensor<T>& baseline, const Tensor<T>& x, const char* who)
      : baseline_(baseline),
        per_sample_(x.size() / x.dim(0)),
        shared_(baseline.shape() == x.shape().sample().batched(1)) {
    if (!shared_ && baseline.shape() != x.shape())
      throw Error(fmt::format("{}: baseline shape {} fits neither the input {} nor one sample", who,
                              baseline.shape().str(), x.shape().str()));
  }
  const T* row(index_t example) const { return baseline_.data() + (shared_ ? 0 : example * per_sample_); }
  // Every example's baseline, shaped like x.
  Tensor<T> expanded(const Shape& x_shape) const {
    Tensor<T> all(x_shape);
    for (index_t e = 0; e < x_shape[0]; ++e) std::copy(row(e), row(e) + per_sample_, all.data() + e * per_sample_);
    return all;
  }

 private:
  const Tensor<T>& baseline_;
  index_t per_sample_;
  bool shared_;
};

// out = baseline + alpha (x - baseline): a point on the straight path.
template <class T>
void interpolate(const T* x, const T* baseline, T alpha, index_t size, T* out) {
  for (index_t k = 0; k < size; ++k) out[k] = baseline[k] + alpha * (x[k] - baseline[k]);
}

// output[n, targets[n]] for every n.
template <class T>
std::vector<double> target_scores(Sequential<T>& model, const Tensor<T>& x, const std::vector<index_t>& targets) {
  const Tensor<T>& out = model.forward(x, Mode::eval);
  std::vector<double> scores(targets.size());
  for (std::size_t n = 0; n < targets.size(); ++n)
    scores[n] = static_cast<double>(out.matrix()(static_cast<index_t>(n), targets[n]));
  return scores;
}
}  // namespace detail

template <class T>
class Saliency : public Attribution<T> {
 public:
  explicit Saliency(Sequential<T>& model, bool absolute = false) : model_(model), absolute_(absolute) {}
  Tensor<T> attribute(const Tensor<T>& x, const std::vector<index_t>& targets = {}) override {
    Tensor<T> g = gradient_saliency(model_, x, targets);  // picks predicted classes for empty targets
    if (absolute_) g.flat() = g.flat().abs();
    return g;
  }

 private:
  Sequential<T>& model_;
  bool absolute_;
};

template <class T>
class InputXGradient : public Attribution<T> {
 public:
  explicit InputXGradient(Sequential<T>& model) : model_(model) {}
  Tensor<T> attribute(const Tensor<T>& x, const std::vector<index_t>& targets = {}) override {
    Tensor<T> g = gradient_saliency(model_, x, targets);
    g.flat() *= x.flat();
    return g;
  }

 private:
  Sequential<T>& model_;
};

// Gaussian blur of every (H, W) plane of a (N, C, H, W) or (N, H, W) batch,
// edges mirrored (scipy's "reflect"), kernel cut at 3 sigma: the blurred
// baseline of Sturmfels et al., "Visualizing the Impact of Feature
// Attribution Baselines" (Distill, 2020). sigma 0 returns x unchanged.
template <class T>
Tensor<T> gaussian_blur(const Tensor<T>& x, double sigma) {
  if (x.rank() < 3 || x.dim(x.rank() - 2) == 0 || x.dim(x.rank() - 1) == 0)
    throw Error(
        fmt::format("gaussian_blur: expected (N, C, H, W) or (N, H, W) with H, W > 0, got {}", x.shape().str()));
  if (!(sigma >= 0) || sigma > 1e3)
    throw Error(fmt::format("gaussian_blur: sigma must be in [0, 1000], got {}", sigma));
  Tensor<T> out = x;
  if (sigma == 0) return out;
  const index_t h = x.dim(x.rank() - 2), w = x.dim(x.rank() - 1), planes = x.size() / (h * w);
  const auto radius = static_cast<index_t>(std::ceil(3 * sigma));
  std::vector<double> kernel(static_cast<std::size_t>(2 * radius + 1));
  double total = 0;
  for (index_t k = -radius; k <= radius; ++k)
    total += kernel[static_cast<std::size_t>(k + radius)] =
        std::exp(-0.5 * static_cast<double>(k * k) / (sigma * sigma));
  for (double& k : kernel) k /= total;
  auto mirror = [](index_t i, index_t n) {  // reflect about the edges until inside [0, n)
    const index_t period = 2 * n;
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - 1 - i;
  };
  std::vector<double> line;
  for (index_t p = 0; p < planes; ++p) {
    T* plane = out.data() + p * h * w;
    for (int pass = 0; pass < 2; ++pass) {  // rows, then columns
      const index_t lines = pass == 0 ? h : w, length = pass == 0 ? w : h;
      const index_t step = pass == 0 ? 1 : w, line_step = pass == 0 ? w : 1;
      line.resize(static_cast<std::size_t>(length));
      for (index_t l = 0; l < lines; ++l) {
        T* v = plane + l * line_step;
        for (index_t i = 0; i < length; ++i) line[static_cast<std::size_t>(i)] = static_cast<double>(v[i * step]);
        for (index_t i = 0; i < length; ++i) {
          double sum = 0;
          for (index_t k = -radius; k <= radius; ++k)
            sum += kernel[static_cast<std::size_t>(k + radius)] * line[static_cast<std::size_t>(mirror(i + k, length))];
          v[i * step] = static_cast<T>(sum);
        }
      }
    }
  }
  return out;
}

enum class IntegrationRule { riemann_left, riemann_right, riemann_middle, riemann_trapezoid, gauss_legendre };

// Points a in [0, 1] and weights w of a rule with `steps` points:
// integral_0^1 f(a) da ~ sum w_i f(a_i).
inline void integration_points(IntegrationRule rule, int steps, std::vector<double>& alphas,
                               std::vector<double>& weights) {
  if (steps < 1 || (rule == IntegrationRule::riemann_trapezoid && steps < 2))
    throw Error(fmt::format("IntegratedGradients: steps must be >= {} for this rule, got {}",
                            rule == IntegrationRule::riemann_trapezoid ? 2 : 1, steps));
  const auto n = static_cast<std::size_t>(steps);
  alphas.assign(n, 0);
  weights.assign(n, 1.0 / steps);
  for (std::size_t i = 0; i < n; ++i) {
    const double k = static_cast<double>(i);
    switch (rule) {
      case IntegrationRule::riemann_left: alphas[i] = k / steps; break;
      case IntegrationRule::riemann_right: alphas[i] = (k + 1) / steps; break;
      case IntegrationRule::riemann_middle: alphas[i] = (k + 0.5) / steps; break;
      case IntegrationRule::riemann_trapezoid:
        alphas[i] = k / (steps - 1);
        weights[i] = (i == 0 || i + 1 == n ? 0.5 : 1.0) / (steps - 1);
        break;
      case IntegrationRule::gauss_legendre: {
        // Root i of the Legendre polynomial P_n by Newton's method from the
        // Chebyshev guess, then mapped from [-1, 1] to [0, 1].
        const double pi = 3.141592653589793;
        double z = std::cos(pi * (k + 0.75) / (steps + 0.5)), derivative = 1;
        for (int iteration = 0; iteration < 100; ++iteration) {
          double p0 = 1, p1 = z;  // P_0, P_1, then the recurrence up to P_n
          for (int j = 2; j <= steps; ++j) {
            const double p2 = ((2 * j - 1) * z * p1 - (j - 1) * p0) / j;
            p0 = p1;
            p1 = p2;
          }
          derivative = steps * (z * p1 - p0) / (z * z - 1);
          const double previous = z;
          z -= p1 / derivative;
          if (std::abs(z - previous) < 1e-15) break;
        }
        alphas[i] = (1 - z) / 2;
        weights[i] = 1 / ((1 - z * z) * derivative * derivative);  // 2 / (...) on [-1, 1], halved
        break;
      }
    }
  }
}

struct IntegratedGradientsOptions {
  int steps = 50;
  IntegrationRule rule = IntegrationRule::gauss_legendre;  // Captum's default too
  // Bytes per forward pass (see forward_bytes_per_sample); the steps x batch
  // interpolated inputs are processed in chunks that fit.
  std::size_t max_bytes = std::size_t{64} << 20;
};

template <class T>
class IntegratedGradients : public Attribution<T> {
 public:
  using Options = IntegratedGradientsOptions;

  explicit IntegratedGradients(Sequential<T>& model, Options options = {}) : model_(model), options_(options) {
    integration_points(options_.rule, options_.steps, alphas_, weights_);
  }

  // Baseline: all zeros unless set_baseline(), set_constant_baseline() or
  // set_blurred_baseline() chose another.
  Tensor<T> attribute(const Tensor<T>& x, const std::vector<index_t>& targets = {}) override {
    return attribute(x, baseline_for(x), targets);
  }

  // baseline: one sample's shape (1, ...) shared by every example, or x's shape.
  Tensor<T> attribute(const Tensor<T>& x, const Tensor<T>& baseline, const std::vector<index_t>& targets) {
    const std::vector<index_t> chosen = detail::resolve_targets(model_, x, targets);
    const index_t n = x.dim(0), per_sample = x.size() / n;
    const detail::BaselineRows<T> base(baseline, x, "IntegratedGradients");

    // Rows of the interpolated batch: (example, step) pairs, example-major.
    const auto steps = static_cast<index_t>(alphas_.size());
    const index_t total = n * steps;
    const index_t chunk = std::min(total, detail::rows_per_pass(model_, x.shape(), options_.max_bytes));
    Tensor<double> integral(Shape{n, per_sample});
    integral.flat().setZero();
    Tensor<T> points;
    std::vector<index_t> row_targets;
    for (index_t first = 0; first < total; first += chunk) {
      const index_t rows = std::min(chunk, total - first);
      Shape shape = x.shape();
      shape[0] = rows;
      points.resize(shape);
      for (index_t r = 0; r < rows; ++r) {
        const index_t example = (first + r) / steps, step = (first + r) % steps;
        const T a = static_cast<T>(alphas_[static_cast<std::size_t>(step)]);
        detail::interpolate(x.data() + example * per_sample, base.row(example), a, per_sample,
                            points.data() + r * per_sample);
      }
      const Tensor<T>& y = model_.forward(points, Mode::eval);
      row_targets.resize(static_cast<std::size_t>(rows));
      for (index_t r = 0; r < rows; ++r)
        row_targets[static_cast<std::size_t>(r)] = chosen[static_cast<std::size_t>((first + r) / steps)];
      model_.backward(detail::target_seed(y, row_targets, "IntegratedGradients"), /*want_input_grad=*/true,
                      ParamGrads::skip);
      const Tensor<T>& g = model_.input_grad();
      for (index_t r = 0; r < rows; ++r) {
        const index_t example = (first + r) / steps;
        const double w = weights_[static_cast<std::size_t>((first + r) % steps)];
        double* acc = integral.data() + example * per_sample;
        const T* gr = g.data() + r * per_sample;
        for (index_t k = 0; k < per_sample; ++k) acc[k] += w * static_cast<double>(gr[k]);
      }
    }

    Tensor<T> attributions(x.shape());
    delta_.assign(static_cast<std::size_t>(n), 0);
    for (index_t e = 0; e < n; ++e) {
      const T* xs = x.data() + e * per_sample;
      const T* bs = base.row(e);
      double sum = 0;
      for (index_t k = 0; k < per_sample; ++k) {
        const double a =
            (static_cast<double>(xs[k]) - static_cast<double>(bs[k])) * integral.data()[e * per_sample + k];
        attributions.data()[e * per_sample + k] = static_cast<T>(a);
        sum += a;
      }
      delta_[static_cast<std::size_t>(e)] = sum;
    }
    const std::vector<double> at_x = detail::target_scores(model_, x, chosen);
    const std::vector<double> at_baseline = detail::target_scores(model_, base.expanded(x.shape()), chosen);
    for (std::size_t e = 0; e < delta_.size(); ++e) delta_[e] -= at_x[e] - at_baseline[e];
    return attributions;
  }

  // Per example of the last attribute(): sum(attr) - (F(x) - F(baseline)).
  const std::vector<double>& convergence_delta() const { return delta_; }

  // Baseline used by attribute(x, targets): a tensor of one sample's shape
  // (or of the batch's), a constant, or each input blurred by gaussian_blur.
  void set_baseline(Tensor<T> baseline) {
    baseline_ = std::move(baseline);
    blur_sigma_ = -1;
  }
  void set_constant_baseline(T value) {
    constant_ = value;
    baseline_ = Tensor<T>();
    blur_sigma_ = -1;
  }
  void set_blurred_baseline(double sigma) {
    if (!(sigma >= 0)) throw Error(fmt::format("IntegratedGradients: blur sigma must be >= 0, got {}", sigma));
    blur_sigma_ = sigma;
    baseline_ = Tensor<T>();
  }

 private:
  Tensor<T> baseline_for(const Tensor<T>& x) const {
    if (blur_sigma_ >= 0) return gaussian_blur(x, blur_sigma_);
    if (!baseline_.empty()) return baseline_;
    Tensor<T> b(x.shape().sample().batched(1));
    b.flat().setConstant(constant_);
    return b;
  }

  Sequential<T>& model_;
  Options options_;
  std::vector<double> alphas_, weights_;
  std::vector<double> delta_;
  Tensor<T> baseline_;
  T constant_ = T(0);
  double blur_sigma_ = -1;  // < 0: no blur
};

enum class NoiseTunnelType { smoothgrad, smoothgrad_sq, vargrad };

struct NoiseTunnelOptions {
  NoiseTunnelType type = NoiseTunnelType::smoothgrad;
  int samples = 10;
  double stdev = 1.0;  // of the Gaussian noise added to the input, in input units
  std::uint64_t seed = 0;
};

// Averages another method's attributions over noisy copies of the input:
// mean (SmoothGrad), mean of squares (SmoothGrad-squared) or variance (VarGrad).
template <class T>
class NoiseTunnel : public Attribution<T> {
 public:
  using Options = NoiseTunnelOptions;

  NoiseTunnel(Sequential<T>& model, Attribution<T>& method, Options options = {})
      : model_(model), method_(method), options_(options) {
    if (options_.samples < 1) throw Error(fmt::format("NoiseTunnel: samples must be >= 1, got {}", options_.samples));
    if (!(options_.stdev >= 0)) throw Error(fmt::format("NoiseTunnel: stdev must be >= 0, got {}", options_.stdev));
  }

  Tensor<T> attribute(const Tensor<T>& x, const std::vector<index_t>& targets = {}) override {
    const std::vector<index_t> chosen = detail::resolve_targets(model_, x, targets);  // on the clean input
    Rng rng(options_.seed);
    Tensor<double> sum(Shape{x.size()}), squares(Shape{x.size()});
    sum.flat().setZero();
    squares.flat().setZero();
    Tensor<T> noisy(x.shape());
    for (int s = 0; s < options_.samples; ++s) {
      for (index_t k = 0; k < x.size(); ++k)
        noisy.data()[k] = x.data()[k] + static_cast<T>(options_.stdev * rng.normal());
      const Tensor<T> a = method_.attribute(noisy, chosen);
      for (index_t k = 0; k < x.size(); ++k) {
        const double v = static_cast<double>(a.data()[k]);
        sum.data()[k] += v;
        squares.data()[k] += v * v;
      }
    }
    Tensor<T> result(x.shape());
    const double count = options_.samples;
    for (index_t k = 0; k < x.size(); ++k) {
      const double mean = sum.data()[k] / count, mean_sq = squares.data()[k] / count;
      const double v = options_.type == NoiseTunnelType::smoothgrad      ? mean
                       : options_.type == NoiseTunnelType::smoothgrad_sq ? mean_sq
                                                                         : std::max(0.0, mean_sq - mean * mean);
      result.data()[k] = static_cast<T>(v);
    }
    return result;
  }

 private:
  Sequential<T>& model_;
  Attribution<T>& method_;
  Options options_;
};

GLASSBOX_PRECOMPILED_INSTANCE(class Attribution<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class Saliency<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class InputXGradient<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class IntegratedGradients<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class NoiseTunnel<float>)
}  // namespace glassbox::inspect
