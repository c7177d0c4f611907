#pragma once
// Hooks: plain callables a model calls as tensors flow through its layers.
//
//  - forward pre-hook   (const ForwardPreEvent<T>&)   before a layer's forward
//  - modifying pre-hook (const ForwardPreEvent<T>&, Tensor<T>& input) may
//                       change the layer's input in place (same shape): the
//                       model's copy of x for the first layer, else the
//                       previous layer's stored output, as a modifying hook
//                       on that layer would (fake quantization of inputs)
//  - forward hook       (const ForwardEvent<T>&)      after it; read-only
//  - modifying hook     (const ForwardEvent<T>&, Tensor<T>& output)
//                       may change or replace the output (same shape): ablation,
//                       clamping, patching. Backward treats the patch as the
//                       identity (straight-through): downstream layers see the
//                       patched tensor, the layer's own backward its original x.
//  - output-block hook  (const OutputBlockEvent<T>&)  while a layer's forward
//                       runs, from its worker threads, for each block of
//                       samples of its output as it becomes final: a recorder
//                       reads the block while it is still in that core's cache
//                       (ActivationStats on a large feature map). Layers that
//                       compute sample by sample deliver blocks (Conv2D,
//                       MaxPool2D); others deliver none, and no layer does
//                       while a modifying forward hook watches it (the blocks
//                       would not be its final output). Hooks of one layer run
//                       concurrently on different threads: a hook may write
//                       only what belongs to its event's `thread`, and may not
//                       add or remove hooks.
//  - output-gradient block hook (const OutputGradBlockEvent<T>&) the same for
//                       the gradient wrt a layer's output, as the backward of
//                       the layer after it writes it (MaxPool2D, Conv2D)
//  - backward hook      (const BackwardEvent<T>&)     after a layer's backward
//  - parameter-gradient (const ParamGradEvent<T>&)    after the whole backward,
//                       once per parameter, before any optimizer step
//
// Hooks watch one layer (HookTarget: index, name or reference) or all layers,
// and run in registration order. Registration returns a HookHandle that
// removes the hook when it is destroyed or on remove(); removing twice, or
// after the model is gone, does nothing. Hooks may add or remove hooks while
// they run: a hook added during a pass first runs in the next pass, a hook
// removed during a pass does not run again.
//
// An exception thrown by a hook leaves the model usable and reaches the
// caller of forward()/backward() as a glassbox::Error naming the layer, with
// the original exception nested (std::rethrow_if_nested).

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox {

// Where the model is in training when an event fires.
struct HookContext {
  Mode mode = Mode::eval;
  long long step = 0;   // training steps (train-mode forwards) before this pass
  int epoch = 0;        // set by train::fit; 0 outside it
  long long batch = 0;  // batch index within the epoch (fit) or the pass (evaluate, predict)
};

template <class T>
struct LayerEvent : HookContext {
  Layer<T>& layer;
  std::size_t index;  // position in the model (of the enclosing block, for a layer inside one)
  const std::string& name;
  int depth = 0;  // 0: a layer of the model; 1: inside a block (nn::Residual), and so on
};

template <class T>
struct ForwardPreEvent : LayerEvent<T> {
  const Tensor<T>& input;
};

template <class T>
struct ForwardEvent : LayerEvent<T> {
  const Tensor<T>& input;
  const Tensor<T>& output;
};

// Samples [first, last) of `output` are final; the rest may still be being
// written by other threads. `thread` (below `threads`, which is
// num_threads() when the forward began) is the worker thread that delivers
// the block; one thread's blocks arrive one after another.
template <class T>
struct OutputBlockEvent : LayerEvent<T> {
  const Tensor<T>& output;
  index_t first;
  index_t last;
  int thread;
  int threads;
};

// Samples [first, last) of the gradient wrt the layer's output are final, as
// for OutputBlockEvent; they are written by the backward of the next layer.
template <class T>
struct OutputGradBlockEvent : LayerEvent<T> {
  const Tensor<T>& grad_output;
  index_t first;
  index_t last;
  int thread;
  int threads;
};

template <class T>
struct BackwardEvent : LayerEvent<T> {
  const Tensor<T>& grad_output;  // dLoss/d(output)
  // dLoss/d(input); null for the first layer unless the caller asked for the
  // input gradient or a backward hook watches that layer by index, name or
  // reference (hooks on all layers do not force the extra work).
  const Tensor<T>* grad_input;
};

template <class T>
struct ParamGradEvent : LayerEvent<T> {
  const Parameter<T>& parameter;
  const Tensor<T>& grad;   // == parameter.grad
  const Tensor<T>& value;  // == parameter.value, before the optimizer step
};

template <class T>
using ForwardPreHook = std::function<void(const ForwardPreEvent<T>&)>;
template <class T>
using ModifyingForwardPreHook = std::function<void(const ForwardPreEvent<T>&, Tensor<T>& input)>;
template <class T>
using ForwardHook = std::function<void(const ForwardEvent<T>&)>;
template <class T>
using ModifyingForwardHook = std::function<void(const ForwardEvent<T>&, Tensor<T>& output)>;
template <class T>
using OutputBlockHook = std::function<void(const OutputBlockEvent<T>&)>;
template <class T>
using OutputGradBlockHook = std::function<void(const OutputGradBlockEvent<T>&)>;
template <class T>
using BackwardHook = std::function<void(const BackwardEvent<T>&)>;
template <class T>
using ParamGradHook = std::function<void(const ParamGradEvent<T>&)>;

// When a hook fires (HookHandle::only_when): in a pass whose context makes it
// true. In other passes the hook is as if absent.
using HookSchedule = std::function<bool(const HookContext&)>;

// Which layer a hook watches: an index, a name, a layer of the model, or all().
class HookTarget {
 public:
  HookTarget(std::size_t index) : index_(index) {}  // NOLINT: implicit by design
  HookTarget(int index) : index_(static_cast<std::size_t>(index)), negative_(index < 0) {}  // NOLINT
  HookTarget(std::string name) : name_(std::move(name)) {}                                  // NOLINT
  HookTarget(const char* name) : name_(name ? name : "") {}                                 // NOLINT
  template <class T>
  HookTarget(const Layer<T>& layer) : layer_(&layer) {}  // NOLINT
  static HookTarget all() { return HookTarget(); }

  bool is_all() const { return !index_ && !name_ && !layer_; }
  bool negative() const { return negative_; }
  const std::optional<std::size_t>& index() const { return index_; }
  const std::optional<std::string>& name() const { return name_; }
  const void* layer() const { return layer_; }

 private:
  HookTarget() = default;
  std::optional<std::size_t> index_;
  bool negative_ = false;
  std::optional<std::string> name_;
  const void* layer_ = nullptr;
};

namespace detail {
class HookOwner {
 public:
  virtual ~HookOwner() = default;
  virtual void remove_hook(std::uint64_t id) noexcept = 0;
  virtual bool has_hook(std::uint64_t id) const noexcept = 0;
  virtual bool set_schedule(std::uint64_t id, HookSchedule when) = 0;
};
}  // namespace detail

// Owns one registration. Move-only; removes the hook on destruction.
class [[nodiscard]] HookHandle {
 public:
  HookHandle() = default;
  HookHandle(std::weak_ptr<detail::HookOwner> owner, std::uint64_t id) : owner_(std::move(owner)), id_(id) {}
  HookHandle(HookHandle&& other) noexcept : owner_(std::move(other.owner_)), id_(other.id_) { other.owner_.reset(); }
  HookHandle& operator=(HookHandle&& other) noexcept {
    if (this != &other) {
      remove();
      owner_ = std::move(other.owner_);
      id_ = other.id_;
      other.owner_.reset();
    }
    return *this;
  }
  HookHandle(const HookHandle&) = delete;
  HookHandle& operator=(const HookHandle&) = delete;
  ~HookHandle() { remove(); }

  // Unregisters the hook; a no-op when already removed or the model is gone.
  void remove() noexcept {
    if (auto owner = owner_.lock()) owner->remove_hook(id_);
    owner_.reset();
  }
  // Lets the hook fire only in passes where when(context) is true (a
  // recorder's "every 50 steps"). In the other passes the model treats the
  // hook as absent: it may then run the layers the hook watches in one
  // fused pass (Conv2D with its MaxPool2D), as without hooks. Returns *this.
  HookHandle& only_when(HookSchedule when) {
    auto owner = owner_.lock();
    if (!owner || !owner->set_schedule(id_, std::move(when)))
      throw Error("HookHandle::only_when: the hook is no longer registered");
    return *this;
  }
  // True while the hook is registered on a live model.
  bool active() const noexcept {
    auto owner = owner_.lock();
    return owner && owner->has_hook(id_);
  }

 private:
  std::weak_ptr<detail::HookOwner> owner_;
  std::uint64_t id_ = 0;
};

namespace detail {

// Called in a catch block: throws a glassbox::Error "<layer>: <kind> threw:
// <message>" with the exception being handled nested in it.
[[noreturn]] inline void throw_hook_error(const std::string& layer_name, const char* kind) {
  std::string message;
  try {
    throw;
  } catch (const std::exception& e) {
    message = e.what();
  } catch (...) {
    message = "an exception not derived from std::exception";
  }
  std::throw_with_nested(Error(fmt::format("{}: {} threw: {}", layer_name, kind, message)));
}

// Hooks of one kind, in registration order. Entries live on the heap so that a
// hook may add hooks (the vector may grow) or remove itself while it runs;
// removal during a pass only marks the entry, which is erased once no pass of
// this list is running.
template <class Fn>
class HookList {
 public:
  // `now`: the context of the pass running (or the last one), that schedules are asked about.
  explicit HookList(const HookContext* now) : now_(now) {}
  bool empty() const noexcept { return entries_.empty(); }

  // `modifies`: the hook may change the tensor it is given (see watches_modifying).
  void add(std::uint64_t id, std::optional<std::size_t> layer, Fn fn, bool modifies = false) {
    entries_.push_back(std::make_unique<Entry>(Entry{id, layer, std::move(fn), modifies, false, {}}));
  }

  bool remove(std::uint64_t id) noexcept {
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      if (entries_[i]->id != id || entries_[i]->removed) continue;
      if (running_ > 0) {
        entries_[i]->removed = true;
        has_removed_ = true;
      } else {
        entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
      }
      return true;
    }
    return false;
  }

  bool set_schedule(std::uint64_t id, HookSchedule& when) {
    for (auto& e : entries_)
      if (e->id == id && !e->removed) {
        e->when = std::move(when);
        return true;
      }
    return false;
  }

  bool contains(std::uint64_t id) const noexcept {
    for (const auto& e : entries_)
      if (e->id == id && !e->removed) return true;
    return false;
  }

  // Whether a live hook watches this layer, directly or (when through_all)
  // as a hook on every layer.
  bool watches(std::size_t layer, bool through_all = true) const {
    for (const auto& e : entries_)
      if (live_now(*e) && (e->layer ? *e->layer == layer : through_all)) return true;
    return false;
  }

  bool watches_modifying(std::size_t layer) const {
    for (const auto& e : entries_)
      if (live_now(*e) && e->modifies && (!e->layer || *e->layer == layer)) return true;
    return false;
  }

  // Marks a pass over the list: hooks removed meanwhile are only marked, and
  // erased when the last pass ends, so pointers from live() stay valid.
  struct Running {
    explicit Running(HookList& list) : list(list) { ++list.running_; }
    ~Running() {
      if (--list.running_ == 0 && list.has_removed_) {
        auto& v = list.entries_;
        v.erase(std::remove_if(v.begin(), v.end(), [](const auto& e) { return e->removed; }), v.end());
        list.has_removed_ = false;
      }
    }
    Running(const Running&) = delete;
    Running& operator=(const Running&) = delete;
    HookList& list;
  };

  // The live hooks watching `layer`, for a caller that runs them itself
  // (from several threads at once) while it holds a Running.
  std::vector<Fn*> live(std::size_t layer) {
    std::vector<Fn*> fns;
    for (auto& e : entries_)
      if (live_now(*e) && (!e->layer || *e->layer == layer)) fns.push_back(&e->fn);
    return fns;
  }

  // Calls call(fn) for every live hook watching `layer` that existed when the
  // pass began. An exception becomes a glassbox::Error naming the layer.
  template <class Call>
  void run(std::size_t layer, const std::string& layer_name, const char* kind, Call&& call) {
    Running running(*this);
    const std::size_t count = entries_.size();
    for (std::size_t i = 0; i < count; ++i) {
      Entry& e = *entries_[i];
      if (!live_now(e) || (e.layer && *e.layer != layer)) continue;
      try {
        call(e.fn);
      } catch (...) {
        throw_hook_error(layer_name, kind);
      }
    }
  }

  // As run(), for the hooks registered for `layer` itself only (not for all).
  template <class Call>
  void run_exact(std::size_t layer, const std::string& layer_name, const char* kind, Call&& call) {
    Running running(*this);
    const std::size_t count = entries_.size();
    for (std::size_t i = 0; i < count; ++i) {
      Entry& e = *entries_[i];
      if (!live_now(e) || !e.layer || *e.layer != layer) continue;
      try {
        call(e.fn);
      } catch (...) {
        throw_hook_error(layer_name, kind);
      }
    }
  }

 private:
  struct Entry {
    std::uint64_t id;
    std::optional<std::size_t> layer;  // nullopt: every layer
    Fn fn;
    bool modifies;
    bool removed;
    HookSchedule when;  // empty: every pass
  };
  // Registered, and due in the pass running.
  bool live_now(const Entry& e) const { return !e.removed && (!e.when || e.when(*now_)); }

  const HookContext* now_;
  std::vector<std::unique_ptr<Entry>> entries_;
  int running_ = 0;
  bool has_removed_ = false;
};

// All hooks of one model. Shared with the handles through a weak_ptr, so a
// handle that outlives its model finds nothing to remove.
template <class T>
class HookRegistry final : public HookOwner {
 public:
  // The context of the pass running, or of the last one: what hook schedules
  // are asked about. The model sets it as each pass begins.
  HookContext now;
  // Observing and modifying hooks share a list so that they run in
  // registration order, each seeing what the earlier ones left.
  HookList<ModifyingForwardPreHook<T>> pre{&now};
  // Observing and modifying forward hooks share one list so that they run in
  // registration order, each seeing what the earlier ones left.
  HookList<ModifyingForwardHook<T>> forward{&now};
  HookList<OutputBlockHook<T>> output_block{&now};
  HookList<OutputGradBlockHook<T>> output_grad_block{&now};
  HookList<BackwardHook<T>> backward{&now};
  HookList<ParamGradHook<T>> param_grad{&now};

  std::uint64_t next_id() { return ++last_id_; }

  // Whether a hook of a forward (backward) pass watches this layer, directly
  // or as a hook on every layer.
  bool watches_in_forward(std::size_t layer) const {
    return pre.watches(layer) || forward.watches(layer) || output_block.watches(layer);
  }
  bool watches_in_backward(std::size_t layer) const {
    return backward.watches(layer) || output_grad_block.watches(layer);
  }

  void remove_hook(std::uint64_t id) noexcept override {
    pre.remove(id) || forward.remove(id) || output_block.remove(id) || output_grad_block.remove(id) ||
        backward.remove(id) || param_grad.remove(id);
  }
  bool set_schedule(std::uint64_t id, HookSchedule when) override {
    return pre.set_schedule(id, when) || forward.set_schedule(id, when) || output_block.set_schedule(id, when) ||
           output_grad_block.set_schedule(id, when) || backward.set_schedule(id, when) ||
           param_grad.set_schedule(id, when);
  }
  bool has_hook(std::uint64_t id) const noexcept override {
    return pre.contains(id) || forward.contains(id) || output_block.contains(id) || output_grad_block.contains(id) ||
           backward.contains(id) || param_grad.contains(id);
  }

 private:
  std::uint64_t last_id_ = 0;
};

}  // namespace detail

GLASSBOX_PRECOMPILED_INSTANCE(class detail::HookRegistry<float>)
}  // namespace glassbox
