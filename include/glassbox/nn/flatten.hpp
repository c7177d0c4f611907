#pragma once
// Flatten: (N, d1, d2, ...) -> (N, d1 * d2 * ...), keeping each sample's
// row-major (C, H, W) order, as torch.nn.Flatten and Keras Flatten on NCHW.

#include <algorithm>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox::nn {

template <class T>
class Flatten : public Layer<T> {
 public:
  std::string kind() const override { return "flatten"; }
  bool reshapes_only() const override { return true; }

  Shape output_shape(const Shape& in) const override {
    require_batch_first(this->name(), in);
    return Shape{in[0], in.sample().size()};
  }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(output_shape(x.shape()));
    std::copy(x.begin(), x.end(), y.begin());
  }

  void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    dx->resize(x.shape());
    std::copy(dy.begin(), dy.end(), dx->begin());
  }
};

GLASSBOX_PRECOMPILED_INSTANCE(class Flatten<float>)
}  // namespace glassbox::nn
