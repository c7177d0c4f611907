#pragma once
// Is an explanation faithful to the model?
//
//   deletion_insertion      remove the most-attributed features first (set them
//                           to a baseline) and watch the target score fall; or
//                           start from the baseline and insert them, watching it
//                           rise (Petsiuk et al. 2018, RISE). A faithful method
//                           has a small deletion area and a large insertion area.
//   randomization_test      the model-parameter randomization sanity check
//                           (Adebayo et al. 2018): re-initialise the layers from
//                           the top down, cumulatively, and measure the Spearman
//                           rank correlation between the attributions of the
//                           trained and the randomised model. An explanation that
//                           depends on what the model learned decorrelates.
//
// Targets: given, or each sample's predicted class on the clean input.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "glassbox/inspect/attribution.hpp"

namespace glassbox::inspect {

enum class CurveScore { probability, logit, accuracy };

struct DeletionInsertionOptions {
  int points = 20;                             // fractions 0, 1/points, ..., 1 of the features
  double baseline = 0;                         // the value removed features take
  CurveScore score = CurveScore::probability;  // softmax of the model's output, the raw output, or target == argmax
};

struct DeletionInsertionCurves {
  std::vector<double> fractions;  // share of the features removed / inserted
  std::vector<double> deletion;   // mean score over the examples
  std::vector<double> insertion;
  double deletion_area = 0;  // trapezoid area under each curve, fractions on [0, 1]
  double insertion_area = 0;
};

namespace detail {
inline double trapezoid_area(const std::vector<double>& x, const std::vector<double>& y) {
  double area = 0;
  for (std::size_t i = 1; i < x.size(); ++i) area += 0.5 * (y[i] + y[i - 1]) * (x[i] - x[i - 1]);
  return area;
}

// Mean score of the targets over a batch (one forward pass per 256 rows).
template <class T>
double mean_target_score(Sequential<T>& model, const Tensor<T>& x, const std::vector<index_t>& targets,
                         CurveScore score) {
  const Tensor<T> out = model.predict(x);
  if (out.rank() != 2)
    throw Error(fmt::format("deletion_insertion: the model must output (N, classes), got {}", out.shape().str()));
  double sum = 0;
  for (index_t n = 0; n < out.dim(0); ++n) {
    const auto row = out.matrix().row(n).template cast<double>();
    const index_t t = targets[static_cast<std::size_t>(n)];
    switch (score) {
      case CurveScore::logit: sum += row(t); break;
      case CurveScore::probability: sum += 1.0 / (row.array() - row(t)).exp().sum(); break;  // softmax, stably
      case CurveScore::accuracy: {
        index_t best = 0;
        row.maxCoeff(&best);
        sum += best == t;
        break;
      }
    }
  }
  return sum / static_cast<double>(out.dim(0));
}

// Feature indices of each example, most attributed first (ties: lower index first).
template <class T>
std::vector<std::vector<index_t>> ranking(const Tensor<T>& attributions) {
  const index_t n = attributions.dim(0), per_sample = attributions.size() / n;
  std::vector<std::vector<index_t>> order(static_cast<std::size_t>(n));
  for (index_t e = 0; e < n; ++e) {
    std::vector<index_t>& o = order[static_cast<std::size_t>(e)];
    o.resize(static_cast<std::size_t>(per_sample));
    std::iota(o.begin(), o.end(), index_t{0});
    const T* a = attributions.data() + e * per_sample;
    auto key = [a](index_t i) {  // NaN ranks last, keeping the order strict
      return std::isnan(a[i]) ? -std::numeric_limits<double>::infinity() : static_cast<double>(a[i]);
    };
    std::stable_sort(o.begin(), o.end(), [&key](index_t i, index_t j) { return key(i) > key(j); });
  }
  return order;
}
}  // namespace detail

// attributions: shaped like x (any method's output; pass absolute values to
// rank by magnitude instead of by signed contribution).
template <class T>
DeletionInsertionCurves deletion_insertion(Sequential<T>& model, const Tensor<T>& x, const Tensor<T>& attributions,
                                           const std::vector<index_t>& targets = {},
                                           DeletionInsertionOptions options = {}) {
  if (attributions.shape() != x.shape())
    throw Error(fmt::format("deletion_insertion: attributions of shape {} for inputs of shape {}",
                            attributions.shape().str(), x.shape().str()));
  if (options.points < 1) throw Error(fmt::format("deletion_insertion: points must be >= 1, got {}", options.points));
  const std::vector<index_t> chosen = detail::resolve_targets(model, x, targets);
  const index_t n = x.dim(0), per_sample = x.size() / n;
  const std::vector<std::vector<index_t>> order = detail::ranking(attributions);
  const T baseline = static_cast<T>(options.baseline);

  DeletionInsertionCurves curves;
  Tensor<T> deleted = x, inserted(x.shape(), baseline);
  index_t done = 0;  // features already moved, per example
  for (int p = 0; p <= options.points; ++p) {
    const auto upto = static_cast<index_t>(std::llround(static_cast<double>(per_sample) * p / options.points));
    for (index_t e = 0; e < n; ++e)
      for (index_t r = done; r < upto; ++r) {
        const index_t k = e * per_sample + order[static_cast<std::size_t>(e)][static_cast<std::size_t>(r)];
        deleted[k] = baseline;
        inserted[k] = x[k];
      }
    done = upto;
    curves.fractions.push_back(static_cast<double>(upto) / static_cast<double>(per_sample));
    curves.deletion.push_back(detail::mean_target_score(model, deleted, chosen, options.score));
    curves.insertion.push_back(detail::mean_target_score(model, inserted, chosen, options.score));
  }
  curves.deletion_area = detail::trapezoid_area(curves.fractions, curves.deletion);
  curves.insertion_area = detail::trapezoid_area(curves.fractions, curves.insertion);
  return curves;
}

// Spearman rank correlation of two equally long sequences (ties get their mean rank).
inline double spearman_correlation(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size() || a.size() < 2)
    throw Error(
        fmt::format("spearman_correlation: needs two sequences of one length >= 2, got {} and {}", a.size(), b.size()));
  auto ranks = [](const std::vector<double>& v) {
    std::vector<std::size_t> order(v.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(), [&v](std::size_t i, std::size_t j) { return v[i] < v[j]; });
    std::vector<double> r(v.size());
    for (std::size_t i = 0; i < order.size();) {
      std::size_t j = i;
      while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
      for (std::size_t k = i; k <= j; ++k) r[order[k]] = 0.5 * static_cast<double>(i + j);
      i = j + 1;
    }
    return r;
  };
  const std::vector<double> ra = ranks(a), rb = ranks(b);
  const double mean = 0.5 * static_cast<double>(a.size() - 1);
  double cov = 0, va = 0, vb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    cov += (ra[i] - mean) * (rb[i] - mean);
    va += (ra[i] - mean) * (ra[i] - mean);
    vb += (rb[i] - mean) * (rb[i] - mean);
  }
  return va > 0 && vb > 0 ? cov / std::sqrt(va * vb) : 0.0;  // a constant sequence carries no ranking
}

struct RandomizationStep {
  std::string layer;        // the layer re-initialised at this step (with every one above it)
  double spearman = 0;      // mean over examples, signed attributions
  double spearman_abs = 0;  // mean over examples, absolute attributions
};

// The cascading randomization: for each layer with parameters, from the
// output down, re-initialise it (reset_parameters from a seeded Rng) and
// compare method's attributions with the trained model's. The trained
// parameters are restored afterwards, also when the method throws.
template <class T>
std::vector<RandomizationStep> randomization_test(Sequential<T>& model, Attribution<T>& method, const Tensor<T>& x,
                                                  const std::vector<index_t>& targets = {}, std::uint64_t seed = 0) {
  const std::vector<index_t> chosen = detail::resolve_targets(model, x, targets);
  const Tensor<T> trained = method.attribute(x, chosen);
  std::vector<Tensor<T>> saved;
  for (Parameter<T>* p : model.parameters()) saved.push_back(p->value);
  struct Restore {
    Sequential<T>& model;
    std::vector<Tensor<T>>& saved;
    ~Restore() {
      std::size_t i = 0;
      for (Parameter<T>* p : model.parameters()) p->value = saved[i++];
    }
  } restore{model, saved};

  const index_t n = x.dim(0), per_sample = x.size() / n;
  auto mean_correlation = [&](const Tensor<T>& randomised, bool absolute) {
    double sum = 0;
    std::vector<double> a(static_cast<std::size_t>(per_sample)), b(a.size());
    for (index_t e = 0; e < n; ++e) {
      for (index_t k = 0; k < per_sample; ++k) {
        const double u = static_cast<double>(trained[e * per_sample + k]),
                     v = static_cast<double>(randomised[e * per_sample + k]);
        a[static_cast<std::size_t>(k)] = absolute ? std::abs(u) : u;
        b[static_cast<std::size_t>(k)] = absolute ? std::abs(v) : v;
      }
      sum += spearman_correlation(a, b);
    }
    return sum / static_cast<double>(n);
  };

  Rng rng(seed);
  std::vector<RandomizationStep> steps;
  for (std::size_t i = model.size(); i-- > 0;) {
    Layer<T>& layer = model.layer(i);
    if (layer.parameters().empty()) continue;
    layer.reset_parameters(rng);
    const Tensor<T> randomised = method.attribute(x, chosen);
    steps.push_back({layer.name(), mean_correlation(randomised, false), mean_correlation(randomised, true)});
  }
  return steps;
}

}  // namespace glassbox::inspect
