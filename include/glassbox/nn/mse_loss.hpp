#pragma once
// Mean squared error over every element, as torch.nn.MSELoss(reduction="mean").

#include <fmt/format.h>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/loss.hpp"

namespace glassbox::nn {

template <class T>
class MSELoss : public Loss<T> {
 public:
  std::string name() const override { return "mse"; }

  T forward(const Tensor<T>& output, const Tensor<T>& target, Tensor<T>* grad) const override {
    require_same_shape(name(), output, target);
    const T n = static_cast<T>(output.size());
    if (grad) {
      grad->resize(output.shape());
      grad->flat() = (T(2) / n) * (output.flat() - target.flat());
    }
    return (output.flat() - target.flat()).square().sum() / n;
  }
};

GLASSBOX_PRECOMPILED_INSTANCE(class MSELoss<float>)
}  // namespace glassbox::nn
