#pragma once
// Loss<T>: maps a model's output and the targets to a scalar (the batch mean)
// and, on request, dLoss/doutput. Targets are always a Tensor<T>; class labels
// are stored as integral values (0, 1, ..., C-1).

#include <fmt/format.h>

#include <string>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/tensor.hpp"

namespace glassbox::nn {

// How many predictions in a batch were right, out of how many made.
struct Tally {
  index_t correct = 0;
  index_t total = 0;  // 0 when accuracy has no meaning for the loss (regression)
};

// Requires output and target of one shape, not empty ("mse: output shape ...").
template <class T>
void require_same_shape(const std::string& loss, const Tensor<T>& output, const Tensor<T>& target) {
  if (output.shape() != target.shape())
    throw Error(fmt::format("{}: output shape {} differs from target shape {}", loss, output.shape().str(),
                            target.shape().str()));
  if (output.size() == 0) throw Error(loss + ": empty batch");
}

template <class T>
class Loss {
 public:
  virtual ~Loss() = default;
  virtual std::string name() const = 0;
  // Mean loss over the batch; writes dLoss/doutput into *grad when not null.
  virtual T forward(const Tensor<T>& output, const Tensor<T>& target, Tensor<T>* grad) const = 0;
  virtual Tally tally(const Tensor<T>& /*output*/, const Tensor<T>& /*target*/) const { return {}; }
};

GLASSBOX_PRECOMPILED_INSTANCE(class Loss<float>)
}  // namespace glassbox::nn
