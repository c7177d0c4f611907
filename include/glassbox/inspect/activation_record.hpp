#pragma once
// What ActivationStats (inspect/activation_stats.hpp) records of a layer's
// output per recorded pass, and its options.

#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "glassbox/inspect/histogram.hpp"
#include "glassbox/inspect/record.hpp"

namespace glassbox::inspect {

struct ActivationRecord : RecordSource {
  index_t count = 0;  // values in the output tensor
  double mean = std::numeric_limits<double>::quiet_NaN();
  double std = std::numeric_limits<double>::quiet_NaN();  // population std
  double min = std::numeric_limits<double>::quiet_NaN();
  double max = std::numeric_limits<double>::quiet_NaN();
  double zero_fraction = 0;
  double dead_fraction = 0;
  double nonfinite_fraction = 0;
  Histogram histogram;
};

struct ActivationStatsOptions {
  Schedule schedule;               // default: every training step
  std::vector<HookTarget> layers;  // empty: every layer
  int bins = 32;                   // 0: no histogram; at most max_histogram_bins
  // Fixed histogram range; without it each record's bins span its own min..max.
  std::optional<std::pair<double, double>> range;
  // The histogram bins every k-th value, k chosen so that at most this many
  // are binned (0: every value); a strided sample keeps recording every step
  // cheap on large feature maps. The statistics always use every value.
  index_t histogram_values = 16384;
  std::size_t capacity = 1000;  // records kept per layer
};

}  // namespace glassbox::inspect
