#pragma once
// Perturbation attributions: how much output[n, target] drops when a set of
// features is replaced by a baseline value.
//
//   FeatureAblation       user-defined feature groups of the input (a group id
//                         per feature of one sample); every feature of a group
//                         gets the group's drop (Captum's FeatureAblation)
//   Occlusion             a window slid over the image with a stride; each
//                         feature gets the mean drop of the windows covering it
//                         (Zeiler & Fergus 2014; Captum's Occlusion)
//   LayerFeatureAblation  groups of a hidden layer's units, ablated through a
//                         modifying forward hook; attributions shaped like the layer
//
// The perturbed copies of every example are evaluated in batches under a byte
// budget. Empty targets: each sample's predicted class on the clean input.

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "glassbox/inspect/attribution.hpp"

namespace glassbox::inspect {

struct AblationOptions {
  double baseline = 0;                            // the value ablated features take
  std::size_t max_bytes = std::size_t{64} << 20;  // per forward pass of perturbed inputs (forward_bytes_per_sample)
};

namespace detail {

// Feature sets of one sample, possibly overlapping; features in no set get 0.
using Perturbations = std::vector<std::vector<index_t>>;

// Groups from a mask holding a group id per feature (negative: never ablated).
inline Perturbations perturbations_from_groups(const std::vector<index_t>& groups, index_t features, const char* who) {
  if (groups.empty()) {
    Perturbations each(static_cast<std::size_t>(features));
    for (index_t f = 0; f < features; ++f) each[static_cast<std::size_t>(f)] = {f};
    return each;
  }
  if (static_cast<index_t>(groups.size()) != features)
    throw Error(
        fmt::format("{}: the group mask has {} entries for {} features per sample", who, groups.size(), features));
  const index_t count = *std::max_element(groups.begin(), groups.end()) + 1;
  if (count > features) throw Error(fmt::format("{}: group ids must be below the feature count {}", who, features));
  Perturbations sets(static_cast<std::size_t>(std::max<index_t>(count, 0)));
  for (index_t f = 0; f < features; ++f)
    if (groups[static_cast<std::size_t>(f)] >= 0)
      sets[static_cast<std::size_t>(groups[static_cast<std::size_t>(f)])].push_back(f);
  return sets;
}

// attribution[n, f] = mean over the sets s containing f of
// score(x_n) - score(x_n with s ablated). `ablate(batch, rows, pairs)` turns
// row r of a batch of clean copies into the perturbation of pairs[r] =
// (example, set); `scores_of` runs the batch and returns the target scores.
template <class T, class Ablate>
Tensor<T> ablation_attributions(Sequential<T>& model, const Tensor<T>& x, const std::vector<index_t>& targets,
                                const Perturbations& sets, index_t features, const AblationOptions& options,
                                Ablate&& ablate, Shape result_shape) {
  const index_t n = x.dim(0), per_sample = x.size() / n, set_count = static_cast<index_t>(sets.size());
  const std::vector<double> clean = target_scores(model, x, targets);
  std::vector<double> sums(static_cast<std::size_t>(n * features), 0.0);
  std::vector<int> covers(static_cast<std::size_t>(features), 0);
  for (const auto& set : sets)
    for (index_t f : set) ++covers[static_cast<std::size_t>(f)];

  const index_t total = n * set_count;
  const index_t chunk = std::min(total, rows_per_pass(model, x.shape(), options.max_bytes));
  Tensor<T> batch;
  std::vector<index_t> row_targets;
  std::vector<std::pair<index_t, index_t>> pairs;
  for (index_t first = 0; first < total; first += chunk) {
    const index_t rows = std::min(chunk, total - first);
    Shape shape = x.shape();
    shape[0] = rows;
    batch.resize(shape);
    pairs.resize(static_cast<std::size_t>(rows));
    row_targets.resize(static_cast<std::size_t>(rows));
    for (index_t r = 0; r < rows; ++r) {
      const index_t example = (first + r) / set_count;
      pairs[static_cast<std::size_t>(r)] = {example, (first + r) % set_count};
      row_targets[static_cast<std::size_t>(r)] = targets[static_cast<std::size_t>(example)];
      std::copy(x.data() + example * per_sample, x.data() + (example + 1) * per_sample, batch.data() + r * per_sample);
    }
    ablate(batch, pairs);
    const std::vector<double> scores = target_scores(model, batch, row_targets);
    for (index_t r = 0; r < rows; ++r) {
      const auto [example, set] = pairs[static_cast<std::size_t>(r)];
      const double drop = clean[static_cast<std::size_t>(example)] - scores[static_cast<std::size_t>(r)];
      for (index_t f : sets[static_cast<std::size_t>(set)])
        sums[static_cast<std::size_t>(example * features + f)] += drop;
    }
  }
  result_shape[0] = n;
  Tensor<T> result(result_shape);
  for (index_t e = 0; e < n; ++e)
    for (index_t f = 0; f < features; ++f) {
      const int c = covers[static_cast<std::size_t>(f)];
      result.data()[e * features + f] = c ? static_cast<T>(sums[static_cast<std::size_t>(e * features + f)] / c) : T(0);
    }
  return result;
}

// Ablates the input rows directly.
template <class T>
auto input_ablation(const Perturbations& sets, const AblationOptions& options) {
  return [&sets, &options](Tensor<T>& batch, const std::vector<std::pair<index_t, index_t>>& pairs) {
    const index_t per_sample = batch.size() / batch.dim(0);
    for (std::size_t r = 0; r < pairs.size(); ++r) {
      T* row = batch.data() + static_cast<index_t>(r) * per_sample;
      for (index_t f : sets[static_cast<std::size_t>(pairs[r].second)]) row[f] = static_cast<T>(options.baseline);
    }
  };
}

}  // namespace detail

template <class T>
class FeatureAblation : public Attribution<T> {
 public:
  // groups: a group id (0, 1, ...) for every feature of one sample, in the
  // sample's row-major order; negative ids are never ablated. Empty: every
  // feature is its own group.
  explicit FeatureAblation(Sequential<T>& model, std::vector<index_t> groups = {}, AblationOptions options = {})
      : model_(model), groups_(std::move(groups)), options_(options) {}

  Tensor<T> attribute(const Tensor<T>& x, const std::vector<index_t>& targets = {}) override {
    const std::vector<index_t> chosen = detail::resolve_targets(model_, x, targets);
    const index_t features = x.size() / x.dim(0);
    const detail::Perturbations sets = detail::perturbations_from_groups(groups_, features, "FeatureAblation");
    return detail::ablation_attributions(model_, x, chosen, sets, features, options_,
                                         detail::input_ablation<T>(sets, options_), x.shape());
  }

 private:
  Sequential<T>& model_;
  std::vector<index_t> groups_;
  AblationOptions options_;
};

struct OcclusionOptions {
  index_t window_height = 4, window_width = 4;
  index_t window_channels = 0;  // 0: every channel at once; else windows of this many channels, stepped by it
  index_t stride_height = 2, stride_width = 2;
  AblationOptions ablation;
};

template <class T>
class Occlusion : public Attribution<T> {
 public:
  using Options = OcclusionOptions;

  explicit Occlusion(Sequential<T>& model, Options options = {}) : model_(model), options_(options) {
    if (options_.window_height < 1 || options_.window_width < 1 || options_.window_channels < 0 ||
        options_.stride_height < 1 || options_.stride_width < 1)
      throw Error(fmt::format("Occlusion: window {}x{} and stride {}x{} must be positive", options_.window_height,
                              options_.window_width, options_.stride_height, options_.stride_width));
  }

  // x: images (N, C, H, W).
  Tensor<T> attribute(const Tensor<T>& x, const std::vector<index_t>& targets = {}) override {
    if (x.rank() != 4) throw Error(fmt::format("Occlusion: expected images (N, C, H, W), got {}", x.shape().str()));
    const index_t channels = x.dim(1), h = x.dim(2), w = x.dim(3);
    if (options_.window_height > h || options_.window_width > w)
      throw Error(fmt::format("Occlusion: window {}x{} is larger than the {}x{} image", options_.window_height,
                              options_.window_width, h, w));
    const std::vector<index_t> chosen = detail::resolve_targets(model_, x, targets);
    const index_t depth = options_.window_channels ? std::min(options_.window_channels, channels) : channels;
    detail::Perturbations windows;
    for (index_t front = 0; front + depth <= channels; front += depth)
      for (index_t top = 0; top + options_.window_height <= h; top += options_.stride_height)
        for (index_t left = 0; left + options_.window_width <= w; left += options_.stride_width) {
          std::vector<index_t>& window = windows.emplace_back();
          for (index_t c = front; c < front + depth; ++c)
            for (index_t i = top; i < top + options_.window_height; ++i)
              for (index_t j = left; j < left + options_.window_width; ++j) window.push_back((c * h + i) * w + j);
        }
    return detail::ablation_attributions(model_, x, chosen, windows, channels * h * w, options_.ablation,
                                         detail::input_ablation<T>(windows, options_.ablation), x.shape());
  }

 private:
  Sequential<T>& model_;
  Options options_;
};

template <class T>
class LayerFeatureAblation {
 public:
  // groups: a group id for every unit of one sample's output of the layer
  // (row-major); empty: every unit alone.
  LayerFeatureAblation(Sequential<T>& model, HookTarget layer, std::vector<index_t> groups = {},
                       AblationOptions options = {})
      : model_(model), layer_(model.index_of(layer)), groups_(std::move(groups)), options_(options) {}

  // Shaped like the layer's output for x.
  Tensor<T> attribute(const Tensor<T>& x, const std::vector<index_t>& targets = {}) {
    const std::vector<index_t> chosen = detail::resolve_targets(model_, x, targets);
    model_.forward(x, Mode::eval);
    const Shape layer_shape = model_.output(layer_).shape();
    const index_t units = layer_shape.size() / layer_shape[0];
    const detail::Perturbations sets = detail::perturbations_from_groups(groups_, units, "LayerFeatureAblation");
    // The batch keeps clean inputs; the hook ablates the layer's output row by row.
    const std::vector<std::pair<index_t, index_t>>* current = nullptr;
    HookHandle hook = model_.add_modifying_forward_hook(layer_, [&](const ForwardEvent<T>&, Tensor<T>& out) {
      if (!current) return;  // the clean forward
      for (std::size_t r = 0; r < current->size(); ++r) {
        T* row = out.data() + static_cast<index_t>(r) * units;
        for (index_t u : sets[static_cast<std::size_t>((*current)[r].second)])
          row[u] = static_cast<T>(options_.baseline);
      }
    });
    return detail::ablation_attributions(
        model_, x, chosen, sets, units, options_,
        [&current](Tensor<T>&, const std::vector<std::pair<index_t, index_t>>& pairs) { current = &pairs; },
        layer_shape);
  }

 private:
  Sequential<T>& model_;
  std::size_t layer_;
  std::vector<index_t> groups_;
  AblationOptions options_;
};

}  // namespace glassbox::inspect
