#pragma once
// Post-training int8 quantization with the formulas of TFLite's int8 spec:
//   real = scale * (q - zero_point)
//   weights:     symmetric per output channel, q in [-127, 127], zero_point 0,
//                scale = max|w_c| / 127
//   activations: asymmetric per tensor, q in [-128, 127], the range widened
//                to contain 0 so that 0 is exact, scale = (max - min) / 255,
//                zero_point = -128 - round(min / scale)
//   bias:        int32, zero_point 0, scale = input scale * weight scale
// Rounding is to nearest, ties to even (std::nearbyint), as
// torch.quantize_per_tensor does.
//
// calibrate() walks a model (dense and conv2d layers, a ReLU right after one
// folded into it, max pooling, flatten, dropout, and a final softmax), runs
// it on a calibration batch and picks every activation range by min/max, a
// percentile or the MSE-optimal clipping. The Plan it returns drives both
// FakeQuantization (quantize-dequantize inside the float model, for accuracy
// and sensitivity studies) and QuantizedModel (compress/quantized_model.hpp,
// the real int8 path). The last dense or conv2d layer's output is
// dequantized straight from its int32 accumulators, not requantized.
// FakeQuantization, quantization-aware training, the per-layer sensitivity
// and error reports: compress/fake_quantization.hpp (included at the end).

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "glassbox/model/sequential.hpp"
#include "glassbox/nn/conv2d.hpp"
#include "glassbox/train/fit.hpp"

namespace glassbox::quant {

// One affine quantizer: real = scale * (q - zero_point), q in [qmin, qmax].
struct QParams {
  float scale = 1.0f;
  std::int32_t zero_point = 0;
  std::int32_t qmin = -128;
  std::int32_t qmax = 127;

  // In float arithmetic, as the int8 path computes it; the int32 bias, whose
  // range float cannot hold exactly, in double. NaN maps to qmin.
  std::int32_t quantize(float x) const {
    if (qmax > 255) return quantize_wide(x);
    const float q = std::nearbyint(x / scale) + static_cast<float>(zero_point);
    if (!(q >= static_cast<float>(qmin))) return qmin;
    return q > static_cast<float>(qmax) ? qmax : static_cast<std::int32_t>(q);
  }
  std::int32_t quantize(double x) const { return qmax > 255 ? quantize_wide(x) : quantize(static_cast<float>(x)); }
  std::int32_t quantize_wide(double x) const {
    const double q = std::nearbyint(x / double(scale)) + zero_point;
    if (!(q >= double(qmin))) return qmin;
    return q > double(qmax) ? qmax : static_cast<std::int32_t>(q);
  }
  float dequantize(std::int32_t q) const { return scale * static_cast<float>(q - zero_point); }
  // Quantize-dequantize, as the int8 path's inputs see it.
  template <class T>
  T fake(T x) const {
    return static_cast<T>(dequantize(quantize(x)));
  }
};

// Asymmetric int8 for activations in [low, high] (widened to contain 0).
inline QParams activation_params(double low, double high) {
  low = std::min(low, 0.0);
  high = std::max(high, 0.0);
  QParams q;
  if (!(high > low)) return q;  // all zeros: any scale represents them
  q.scale = static_cast<float>((high - low) / 255.0);
  q.zero_point = static_cast<std::int32_t>(std::clamp(-128.0 - std::nearbyint(low / double(q.scale)), -128.0, 127.0));
  return q;
}

// Symmetric int8 for one channel of weights with largest magnitude abs_max.
inline QParams weight_params(double abs_max) {
  QParams q;
  q.qmin = -127;
  if (abs_max > 0) q.scale = static_cast<float>(abs_max / 127.0);
  return q;
}

// Bias quantizer: int32, zero point 0, scale input scale * weight scale.
inline QParams bias_params(const QParams& input, const QParams& weight) {
  QParams q;
  q.scale = input.scale * weight.scale;
  q.qmin = std::numeric_limits<std::int32_t>::min() + 1;
  q.qmax = std::numeric_limits<std::int32_t>::max();
  return q;
}

// 10 log10(signal power / noise power) in dB; infinite for an exact copy.
template <class A, class B>
double sqnr_db(const A& signal, const B& approximation) {
  double s = 0, n = 0;
  for (std::size_t i = 0; i < static_cast<std::size_t>(signal.size()); ++i) {
    const double x = signal[i], e = x - double(approximation[i]);
    s += x * x;
    n += e * e;
  }
  if (n == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(s / n);
}

enum class Calibration {
  min_max,     // the observed range
  percentile,  // clip both tails at `percentile` (99.99: the top 0.01% saturate)
  mse,         // the clipping that minimises the mean squared quantization error
};

struct CalibrationOptions {
  Calibration method = Calibration::min_max;
  double percentile = 99.99;
  index_t batch_size = 256;
  std::size_t max_samples = std::size_t(1) << 20;  // values kept per tensor for percentile / MSE
};

// One dense or conv2d layer as the int8 path runs it.
struct LayerQuant {
  std::size_t index = 0;  // the dense or conv2d in the model
  std::size_t last = 0;   // the last model layer folded in: index, or index + 1 for a ReLU layer
  std::string name;
  bool relu = false;             // output clamped at zero (fused, or a folded ReLU layer)
  bool float_output = false;     // the last such layer: output dequantized from int32, not requantized
  QParams input;                 // equals the previous layer's output (or the model input) quantizer
  QParams output;                // unused when float_output
  std::vector<QParams> weights;  // one per output channel
};

struct Plan {
  QParams input;  // the model's input
  std::vector<LayerQuant> layers;
  std::size_t float_tail = 0;  // model layers from this index on run in float (a final softmax)
};

namespace detail {

// The layers a plan can cover, in order; throws naming the first that cannot.
template <class T>
Plan structure(Sequential<T>& model) {
  Plan plan;
  const std::size_t n = model.size();
  std::size_t i = 0;
  for (; i < n; ++i) {
    Layer<T>& l = model.layer(i);
    const std::string kind = l.kind();
    if (kind == "dense" || kind == "conv2d") {
      LayerQuant q;
      q.index = q.last = i;
      q.name = l.name();
      if (kind == "conv2d") q.relu = dynamic_cast<nn::Conv2D<T>&>(l).options().activation == nn::Activation::relu;
      if (i + 1 < n && model.layer(i + 1).kind() == "relu") {
        q.relu = true;
        q.last = ++i;
      }
      plan.layers.push_back(q);
    } else if (kind == "max_pool2d" || kind == "flatten" || kind == "dropout") {
      if (plan.layers.empty() && kind == "max_pool2d")
        throw Error(fmt::format("quant: {} comes before any dense or conv2d layer", l.name()));
    } else if (kind == "softmax" && i + 1 == n) {
      break;
    } else {
      throw Error(
          fmt::format("quant: {} ({}) has no int8 kernel; the int8 path runs dense and conv2d layers, a relu "
                      "right after one, max_pool2d, flatten, dropout and a final softmax",
                      l.name(), kind));
    }
  }
  plan.float_tail = i;
  if (plan.layers.empty()) throw Error("quant: the model has no dense or conv2d layer to quantize");
  for (std::size_t j = plan.layers.back().last + 1; j < plan.float_tail; ++j)
    if (model.layer(j).kind() == "max_pool2d")
      throw Error(fmt::format("quant: {} follows the last dense or conv2d layer, whose output stays in float",
                              model.layer(j).name()));
  plan.layers.back().float_output = true;
  return plan;
}

// The values seen at one point of the network: exact extremes and an evenly
// strided sample of at most `cap` values, for percentiles and MSE search.
struct Observed {
  double low = std::numeric_limits<double>::infinity();
  double high = -std::numeric_limits<double>::infinity();
  std::vector<float> sample;
  std::size_t seen = 0;

  template <class T>
  void add(const Tensor<T>& t, std::size_t stride) {
    for (index_t i = 0; i < t.size(); ++i, ++seen) {
      const double v = t[i];
      if (!std::isfinite(v)) throw Error("quant::calibrate: the calibration batch produced a non-finite activation");
      low = std::min(low, v);
      high = std::max(high, v);
      if (seen % stride == 0) sample.push_back(static_cast<float>(v));
    }
  }
};

inline double mse_of(const std::vector<float>& v, const QParams& q) {
  double e = 0;
  for (const float x : v) {
    const double d = double(x) - double(q.fake(x));
    e += d * d;
  }
  return e / double(std::max<std::size_t>(v.size(), 1));
}

inline QParams choose(Observed& o, const CalibrationOptions& options) {
  if (options.method == Calibration::min_max || o.sample.empty()) return activation_params(o.low, o.high);
  if (options.method == Calibration::percentile) {
    std::sort(o.sample.begin(), o.sample.end());
    const auto at = [&](double pct) {
      const double pos = pct / 100.0 * double(o.sample.size() - 1);
      return double(o.sample[static_cast<std::size_t>(std::llround(pos))]);
    };
    return activation_params(o.low >= 0 ? 0.0 : at(100.0 - options.percentile), at(options.percentile));
  }
  QParams best = activation_params(o.low, o.high);
  double best_error = mse_of(o.sample, best);
  for (int step = 1; step < 100; ++step) {  // shrink the range towards 0 by 1% at a time
    const double f = 1.0 - 0.01 * step;
    const QParams q = activation_params(o.low * f, o.high * f);
    const double e = mse_of(o.sample, q);
    if (e < best_error) best_error = e, best = q;
  }
  return best;
}

}  // namespace detail

// Symmetric per-channel quantizers of a weight tensor (output channels first).
template <class T>
std::vector<QParams> weight_scales(const Tensor<T>& w) {
  std::vector<QParams> scales;
  const index_t channels = w.dim(0), fan_in = w.size() / channels;
  for (index_t c = 0; c < channels; ++c) {
    double m = 0;
    for (index_t j = 0; j < fan_in; ++j) m = std::max(m, std::abs(double(w[c * fan_in + j])));
    scales.push_back(weight_params(m));
  }
  return scales;
}

// Observes the model on x (eval mode) and returns the quantization plan.
template <class T>
Plan calibrate(Sequential<T>& model, const Tensor<T>& x, const CalibrationOptions& options = {}) {
  if (!(options.percentile > 50 && options.percentile <= 100))
    throw Error(fmt::format("quant::calibrate: percentile must lie in (50, 100], got {}", options.percentile));
  if (options.batch_size <= 0 || options.max_samples == 0)
    throw Error("quant::calibrate: batch_size and max_samples must be positive");
  if (x.rank() < 2 || x.dim(0) == 0)
    throw Error(fmt::format("quant::calibrate: needs a non-empty batch (N, ...), got {}", x.shape().str()));
  Plan plan = detail::structure(model);

  // Strides that keep about max_samples values of each tensor.
  const Shape sample_shape = x.shape().sample();
  auto stride_for = [&](index_t values_per_sample) {
    const auto total = static_cast<std::size_t>(values_per_sample) * static_cast<std::size_t>(x.dim(0));
    return std::max<std::size_t>(1, (total + options.max_samples - 1) / options.max_samples);
  };
  detail::Observed input;
  std::vector<detail::Observed> outputs(plan.layers.size());
  std::vector<std::size_t> strides(plan.layers.size());
  std::vector<HookHandle> hooks;
  Shape shape = sample_shape.batched(1);
  for (std::size_t i = 0, l = 0; i < model.size() && l < plan.layers.size(); ++i) {
    shape = model.layer(i).output_shape(shape);
    if (i != plan.layers[l].last) continue;
    strides[l] = stride_for(shape.size());
    if (!plan.layers[l].float_output)
      hooks.push_back(model.add_forward_hook(
          i, [&outputs, &strides, l](const ForwardEvent<T>& e) { outputs[l].add(e.output, strides[l]); }));
    ++l;
  }
  Tensor<T> batch;
  for (index_t start = 0; start < x.dim(0); start += options.batch_size) {
    copy_rows(x, start, std::min(options.batch_size, x.dim(0) - start), batch);
    input.add(batch, stride_for(sample_shape.size()));
    model.forward(batch, Mode::eval);
  }
  hooks.clear();

  plan.input = detail::choose(input, options);
  QParams flowing = plan.input;
  for (std::size_t l = 0; l < plan.layers.size(); ++l) {
    LayerQuant& q = plan.layers[l];
    q.input = flowing;
    q.weights = weight_scales(model.layer(q.index).parameters()[0]->value);
    if (!q.float_output) {
      q.output = detail::choose(outputs[l], options);
      flowing = q.output;
    }
  }
  return plan;
}

}  // namespace glassbox::quant

// FakeQuantization, QuantizationAwareTraining, sensitivity and error_report.
#include "glassbox/compress/fake_quantization.hpp"
