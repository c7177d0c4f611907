#pragma once
// Affine: y = x * weight + bias, elementwise, with a learned weight and bias
// of one per-sample shape that broadcast over the sample as NumPy does (a
// dimension of 1 stretches): a scalar (1, 1, 1), one value per channel
// (C, 1, 1), or one per feature (F). Keras' Rescaling(scale, offset) when
// the values are fixed, a LayerScale when learned; ONNX's Mul and Add of a
// constant (io/onnx_import.hpp) come back as this layer. Either part may be
// left out (Options). The weight starts at 1 and the bias at 0.

#include <fmt/format.h>

#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox::nn {

template <class T>
class Affine : public Layer<T> {
 public:
  struct Options {
    bool scale = true;  // the weight
    bool shift = true;  // the bias
  };

  // `shape`: per sample, without the batch, of the input's rank minus one.
  explicit Affine(const Shape& shape) : Affine(shape, Options{}) {}
  Affine(const Shape& shape, Options options)
      : shape_(shape), options_(options), weight_("weight", shape), bias_("bias", shape) {
    if (shape.rank() < 1 || shape.size() < 1)
      throw Error(fmt::format("affine: the parameter shape {} must have rank >= 1 and no zero dimension", shape.str()));
    if (!options.scale && !options.shift) throw Error("affine: needs a scale, a shift or both");
    reset();
  }

  std::string kind() const override { return "affine"; }
  std::string config() const override {
    return fmt::format("{} {}", shape_.str(),
                       options_.scale && options_.shift ? "scale and shift"
                       : options_.scale                 ? "scale"
                                                        : "shift");
  }
  const Shape& shape() const { return shape_; }
  const Options& options() const { return options_; }
  Parameter<T>& weight() { return weight_; }
  Parameter<T>& bias() { return bias_; }

  std::vector<Parameter<T>*> parameters() override {
    std::vector<Parameter<T>*> p;
    if (options_.scale) p.push_back(&weight_);
    if (options_.shift) p.push_back(&bias_);
    return p;
  }
  void reset_parameters(Rng&) override { reset(); }

  Shape output_shape(const Shape& in) const override {
    bool fits = in.rank() == shape_.rank() + 1;
    for (int d = 0; fits && d < shape_.rank(); ++d) fits = shape_[d] == in[d + 1] || shape_[d] == 1;
    if (!fits)
      throw_shape_error(this->name(), fmt::format("its parameters of shape {} do not broadcast over input {} (per "
                                                  "sample, each dimension equal or 1)",
                                                  shape_.str(), in.str()));
    return in;
  }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(x.shape());
    const Shape sample = x.shape().sample();
    stretch(sample);
    const index_t n = x.shape()[0], size = sample.size();
    for (index_t s = 0; s < n; ++s) {
      auto out = y.flat().segment(s * size, size);
      const auto in = x.flat().segment(s * size, size);
      if (options_.scale && options_.shift)
        out = in * weight_full_.flat() + bias_full_.flat();
      else if (options_.scale)
        out = in * weight_full_.flat();
      else
        out = in + bias_full_.flat();
    }
  }

  // dweight sums dy * x, dbias sums dy, over the batch and then over the
  // dimensions the parameters stretch along; dx = dy * weight.
  void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    const Shape sample = x.shape().sample();
    stretch(sample);
    const index_t n = x.shape()[0], size = sample.size();
    if (this->parameter_grads_wanted()) {
      sums_.resize(sample);
      if (options_.scale) {
        sums_.flat() = T(0);
        for (index_t s = 0; s < n; ++s)
          sums_.flat() += dy.flat().segment(s * size, size) * x.flat().segment(s * size, size);
        reduce(sums_, weight_.grad);
      }
      if (options_.shift) {
        sums_.flat() = T(0);
        for (index_t s = 0; s < n; ++s) sums_.flat() += dy.flat().segment(s * size, size);
        reduce(sums_, bias_.grad);
      }
    }
    if (!dx) return;
    dx->resize(x.shape());
    if (!options_.scale) {
      dx->flat() = dy.flat();
      return;
    }
    for (index_t s = 0; s < n; ++s)
      dx->flat().segment(s * size, size) = dy.flat().segment(s * size, size) * weight_full_.flat();
  }

 private:
  void reset() {
    weight_.value.fill(T(1));
    bias_.value.fill(T(0));
  }

  // The parameters stretched to one sample's shape.
  void stretch(const Shape& sample) {
    const auto widen = [&](const Tensor<T>& from, Tensor<T>& to) {
      to.resize(sample);
      broadcast_walk(shape_, sample, [&](index_t o, index_t i) { to[o] = from[i]; });
    };
    if (options_.scale) widen(weight_.value, weight_full_);
    if (options_.shift) widen(bias_.value, bias_full_);
  }

  // A per-sample sum folded onto the parameter shape.
  void reduce(const Tensor<T>& full, Tensor<T>& grad) const {
    grad.fill(T(0));
    broadcast_walk(shape_, full.shape(), [&](index_t o, index_t i) { grad[i] += full[o]; });
  }

  Shape shape_;
  Options options_;
  Parameter<T> weight_, bias_;
  Tensor<T> weight_full_, bias_full_, sums_;  // kept: no allocation per batch
};

GLASSBOX_PRECOMPILED_INSTANCE(class Affine<float>)
}  // namespace glassbox::nn
