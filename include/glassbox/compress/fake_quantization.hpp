#pragma once
// The float model computing what the int8 path computes, from a Plan
// (compress/quantize.hpp): FakeQuantization (quantize-dequantize inside the
// float model), QuantizationAwareTraining (fake quantization in forward, the
// straight-through estimator in backward), and the reports built on them:
// per-layer sensitivity and SQNR error.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "glassbox/compress/quantize.hpp"

namespace glassbox::quant {

// Quantize-dequantize of weights (per channel) and of a bias with the int8
// path's int32 scales, as the int8 path stores them.
template <class T>
void fake_quantize_weights(Tensor<T>& w, const std::vector<QParams>& scales) {
  const index_t channels = w.dim(0), fan_in = w.size() / channels;
  for (index_t c = 0; c < channels; ++c)
    for (index_t j = 0; j < fan_in; ++j)
      w[c * fan_in + j] = scales[static_cast<std::size_t>(c)].fake(w[c * fan_in + j]);
}
template <class T>
void fake_quantize_bias(Tensor<T>& b, const QParams& input, const std::vector<QParams>& weights) {
  for (index_t c = 0; c < b.size(); ++c) b[c] = bias_params(input, weights[static_cast<std::size_t>(c)]).fake(b[c]);
}

// While alive, the float model computes what the int8 path computes (up to
// float rounding): weights and biases of the chosen layers quantized, their
// inputs and outputs quantized at the plan's points by modifying hooks.
// Backward passes the hooks straight through (the straight-through
// estimator). The original weights come back on destruction.
template <class T>
class FakeQuantization {
 public:
  // only: indices into plan.layers; empty means every layer.
  FakeQuantization(Sequential<T>& model, const Plan& plan, std::vector<std::size_t> only = {}) {
    if (only.empty())
      for (std::size_t l = 0; l < plan.layers.size(); ++l) only.push_back(l);
    std::sort(only.begin(), only.end());
    only.erase(std::unique(only.begin(), only.end()), only.end());
    // Everything is checked before any weight changes.
    for (const std::size_t l : only) {
      if (l >= plan.layers.size())
        throw Error(fmt::format("quant::FakeQuantization: layer {} out of range (plan has {})", l, plan.layers.size()));
      const LayerQuant& q = plan.layers[l];
      if (q.index >= model.size() || model.layer(q.index).name() != q.name)
        throw Error(fmt::format("quant::FakeQuantization: the model has no {} where the plan put it", q.name));
    }
    for (const std::size_t l : only) {
      const LayerQuant& q = plan.layers[l];
      Layer<T>& layer = model.layer(q.index);
      std::vector<Parameter<T>*> params = layer.parameters();
      for (Parameter<T>* p : params) saved_.push_back({p, p->value});
      fake_quantize_weights(params[0]->value, q.weights);
      if (params.size() > 1) fake_quantize_bias(params[1]->value, q.input, q.weights);
      hooks_.push_back(model.add_modifying_forward_pre_hook(
          q.index, [in = q.input](const ForwardPreEvent<T>&, Tensor<T>& x) { apply(in, x); }));
      if (!q.float_output)
        hooks_.push_back(model.add_modifying_forward_hook(
            q.last, [out = q.output](const ForwardEvent<T>&, Tensor<T>& y) { apply(out, y); }));
    }
  }
  FakeQuantization(const FakeQuantization&) = delete;
  FakeQuantization& operator=(const FakeQuantization&) = delete;
  ~FakeQuantization() {
    for (auto& s : saved_) s.parameter->value = std::move(s.value);
  }

 private:
  static void apply(const QParams& q, Tensor<T>& t) {
    for (T& v : t) v = q.fake(v);
  }
  struct Saved {
    Parameter<T>* parameter;
    Tensor<T> value;
  };
  std::vector<Saved> saved_;
  std::vector<HookHandle> hooks_;
};

// Quantization-aware training (fake quantization in forward, the
// straight-through estimator in backward). While alive, each planned layer's
// forward sees its weights quantized per channel from the current float
// weights (scales from their current extremes), its bias at the int32 scale,
// and int8 inputs and outputs at the plan's activation ranges; backward
// passes the quantizers straight through, and the optimizer updates the float
// weights, which come back after every backward (a parameter-gradient hook)
// or eval forward. plan() then describes the trained weights for
// QuantizedModel. Activation ranges stay those of the plan given.
template <class T>
class QuantizationAwareTraining {
 public:
  QuantizationAwareTraining(Sequential<T>& model, Plan plan) : model_(model), plan_(std::move(plan)) {
    for (const LayerQuant& q : plan_.layers)
      if (q.index >= model.size() || model.layer(q.index).name() != q.name)
        throw Error(fmt::format("quant::QuantizationAwareTraining: the model has no {} where the plan put it", q.name));
    swapped_.assign(plan_.layers.size(), Swapped{});
    for (std::size_t l = 0; l < plan_.layers.size(); ++l) {
      const LayerQuant& q = plan_.layers[l];
      hooks_.push_back(
          model.add_modifying_forward_pre_hook(q.index, [this, l](const ForwardPreEvent<T>&, Tensor<T>& x) {
            for (T& v : x) v = plan_.layers[l].input.fake(v);
            quantize_weights(l);
          }));
      hooks_.push_back(model.add_forward_hook(q.index, [this, l](const ForwardEvent<T>& e) {
        if (e.mode == Mode::eval) restore(l);  // no backward will follow
      }));
      if (!q.float_output)
        hooks_.push_back(model.add_modifying_forward_hook(q.last, [this, l](const ForwardEvent<T>&, Tensor<T>& y) {
          for (T& v : y) v = plan_.layers[l].output.fake(v);
        }));
      hooks_.push_back(model.add_param_grad_hook(q.index, [this, l](const ParamGradEvent<T>&) { restore(l); }));
    }
  }
  QuantizationAwareTraining(const QuantizationAwareTraining&) = delete;
  QuantizationAwareTraining& operator=(const QuantizationAwareTraining&) = delete;
  ~QuantizationAwareTraining() {
    for (std::size_t l = 0; l < swapped_.size(); ++l) restore(l);
  }

  // The plan with weight scales of the current float weights.
  Plan plan() const {
    Plan p = plan_;
    for (std::size_t l = 0; l < p.layers.size(); ++l) p.layers[l].weights = weight_scales(float_weight(l));
    return p;
  }

 private:
  struct Swapped {
    bool active = false;
    Tensor<T> weight, bias;  // the float values while quantized ones are in place
  };

  const Tensor<T>& float_weight(std::size_t l) const {
    return swapped_[l].active ? swapped_[l].weight : model_.layer(plan_.layers[l].index).parameters()[0]->value;
  }

  void quantize_weights(std::size_t l) {
    Swapped& s = swapped_[l];
    if (s.active) return;  // still quantized from a forward without backward
    const std::vector<Parameter<T>*> params = model_.layer(plan_.layers[l].index).parameters();
    s.weight = params[0]->value;
    const std::vector<QParams> scales = weight_scales(s.weight);
    fake_quantize_weights(params[0]->value, scales);
    if (params.size() > 1) {
      s.bias = params[1]->value;
      fake_quantize_bias(params[1]->value, plan_.layers[l].input, scales);
    }
    s.active = true;
  }

  void restore(std::size_t l) {
    Swapped& s = swapped_[l];
    if (!s.active) return;
    const std::vector<Parameter<T>*> params = model_.layer(plan_.layers[l].index).parameters();
    params[0]->value = s.weight;
    if (params.size() > 1) params[1]->value = s.bias;
    s.active = false;
  }

  Sequential<T>& model_;
  Plan plan_;
  std::vector<Swapped> swapped_;
  std::vector<HookHandle> hooks_;
};

// Accuracy with one layer at a time fake-quantized, then all of them.
struct LayerSensitivity {
  std::string name;  // "all" for every layer together
  double accuracy = 0;
  double drop = 0;  // float accuracy minus this one, in points of accuracy (fraction)
};

template <class T>
std::vector<LayerSensitivity> sensitivity(Sequential<T>& model, const Plan& plan, const nn::Loss<T>& loss,
                                          const Tensor<T>& x, const Tensor<T>& y, double* float_accuracy = nullptr) {
  const double reference = train::evaluate(model, loss, x, y).accuracy;
  if (float_accuracy) *float_accuracy = reference;
  std::vector<LayerSensitivity> out;
  for (std::size_t l = 0; l <= plan.layers.size(); ++l) {
    std::vector<std::size_t> only;
    if (l < plan.layers.size()) only.push_back(l);
    FakeQuantization<T> fq(model, plan, only);
    const double a = train::evaluate(model, loss, x, y).accuracy;
    out.push_back({l < plan.layers.size() ? plan.layers[l].name : "all", a, reference - a});
  }
  return out;
}

// Per layer: SQNR of the quantized weights, and of the layer's output with
// every layer fake-quantized against the float model's output on x (so the
// error accumulated up to that layer); plus the quantizers themselves.
struct LayerError {
  std::string name;
  double weight_sqnr_db = 0;
  double activation_sqnr_db = 0;
  const LayerQuant* quant = nullptr;  // into the plan passed in
};

template <class T>
std::vector<LayerError> error_report(Sequential<T>& model, const Plan& plan, const Tensor<T>& x) {
  std::vector<LayerError> out;
  for (const LayerQuant& q : plan.layers) {
    Tensor<T> w = model.layer(q.index).parameters()[0]->value;
    const Tensor<T> original = w;
    fake_quantize_weights(w, q.weights);
    out.push_back({q.name, sqnr_db(original, w), 0.0, &q});
  }
  auto outputs = [&] {
    std::vector<Tensor<T>> captured(plan.layers.size());
    std::vector<HookHandle> hooks;
    for (std::size_t l = 0; l < plan.layers.size(); ++l)
      hooks.push_back(model.add_forward_hook(plan.layers[l].last,
                                             [&captured, l](const ForwardEvent<T>& e) { captured[l] = e.output; }));
    model.forward(x, Mode::eval);
    return captured;
  };
  const std::vector<Tensor<T>> reference = outputs();
  std::vector<Tensor<T>> quantized;
  {
    FakeQuantization<T> fq(model, plan);
    quantized = outputs();
  }
  for (std::size_t l = 0; l < plan.layers.size(); ++l) out[l].activation_sqnr_db = sqnr_db(reference[l], quantized[l]);
  return out;
}

}  // namespace glassbox::quant
