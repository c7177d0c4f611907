#pragma once
// Reshape: (N, ...) -> (N, shape...), the same values in the same row-major
// order, as torch's x.view(x.size(0), *shape) and Keras' Reshape(shape): the
// batch stays, each sample's values take the new shape (C, 1, 1) or (F).

#include <fmt/format.h>

#include <algorithm>
#include <string>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox::nn {

// A layer whose output holds its input's values in the same order, in
// another shape (Flatten, Reshape): forward and backward copy them.
template <class T>
class Regroup : public Layer<T> {
 public:
  bool reshapes_only() const override { return true; }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(this->output_shape(x.shape()));
    std::copy(x.begin(), x.end(), y.begin());
  }

  void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    dx->resize(x.shape());
    std::copy(dy.begin(), dy.end(), dx->begin());
  }
};

template <class T>
class Reshape : public Regroup<T> {
 public:
  // `shape`: per sample, without the batch.
  explicit Reshape(const Shape& shape) : shape_(shape) {
    if (shape.rank() < 1 || shape.size() < 1)
      throw Error(fmt::format("reshape: the shape {} must have rank >= 1 and no zero dimension", shape.str()));
  }

  std::string kind() const override { return "reshape"; }
  std::string config() const override { return "to " + shape_.str(); }
  const Shape& shape() const { return shape_; }

  Shape output_shape(const Shape& in) const override {
    require_batch_first(this->name(), in);
    if (in.sample().size() != shape_.size())
      throw_shape_error(this->name(), fmt::format("cannot reshape {} values per sample (input {}) to {}",
                                                  in.sample().size(), in.str(), shape_.str()));
    return shape_.batched(in[0]);
  }

 private:
  Shape shape_;
};

GLASSBOX_PRECOMPILED_INSTANCE(class Regroup<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class Reshape<float>)
}  // namespace glassbox::nn
