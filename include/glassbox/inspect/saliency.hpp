#pragma once
// Gradient saliency: d(output[n, target_n]) / d(input[n]) for every sample n
// of a batch, computed in eval mode with one backward pass (samples do not
// interact in eval mode, so one pass gives every per-sample gradient).
//
// SaliencyRecorder runs it on a fixed probe batch during training: every k
// training steps and/or at the end of every epoch (a train::Callback, so it
// runs after the optimizer step). Its backward pass skips the parameters'
// gradients, so a pending optimizer step is not disturbed.

#include <fmt/format.h>

#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/inspect/record.hpp"
#include "glassbox/train/callback.hpp"

namespace glassbox::inspect {

// Row-wise argmax of a (N, classes) output.
template <class T>
std::vector<index_t> predicted_classes(const Tensor<T>& output) {
  if (output.rank() != 2)
    throw Error(fmt::format("predicted_classes: expected (N, classes), got {}", output.shape().str()));
  std::vector<index_t> classes(static_cast<std::size_t>(output.dim(0)));
  for (index_t n = 0; n < output.dim(0); ++n) output.matrix().row(n).maxCoeff(&classes[static_cast<std::size_t>(n)]);
  return classes;
}

namespace detail {
// One-hot seed for backward: 1 at (n, targets[n]), checked against the output.
template <class T>
Tensor<T> target_seed(const Tensor<T>& out, const std::vector<index_t>& targets, const char* who) {
  if (static_cast<index_t>(targets.size()) != out.dim(0))
    throw Error(fmt::format("{}: {} targets for a batch of {}", who, targets.size(), out.dim(0)));
  Tensor<T> seed(out.shape());
  for (index_t n = 0; n < out.dim(0); ++n) {
    const index_t t = targets[static_cast<std::size_t>(n)];
    if (t < 0 || t >= out.dim(1))
      throw Error(fmt::format("{}: target {} of sample {} is outside [0, {})", who, t, n, out.dim(1)));
    seed.matrix()(n, t) = T(1);
  }
  return seed;
}

// Eval-mode forward of x, then backward from output[n, targets[n]] (empty
// targets: filled with the predicted classes). Layer outputs stay readable
// through model.output(i); hooks see every gradient on the way.
template <class T>
void backward_from_targets(Sequential<T>& model, const Tensor<T>& x, std::vector<index_t>& targets,
                           bool want_input_grad, const char* who) {
  if (x.rank() < 2 || x.dim(0) == 0)
    throw Error(fmt::format("{}: expected a non-empty batch, got input of shape {}", who, x.shape().str()));
  const Tensor<T>& out = model.forward(x, Mode::eval);
  if (out.rank() != 2)
    throw Error(fmt::format("{}: the model's output must be (N, classes), got {}", who, out.shape().str()));
  if (targets.empty()) targets = predicted_classes(out);
  model.backward(target_seed(out, targets, who), want_input_grad, ParamGrads::skip);
}
}  // namespace detail

// Gradient of output[n, targets[n]] with respect to x[n]. Empty targets: the
// predicted class of each sample (filled in). The model must output (N, classes).
template <class T>
Tensor<T> gradient_saliency(Sequential<T>& model, const Tensor<T>& x, std::vector<index_t>& targets) {
  detail::backward_from_targets(model, x, targets, /*want_input_grad=*/true, "gradient_saliency");
  return model.input_grad();
}

template <class T>
Tensor<T> gradient_saliency(Sequential<T>& model, const Tensor<T>& x, const std::vector<index_t>& targets = {}) {
  std::vector<index_t> chosen = targets;
  return gradient_saliency(model, x, chosen);
}

template <class T>
struct SaliencyRecord : RecordSource {
  std::vector<index_t> targets;  // the class each sample's gradient is for
  Tensor<T> saliency;            // shaped like the probe batch
};

struct SaliencyRecorderOptions {
  long long every = 0;       // training steps between records; 0: none
  bool at_epoch_end = true;  // also after every epoch (after validation)
  std::size_t capacity = 100;
};

template <class T>
class SaliencyRecorder : public train::Callback {
 public:
  using Options = SaliencyRecorderOptions;

  // probe: the samples to explain; targets: one class per sample, or empty
  // for each sample's predicted class at the time of recording. The model
  // must outlive the recorder and stay where it is.
  SaliencyRecorder(Sequential<T>& model, Tensor<T> probe, std::vector<index_t> targets = {}, Options options = {})
      : model_(model), probe_(std::move(probe)), targets_(std::move(targets)), options_(options) {
    if (options_.every < 0) throw Error(fmt::format("SaliencyRecorder: every must be >= 0, got {}", options_.every));
    if (probe_.rank() < 2 || probe_.dim(0) == 0)
      throw Error(fmt::format("SaliencyRecorder: the probe must be a non-empty batch, got {}", probe_.shape().str()));
    if (!targets_.empty() && static_cast<index_t>(targets_.size()) != probe_.dim(0))
      throw Error(fmt::format("SaliencyRecorder: {} targets for {} probe samples", targets_.size(), probe_.dim(0)));
  }

  // Records now.
  void record() {
    SaliencyRecord<T> r;
    r.layer = "input";
    r.targets = targets_;
    r.saliency = gradient_saliency(model_, probe_, r.targets);
    r.context = model_.context();
    series_.push(std::move(r), options_.capacity);
  }

  void on_batch_end(const train::BatchLogs&) override {
    if (options_.every > 0 && model_.training_steps() % options_.every == 0) record();
  }
  void on_epoch_end(const train::EpochLogs&) override {
    if (options_.at_epoch_end) record();
  }

  const std::deque<SaliencyRecord<T>>& records() const { return series_.records; }
  std::uint64_t dropped() const { return series_.dropped; }

  // One row per (record, sample); gradient values row-major, ';'-separated.
  std::string to_csv() const {
    std::string s = fmt::format("{},sample,target,values\n", source_csv_header());
    for (const SaliencyRecord<T>& r : series_.records) {
      const index_t per_sample = r.saliency.size() / r.saliency.dim(0);
      for (index_t n = 0; n < r.saliency.dim(0); ++n) {
        const T* row = r.saliency.data() + n * per_sample;
        s += fmt::format("{},{},{},{}\n", source_csv(r), n, r.targets[static_cast<std::size_t>(n)],
                         fmt::join(row, row + per_sample, ";"));
      }
    }
    return s;
  }
  std::string to_json() const {
    std::string s = "{\"recorder\":\"saliency\",\"records\":[";
    bool first = true;
    for (const SaliencyRecord<T>& r : series_.records) {
      s += fmt::format("{}{{{},\"targets\":[{}],\"shape\":[{}],\"values\":[", first ? "" : ",", source_json(r),
                       fmt::join(r.targets, ","), fmt::join(r.saliency.shape().begin(), r.saliency.shape().end(), ","));
      for (index_t k = 0; k < r.saliency.size(); ++k)
        s += fmt::format("{}{}", k ? "," : "", json_number(static_cast<double>(r.saliency.data()[k])));
      s += "]}";
      first = false;
    }
    return s + fmt::format("],\"dropped\":{}}}\n", series_.dropped);
  }
  void write_csv(const std::string& path) const { write_text_file(path, to_csv()); }
  void write_json(const std::string& path) const { write_text_file(path, to_json()); }

 private:
  Sequential<T>& model_;
  Tensor<T> probe_;
  std::vector<index_t> targets_;
  Options options_;
  Series<SaliencyRecord<T>> series_;
};

GLASSBOX_PRECOMPILED_INSTANCE(class SaliencyRecorder<float>)
}  // namespace glassbox::inspect
