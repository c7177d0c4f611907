#pragma once
// Softmax over the last dimension. For training a classifier prefer logits
// with SoftmaxCrossEntropy (fused and stable); this layer is for models that
// must output probabilities, as the seed article's Dense(10, softmax) does.
// LogSoftmax: log(softmax(x)) over the last dimension, computed stably (as
// PyTorch's LogSoftmax, the last layer of classifiers trained with NLLLoss).

#include <fmt/format.h>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/functional.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox::nn {

namespace detail {
// A tensor as the rows of its last dimension, which softmaxes normalise.
template <class T>
using LastDimRows = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
Eigen::Map<const LastDimRows<T>> last_dim_rows(const Tensor<T>& t) {
  const index_t last = t.dim(t.rank() - 1);
  return Eigen::Map<const LastDimRows<T>>(t.data(), t.size() / last, last);
}
template <class T>
Eigen::Map<LastDimRows<T>> last_dim_rows(Tensor<T>& t) {
  const index_t last = t.dim(t.rank() - 1);
  return Eigen::Map<LastDimRows<T>>(t.data(), t.size() / last, last);
}
// Both softmaxes keep the shape and need at least one class.
inline Shape softmax_shape(const std::string& layer, const Shape& in) {
  require_batch_first(layer, in);
  if (in[in.rank() - 1] == 0) throw_shape_error(layer, fmt::format("input {} has no classes", in.str()));
  return in;
}
}  // namespace detail

template <class T>
class Softmax : public Layer<T> {
 public:
  std::string kind() const override { return "softmax"; }

  Shape output_shape(const Shape& in) const override { return detail::softmax_shape(this->name(), in); }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(x.shape());
    functional::softmax_rows(detail::last_dim_rows(x), detail::last_dim_rows(y));
  }

  // dx = y * (dy - sum(dy * y))
  void backward(const Tensor<T>&, const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    dx->resize(y.shape());
    const auto p = detail::last_dim_rows(y);
    const auto g = detail::last_dim_rows(dy);
    const auto dot = (g.array() * p.array()).rowwise().sum().eval();
    detail::last_dim_rows(*dx) = (p.array() * (g.array().colwise() - dot)).matrix();
  }
};

template <class T>
class LogSoftmax : public Layer<T> {
 public:
  std::string kind() const override { return "log_softmax"; }

  Shape output_shape(const Shape& in) const override { return detail::softmax_shape(this->name(), in); }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(output_shape(x.shape()));
    functional::log_softmax_rows(detail::last_dim_rows(x), detail::last_dim_rows(y));
  }

  // dx = dy - softmax(x) * sum(dy), softmax(x) = exp(y)
  void backward(const Tensor<T>&, const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    dx->resize(y.shape());
    const auto g = detail::last_dim_rows(dy);
    const auto total = g.rowwise().sum().eval();
    detail::last_dim_rows(*dx) = g - (detail::last_dim_rows(y).array().exp().colwise() * total.array()).matrix();
  }
};

GLASSBOX_PRECOMPILED_INSTANCE(class Softmax<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class LogSoftmax<float>)
}  // namespace glassbox::nn
