#pragma once
// Permutation feature importance for tabular models (Breiman 2001; as
// scikit-learn's permutation_importance): shuffle one feature column across
// the samples, breaking its link with the target, and measure how much a
// metric (higher is better) drops. Repeated with different shuffles; mean
// and standard deviation of the drop per feature. With options.groups, the
// columns of a group are shuffled together (the one-hot columns of one
// nominal attribute, say: io::TableEncoder::groups()), one result per group.

#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <numeric>
#include <vector>

#include "glassbox/inspect/robustness.hpp"
#include "glassbox/nn/loss.hpp"

namespace glassbox::inspect {

// metric(model output, targets) -> score, higher is better.
template <class T>
using Metric = std::function<double(const Tensor<T>& output, const Tensor<T>& targets)>;

// Share of argmax(output) equal to the labels.
template <class T>
Metric<T> accuracy_metric() {
  return [](const Tensor<T>& output, const Tensor<T>& labels) { return detail::accuracy_of(output, labels); };
}

// Minus the loss, for regression (or any loss). The loss must outlive the metric.
template <class T>
Metric<T> negative_loss_metric(const nn::Loss<T>& loss) {
  return [&loss](const Tensor<T>& output, const Tensor<T>& targets) {
    return -static_cast<double>(loss.forward(output, targets, nullptr));
  };
}

struct PermutationImportanceOptions {
  int repeats = 5;
  std::uint64_t seed = 0;
  std::vector<std::vector<index_t>> groups;  // empty: each column alone
};

struct FeatureImportance {
  index_t feature = 0;        // the column, or the group's index
  double mean = 0;            // mean drop of the metric when the feature is shuffled
  double stddev = 0;          // population standard deviation over the repeats
  std::vector<double> drops;  // one per repeat
};

struct PermutationImportance {
  double baseline_score = 0;  // the metric on the unshuffled data
  std::vector<FeatureImportance> features;
};

// x: (N, F) features; targets: whatever the metric compares the output with.
template <class T>
PermutationImportance permutation_importance(Sequential<T>& model, const Tensor<T>& x, const Tensor<T>& targets,
                                             const Metric<T>& metric, PermutationImportanceOptions options = {}) {
  if (x.rank() != 2 || x.dim(0) < 2)
    throw Error(fmt::format("permutation_importance: expected tabular data (N >= 2, F), got {}", x.shape().str()));
  if (targets.rank() < 1 || targets.dim(0) != x.dim(0))
    throw Error(
        fmt::format("permutation_importance: targets of shape {} for {} samples", targets.shape().str(), x.dim(0)));
  if (options.repeats < 1)
    throw Error(fmt::format("permutation_importance: repeats must be >= 1, got {}", options.repeats));
  if (!metric) throw Error("permutation_importance: empty metric");
  const index_t n = x.dim(0), features = x.dim(1);
  std::vector<std::vector<index_t>> groups = options.groups;
  for (const auto& g : groups)
    for (const index_t f : g)
      if (f < 0 || f >= features)
        throw Error(fmt::format("permutation_importance: a group names column {} of {}", f, features));
  if (groups.empty())
    for (index_t f = 0; f < features; ++f) groups.push_back({f});
  PermutationImportance result;
  result.baseline_score = metric(model.predict(x), targets);
  Rng rng(options.seed);
  Tensor<T> shuffled = x;
  std::vector<index_t> order(static_cast<std::size_t>(n));
  for (std::size_t g = 0; g < groups.size(); ++g) {
    FeatureImportance importance;
    importance.feature = static_cast<index_t>(g);
    for (int r = 0; r < options.repeats; ++r) {
      std::iota(order.begin(), order.end(), index_t{0});
      rng.shuffle(order.begin(), order.end());
      for (index_t s = 0; s < n; ++s)
        for (const index_t f : groups[g])
          shuffled[s * features + f] = x[order[static_cast<std::size_t>(s)] * features + f];
      importance.drops.push_back(result.baseline_score - metric(model.predict(shuffled), targets));
    }
    for (index_t s = 0; s < n; ++s)  // restore the columns
      for (const index_t f : groups[g]) shuffled[s * features + f] = x[s * features + f];
    const double count = static_cast<double>(importance.drops.size());
    importance.mean = std::accumulate(importance.drops.begin(), importance.drops.end(), 0.0) / count;
    double squares = 0;
    for (double d : importance.drops) squares += (d - importance.mean) * (d - importance.mean);
    importance.stddev = std::sqrt(squares / count);
    result.features.push_back(std::move(importance));
  }
  return result;
}

}  // namespace glassbox::inspect
