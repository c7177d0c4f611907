#pragma once
// Softmax over the last dimension. For training a classifier prefer logits
// with SoftmaxCrossEntropy (fused and stable); this layer is for models that
// must output probabilities, as the seed article's Dense(10, softmax) does.

#include <fmt/format.h>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/functional.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox::nn {

template <class T>
class Softmax : public Layer<T> {
 public:
  std::string kind() const override { return "softmax"; }

  Shape output_shape(const Shape& in) const override {
    require_batch_first(this->name(), in);
    if (in[in.rank() - 1] == 0) throw_shape_error(this->name(), fmt::format("input {} has no classes", in.str()));
    return in;
  }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(x.shape());
    functional::softmax_rows(rows(x), rows(y));
  }

  // dx = y * (dy - sum(dy * y))
  void backward(const Tensor<T>&, const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    dx->resize(y.shape());
    const auto p = rows(y);
    const auto g = rows(dy);
    const auto dot = (g.array() * p.array()).rowwise().sum().eval();
    rows(*dx) = (p.array() * (g.array().colwise() - dot)).matrix();
  }

 private:
  using Rows = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  static index_t last_dim(const Tensor<T>& t) { return t.dim(t.rank() - 1); }
  static Eigen::Map<const Rows> rows(const Tensor<T>& t) {
    return Eigen::Map<const Rows>(t.data(), t.size() / last_dim(t), last_dim(t));
  }
  static Eigen::Map<Rows> rows(Tensor<T>& t) { return Eigen::Map<Rows>(t.data(), t.size() / last_dim(t), last_dim(t)); }
};

GLASSBOX_PRECOMPILED_INSTANCE(class Softmax<float>)
}  // namespace glassbox::nn
