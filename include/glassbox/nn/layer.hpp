#pragma once
// Layer<T>: the runtime-polymorphic building block of a model.
//
// Contract for every layer:
//  - output_shape(in) validates a batch-first input shape and returns the
//    output shape, or throws glassbox::Error naming the layer and the shapes.
//  - forward(x, y, mode) writes y (resizing it; allocation is reused across
//    batches). x has passed output_shape().
//  - backward(x, y, dy, dx) receives the same x and y as the last forward and
//    dy = dLoss/dy. It OVERWRITES every parameter's grad (one backward per
//    optimizer step) and writes dLoss/dx into *dx when dx is not null. When
//    parameter_grads_wanted() is false (passes that only want the input
//    gradient, such as attributions) it may leave the grads untouched.
//  - parameters() lists the trainable tensors; reset_parameters() draws them
//    from a seeded Rng.
//  - optionally, a forward (backward) that finishes its output (input
//    gradient) sample by sample in a parallel loop calls output_block_done()
//    (input_grad_block_done()) for each finished block, for block hooks.

#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>

#include "glassbox/core/parameter.hpp"
#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/rng.hpp"
#include "glassbox/core/tensor.hpp"

namespace glassbox {

enum class Mode { train, eval };

template <class T>
class Layer;

// How a composite layer (nn::Residual) runs its children, so that the model
// that owns it can fire hooks for them. Sequential supplies one for each pass;
// without one the children simply run.
template <class T>
class ChildRunner {
 public:
  virtual ~ChildRunner() = default;
  virtual void forward(Layer<T>& child, const Tensor<T>& x, Tensor<T>& y, Mode mode) = 0;
  virtual void backward(Layer<T>& child, const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy,
                        Tensor<T>* dx) = 0;
};

// Told by a layer which samples of a tensor it writes in a parallel loop (its
// output in forward, its input gradient in backward) are final, from the
// worker thread that wrote them. Sequential supplies one while block hooks
// watch the tensor (model/hooks.hpp).
class BlockSink {
 public:
  virtual ~BlockSink() = default;
  virtual void done(index_t first, index_t last) = 0;
};

// Sums values over the replicas of a data-parallel training step, for a
// layer whose training pass needs statistics of the whole global batch.
class ReplicaSum {
 public:
  virtual ~ReplicaSum() = default;
  virtual void sum(double* values, std::size_t count) = 0;
};

// Where this replica's samples lie in the global batch of a data-parallel
// training step (train/replicas.hpp): samples [first, first + count) of
// `global`. Layers use it so that data-parallel training equals one process
// training on the global batch: Dropout draws what that process would draw
// for these samples; BatchNorm, when `replicas` is set, normalises with the
// global batch's statistics (as SyncBatchNorm).
struct BatchShard {
  index_t first = 0;
  index_t count = 0;
  index_t global = 0;
  ReplicaSum* replicas = nullptr;
};

template <class T>
class Layer {
 public:
  virtual ~Layer() = default;

  // Short lower-case kind, also the stem of automatic names: "dense" -> "dense_1".
  virtual std::string kind() const = 0;

  virtual Shape output_shape(const Shape& input) const = 0;
  virtual void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) = 0;
  virtual void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>* dx) = 0;

  virtual std::vector<Parameter<T>*> parameters() { return {}; }
  virtual void reset_parameters(Rng& /*rng*/) {}

  // State that is not trained but that a checkpoint must keep: named tensors
  // (BatchNorm's running statistics) and the layer's own random generator
  // (Dropout's masks), or null.
  virtual std::vector<std::pair<std::string, Tensor<T>*>> buffers() { return {}; }
  virtual Rng* rng() { return nullptr; }

  // True when the output holds exactly the input's values in the same order
  // (Flatten): recorders reuse what they computed for the layer before.
  virtual bool reshapes_only() const { return false; }

  // Running the next layer of a model in the same pass (Conv2D with the
  // MaxPool2D after it: nn/conv_pool_direct.hpp). Sequential asks while no
  // hook watches either layer; forward_fused then writes next's output, and
  // backward_fused takes next's output gradient. This layer's own output is
  // not computed (Sequential computes it when asked for it).
  virtual bool fuses_next(const Shape& /*in*/, const Layer<T>& /*next*/) const { return false; }
  virtual void forward_fused(const Tensor<T>& /*x*/, Layer<T>& next, Tensor<T>& /*next_y*/) {
    throw Error(fmt::format("{}: cannot run {} in its pass", name(), next.name()));
  }
  virtual void backward_fused(const Tensor<T>& /*x*/, const Tensor<T>& /*next_y*/, const Tensor<T>& /*next_dy*/,
                              Tensor<T>* /*dx*/) {
    throw Error(fmt::format("{}: no fused pass to go back through", name()));
  }

  // Hyperparameters for summaries, e.g. "784 -> 256" or "slope=0.01".
  virtual std::string config() const { return {}; }

  const std::string& name() const { return name_.empty() ? kind_name() : name_; }

  // Renames the layer and its parameters ("dense_1" -> "dense_1.weight"); a
  // composite layer renames its children "<name>.<child>".
  virtual void set_name(std::string name) {
    name_ = std::move(name);
    for (Parameter<T>* p : parameters()) p->name = name_ + "." + p->local_name();
  }

  // The layers inside this one, in the order they run (nn::Residual: its body,
  // then its shortcut); empty for ordinary layers.
  virtual std::vector<Layer<T>*> children() { return {}; }
  void set_child_runner(ChildRunner<T>* runner) { child_runner_ = runner; }
  void set_output_block_sink(BlockSink* sink) { output_block_sink_ = sink; }
  void set_input_grad_block_sink(BlockSink* sink) { input_grad_block_sink_ = sink; }
  // Set by Sequential while the layer belongs to it: a block then refuses to
  // change its children (the model keeps a map of them for hooks).
  void set_in_model(bool in_model) {
    in_model_ = in_model;
    for (Layer<T>* child : children()) child->set_in_model(in_model);
  }
  bool in_model() const { return in_model_; }
  // Set by train::fit for data-parallel training, null otherwise; the shard
  // must outlive the passes it is set for.
  void set_batch_shard(const BatchShard* shard) {
    batch_shard_ = shard;
    for (Layer<T>* child : children()) child->set_batch_shard(shard);
  }
  const BatchShard* batch_shard() const { return batch_shard_; }

  // Set by Sequential for each backward pass; see the contract above.
  bool parameter_grads_wanted() const { return parameter_grads_wanted_; }
  void want_parameter_grads(bool wanted) { parameter_grads_wanted_ = wanted; }

  index_t parameter_count() {
    index_t n = 0;
    for (const Parameter<T>* p : parameters()) n += p->value.size();
    return n;
  }

 protected:
  // A composite layer runs each child through these: the owning model's hooks
  // then fire for the child (the runner is handed down to nested composites).
  void run_child_forward(Layer<T>& child, const Tensor<T>& x, Tensor<T>& y, Mode mode) {
    child.set_child_runner(child_runner_);
    if (child_runner_)
      child_runner_->forward(child, x, y, mode);
    else
      child.forward(x, y, mode);
  }
  void run_child_backward(Layer<T>& child, const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>* dx) {
    child.set_child_runner(child_runner_);
    child.want_parameter_grads(parameter_grads_wanted_);
    if (child_runner_)
      child_runner_->backward(child, x, y, dy, dx);
    else
      child.backward(x, y, dy, dx);
  }
  void set_own_name(std::string name) { name_ = std::move(name); }
  // A forward (backward) that finishes its output (input gradient) sample by
  // sample inside a parallel loop reports each finished block of samples
  // [first, last), from the thread that wrote it, so that observers read it
  // while it is in that core's cache.
  void output_block_done(index_t first, index_t last) {
    if (output_block_sink_) output_block_sink_->done(first, last);
  }
  void input_grad_block_done(index_t first, index_t last) {
    if (input_grad_block_sink_) input_grad_block_sink_->done(first, last);
  }

 private:
  const std::string& kind_name() const {
    if (kind_cache_.empty()) kind_cache_ = kind();
    return kind_cache_;
  }
  std::string name_;
  mutable std::string kind_cache_;
  bool parameter_grads_wanted_ = true;
  ChildRunner<T>* child_runner_ = nullptr;
  BlockSink* output_block_sink_ = nullptr;
  BlockSink* input_grad_block_sink_ = nullptr;
  const BatchShard* batch_shard_ = nullptr;
  bool in_model_ = false;
};

// Throws the standard shape error "<layer>: <what>" for input validation.
[[noreturn]] inline void throw_shape_error(const std::string& layer, const std::string& what) {
  throw Error(layer + ": " + what);
}

// Requires a batch-first input with at least one feature dimension.
inline void require_batch_first(const std::string& layer, const Shape& in) {
  if (in.rank() < 2)
    throw_shape_error(layer, fmt::format("expects a batch-first input of rank >= 2, got {}", in.str()));
}

GLASSBOX_PRECOMPILED_INSTANCE(class Layer<float>)
}  // namespace glassbox
