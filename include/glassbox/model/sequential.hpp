#pragma once
// Sequential<T>: a chain of layers. Owns the layers, names them ("dense_1",
// "relu_2", unique per kind), caches every layer's output for backward and for
// inspection, and checks shapes: at add() when the input shape is declared,
// and at every forward. A layer that can run the next one in its own pass
// (Conv2D with the MaxPool2D after it) does so while no hook watches either;
// its own output is then computed only when output() asks for it
// (model/sequential_passes.hpp holds forward, backward and this fusion).
//
// The model keeps a copy of the last forward's input, so backward() never
// depends on the caller's tensor staying alive.
//
// Hooks (model/hooks.hpp) observe or patch what flows through any layer;
// model/sequential_hooks.hpp holds the members that fire them. With
// none attached, forward and backward pay one empty-list check per layer.
// Defining GLASSBOX_DISABLE_HOOKS compiles even that out (registration then
// throws); it exists so bench/hooks.sh can measure what the check costs.

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/threads.hpp"
#include "glassbox/model/hooks.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox {

// Whether a backward pass fills the parameters' gradients.
enum class ParamGrads { compute, skip };

template <class T>
class Sequential {
 public:
  // seed drives the initialisation of every layer added.
  explicit Sequential(std::uint64_t seed = 42) : rng_(seed) { num_threads(); }
  // sample_shape: one sample's shape without the batch dimension, e.g. {784}.
  explicit Sequential(const Shape& sample_shape, std::uint64_t seed = 42) : rng_(seed), sample_shape_(sample_shape) {
    num_threads();  // applies GLASSBOX_NUM_THREADS before the first GEMM
  }

  Sequential(Sequential&&) noexcept = default;
  Sequential& operator=(Sequential&&) noexcept = default;

  // Constructs a layer in place: model.add<nn::Dense<float>>(784, 256).
  template <class L, class... Args>
  L& add(Args&&... args) {
    static_assert(std::is_base_of_v<Layer<T>, L>, "Sequential::add: L must derive from Layer<T>");
    auto owned = std::make_unique<L>(std::forward<Args>(args)...);
    L& ref = *owned;
    add(std::move(owned));
    return ref;
  }

  // Adds a layer named `name` (default: kind_N, N counting that kind from 1),
  // checks it accepts the previous output, and initialises its parameters
  // from the model's Rng. On error the model is unchanged.
  Layer<T>& add(std::unique_ptr<Layer<T>> layer, std::string name = {}) {
    if (!layer) throw Error("Sequential::add: null layer");
    if (in_pass_) throw Error("Sequential::add: not during a forward or backward pass (from a hook)");
    int& kind_count = kind_counts_[layer->kind()];
    if (name.empty()) name = fmt::format("{}_{}", layer->kind(), kind_count + 1);
    if (find(name)) throw Error(fmt::format("Sequential::add: a layer named '{}' already exists", name));
    layer->set_name(name);
    if (sample_shape_) layer->output_shape(output_shape_of(layers_.size(), sample_shape_->batched(1)));
    ++kind_count;
    layer->reset_parameters(rng_);
    layers_.push_back(std::move(layer));
    outputs_.emplace_back();
    fused_.push_back(false);
    layers_.back()->set_in_model(true);
    register_children(layers_.size() - 1);
    return *layers_.back();
  }

  // Puts `layer` in place of the layer at `index`; it takes over the old name
  // and keeps its own parameters (structured pruning rebuilds layers so). The
  // old layer is returned. Optimizers that hold the old parameters must be
  // rebuilt; hooks, which target positions, stay. Shapes are checked at the
  // next forward, since a chain may need several replacements to agree again.
  std::unique_ptr<Layer<T>> replace(std::size_t index, std::unique_ptr<Layer<T>> layer) {
    if (!layer) throw Error("Sequential::replace: null layer");
    if (in_pass_) throw Error("Sequential::replace: not during a forward or backward pass (from a hook)");
    Layer<T>& old = this->layer(index);
    if (layer->kind() != old.kind())
      throw Error(
          fmt::format("Sequential::replace: {} is a {}, the replacement a {}", old.name(), old.kind(), layer->kind()));
    layer->set_name(old.name());
    std::swap(layers_[index], layer);
    layers_[index]->set_in_model(true);
    layer->set_in_model(false);
    register_children(index);
    has_forward_ = false;
    std::fill(fused_.begin(), fused_.end(), false);
    has_input_grad_ = false;
    return layer;
  }

  std::size_t size() const { return layers_.size(); }
  Layer<T>& layer(std::size_t index) {
    if (index >= layers_.size())
      throw Error(fmt::format("Sequential: layer index {} out of range (model has {} layers)", index, layers_.size()));
    return *layers_[index];
  }
  // A layer of the model, or one inside a block by its dotted name
  // ("residual_1.conv2d_2").
  Layer<T>& layer(const std::string& name) {
    if (Layer<T>* l = find(name)) return *l;
    for (const Nested& n : nested_)
      if (n.layer->name() == name) return *n.layer;
    throw Error(fmt::format("Sequential: no layer named '{}'", name));
  }
  // Index of the layer a target names (index, name or layer reference).
  std::size_t index_of(const HookTarget& target) {
    if (target.is_all()) throw Error("Sequential::index_of: the target names every layer, not one");
    const std::size_t key = *resolve(target);
    if (key >= nested_key_base)
      throw Error(fmt::format("Sequential::index_of: {} is inside block {}; index_of names the model's own layers",
                              nested_of_key(key).layer->name(), layers_[nested_of_key(key).top]->name()));
    return key;
  }
  const std::optional<Shape>& sample_shape() const { return sample_shape_; }
  // The generator that initialises added layers (checkpoints save its state).
  Rng& rng() { return rng_; }

  // Runs every layer; returns the last output (owned by the model, valid until
  // the next forward). Throws glassbox::Error naming the first layer whose
  // input shape is wrong. A train-mode pass counts as one training step.
  const Tensor<T>& forward(const Tensor<T>& x, Mode mode = Mode::eval);

  // Backpropagates dLoss/d(output) through every layer, filling every
  // parameter's grad (overwritten, not accumulated). The gradient with respect
  // to the model's input is computed when want_input_grad is true (or a
  // backward hook targets the first layer itself), and then read with input_grad().
  // ParamGrads::skip leaves parameter grads as they were (and fires no
  // parameter-gradient hooks): for passes that only want the input gradient.
  void backward(const Tensor<T>& grad_output, bool want_input_grad = false, ParamGrads params = ParamGrads::compute) {
    if (layers_.empty()) throw Error("Sequential::backward: the model has no layers");
    backward_from(layers_.size() - 1, grad_output, want_input_grad, params);
  }

  // Backpropagates d(something)/d(output of layer `last`) through that layer
  // and the ones before it: gradients of a hidden unit, as neuron attribution
  // needs. The parameters of later layers keep their old grads; parameter-grad
  // hooks fire for layers 0..last only.
  void backward_from(std::size_t last, const Tensor<T>& grad_output, bool want_input_grad = false,
                     ParamGrads params = ParamGrads::compute);

  const Tensor<T>& input_grad() const {
    if (!has_input_grad_) throw Error("Sequential::input_grad: call backward(grad, /*want_input_grad=*/true) first");
    return grads_[0];
  }

  // Output of layer i from the last forward (computed now if the pass ran
  // the layer fused with the next).
  const Tensor<T>& output(std::size_t index) {
    if (has_forward_ && index < fused_.size() && fused_[index]) unfuse(index);
    return outputs_.at(index);
  }

  // Whether the last forward ran layer `index` and the next as one pass (see above).
  bool ran_fused(std::size_t index) const { return has_forward_ && index < fused_.size() && fused_[index]; }

  // Eval-mode forward over x in batches; returns a new tensor.
  Tensor<T> predict(const Tensor<T>& x, index_t batch_size = 256) {
    if (x.rank() < 1) throw Error("Sequential::predict: input needs a batch dimension");
    if (batch_size <= 0)
      throw Error(fmt::format("Sequential::predict: batch_size must be positive, got {}", batch_size));
    const index_t n = x.dim(0);
    Tensor<T> result;
    Tensor<T> batch;
    for (index_t start = 0; start < n; start += batch_size) {
      const index_t count = std::min(batch_size, n - start);
      copy_rows(x, start, count, batch);
      set_batch(start / batch_size);
      const Tensor<T>& y = forward(batch, Mode::eval);
      if (start == 0) {
        Shape rs = y.shape();
        rs[0] = n;
        result.resize(rs);
      }
      std::copy(y.begin(), y.end(), result.data() + start * (y.size() / count));
    }
    return result;
  }

  // ---- Hooks (see model/hooks.hpp). Each returns the handle that owns the
  // registration; without a target the hook watches every layer, including
  // layers added later. An unknown target throws glassbox::Error.
  HookHandle add_forward_pre_hook(HookTarget target, ForwardPreHook<T> hook) {
    if (!hook) throw Error("Sequential: empty hook");
    return add_modifying_forward_pre_hook(
        target, [hook = std::move(hook)](const ForwardPreEvent<T>& event, Tensor<T>&) { hook(event); });
  }
  HookHandle add_forward_pre_hook(ForwardPreHook<T> hook) {
    return add_forward_pre_hook(HookTarget::all(), std::move(hook));
  }
  HookHandle add_modifying_forward_pre_hook(HookTarget target, ModifyingForwardPreHook<T> hook) {
    return add_hook(registry().pre, target, std::move(hook));
  }
  HookHandle add_modifying_forward_pre_hook(ModifyingForwardPreHook<T> hook) {
    return add_modifying_forward_pre_hook(HookTarget::all(), std::move(hook));
  }
  HookHandle add_forward_hook(HookTarget target, ForwardHook<T> hook) {
    if (!hook) throw Error("Sequential: empty hook");
    return add_hook(
        registry().forward, target,
        ModifyingForwardHook<T>([hook = std::move(hook)](const ForwardEvent<T>& event, Tensor<T>&) { hook(event); }));
  }
  HookHandle add_forward_hook(ForwardHook<T> hook) { return add_forward_hook(HookTarget::all(), std::move(hook)); }
  HookHandle add_modifying_forward_hook(HookTarget target, ModifyingForwardHook<T> hook) {
    return add_hook(registry().forward, target, std::move(hook), /*modifies=*/true);
  }
  HookHandle add_modifying_forward_hook(ModifyingForwardHook<T> hook) {
    return add_modifying_forward_hook(HookTarget::all(), std::move(hook));
  }
  HookHandle add_output_block_hook(HookTarget target, OutputBlockHook<T> hook) {
    return add_hook(registry().output_block, target, std::move(hook));
  }
  HookHandle add_output_block_hook(OutputBlockHook<T> hook) {
    return add_output_block_hook(HookTarget::all(), std::move(hook));
  }
  HookHandle add_output_grad_block_hook(HookTarget target, OutputGradBlockHook<T> hook) {
    return add_hook(registry().output_grad_block, target, std::move(hook));
  }
  HookHandle add_output_grad_block_hook(OutputGradBlockHook<T> hook) {
    return add_output_grad_block_hook(HookTarget::all(), std::move(hook));
  }
  HookHandle add_backward_hook(HookTarget target, BackwardHook<T> hook) {
    return add_hook(registry().backward, target, std::move(hook));
  }
  HookHandle add_backward_hook(BackwardHook<T> hook) { return add_backward_hook(HookTarget::all(), std::move(hook)); }
  HookHandle add_param_grad_hook(HookTarget target, ParamGradHook<T> hook) {
    return add_hook(registry().param_grad, target, std::move(hook));
  }
  HookHandle add_param_grad_hook(ParamGradHook<T> hook) {
    return add_param_grad_hook(HookTarget::all(), std::move(hook));
  }

  // Where hooks are told the model is. train::fit sets the epoch and batch;
  // evaluate() and predict() the batch; every train-mode forward is a step.
  const HookContext& context() const { return context_; }
  void set_epoch(int epoch) { context_.epoch = epoch; }
  void set_batch(long long batch) { context_.batch = batch; }
  // Data-parallel training (train::fit with replicas) tells every layer where
  // this replica's samples lie in the global batch; null ends it.
  void set_batch_shard(const BatchShard* shard) {
    for (auto& l : layers_) l->set_batch_shard(shard);
  }
  long long training_steps() const { return training_steps_; }
  void set_training_steps(long long steps) {
    if (steps < 0) throw Error(fmt::format("Sequential::set_training_steps: {} is negative", steps));
    training_steps_ = steps;
  }

  std::vector<Parameter<T>*> parameters() {
    std::vector<Parameter<T>*> all;
    for (auto& l : layers_)
      for (Parameter<T>* p : l->parameters()) all.push_back(p);
    return all;
  }

  index_t parameter_count() {
    index_t n = 0;
    for (auto& l : layers_) n += l->parameter_count();
    return n;
  }

  // Keras-like table: layer name (kind), output shape, parameter count, totals.
  std::string summary() {
    const std::string rule(72, '-');
    std::string s = fmt::format("Model: sequential\n{}\n{:<32}{:<26}{:>14}\n{}\n", rule, "Layer (type)", "Output Shape",
                                "Param #", std::string(72, '='));
    index_t total = 0;
    std::optional<Shape> shape;
    if (sample_shape_) shape = sample_shape_->batched(1);
    for (auto& l : layers_) {
      std::string out = "?";  // unknown until the model's input shape is declared
      if (shape) {
        shape = l->output_shape(*shape);
        out = batch_free(*shape);
      }
      const index_t count = l->parameter_count();
      total += count;
      s += fmt::format("{:<32}{:<26}{:>14}\n", fmt::format("{} ({})", l->name(), l->kind()), out, count);
    }
    s += fmt::format("{}\nTotal params: {}\n{}\n", std::string(72, '='), total, rule);
    return s;
  }

 private:
  static std::string batch_free(const Shape& s) {
    std::string r = "(None";
    for (int i = 1; i < s.rank(); ++i) r += fmt::format(", {}", s[i]);
    return r + ")";
  }

  // Output shape of the first `count` layers for the given batch input shape.
  Shape output_shape_of(std::size_t count, Shape shape) const {
    for (std::size_t i = 0; i < count; ++i) shape = layers_[i]->output_shape(shape);
    return shape;
  }

  // Whether layers i and i + 1 run as one pass (Layer::fuses_next): only
  // while no hook watches either, since hooks see each layer's own tensors.
  bool fuses_with_next(std::size_t i, const Shape& in) const;
  bool watched_in_backward(std::size_t i) const { return hooks_enabled && hooks_ && hooks_->watches_in_backward(i); }
  // Runs layers i and i + 1 apart, as the fused pass skipped: layer i's own
  // output, and the next layer's state from it (for its own backward).
  void unfuse(std::size_t i);

  Layer<T>* find(const std::string& name) {
    for (auto& l : layers_)
      if (l->name() == name) return l.get();
    return nullptr;
  }

  detail::HookRegistry<T>& registry() {
    if (!hooks_) hooks_ = std::make_shared<detail::HookRegistry<T>>();
    return *hooks_;
  }

  // The layer a hook target names; nullopt for all layers.
  std::optional<std::size_t> resolve(const HookTarget& target);
  template <class Fn>
  HookHandle add_hook(detail::HookList<Fn>& list, const HookTarget& target, Fn hook, bool modifies = false) {
    if (!hooks_enabled) throw Error("Sequential: hooks are compiled out (GLASSBOX_DISABLE_HOOKS)");
    if (!hook) throw Error("Sequential: empty hook");
    const std::optional<std::size_t> layer = resolve(target);
    const std::uint64_t id = hooks_->next_id();
    list.add(id, layer, std::move(hook), modifies);
    return HookHandle(hooks_, id);
  }

  // Firing the hooks (model/sequential_hooks.hpp).
  template <class Event>
  class HookBlockSink;
  class Runner;
  void forward_with_block_hooks(std::size_t i, const Tensor<T>& x, Mode mode);
  void backward_with_block_hooks(std::size_t i, const Tensor<T>& x, const Tensor<T>& dy, Tensor<T>& dx);
  void run_forward_pre_hooks(std::size_t i, Tensor<T>& x);
  void run_forward_hooks(std::size_t i, const Tensor<T>& x, Tensor<T>& y);
  void run_backward_hooks(std::size_t i, const Tensor<T>& dy, const Tensor<T>* dx);
  void run_param_grad_hooks(std::size_t last);

  template <class Event>
  Event event_base(std::size_t i) {
    return Event{context_, *layers_[i], i, layers_[i]->name()};
  }

  // Layers inside blocks, for hooks: keys from nested_key_base up, never reused.
  struct Nested {
    Layer<T>* layer;
    std::string name;  // when registered
    std::size_t top;   // index of the enclosing layer of the model
    std::size_t key;   // what hook lists match
    int depth;
    Tensor<T> input;       // a copy of the input for modifying pre-hooks
    bool patched = false;  // the last forward ran on `input`, so backward must too
  };
  static constexpr std::size_t nested_key_base = std::size_t(1) << 40;

  // (Re)builds the map of the layers inside layer `top`. A replaced block's
  // layers keep the hooks of the layers they replace, matched by name.
  void register_children(std::size_t top);
  Nested* nested_of(const Layer<T>* layer) {
    for (Nested& n : nested_)
      if (n.layer == layer) return &n;
    return nullptr;
  }
  const Nested& nested_of_key(std::size_t key) const {
    for (const Nested& n : nested_)
      if (n.key == key) return n;
    throw Error("Sequential: unknown nested layer");
  }
  LayerEvent<T> nested_event_base(const Nested& n) {
    return LayerEvent<T>{context_, *n.layer, n.top, n.layer->name(), n.depth};
  }

  // For the length of a pass: refuses add/replace, and afterwards clears the
  // runner pointers the layers were given (the runner lives on the stack).
  struct PassScope {
    explicit PassScope(Sequential& model) : m(model) { m.in_pass_ = true; }
    ~PassScope() {
      m.in_pass_ = false;
      if (m.nested_.empty()) return;
      for (auto& l : m.layers_) l->set_child_runner(nullptr);
      for (Nested& n : m.nested_) n.layer->set_child_runner(nullptr);
    }
    Sequential& m;
  };

#ifdef GLASSBOX_DISABLE_HOOKS
  static constexpr bool hooks_enabled = false;
#else
  static constexpr bool hooks_enabled = true;
#endif

  Rng rng_;
  std::optional<Shape> sample_shape_;
  std::vector<std::unique_ptr<Layer<T>>> layers_;
  std::vector<Tensor<T>> outputs_;
  std::vector<bool> fused_;  // per layer: the last forward ran it and the next as one pass
  Tensor<T> input_;          // copy of the last forward's input
  // Per layer, the gradient wrt its input. One buffer per layer rather than two
  // shared ones: each is then written by the same threads every step. With
  // shared buffers a layer overwrote lines that another core had just read (a
  // recorder's two-thread pass over the previous gradient cost MaxPool's
  // backward 50 us a step).
  std::vector<Tensor<T>> grads_;
  bool has_forward_ = false;
  bool has_input_grad_ = false;
  std::map<std::string, int> kind_counts_;
  HookContext context_;
  long long training_steps_ = 0;
  std::shared_ptr<detail::HookRegistry<T>> hooks_;  // created by the first registration
  std::vector<Nested> nested_;
  std::size_t next_nested_key_ = 0;
  bool in_pass_ = false;
};

}  // namespace glassbox

#include "glassbox/model/sequential_hooks.hpp"   // the definitions of the hook members above
#include "glassbox/model/sequential_passes.hpp"  // forward, backward and fusion

namespace glassbox {
GLASSBOX_PRECOMPILED_INSTANCE(class Sequential<float>)
}  // namespace glassbox
