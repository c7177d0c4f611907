#pragma once
// Causal interventions on a model's activations, through modifying forward
// hooks (model/hooks.hpp).
//
// Activation patching (causal tracing): run a clean input and a corrupted
// one; in the corrupted run, put back one layer's clean activation (all of
// it, one unit, or one channel) and measure how much of the clean-vs-
// corrupted difference of a metric it restores:
//
//   inspect::ActivationPatching<float> patching(model, clean, corrupted, /*target=*/7, /*foil=*/1);
//   patching.patch_layer("conv2d_1").restored;        // 1: the layer carries all of it
//   patching.patch_channels("conv2d_1");               // one result per channel
//
// The metric is the target class's output minus the foil's (or the target's
// alone without a foil), averaged over the batch. restored = (patched -
// corrupted) / (clean - corrupted); NaN when clean and corrupted agree.
//
// The average causal effect of ablating each unit or channel over a data set
// is average_ablation_effect(): LayerFeatureAblation (inspect/ablation.hpp)
// per sample, averaged.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/inspect/ablation.hpp"
#include "glassbox/model/sequential.hpp"

namespace glassbox::inspect {

struct PatchResult {
  double clean = 0, corrupted = 0, patched = 0;  // the metric in each run
  double restored = std::numeric_limits<double>::quiet_NaN();
};

template <class T>
class ActivationPatching {
 public:
  // clean and corrupted: batches of one shape; target and foil: classes
  // (foil -1: the metric is the target's output alone). The model must
  // outlive this object.
  ActivationPatching(Sequential<T>& model, Tensor<T> clean, Tensor<T> corrupted, index_t target, index_t foil = -1)
      : model_(model), clean_(std::move(clean)), corrupted_(std::move(corrupted)), target_(target), foil_(foil) {
    if (clean_.shape() != corrupted_.shape())
      throw Error(fmt::format("ActivationPatching: clean input {} and corrupted input {} differ in shape",
                              clean_.shape().str(), corrupted_.shape().str()));
    if (clean_.rank() < 2 || clean_.dim(0) < 1)
      throw Error(fmt::format("ActivationPatching: inputs must be batches, got {}", clean_.shape().str()));
    clean_metric_ = metric(model_.forward(clean_, Mode::eval), 1).front();
    corrupted_metric_ = metric(model_.forward(corrupted_, Mode::eval), 1).front();
  }

  double clean_metric() const { return clean_metric_; }
  double corrupted_metric() const { return corrupted_metric_; }

  // The whole output of `layer` (any hook target, block children included) patched.
  PatchResult patch_layer(const HookTarget& layer) {
    const Tensor<T> clean = activation_of(layer);
    HookHandle hook = model_.add_modifying_forward_hook(
        layer, [&](const ForwardEvent<T>&, Tensor<T>& out) { std::copy(clean.begin(), clean.end(), out.begin()); });
    return result(metric(model_.forward(corrupted_, Mode::eval), 1).front());
  }

  // Each unit of the layer's output (row-major within a sample) patched alone.
  std::vector<PatchResult> patch_units(const HookTarget& layer) {
    const Tensor<T> clean = activation_of(layer);
    const index_t units = clean.size() / clean.dim(0);
    std::vector<std::vector<index_t>> sets(static_cast<std::size_t>(units));
    for (index_t u = 0; u < units; ++u) sets[static_cast<std::size_t>(u)] = {u};
    return patch_sets(layer, clean, sets);
  }

  // Each channel of an (N, C, ...) output patched alone.
  std::vector<PatchResult> patch_channels(const HookTarget& layer) {
    const Tensor<T> clean = activation_of(layer);
    if (clean.rank() < 3)
      throw Error(
          fmt::format("ActivationPatching::patch_channels: the output {} has no channels", clean.shape().str()));
    const index_t channels = clean.dim(1), per_channel = clean.size() / clean.dim(0) / channels;
    std::vector<std::vector<index_t>> sets(static_cast<std::size_t>(channels));
    for (index_t c = 0; c < channels; ++c)
      for (index_t k = 0; k < per_channel; ++k) sets[static_cast<std::size_t>(c)].push_back(c * per_channel + k);
    return patch_sets(layer, clean, sets);
  }

 private:
  // Per copy of the batch in `out` (copies of n samples each), the metric averaged over the copy.
  std::vector<double> metric(const Tensor<T>& out, index_t copies) const {
    if (out.rank() != 2 || target_ < 0 || target_ >= out.dim(1) || foil_ >= out.dim(1) || foil_ < -1)
      throw Error(fmt::format("ActivationPatching: target {} and foil {} must be classes of the output {}", target_,
                              foil_, out.shape().str()));
    const index_t n = out.dim(0) / copies;
    std::vector<double> values(static_cast<std::size_t>(copies), 0.0);
    for (index_t row = 0; row < out.dim(0); ++row) {
      const double v = static_cast<double>(out.matrix()(row, target_)) -
                       (foil_ >= 0 ? static_cast<double>(out.matrix()(row, foil_)) : 0.0);
      values[static_cast<std::size_t>(row / n)] += v / static_cast<double>(n);
    }
    return values;
  }

  PatchResult result(double patched) const {
    PatchResult r{clean_metric_, corrupted_metric_, patched, std::numeric_limits<double>::quiet_NaN()};
    if (clean_metric_ != corrupted_metric_)
      r.restored = (patched - corrupted_metric_) / (clean_metric_ - corrupted_metric_);
    return r;
  }

  // The layer's output for the clean input.
  Tensor<T> activation_of(const HookTarget& layer) {
    Tensor<T> kept;
    {
      HookHandle hook = model_.add_forward_hook(layer, [&](const ForwardEvent<T>& e) { kept = e.output; });
      model_.forward(clean_, Mode::eval);
    }
    if (kept.size() == 0) throw Error("ActivationPatching: the layer produced no output on the clean input");
    return kept;
  }

  // Each set of units patched alone: the corrupted batch repeated, one copy
  // per set, in passes of at most max_bytes_ (forward_bytes_per_sample).
  std::vector<PatchResult> patch_sets(const HookTarget& layer, const Tensor<T>& clean,
                                      const std::vector<std::vector<index_t>>& sets) {
    const index_t n = corrupted_.dim(0), per_sample = clean.size() / n;
    const index_t copies_per_batch =
        std::max<index_t>(1, detail::rows_per_pass(model_, corrupted_.shape(), max_bytes_) / n);
    std::vector<PatchResult> results;
    bool patching = false;
    std::vector<index_t> chunk;  // set indices in this batch
    HookHandle hook = model_.add_modifying_forward_hook(layer, [&](const ForwardEvent<T>&, Tensor<T>& out) {
      if (!patching) return;
      for (std::size_t copy = 0; copy < chunk.size(); ++copy)
        for (index_t s = 0; s < n; ++s) {
          T* row = out.data() + (static_cast<index_t>(copy) * n + s) * per_sample;
          const T* from = clean.data() + s * per_sample;
          for (const index_t u : sets[static_cast<std::size_t>(chunk[copy])]) row[u] = from[u];
        }
    });
    Tensor<T> batch;
    for (std::size_t first = 0; first < sets.size(); first += static_cast<std::size_t>(copies_per_batch)) {
      chunk.clear();
      for (std::size_t k = first; k < std::min(sets.size(), first + static_cast<std::size_t>(copies_per_batch)); ++k)
        chunk.push_back(static_cast<index_t>(k));
      batch.resize(corrupted_.shape().sample().batched(n * static_cast<index_t>(chunk.size())));
      for (std::size_t copy = 0; copy < chunk.size(); ++copy)
        std::copy(corrupted_.begin(), corrupted_.end(), batch.data() + static_cast<index_t>(copy) * corrupted_.size());
      patching = true;
      for (const double patched : metric(model_.forward(batch, Mode::eval), static_cast<index_t>(chunk.size())))
        results.push_back(result(patched));
      patching = false;
    }
    return results;
  }

  Sequential<T>& model_;
  Tensor<T> clean_, corrupted_;
  index_t target_, foil_;
  double clean_metric_ = 0, corrupted_metric_ = 0;
  std::size_t max_bytes_ = std::size_t{64} << 20;
};

// The average causal effect of ablating each group of `layer`'s units
// (groups: a group id per unit of one sample, as LayerFeatureAblation takes,
// negative for units never ablated; empty: every unit alone) over the samples x: the mean over samples of
// F(x)[target] - F(x with the group set to options.baseline)[target], per group.
template <class T>
std::vector<double> average_ablation_effect(Sequential<T>& model, const HookTarget& layer, const Tensor<T>& x,
                                            const std::vector<index_t>& targets = {},
                                            const std::vector<index_t>& groups = {}, AblationOptions options = {}) {
  LayerFeatureAblation<T> ablation(model, layer, groups, options);
  const Tensor<T> per_unit = ablation.attribute(x, targets);  // each unit holds its group's effect
  const index_t units = per_unit.size() / per_unit.dim(0);
  index_t group_count = units;
  if (!groups.empty()) group_count = std::max<index_t>(0, *std::max_element(groups.begin(), groups.end()) + 1);
  std::vector<double> effect(static_cast<std::size_t>(group_count), 0.0);
  std::vector<bool> seen(static_cast<std::size_t>(group_count), false);
  for (index_t u = 0; u < units; ++u) {
    const index_t group = groups.empty() ? u : groups[static_cast<std::size_t>(u)];
    if (group < 0) continue;  // never ablated
    const auto g = static_cast<std::size_t>(group);
    if (seen[g]) continue;  // every unit of a group holds the same value
    seen[g] = true;
    for (index_t n = 0; n < per_unit.dim(0); ++n)
      effect[g] += static_cast<double>(per_unit.data()[n * units + u]) / static_cast<double>(per_unit.dim(0));
  }
  return effect;
}

GLASSBOX_PRECOMPILED_INSTANCE(class ActivationPatching<float>)
}  // namespace glassbox::inspect
