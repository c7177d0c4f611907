#pragma once
// SGD with momentum, Nesterov momentum and L2 weight decay, with exactly the
// update of torch.optim.SGD:
//   g = grad + weight_decay * w
//   buf = g on the first step, else momentum * buf + (1 - dampening) * g
//   g = nesterov ? g + momentum * buf : buf        (when momentum != 0)
//   w -= lr * g

#include "glassbox/core/precompiled.hpp"
#include "glassbox/optim/optimizer.hpp"

namespace glassbox::optim {

template <class T>
class SGD : public Optimizer<T> {
 public:
  struct Options {
    T momentum = T(0);
    T dampening = T(0);
    bool nesterov = false;
    T weight_decay = T(0);
  };

  SGD(std::vector<Parameter<T>*> params, T learning_rate) : SGD(std::move(params), learning_rate, Options{}) {}
  SGD(std::vector<Parameter<T>*> params, T learning_rate, Options options)
      : Optimizer<T>(std::move(params), learning_rate), options_(options) {
    this->require_non_negative("sgd", "momentum", options_.momentum);
    this->require_non_negative("sgd", "dampening", options_.dampening);
    this->require_non_negative("sgd", "weight decay", options_.weight_decay);
    if (options_.nesterov && (options_.momentum <= T(0) || options_.dampening != T(0)))
      throw Error("sgd: nesterov momentum requires momentum > 0 and zero dampening");
  }

  const Options& options() const { return options_; }
  // Momentum buffers per parameter, indexed like parameters(); shorter (or
  // holding empty tensors) before a parameter's first step.
  std::vector<Tensor<T>>& momentum_buffers() { return momentum_; }

 protected:
  void update(std::size_t index, Parameter<T>& p) override {
    auto w = p.value.flat();
    const auto g = p.grad.flat() + options_.weight_decay * w;  // lazy: read before w changes
    const T lr = this->lr_;
    if (options_.momentum == T(0)) {
      w -= lr * g;
      return;
    }
    const bool first = momentum_.size() <= index || momentum_[index].empty();
    auto buf = this->state(momentum_, index, p.value.shape()).flat();
    if (first)
      buf = g;
    else
      buf = options_.momentum * buf + (T(1) - options_.dampening) * g;
    if (options_.nesterov)
      w -= lr * (g + options_.momentum * buf);
    else
      w -= lr * buf;
  }

 private:
  Options options_;
  std::vector<Tensor<T>> momentum_;  // empty until a parameter's first step
};

GLASSBOX_PRECOMPILED_INSTANCE(class SGD<float>)
}  // namespace glassbox::optim
