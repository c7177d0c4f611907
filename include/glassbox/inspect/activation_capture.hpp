#pragma once
// ActivationCapture: keeps full output tensors (feature maps) of chosen layers
// for chosen samples of a batch, for visualisation. By default it looks at
// eval passes, batch 0, and keeps the latest capture per (layer, sample);
// keep_history keeps every capture instead. Captures never exceed max_bytes:
// one that would is skipped and counted in skipped().

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/inspect/record.hpp"

namespace glassbox::inspect {

template <class T>
struct Capture : RecordSource {
  index_t sample = 0;  // index within the batch
  Tensor<T> value;     // the layer's output for that sample, batch dimension 1
};

struct ActivationCaptureOptions {
  std::vector<HookTarget> layers;     // empty: every layer
  std::vector<index_t> samples{0};    // indices within the batch
  Schedule schedule{1, false, true};  // default: eval passes
  long long batch = 0;                // only this batch of a pass; -1: any
  std::size_t max_bytes = std::size_t{64} << 20;
  bool keep_history = false;
};

template <class T>
class ActivationCapture {
 public:
  using Options = ActivationCaptureOptions;

  // Attaches to the model; detaches when destroyed. Neither copied nor moved.
  explicit ActivationCapture(Sequential<T>& model, Options options = {}) : options_(std::move(options)) {
    options_.schedule.validate("ActivationCapture");
    for (const index_t s : options_.samples)
      if (s < 0) throw Error(fmt::format("ActivationCapture: sample index {} is negative", s));
    attach_to(
        handles_, options_.layers, [this](const HookContext& c) { return due(c); },
        [&](const HookTarget& t) {
          return model.add_forward_hook(t, [this](const ForwardEvent<T>& e) { record(e); });
        });
  }
  ActivationCapture(const ActivationCapture&) = delete;
  ActivationCapture& operator=(const ActivationCapture&) = delete;

  void detach() { handles_.clear(); }

  const std::vector<Capture<T>>& captures() const { return captures_; }
  // The newest capture of `layer` for `sample`, or null.
  const Capture<T>* find(const std::string& layer, index_t sample) const {
    for (auto it = captures_.rbegin(); it != captures_.rend(); ++it)
      if (it->layer == layer && it->sample == sample) return &*it;
    return nullptr;
  }
  std::size_t bytes() const { return bytes_; }
  std::uint64_t skipped() const { return skipped_; }
  void clear() {
    captures_.clear();
    bytes_ = 0;
  }

  // One row per capture; values row-major, ';'-separated; shape like "1x32x26x26".
  std::string to_csv() const {
    std::string s = fmt::format("{},sample,shape,values\n", source_csv_header());
    for (const Capture<T>& c : captures_)
      s += fmt::format("{},{},{},{}\n", source_csv(c), c.sample,
                       fmt::join(c.value.shape().begin(), c.value.shape().end(), "x"),
                       fmt::join(c.value.begin(), c.value.end(), ";"));
    return s;
  }
  std::string to_json() const {
    std::string s = "{\"recorder\":\"activation_capture\",\"captures\":[";
    for (std::size_t i = 0; i < captures_.size(); ++i) {
      const Capture<T>& c = captures_[i];
      s += fmt::format("{}{{{},\"sample\":{},\"shape\":[{}],\"values\":[", i ? "," : "", source_json(c), c.sample,
                       fmt::join(c.value.shape().begin(), c.value.shape().end(), ","));
      for (index_t k = 0; k < c.value.size(); ++k)
        s += fmt::format("{}{}", k ? "," : "", json_number(static_cast<double>(c.value.data()[k])));
      s += "]}";
    }
    return s + fmt::format("],\"skipped\":{}}}\n", skipped_);
  }
  void write_csv(const std::string& path) const { write_text_file(path, to_csv()); }
  void write_json(const std::string& path) const { write_text_file(path, to_json()); }

 private:
  bool due(const HookContext& c) const {
    return options_.schedule.due(c) && (options_.batch < 0 || c.batch == options_.batch);
  }
  void record(const ForwardEvent<T>& e) {
    if (!due(e)) return;
    const Tensor<T>& y = e.output;
    if (y.rank() < 1) return;
    for (const index_t sample : options_.samples) {
      if (sample >= y.dim(0)) continue;  // a short last batch
      Capture<T>* slot = options_.keep_history ? nullptr : find_mutable(e.name, sample);
      const index_t per_sample = y.size() / y.dim(0);
      const std::size_t new_bytes = static_cast<std::size_t>(per_sample) * sizeof(T);
      const std::size_t freed = slot ? static_cast<std::size_t>(slot->value.size()) * sizeof(T) : 0;
      if (bytes_ - freed + new_bytes > options_.max_bytes) {
        ++skipped_;
        continue;
      }
      if (!slot) {
        captures_.emplace_back();
        slot = &captures_.back();
      }
      slot->layer = e.name;
      slot->layer_index = e.index;
      slot->context = e;
      slot->sample = sample;
      copy_rows(y, sample, 1, slot->value);
      bytes_ = bytes_ - freed + new_bytes;
    }
  }

  Capture<T>* find_mutable(const std::string& layer, index_t sample) {
    return const_cast<Capture<T>*>(static_cast<const ActivationCapture&>(*this).find(layer, sample));
  }

  Options options_;
  std::vector<Capture<T>> captures_;
  std::size_t bytes_ = 0;
  std::uint64_t skipped_ = 0;
  std::vector<HookHandle> handles_;
};

// One layer's output for every sample of x (N, ...), from eval-mode passes of
// batch_size samples: (N, the layer's output shape), what an embedding map
// or a probe is made from. The layer may sit inside a block (a forward hook
// reads it there).
template <class T>
Tensor<T> layer_activations(Sequential<T>& model, const HookTarget& layer, const Tensor<T>& x,
                            index_t batch_size = 256) {
  if (x.rank() < 1 || x.dim(0) < 1)
    throw Error(fmt::format("layer_activations: a batch of samples expected, got {}", x.shape().str()));
  if (batch_size <= 0) throw Error(fmt::format("layer_activations: batch_size must be positive, got {}", batch_size));
  Tensor<T> result;
  index_t start = 0;
  const HookHandle hook = model.add_forward_hook(layer, [&](const ForwardEvent<T>& e) {
    const Tensor<T>& y = e.output;
    if (result.rank() == 0) {
      Shape shape = y.shape();
      shape[0] = x.dim(0);
      result.resize(shape);
    }
    std::copy(y.begin(), y.end(), result.data() + start * (y.size() / y.dim(0)));
  });
  Tensor<T> batch;
  for (; start < x.dim(0); start += batch_size) {
    copy_rows(x, start, std::min(batch_size, x.dim(0) - start), batch);
    model.set_batch(start / batch_size);
    model.forward(batch, Mode::eval);
  }
  return result;
}

GLASSBOX_PRECOMPILED_INSTANCE(class ActivationCapture<float>)
}  // namespace glassbox::inspect
