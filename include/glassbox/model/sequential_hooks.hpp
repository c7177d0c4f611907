#pragma once
// How a Sequential (model/sequential.hpp) fires its hooks: around each layer
// of a pass (pre, forward, backward), for each block of samples a layer
// reports on its worker threads (output and output-gradient block hooks),
// for each parameter after backward, and for the layers inside blocks
// (Runner); which layer a hook names, and the map of the layers inside
// blocks. Included at the end of sequential.hpp: these are its members.

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "glassbox/model/sequential.hpp"

namespace glassbox {

// The layer a hook target names; nullopt for all layers.
template <class T>
std::optional<std::size_t> Sequential<T>::resolve(const HookTarget& target) {
  if (target.is_all()) return std::nullopt;
  if (target.index()) {
    if (target.negative() || *target.index() >= layers_.size())
      throw Error(fmt::format("Sequential: no layer index {}: the model has {} layers",
                              target.negative() ? -1 : static_cast<long long>(*target.index()), layers_.size()));
    return target.index();
  }
  for (std::size_t i = 0; i < layers_.size(); ++i)
    if (target.name() ? layers_[i]->name() == *target.name() : layers_[i].get() == target.layer()) return i;
  for (const Nested& n : nested_)
    if (target.name() ? n.layer->name() == *target.name() : n.layer == target.layer()) return n.key;
  if (target.name()) throw Error(fmt::format("Sequential: no layer named '{}'", *target.name()));
  throw Error("Sequential: that layer is not part of this model");
}

// (Re)builds the map of the layers inside layer `top`. A replaced block's
// layers keep the hooks of the layers they replace, matched by name.
template <class T>
void Sequential<T>::register_children(std::size_t top) {
  std::map<std::string, std::size_t> old_keys;
  for (const Nested& n : nested_)
    if (n.top == top) old_keys.emplace(n.name, n.key);
  nested_.erase(std::remove_if(nested_.begin(), nested_.end(), [&](const Nested& n) { return n.top == top; }),
                nested_.end());
  std::vector<std::pair<Layer<T>*, int>> stack;
  for (Layer<T>* c : layers_[top]->children()) stack.emplace_back(c, 1);
  std::reverse(stack.begin(), stack.end());
  while (!stack.empty()) {
    auto [layer, depth] = stack.back();
    stack.pop_back();
    const auto old = old_keys.find(layer->name());
    const std::size_t key = old != old_keys.end() ? old->second : nested_key_base + next_nested_key_++;
    nested_.push_back(Nested{layer, layer->name(), top, key, depth, {}, false});
    auto inner = layer->children();
    for (auto it = inner.rbegin(); it != inner.rend(); ++it) stack.emplace_back(*it, depth + 1);
  }
}

// Runs block hooks for each block a layer reports, on the worker thread
// that reports it.
template <class T>
template <class Event>
class Sequential<T>::HookBlockSink final : public BlockSink {
 public:
  using Hook = std::function<void(const Event&)>;
  HookBlockSink(const LayerEvent<T>& base, const Tensor<T>& values, std::vector<Hook*> hooks, const char* kind)
      : base_(base), values_(values), hooks_(std::move(hooks)), kind_(kind), threads_(num_threads()) {}
  void done(index_t first, index_t last) override {
    const Event event{base_, values_, first, last, thread_index(), threads_};
    for (Hook* hook : hooks_) {
      try {
        (*hook)(event);
      } catch (...) {
        detail::throw_hook_error(base_.name, kind_);
      }
    }
  }

 private:
  const LayerEvent<T>& base_;
  const Tensor<T>& values_;
  std::vector<Hook*> hooks_;
  const char* kind_;
  int threads_;
};

// Blocks of a layer watched by a modifying forward hook are not its final
// output: such a layer runs without a sink, as do layers no hook watches.
template <class T>
void Sequential<T>::forward_with_block_hooks(std::size_t i, const Tensor<T>& x, Mode mode) {
  Layer<T>& layer = *layers_[i];
  if (!hooks_->output_block.watches(i) || hooks_->forward.watches_modifying(i)) {
    layer.forward(x, outputs_[i], mode);
    return;
  }
  typename detail::HookList<OutputBlockHook<T>>::Running running(hooks_->output_block);
  const LayerEvent<T> base = event_base<LayerEvent<T>>(i);
  HookBlockSink<OutputBlockEvent<T>> sink(base, outputs_[i], hooks_->output_block.live(i), "output-block hook");
  struct Detach {
    Layer<T>& layer;
    ~Detach() { layer.set_output_block_sink(nullptr); }
  } detach{layer};
  layer.set_output_block_sink(&sink);
  layer.forward(x, outputs_[i], mode);
}

// Layer i's input gradient is layer i - 1's output gradient: its blocks go
// to the output-gradient block hooks watching layer i - 1.
template <class T>
void Sequential<T>::backward_with_block_hooks(std::size_t i, const Tensor<T>& x, const Tensor<T>& dy, Tensor<T>& dx) {
  Layer<T>& layer = *layers_[i];
  if (i == 0 || !hooks_->output_grad_block.watches(i - 1)) {
    layer.backward(x, outputs_[i], dy, &dx);
    return;
  }
  typename detail::HookList<OutputGradBlockHook<T>>::Running running(hooks_->output_grad_block);
  const LayerEvent<T> base = event_base<LayerEvent<T>>(i - 1);
  HookBlockSink<OutputGradBlockEvent<T>> sink(base, dx, hooks_->output_grad_block.live(i - 1),
                                              "output-gradient block hook");
  struct Detach {
    Layer<T>& layer;
    ~Detach() { layer.set_input_grad_block_sink(nullptr); }
  } detach{layer};
  layer.set_input_grad_block_sink(&sink);
  layer.backward(x, outputs_[i], dy, &dx);
}

template <class T>
void Sequential<T>::run_forward_pre_hooks(std::size_t i, Tensor<T>& x) {
  if (hooks_->pre.empty()) return;
  const Shape shape = x.shape();
  const ForwardPreEvent<T> event{event_base<LayerEvent<T>>(i), x};
  hooks_->pre.run(i, event.name, "forward pre-hook", [&](auto& hook) {
    hook(event, x);
    if (x.shape() != shape)
      throw Error(fmt::format("the hook changed the input's shape from {} to {}", shape.str(), x.shape().str()));
  });
}

template <class T>
void Sequential<T>::run_forward_hooks(std::size_t i, const Tensor<T>& x, Tensor<T>& y) {
  if (hooks_->forward.empty()) return;
  const Shape shape = y.shape();
  const ForwardEvent<T> event{event_base<LayerEvent<T>>(i), x, y};
  hooks_->forward.run(i, event.name, "forward hook", [&](auto& hook) {
    hook(event, y);
    if (y.shape() != shape)
      throw Error(fmt::format("the hook changed the output's shape from {} to {}", shape.str(), y.shape().str()));
  });
}

template <class T>
void Sequential<T>::run_backward_hooks(std::size_t i, const Tensor<T>& dy, const Tensor<T>* dx) {
  const BackwardEvent<T> event{event_base<LayerEvent<T>>(i), dy, dx};
  hooks_->backward.run(i, event.name, "backward hook", [&](auto& hook) { hook(event); });
}

template <class T>
void Sequential<T>::run_param_grad_hooks(std::size_t last) {
  for (std::size_t i = 0; i <= last; ++i) {
    if (layers_[i]->children().empty()) {
      if (!hooks_->param_grad.watches(i)) continue;
      for (const Parameter<T>* p : layers_[i]->parameters()) {
        const ParamGradEvent<T> event{event_base<LayerEvent<T>>(i), *p, p->grad, p->value};
        hooks_->param_grad.run(i, event.name, "parameter-gradient hook", [&](auto& hook) { hook(event); });
      }
      continue;
    }
    // A block: hooks registered for the block itself see all its parameters;
    // the others see each parameter as the innermost layer's that holds it.
    if (hooks_->param_grad.watches(i, /*through_all=*/false))
      for (const Parameter<T>* p : layers_[i]->parameters()) {
        const ParamGradEvent<T> event{event_base<LayerEvent<T>>(i), *p, p->grad, p->value};
        hooks_->param_grad.run_exact(i, event.name, "parameter-gradient hook", [&](auto& hook) { hook(event); });
      }
    for (const Nested& n : nested_) {
      if (n.top != i || !n.layer->children().empty() || !hooks_->param_grad.watches(n.key)) continue;
      for (const Parameter<T>* p : n.layer->parameters()) {
        const ParamGradEvent<T> event{nested_event_base(n), *p, p->grad, p->value};
        hooks_->param_grad.run(n.key, event.name, "parameter-gradient hook", [&](auto& hook) { hook(event); });
      }
    }
  }
}

// Runs the children of blocks, firing the hooks that watch them.
template <class T>
class Sequential<T>::Runner final : public ChildRunner<T> {
 public:
  explicit Runner(Sequential& model) : m_(model) {}
  void forward(Layer<T>& child, const Tensor<T>& x, Tensor<T>& y, Mode mode) override {
    Nested* n = m_.hooks_ ? m_.nested_of(&child) : nullptr;
    if (!n) {
      child.forward(x, y, mode);
      return;
    }
    const Tensor<T>* in = &x;
    n->patched = false;
    if (!m_.hooks_->pre.empty() && m_.hooks_->pre.watches(n->key)) {
      n->input = x;  // pre-hooks may patch the input: give them a copy
      const Shape shape = x.shape();
      const ForwardPreEvent<T> event{m_.nested_event_base(*n), n->input};
      m_.hooks_->pre.run(n->key, event.name, "forward pre-hook", [&](auto& hook) {
        hook(event, n->input);
        if (n->input.shape() != shape)
          throw Error(
              fmt::format("the hook changed the input's shape from {} to {}", shape.str(), n->input.shape().str()));
      });
      in = &n->input;
      n->patched = true;
    }
    child.forward(*in, y, mode);
    if (!m_.hooks_->forward.empty() && m_.hooks_->forward.watches(n->key)) {
      const Shape shape = y.shape();
      const ForwardEvent<T> event{m_.nested_event_base(*n), *in, y};
      m_.hooks_->forward.run(n->key, event.name, "forward hook", [&](auto& hook) {
        hook(event, y);
        if (y.shape() != shape)
          throw Error(fmt::format("the hook changed the output's shape from {} to {}", shape.str(), y.shape().str()));
      });
    }
  }
  void backward(Layer<T>& child, const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>* dx) override {
    Nested* n = m_.hooks_ ? m_.nested_of(&child) : nullptr;
    // Backward must see the input the forward saw, a pre-hook's patch included.
    child.backward(n && n->patched ? n->input : x, y, dy, dx);
    if (!n || m_.hooks_->backward.empty() || !m_.hooks_->backward.watches(n->key)) return;
    const BackwardEvent<T> event{m_.nested_event_base(*n), dy, dx};
    m_.hooks_->backward.run(n->key, event.name, "backward hook", [&](auto& hook) { hook(event); });
  }

 private:
  Sequential& m_;
};

}  // namespace glassbox
