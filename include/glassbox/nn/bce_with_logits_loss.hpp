#pragma once
// Binary cross-entropy from logits, stable for any |z|, as
// torch.nn.BCEWithLogitsLoss(reduction="mean"): the mean over every element of
// max(z, 0) - z t + log(1 + exp(-|z|)). Targets in [0, 1], same shape as z.

#include <fmt/format.h>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/functional.hpp"
#include "glassbox/nn/loss.hpp"

namespace glassbox::nn {

template <class T>
class BCEWithLogitsLoss : public Loss<T> {
 public:
  std::string name() const override { return "bce_with_logits"; }

  T forward(const Tensor<T>& output, const Tensor<T>& target, Tensor<T>* grad) const override {
    require_same_shape(name(), output, target);
    const auto z = output.flat();
    const auto t = target.flat();
    const T n = static_cast<T>(output.size());
    if (grad) {
      grad->resize(output.shape());
      functional::sigmoid(z, grad->flat());
      grad->flat() = (grad->flat() - t) / n;
    }
    return (z.max(T(0)) - z * t + (-z.abs()).exp().log1p()).sum() / n;
  }

  // A prediction is right when the logit's sign matches target > 0.5.
  Tally tally(const Tensor<T>& output, const Tensor<T>& target) const override {
    require_same_shape(name(), output, target);
    const index_t right = ((output.flat() > T(0)) == (target.flat() > T(0.5))).count();
    return {right, output.size()};
  }
};

GLASSBOX_PRECOMPILED_INSTANCE(class BCEWithLogitsLoss<float>)
}  // namespace glassbox::nn
