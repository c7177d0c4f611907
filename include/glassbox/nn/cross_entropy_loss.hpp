#pragma once
// Softmax cross-entropy from logits with integer class labels, fused and
// numerically stable (log-sum-exp), as torch.nn.CrossEntropyLoss with
// reduction="mean". output: (N, C) logits; target: (N) labels in [0, C).

#include <fmt/format.h>

#include <cmath>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/loss.hpp"

namespace glassbox::nn {

template <class T>
class SoftmaxCrossEntropy : public Loss<T> {
 public:
  std::string name() const override { return "softmax_cross_entropy"; }

  T forward(const Tensor<T>& output, const Tensor<T>& target, Tensor<T>* grad) const override {
    validate(output, target);
    const auto z = output.matrix();
    const index_t n = z.rows();
    const auto row_max = z.rowwise().maxCoeff().eval();
    const auto sum_exp = (z.colwise() - row_max).array().exp().rowwise().sum().eval();
    T total = 0;
    for (index_t i = 0; i < n; ++i) total += row_max(i) + std::log(sum_exp(i)) - z(i, label(target, i));
    if (grad) {
      grad->resize(output.shape());
      auto g = grad->matrix();
      // softmax / n, reusing the loss's shifted exponentials
      g = ((z.colwise() - row_max).array().exp().colwise() / sum_exp.array()).matrix() / T(n);
      for (index_t i = 0; i < n; ++i) g(i, label(target, i)) -= T(1) / T(n);
    }
    return total / T(n);
  }

  Tally tally(const Tensor<T>& output, const Tensor<T>& target) const override {
    validate(output, target);
    const auto z = output.matrix();
    Tally t{0, z.rows()};
    for (index_t i = 0; i < z.rows(); ++i) {
      index_t best = 0;
      z.row(i).maxCoeff(&best);
      t.correct += best == label(target, i);
    }
    return t;
  }

 private:
  static index_t label(const Tensor<T>& target, index_t i) { return static_cast<index_t>(target[i]); }

  void validate(const Tensor<T>& output, const Tensor<T>& target) const {
    if (output.rank() != 2)
      throw Error(fmt::format("{}: expects logits of shape (batch, classes), got {}", name(), output.shape().str()));
    if (output.dim(0) == 0 || output.dim(1) == 0)
      throw Error(fmt::format("{}: empty batch or no classes: logits {}", name(), output.shape().str()));
    if (target.rank() != 1 || target.dim(0) != output.dim(0))
      throw Error(fmt::format("{}: {} rows of logits but labels of shape {} (expected ({}))", name(), output.dim(0),
                              target.shape().str(), output.dim(0)));
    const index_t classes = output.dim(1);
    for (index_t i = 0; i < target.size(); ++i) {
      const T v = target[i];
      if (!(v >= T(0) && v < T(classes)) || v != std::floor(v))
        throw Error(fmt::format("{}: label {} at index {} is not a class in [0, {})", name(), v, i, classes));
    }
  }
};

GLASSBOX_PRECOMPILED_INSTANCE(class SoftmaxCrossEntropy<float>)
}  // namespace glassbox::nn
