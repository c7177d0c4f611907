#pragma once
// Attributions at a hidden layer (Captum's layer and neuron methods). The
// layer is named by index, name or reference; gradients with respect to its
// output are read through a backward hook.
//
//   LayerGradientXActivation  A * dF/dA at the layer, shaped like its output
//   GradCam                   ReLU(sum_c mean_hw(dF/dA_c) A_c) at a (N, C, H, W) layer
//                             (Selvaraju et al. 2017), upsampled bilinearly to the input
//   LayerConductance          per unit y of the layer: the integral of dF/dy dy along the
//                             straight path from a baseline to x (Dhamdhere et al. 2018);
//                             the units' conductances sum to F(x) - F(baseline)
//   NeuronGradient            d(one unit of a layer) / d input
//
// F is output[n, target_n] of a model that outputs (N, classes); empty targets
// mean each sample's predicted class. Everything runs in eval mode and leaves
// the parameters' gradients as they were.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "glassbox/inspect/attribution.hpp"

namespace glassbox::inspect {

namespace detail {
// Forward x, backward from the targets; copies the layer's output and the
// gradient of the target scores with respect to it.
template <class T>
void layer_gradients(Sequential<T>& model, std::size_t layer, const Tensor<T>& x, std::vector<index_t>& targets,
                     Tensor<T>& activation, Tensor<T>& gradient, const char* who) {
  HookHandle capture =
      model.add_backward_hook(layer, [&gradient](const BackwardEvent<T>& event) { gradient = event.grad_output; });
  backward_from_targets(model, x, targets, /*want_input_grad=*/false, who);
  activation = model.output(layer);
}
}  // namespace detail

// Bilinear resize of every (h, w) plane of a (N, C, h, w) batch to (H, W), as
// torch.nn.functional.interpolate(mode="bilinear", align_corners=False).
template <class T>
Tensor<T> resize_bilinear(const Tensor<T>& maps, index_t height, index_t width) {
  if (maps.rank() != 4 || maps.dim(2) == 0 || maps.dim(3) == 0)
    throw Error(fmt::format("resize_bilinear: expected (N, C, H, W) with H, W > 0, got {}", maps.shape().str()));
  if (height <= 0 || width <= 0)
    throw Error(fmt::format("resize_bilinear: target size {}x{} must be positive", height, width));
  const index_t h = maps.dim(2), w = maps.dim(3), planes = maps.dim(0) * maps.dim(1);
  // Source coordinate of each target pixel centre, clamped at the edges.
  struct Tap {
    index_t low, high;
    double frac;
  };
  auto taps = [](index_t from, index_t to) {
    std::vector<Tap> t(static_cast<std::size_t>(to));
    for (index_t i = 0; i < to; ++i) {
      const double src = std::max(0.0, (static_cast<double>(i) + 0.5) * static_cast<double>(from) / to - 0.5);
      const auto low = std::min(static_cast<index_t>(src), from - 1);
      t[static_cast<std::size_t>(i)] = {low, std::min(low + 1, from - 1), src - static_cast<double>(low)};
    }
    return t;
  };
  const std::vector<Tap> rows = taps(h, height), cols = taps(w, width);
  Tensor<T> out(Shape{maps.dim(0), maps.dim(1), height, width});
  for (index_t p = 0; p < planes; ++p) {
    const T* in = maps.data() + p * h * w;
    T* o = out.data() + p * height * width;
    for (const Tap& r : rows)
      for (const Tap& c : cols) {
        const double top = (1 - c.frac) * in[r.low * w + c.low] + c.frac * in[r.low * w + c.high];
        const double bottom = (1 - c.frac) * in[r.high * w + c.low] + c.frac * in[r.high * w + c.high];
        *o++ = static_cast<T>((1 - r.frac) * top + r.frac * bottom);
      }
  }
  return out;
}

template <class T>
class LayerGradientXActivation {
 public:
  LayerGradientXActivation(Sequential<T>& model, HookTarget layer) : model_(model), layer_(model.index_of(layer)) {}

  // Shaped like the layer's output for x.
  Tensor<T> attribute(const Tensor<T>& x, const std::vector<index_t>& targets = {}) {
    std::vector<index_t> chosen = targets;
    Tensor<T> activation, gradient;
    detail::layer_gradients(model_, layer_, x, chosen, activation, gradient, "LayerGradientXActivation");
    activation.flat() *= gradient.flat();
    return activation;
  }

 private:
  Sequential<T>& model_;
  std::size_t layer_;
};

struct GradCamOptions {
  bool relu = true;  // keep only what speaks for the class, as the paper does (Captum's default is false)
};

template <class T>
class GradCam : public Attribution<T> {
 public:
  using Options = GradCamOptions;

  GradCam(Sequential<T>& model, HookTarget layer, Options options = {})
      : model_(model), layer_(model.index_of(layer)), options_(options) {}

  // The class-activation map at the layer's own resolution: (N, 1, h, w).
  Tensor<T> layer_map(const Tensor<T>& x, const std::vector<index_t>& targets = {}) {
    std::vector<index_t> chosen = targets;
    Tensor<T> activation, gradient;
    detail::layer_gradients(model_, layer_, x, chosen, activation, gradient, "GradCam");
    if (activation.rank() != 4)
      throw Error(fmt::format("GradCam: layer '{}' outputs {}; Grad-CAM needs (N, C, H, W) feature maps",
                              model_.layer(layer_).name(), activation.shape().str()));
    const index_t n = activation.dim(0), channels = activation.dim(1), area = activation.dim(2) * activation.dim(3);
    Tensor<T> map(Shape{n, 1, activation.dim(2), activation.dim(3)});
    for (index_t s = 0; s < n; ++s) {
      T* m = map.data() + s * area;
      for (index_t c = 0; c < channels; ++c) {
        const T* a = activation.data() + (s * channels + c) * area;
        const T* g = gradient.data() + (s * channels + c) * area;
        const T weight = static_cast<T>(std::accumulate(g, g + area, 0.0) / static_cast<double>(area));
        for (index_t k = 0; k < area; ++k) m[k] += weight * a[k];  // weight: the global-average-pooled gradient
      }
      if (options_.relu)
        for (index_t k = 0; k < area; ++k) m[k] = std::max(m[k], T(0));
    }
    return map;
  }

  // The map upsampled to x's height and width and repeated over x's
  // channels: shaped like x (N, C, H, W).
  Tensor<T> attribute(const Tensor<T>& x, const std::vector<index_t>& targets = {}) override {
    if (x.rank() != 4) throw Error(fmt::format("GradCam: expected images (N, C, H, W), got {}", x.shape().str()));
    const Tensor<T> map = resize_bilinear(layer_map(x, targets), x.dim(2), x.dim(3));
    Tensor<T> result(x.shape());
    const index_t area = x.dim(2) * x.dim(3);
    for (index_t s = 0; s < x.dim(0); ++s)
      for (index_t c = 0; c < x.dim(1); ++c)
        std::copy(map.data() + s * area, map.data() + (s + 1) * area, result.data() + (s * x.dim(1) + c) * area);
    return result;
  }

 private:
  Sequential<T>& model_;
  std::size_t layer_;
  Options options_;
};

struct LayerConductanceOptions {
  int steps = 50;                                 // path segments; the gradient is averaged over each segment's ends
  std::size_t max_bytes = std::size_t{64} << 20;  // per forward pass (forward_bytes_per_sample)
};

template <class T>
class LayerConductance {
 public:
  using Options = LayerConductanceOptions;

  LayerConductance(Sequential<T>& model, HookTarget layer, Options options = {})
      : model_(model), layer_(model.index_of(layer)), options_(options) {
    if (options_.steps < 1) throw Error(fmt::format("LayerConductance: steps must be >= 1, got {}", options_.steps));
  }

  // Zero baseline. Shaped like the layer's output for x.
  Tensor<T> attribute(const Tensor<T>& x, const std::vector<index_t>& targets = {}) {
    return attribute(x, Tensor<T>(x.shape().sample().batched(1)), targets);
  }

  // baseline: one sample's shape (1, ...) shared by every example, or x's shape.
  Tensor<T> attribute(const Tensor<T>& x, const Tensor<T>& baseline, const std::vector<index_t>& targets) {
    const std::vector<index_t> chosen = detail::resolve_targets(model_, x, targets);
    const index_t n = x.dim(0), per_sample = x.size() / n;
    const detail::BaselineRows<T> base(baseline, x, "LayerConductance");
    const index_t points = options_.steps + 1;  // alpha = k / steps, k = 0..steps
    const index_t examples_per_pass =
        std::max<index_t>(1, detail::rows_per_pass(model_, x.shape(), options_.max_bytes) / points);

    Tensor<T> conductance, path, activation, gradient;
    std::vector<index_t> row_targets;
    delta_.assign(static_cast<std::size_t>(n), 0);
    for (index_t first = 0; first < n; first += examples_per_pass) {
      const index_t count = std::min(examples_per_pass, n - first);
      Shape shape = x.shape();
      shape[0] = count * points;
      path.resize(shape);
      row_targets.resize(static_cast<std::size_t>(count * points));
      for (index_t e = 0; e < count; ++e)
        for (index_t k = 0; k < points; ++k) {
          const index_t row = e * points + k;
          detail::interpolate(x.data() + (first + e) * per_sample, base.row(first + e),
                              static_cast<T>(static_cast<double>(k) / options_.steps), per_sample,
                              path.data() + row * per_sample);
          row_targets[static_cast<std::size_t>(row)] = chosen[static_cast<std::size_t>(first + e)];
        }
      detail::layer_gradients(model_, layer_, path, row_targets, activation, gradient, "LayerConductance");
      const index_t units = activation.size() / activation.dim(0);
      if (conductance.empty()) {
        Shape out = activation.shape();
        out[0] = n;
        conductance.resize(out);
      }
      // Trapezoid rule along the path: sum_k (g_k + g_k+1) / 2 * (y_k+1 - y_k).
      for (index_t e = 0; e < count; ++e) {
        T* c = conductance.data() + (first + e) * units;
        double total = 0;
        for (index_t u = 0; u < units; ++u) {
          double sum = 0;
          for (index_t k = 0; k + 1 < points; ++k) {
            const index_t a = (e * points + k) * units + u, b = a + units;
            sum += 0.5 * (static_cast<double>(gradient.data()[a]) + static_cast<double>(gradient.data()[b])) *
                   (static_cast<double>(activation.data()[b]) - static_cast<double>(activation.data()[a]));
          }
          c[u] = static_cast<T>(sum);
          total += sum;
        }
        delta_[static_cast<std::size_t>(first + e)] = total;
      }
    }
    const std::vector<double> at_x = detail::target_scores(model_, x, chosen);
    const std::vector<double> at_baseline = detail::target_scores(model_, base.expanded(x.shape()), chosen);
    for (std::size_t e = 0; e < delta_.size(); ++e) delta_[e] -= at_x[e] - at_baseline[e];
    return conductance;
  }

  // Per example of the last attribute(): sum of the units' conductances - (F(x) - F(baseline)).
  const std::vector<double>& convergence_delta() const { return delta_; }

 private:
  Sequential<T>& model_;
  std::size_t layer_;
  Options options_;
  std::vector<double> delta_;
};

template <class T>
class NeuronGradient {
 public:
  // unit: flat index of the unit within one sample's output of the layer
  // (for (N, C, H, W): (c * H + h) * W + w).
  NeuronGradient(Sequential<T>& model, HookTarget layer, index_t unit)
      : model_(model), layer_(model.index_of(layer)), unit_(unit) {}

  // d layer_output[n, unit] / d x[n], shaped like x.
  Tensor<T> attribute(const Tensor<T>& x) {
    if (x.rank() < 2 || x.dim(0) == 0)
      throw Error(fmt::format("NeuronGradient: expected a non-empty batch, got input of shape {}", x.shape().str()));
    model_.forward(x, Mode::eval);
    const Tensor<T>& out = model_.output(layer_);
    const index_t units = out.size() / out.dim(0);
    if (unit_ < 0 || unit_ >= units)
      throw Error(fmt::format("NeuronGradient: unit {} is outside layer '{}' ({} units per sample)", unit_,
                              model_.layer(layer_).name(), units));
    Tensor<T> seed(out.shape());
    for (index_t s = 0; s < out.dim(0); ++s) seed.data()[s * units + unit_] = T(1);
    model_.backward_from(layer_, seed, /*want_input_grad=*/true, ParamGrads::skip);
    return model_.input_grad();
  }

 private:
  Sequential<T>& model_;
  std::size_t layer_;
  index_t unit_;
};

}  // namespace glassbox::inspect
