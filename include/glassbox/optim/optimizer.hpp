#pragma once
// Optimizer<T>: updates a set of parameters from their grads. step() applies
// one update to every parameter and then re-applies each parameter's mask, so
// pruned weights stay exactly zero through further training.

#include <fmt/format.h>

#include <vector>

#include "glassbox/core/parameter.hpp"
#include "glassbox/core/precompiled.hpp"

namespace glassbox::optim {

template <class T>
class Optimizer {
 public:
  Optimizer(std::vector<Parameter<T>*> params, T learning_rate) : params_(std::move(params)), lr_(learning_rate) {
    require_non_negative("optimizer", "learning rate", learning_rate);
    for (Parameter<T>* p : params_)
      if (!p) throw Error("optimizer: null parameter");
  }
  virtual ~Optimizer() = default;

  // Checks every gradient first, so that a bad one leaves no parameter updated.
  void step() {
    for (const Parameter<T>* p : params_)
      if (p->grad.shape() != p->value.shape())
        throw Error(fmt::format("{}: gradient shape {} differs from value shape {} (was backward run?)", p->name,
                                p->grad.shape().str(), p->value.shape().str()));
    ++steps_;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      update(i, *params_[i]);
      params_[i]->apply_mask();
    }
  }

  T learning_rate() const { return lr_; }
  void set_learning_rate(T lr) { lr_ = lr; }
  long long steps() const { return steps_; }
  // For resuming from a checkpoint: the step count the bias corrections use.
  void set_steps(long long steps) {
    if (steps < 0) throw Error(fmt::format("optimizer: step count {} is negative", steps));
    steps_ = steps;
  }
  const std::vector<Parameter<T>*>& parameters() const { return params_; }

 protected:
  // Updates params_[index] (== p) using its grad; steps() is already the new count.
  virtual void update(std::size_t index, Parameter<T>& p) = 0;

  // Throws "<optimizer>: <what> must be >= 0, got <value>" for a negative setting.
  static void require_non_negative(const char* optimizer, const char* what, T value) {
    if (!(value >= T(0))) throw Error(fmt::format("{}: {} must be >= 0, got {}", optimizer, what, value));
  }

  // Per-parameter state buffers, created zeroed on first use.
  static Tensor<T>& state(std::vector<Tensor<T>>& buffers, std::size_t index, const Shape& shape) {
    if (buffers.size() <= index) buffers.resize(index + 1);
    if (buffers[index].shape() != shape) buffers[index] = Tensor<T>(shape);
    return buffers[index];
  }

  std::vector<Parameter<T>*> params_;
  T lr_;
  long long steps_ = 0;
};

GLASSBOX_PRECOMPILED_INSTANCE(class Optimizer<float>)
}  // namespace glassbox::optim
