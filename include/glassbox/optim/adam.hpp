#pragma once
// Adam and AdamW with the update of torch.optim.Adam / AdamW (1.13), in the
// same order of operations, bias corrections in double as Python computes them:
//   L2 mode (Adam):        g = grad + weight_decay * w
//   decoupled (AdamW):     w *= 1 - lr * weight_decay;  g = grad
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   w -= lr / (1 - b1^t) * (m / (sqrt(v) / sqrt(1 - b2^t) + eps))
// Unlike torch.optim.AdamW, weight_decay defaults to 0 in both modes.

#include <cmath>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/optim/optimizer.hpp"

namespace glassbox::optim {

template <class T>
class Adam : public Optimizer<T> {
 public:
  struct Options {
    T beta1 = T(0.9);
    T beta2 = T(0.999);
    T eps = T(1e-8);
    T weight_decay = T(0);
    bool decoupled_weight_decay = false;  // true: AdamW
  };

  explicit Adam(std::vector<Parameter<T>*> params, T learning_rate = T(1e-3))
      : Adam(std::move(params), learning_rate, Options{}) {}
  Adam(std::vector<Parameter<T>*> params, T learning_rate, Options options)
      : Optimizer<T>(std::move(params), learning_rate), options_(options) {
    if (!(options_.beta1 >= T(0) && options_.beta1 < T(1) && options_.beta2 >= T(0) && options_.beta2 < T(1)))
      throw Error(fmt::format("adam: betas must lie in [0, 1), got ({}, {})", options_.beta1, options_.beta2));
    this->require_non_negative("adam", "eps", options_.eps);
    this->require_non_negative("adam", "weight decay", options_.weight_decay);
  }

  const Options& options() const { return options_; }
  // First and second moments per parameter, indexed like parameters(); shorter
  // (or holding empty tensors) before a parameter's first step.
  std::vector<Tensor<T>>& exp_avg() { return m_; }
  std::vector<Tensor<T>>& exp_avg_sq() { return v_; }

 protected:
  void update(std::size_t index, Parameter<T>& p) override {
    auto w = p.value.flat();
    auto m = this->state(m_, index, p.value.shape()).flat();
    auto v = this->state(v_, index, p.value.shape()).flat();
    const T lr = this->lr_;
    const T wd = options_.weight_decay;
    const auto t = static_cast<double>(this->steps_);
    const auto step_size = static_cast<T>(static_cast<double>(lr) / (1.0 - std::pow(double(options_.beta1), t)));
    const auto bias2_sqrt = static_cast<T>(std::sqrt(1.0 - std::pow(double(options_.beta2), t)));
    if (options_.decoupled_weight_decay) {
      if (wd != T(0)) w *= T(1) - lr * wd;
      update_moments(m, v, p.grad.flat());
    } else if (wd != T(0)) {
      update_moments(m, v, p.grad.flat() + wd * w);
    } else {
      update_moments(m, v, p.grad.flat());
    }
    w -= step_size * (m / (v.sqrt() / bias2_sqrt + options_.eps));
  }

 private:
  template <class M, class V, class G>
  void update_moments(M& m, V& v, const G& g) const {
    m = options_.beta1 * m + (T(1) - options_.beta1) * g;
    v = options_.beta2 * v + (T(1) - options_.beta2) * g.square();
  }

  Options options_;
  std::vector<Tensor<T>> m_, v_;
};

GLASSBOX_PRECOMPILED_INSTANCE(class Adam<float>)
}  // namespace glassbox::optim
