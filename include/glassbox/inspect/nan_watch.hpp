#pragma once
// NanWatch: stops at the first non-finite value (NaN or +-inf) in a layer's
// forward output, a gradient a layer's backward produced (or the loss
// gradient arriving at the last layer), or a parameter's gradient or value,
// with a glassbox::Error naming the layer, the tensor, the element and the
// step. Checks run on every pass (one vectorised pass over each tensor).
//
//   inspect::NanWatch<float> watch(model);   // then train as usual

#include <fmt/format.h>

#include <cmath>
#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/inspect/record.hpp"

namespace glassbox::inspect {

template <class T>
class NanWatch {
 public:
  // Attaches to the model; detaches when destroyed. Neither copied nor moved.
  explicit NanWatch(Sequential<T>& model) {
    handles_.push_back(model.add_forward_hook([this](const ForwardEvent<T>& e) {
      loss_gradient_unchecked_ = true;
      if (all_finite(e.output)) return;
      // Say whether the layer made the value or passed on a bad input.
      const std::string origin = all_finite(e.input)            ? std::string()
                                 : e.index == 0 && e.depth == 0 ? " (the model's input is already non-finite)"
                                                                : " (its input is already non-finite)";
      fail(e, "output of layer '" + e.name + "'" + origin, e.output);
    }));
    handles_.push_back(model.add_backward_hook([this](const BackwardEvent<T>& e) {
      // The first backward event after a forward is the last layer's: its
      // grad_output comes from the loss; every other one was checked as the
      // grad_input of the layer above.
      if (loss_gradient_unchecked_ && !all_finite(e.grad_output))
        fail(e, "loss gradient arriving at layer '" + e.name + "'", e.grad_output);
      loss_gradient_unchecked_ = false;
      if (e.grad_input && !all_finite(*e.grad_input))
        fail(e, "gradient wrt the input of layer '" + e.name + "'", *e.grad_input);
    }));
    handles_.push_back(model.add_param_grad_hook([](const ParamGradEvent<T>& e) {
      if (!all_finite(e.grad)) fail(e, "gradient of parameter '" + e.parameter.name + "'", e.grad);
      if (!all_finite(e.value)) fail(e, "value of parameter '" + e.parameter.name + "'", e.value);
    }));
  }

  NanWatch(const NanWatch&) = delete;
  NanWatch& operator=(const NanWatch&) = delete;

  void detach() { handles_.clear(); }

 private:
  [[noreturn]] static void fail(const HookContext& c, const std::string& where, const Tensor<T>& t) {
    index_t i = 0;
    while (i < t.size() && std::isfinite(t.data()[i])) ++i;
    throw Error(
        fmt::format("NanWatch: non-finite value {} in the {}, element {} of shape {} ({} step {}, epoch {}, "
                    "batch {})",
                    t.data()[i], where, i, t.shape().str(), mode_name(c.mode), c.step, c.epoch + 1, c.batch + 1));
  }

  bool loss_gradient_unchecked_ = false;
  std::vector<HookHandle> handles_;
};

GLASSBOX_PRECOMPILED_INSTANCE(class NanWatch<float>)
}  // namespace glassbox::inspect
