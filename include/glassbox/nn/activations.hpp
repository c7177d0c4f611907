#pragma once
// Elementwise activations: ReLU, LeakyReLU, Sigmoid, Tanh, GELU. Each keeps the
// input shape; backward uses whichever of x and y gives the cheaper, stable
// derivative. Derivatives at kinks follow PyTorch (ReLU'(0) = 0).

#include <fmt/format.h>

#include <cmath>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/functional.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox::nn {

// An activation fused into the layer before it (Keras' activation="relu"):
// applied to each sample's output while it is in cache, and shown by hooks
// and summaries as that layer's output.
enum class Activation { none, relu };

template <class T>
class Elementwise : public Layer<T> {
 public:
  Shape output_shape(const Shape& in) const override {
    require_batch_first(this->name(), in);
    return in;
  }

 protected:
  // Prepares dx for the elementwise product dx = dy * f'(.).
  static auto begin_backward(const Tensor<T>& dy, Tensor<T>* dx) {
    dx->resize(dy.shape());
    return dx->flat();
  }
};

template <class T>
class ReLU : public Elementwise<T> {
 public:
  std::string kind() const override { return "relu"; }
  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(x.shape());
    y.flat() = x.flat().max(T(0));
  }
  void backward(const Tensor<T>&, const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    this->begin_backward(dy, dx) = (y.flat() > T(0)).select(dy.flat(), T(0));
  }
};

template <class T>
class LeakyReLU : public Elementwise<T> {
 public:
  explicit LeakyReLU(T negative_slope = T(0.01)) : slope_(negative_slope) {}
  std::string kind() const override { return "leaky_relu"; }
  std::string config() const override { return fmt::format("slope={}", slope_); }
  T negative_slope() const { return slope_; }
  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(x.shape());
    y.flat() = (x.flat() > T(0)).select(x.flat(), slope_ * x.flat());
  }
  void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    this->begin_backward(dy, dx) = (x.flat() > T(0)).select(dy.flat(), slope_ * dy.flat());
  }

 private:
  T slope_;
};

template <class T>
class Sigmoid : public Elementwise<T> {
 public:
  std::string kind() const override { return "sigmoid"; }
  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(x.shape());
    functional::sigmoid(x.flat(), y.flat());
  }
  void backward(const Tensor<T>&, const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    this->begin_backward(dy, dx) = dy.flat() * y.flat() * (T(1) - y.flat());
  }
};

template <class T>
class Tanh : public Elementwise<T> {
 public:
  std::string kind() const override { return "tanh"; }
  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(x.shape());
    y.flat() = x.flat().tanh();
  }
  void backward(const Tensor<T>&, const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    this->begin_backward(dy, dx) = dy.flat() * (T(1) - y.flat().square());
  }
};

// GELU, exact (x * Phi(x), PyTorch's default) or the tanh approximation
// (PyTorch's approximate="tanh").
template <class T>
class GELU : public Elementwise<T> {
 public:
  enum class Approximation { none, tanh };
  explicit GELU(Approximation approximation = Approximation::none) : approx_(approximation) {}
  std::string kind() const override { return "gelu"; }
  std::string config() const override { return approx_ == Approximation::tanh ? "approximate=tanh" : ""; }
  Approximation approximation() const { return approx_; }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(x.shape());
    if (approx_ == Approximation::none)
      y.flat() = x.flat().unaryExpr([](T v) { return v * normal_cdf(v); });
    else
      y.flat() = x.flat().unaryExpr([](T v) { return T(0.5) * v * (T(1) + std::tanh(tanh_argument(v))); });
  }

  void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    auto out = this->begin_backward(dy, dx);
    if (approx_ == Approximation::none) {
      // d/dx [x Phi(x)] = Phi(x) + x phi(x)
      out = dy.flat() * x.flat().unaryExpr([](T v) {
        return normal_cdf(v) + v * std::exp(T(-0.5) * v * v) * T(0.3989422804014327);  // 1 / sqrt(2 pi)
      });
    } else {
      out = dy.flat() * x.flat().unaryExpr([](T v) {
        const T t = std::tanh(tanh_argument(v));
        return T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * k0 * (T(1) + T(3) * k1 * v * v);
      });
    }
  }

 private:
  static constexpr T k0 = T(0.7978845608028654);  // sqrt(2 / pi)
  static constexpr T k1 = T(0.044715);
  static T normal_cdf(T v) { return T(0.5) * (T(1) + std::erf(v * T(0.7071067811865476))); }
  static T tanh_argument(T v) { return k0 * (v + k1 * v * v * v); }

  Approximation approx_;
};

GLASSBOX_PRECOMPILED_INSTANCE(class Elementwise<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class ReLU<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class LeakyReLU<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class Sigmoid<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class Tanh<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class GELU<float>)
}  // namespace glassbox::nn
