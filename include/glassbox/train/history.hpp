#pragma once
// Per-epoch and per-batch metrics of a training run. Metrics that do not
// apply (accuracy of a regression, validation without validation data) are NaN.

#include <cmath>
#include <limits>
#include <vector>

#include "glassbox/core/error.hpp"

namespace glassbox::train {

inline constexpr double not_measured = std::numeric_limits<double>::quiet_NaN();

struct BatchLogs {
  long long batch = 0;  // index within the epoch
  double loss = not_measured;
  double accuracy = not_measured;  // running mean over the epoch so far
};

struct EpochLogs {
  int epoch = 0;  // 0-based
  double loss = not_measured;
  double accuracy = not_measured;
  double val_loss = not_measured;
  double val_accuracy = not_measured;
  double seconds = 0;
};

struct History {
  std::vector<EpochLogs> epochs;
  const EpochLogs& last() const {
    if (epochs.empty()) throw Error("History::last: no epoch was trained");
    return epochs.back();
  }
};

}  // namespace glassbox::train
