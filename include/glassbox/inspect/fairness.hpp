#pragma once
// Group fairness of a binary classifier: how its decisions differ between
// the groups of a sensitive attribute the user chooses (sex, an age band).
//
//   const inspect::GroupFairness f = inspect::group_metrics(predicted, truth, sex, /*positive=*/1);
//   f.demographic_parity_difference;   f.equalized_odds_difference;   f.to_text();
//
// Per group (Fairlearn's MetricFrame quantities): samples, accuracy, the
// selection rate P(predicted positive), the true positive rate (recall) and
// the false positive rate. Across groups, as Fairlearn defines them:
//   demographic_parity_difference  max - min of the selection rates
//   demographic_parity_ratio       min / max of the selection rates
//   equalized_odds_difference      the larger of the TPR and FPR differences
//                                  (max - min each)
//   equal_opportunity_difference   the TPR difference
// A rate with no samples to count over (no positives in a group for its TPR)
// is NaN, shown as n/a, and left out of the differences.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "glassbox/core/error.hpp"
#include "glassbox/core/shape.hpp"
#include "glassbox/core/text_output.hpp"

namespace glassbox::inspect {

struct GroupMetrics {
  std::string group;
  index_t samples = 0;
  index_t true_positives = 0, false_positives = 0, true_negatives = 0, false_negatives = 0;
  double accuracy = 0;
  double selection_rate = 0;       // predicted positive / samples
  double true_positive_rate = 0;   // TP / (TP + FN); NaN without positives
  double false_positive_rate = 0;  // FP / (FP + TN); NaN without negatives
};

struct GroupFairness {
  std::vector<GroupMetrics> groups;  // in order of first appearance
  double demographic_parity_difference = 0, demographic_parity_ratio = 1;
  double equalized_odds_difference = 0, equal_opportunity_difference = 0;

  std::string to_text(const std::string& attribute = "group") const {
    auto rate = [](double v) { return std::isnan(v) ? std::string("n/a") : fmt::format("{:.4f}", v); };
    std::string s = fmt::format("{:>20} {:>8} {:>9} {:>10} {:>8} {:>8}\n", attribute, "samples", "accuracy",
                                "selection", "TPR", "FPR");
    for (const GroupMetrics& g : groups)
      s += fmt::format("{:>20} {:>8} {:>9.4f} {:>10.4f} {:>8} {:>8}\n", g.group, g.samples, g.accuracy,
                       g.selection_rate, rate(g.true_positive_rate), rate(g.false_positive_rate));
    s += fmt::format(
        "demographic parity difference {:.4f} (ratio {:.4f}), equalized odds difference {:.4f}, equal opportunity "
        "difference {:.4f}\n",
        demographic_parity_difference, demographic_parity_ratio, equalized_odds_difference,
        equal_opportunity_difference);
    return s;
  }

  std::string to_json() const {
    std::string s = "{\"groups\":[";
    for (std::size_t i = 0; i < groups.size(); ++i) {
      const GroupMetrics& g = groups[i];
      s += fmt::format(
          "{}{{\"group\":{},\"samples\":{},\"tp\":{},\"fp\":{},\"tn\":{},\"fn\":{},\"accuracy\":{},"
          "\"selection_rate\":{},\"true_positive_rate\":{},\"false_positive_rate\":{}}}",
          i ? "," : "", json_string(g.group), g.samples, g.true_positives, g.false_positives, g.true_negatives,
          g.false_negatives, json_number(g.accuracy), json_number(g.selection_rate), json_number(g.true_positive_rate),
          json_number(g.false_positive_rate));
    }
    return s + fmt::format(
                   "],\"demographic_parity_difference\":{},\"demographic_parity_ratio\":{},"
                   "\"equalized_odds_difference\":{},\"equal_opportunity_difference\":{}}}",
                   json_number(demographic_parity_difference), json_number(demographic_parity_ratio),
                   json_number(equalized_odds_difference), json_number(equal_opportunity_difference));
  }
};

// predicted and truth: a class per sample (`positive` is the positive one,
// every other class negative); group: each sample's value of the sensitive
// attribute.
inline GroupFairness group_metrics(const std::vector<index_t>& predicted, const std::vector<index_t>& truth,
                                   const std::vector<std::string>& group, index_t positive = 1) {
  if (predicted.size() != truth.size() || predicted.size() != group.size() || predicted.empty())
    throw Error(fmt::format("group_metrics: {} predictions, {} labels and {} group values: one per sample, not none",
                            predicted.size(), truth.size(), group.size()));
  GroupFairness f;
  for (std::size_t i = 0; i < predicted.size(); ++i) {
    auto g = std::find_if(f.groups.begin(), f.groups.end(), [&](const GroupMetrics& m) { return m.group == group[i]; });
    if (g == f.groups.end()) {
      f.groups.push_back({});
      f.groups.back().group = group[i];
      g = f.groups.end() - 1;
    }
    ++g->samples;
    const bool said = predicted[i] == positive, is = truth[i] == positive;
    (said ? (is ? g->true_positives : g->false_positives) : (is ? g->false_negatives : g->true_negatives)) += 1;
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto ratio = [nan](index_t a, index_t b) { return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : nan; };
  for (GroupMetrics& g : f.groups) {
    g.accuracy = ratio(g.true_positives + g.true_negatives, g.samples);
    g.selection_rate = ratio(g.true_positives + g.false_positives, g.samples);
    g.true_positive_rate = ratio(g.true_positives, g.true_positives + g.false_negatives);
    g.false_positive_rate = ratio(g.false_positives, g.false_positives + g.true_negatives);
  }
  // max - min over the groups that have the rate.
  auto spread = [&](double GroupMetrics::*rate, double* low_out = nullptr, double* high_out = nullptr) {
    double low = nan, high = nan;
    for (const GroupMetrics& g : f.groups) {
      const double v = g.*rate;
      if (std::isnan(v)) continue;
      low = std::isnan(low) ? v : std::min(low, v);
      high = std::isnan(high) ? v : std::max(high, v);
    }
    if (low_out) *low_out = low;
    if (high_out) *high_out = high;
    return std::isnan(low) ? 0.0 : high - low;
  };
  double low = 0, high = 0;
  f.demographic_parity_difference = spread(&GroupMetrics::selection_rate, &low, &high);
  f.demographic_parity_ratio = high > 0 ? low / high : 1.0;  // nobody selected anywhere: parity
  f.equal_opportunity_difference = spread(&GroupMetrics::true_positive_rate);
  f.equalized_odds_difference = std::max(f.equal_opportunity_difference, spread(&GroupMetrics::false_positive_rate));
  return f;
}

}  // namespace glassbox::inspect
