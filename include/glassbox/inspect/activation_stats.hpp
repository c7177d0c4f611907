#pragma once
// ActivationStats: per layer and per recorded pass, summary statistics of the
// layer's output: mean, std, min, max (over the finite values), the fraction
// of exact zeros, the fraction of dead units, the fraction of non-finite
// values, and a histogram.
//
// A unit is one element of a sample (a neuron; for NCHW outputs one (c, h, w)
// position); it is dead in a batch when it is exactly zero for every sample.
// Memory is bounded: each layer keeps its newest `capacity` records (a ring;
// older ones are dropped and counted), and `schedule.every` strides the steps.
//
//   inspect::ActivationStats<float> stats(model);          // every layer, every step
//   ... train ...
//   stats.series("conv2d_1").records.back().dead_fraction

#include <fmt/format.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "glassbox/inspect/record.hpp"

namespace glassbox::inspect {

struct Histogram {
  double low = 0;  // bins split [low, high] evenly; the last bin includes high
  double high = 0;
  std::vector<std::uint64_t> counts;
  std::uint64_t below = 0;  // finite values outside a fixed range
  std::uint64_t above = 0;
};

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
  int bins = 32;                   // 0: no histogram
  // Fixed histogram range; without it each record's bins span its own min..max.
  std::optional<std::pair<double, double>> range;
  // Histogram from every k-th value so that at most this many are binned
  // (0: all values). The statistics always use every value.
  index_t histogram_values = 0;
  std::size_t capacity = 1000;  // records kept per layer
};

namespace detail {

// Mean and sum of squared deviations of a block, merged into running totals
// (Chan et al.), so the std stays accurate when |mean| >> std.
struct Moments {
  double count = 0, mean = 0, m2 = 0;
  void merge(double n, double block_mean, double block_m2) {
    if (n == 0) return;
    const double total = count + n;
    const double delta = block_mean - mean;
    mean += delta * n / total;
    m2 += block_m2 + delta * delta * count * n / total;
    count = total;
  }
};

template <class T>
void summarize_values(const T* data, index_t n, ActivationRecord& r) {
  using Block = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
  constexpr index_t block_size = 4096;  // stays in L1 across the passes below
  Moments moments;
  T lo = std::numeric_limits<T>::infinity(), hi = -std::numeric_limits<T>::infinity();
  index_t zeros = 0, nonfinite = 0;
  for (index_t start = 0; start < n; start += block_size) {
    const index_t len = std::min(block_size, n - start);
    const Block a(data + start, len);
    if (a.allFinite()) {
      const double block_mean = static_cast<double>(a.sum()) / static_cast<double>(len);
      moments.merge(static_cast<double>(len), block_mean, static_cast<double>((a - T(block_mean)).square().sum()));
      lo = std::min(lo, a.minCoeff());
      hi = std::max(hi, a.maxCoeff());
      zeros += (a == T(0)).count();
      continue;
    }
    for (index_t i = 0; i < len; ++i) {  // rare: a block holding NaN or inf
      const T x = a(i);
      if (!std::isfinite(x)) {
        ++nonfinite;
        continue;
      }
      moments.merge(1, static_cast<double>(x), 0);
      lo = std::min(lo, x);
      hi = std::max(hi, x);
      zeros += x == T(0);
    }
  }
  r.count = n;
  if (moments.count > 0) {
    r.mean = moments.mean;
    r.std = std::sqrt(moments.m2 / moments.count);
    r.min = static_cast<double>(lo);
    r.max = static_cast<double>(hi);
  }
  if (n > 0) {
    r.zero_fraction = static_cast<double>(zeros) / static_cast<double>(n);
    r.nonfinite_fraction = static_cast<double>(nonfinite) / static_cast<double>(n);
  }
}

// Fraction of units that are exactly zero in every sample; `magnitude` is a
// reused buffer of one sample's size. A NaN unit counts as alive.
template <class T>
double dead_fraction(const Tensor<T>& y, Eigen::Array<T, Eigen::Dynamic, 1>& magnitude) {
  if (y.rank() < 2 || y.dim(0) == 0 || y.size() == 0) return 0;
  const index_t units = y.size() / y.dim(0);
  magnitude.setZero(units);
  for (index_t n = 0; n < y.dim(0); ++n)
    magnitude += Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(y.data() + n * units, units).abs();
  return static_cast<double>((magnitude == T(0)).count()) / static_cast<double>(units);
}

template <class T>
void fill_histogram(const T* data, index_t n, const ActivationStatsOptions& o, ActivationRecord& r) {
  Histogram& h = r.histogram;
  if (o.bins <= 0) return;
  h.counts.assign(static_cast<std::size_t>(o.bins), 0);
  if (o.range) {
    h.low = o.range->first;
    h.high = o.range->second;
  } else if (!std::isnan(r.min)) {
    h.low = r.min;
    h.high = r.max > r.min ? r.max : r.min + 1;  // one value: one bin of width 1/bins above it
  } else {
    return;  // no finite value to bin
  }
  const double scale = static_cast<double>(o.bins) / (h.high - h.low);
  const index_t stride =
      o.histogram_values > 0 ? std::max<index_t>(1, (n + o.histogram_values - 1) / o.histogram_values) : 1;
  const auto last = static_cast<std::size_t>(o.bins - 1);
  for (index_t i = 0; i < n; i += stride) {
    const double x = static_cast<double>(data[i]);
    if (!std::isfinite(x)) continue;
    if (x < h.low) {
      ++h.below;
    } else if (x > h.high) {
      ++h.above;
    } else {
      ++h.counts[std::min(static_cast<std::size_t>((x - h.low) * scale), last)];
    }
  }
}

}  // namespace detail

template <class T>
class ActivationStats {
 public:
  using Options = ActivationStatsOptions;

  // Attaches to the model; detaches when destroyed (hooks capture this object,
  // so it is neither copied nor moved).
  explicit ActivationStats(Sequential<T>& model, Options options = {}) : options_(std::move(options)) {
    options_.schedule.validate("ActivationStats");
    if (options_.range && !(options_.range->first < options_.range->second))
      throw Error(fmt::format("ActivationStats: histogram range [{}, {}] is empty", options_.range->first,
                              options_.range->second));
    handles_ = attach_to(options_.layers, [&](const HookTarget& t) {
      return model.add_forward_hook(t, [this](const ForwardEvent<T>& e) { record(e); });
    });
  }

  ActivationStats(const ActivationStats&) = delete;
  ActivationStats& operator=(const ActivationStats&) = delete;

  // Stops recording (the records stay).
  void detach() { handles_.clear(); }

  const std::vector<Series<ActivationRecord>>& all() const { return series_; }
  const Series<ActivationRecord>& series(const std::string& layer) const {
    return find_series(series_, layer, "ActivationStats");
  }
  const Options& options() const { return options_; }

  // One row per record. Histogram counts are ';'-separated in one column.
  std::string to_csv() const {
    std::string s = fmt::format(
        "{},count,mean,std,min,max,zero_fraction,dead_fraction,nonfinite_fraction,hist_low,hist_high,hist_below,"
        "hist_above,hist_counts\n",
        source_csv_header());
    for (const auto& series : series_)
      for (const ActivationRecord& r : series.records) {
        s += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", source_csv(r), r.count, number_text(r.mean),
                         number_text(r.std), number_text(r.min), number_text(r.max), number_text(r.zero_fraction),
                         number_text(r.dead_fraction), number_text(r.nonfinite_fraction), number_text(r.histogram.low),
                         number_text(r.histogram.high), r.histogram.below, r.histogram.above,
                         fmt::join(r.histogram.counts, ";"));
      }
    return s;
  }

  std::string to_json() const {
    std::string s = "{\"recorder\":\"activation_stats\",\"layers\":[";
    for (std::size_t i = 0; i < series_.size(); ++i) {
      const auto& series = series_[i];
      s += fmt::format("{}{{\"layer\":{},\"layer_index\":{},\"dropped\":{},\"records\":[", i ? "," : "",
                       json_string(series.name), series.layer_index, series.dropped);
      bool first = true;
      for (const ActivationRecord& r : series.records) {
        s += fmt::format(
            "{}{{{},\"count\":{},\"mean\":{},\"std\":{},\"min\":{},\"max\":{},\"zero_fraction\":{},"
            "\"dead_fraction\":{},\"nonfinite_fraction\":{},\"histogram\":{{\"low\":{},\"high\":{},\"below\":{},"
            "\"above\":{},\"counts\":[{}]}}}}",
            first ? "" : ",", source_json(r), r.count, json_number(r.mean), json_number(r.std), json_number(r.min),
            json_number(r.max), json_number(r.zero_fraction), json_number(r.dead_fraction),
            json_number(r.nonfinite_fraction), json_number(r.histogram.low), json_number(r.histogram.high),
            r.histogram.below, r.histogram.above, fmt::join(r.histogram.counts, ","));
        first = false;
      }
      s += "]}";
    }
    return s + "]}\n";
  }

  void write_csv(const std::string& path) const { write_text_file(path, to_csv()); }
  void write_json(const std::string& path) const { write_text_file(path, to_json()); }

 private:
  void record(const ForwardEvent<T>& e) {
    if (!options_.schedule.due(e)) return;
    ActivationRecord r;
    r.layer = e.name;
    r.layer_index = e.index;
    r.context = e;
    detail::summarize_values(e.output.data(), e.output.size(), r);
    r.dead_fraction = detail::dead_fraction(e.output, magnitude_);
    detail::fill_histogram(e.output.data(), e.output.size(), options_, r);
    series_for(series_, e.name, e.index).push(std::move(r), options_.capacity);
  }

  Options options_;
  std::vector<Series<ActivationRecord>> series_;
  Eigen::Array<T, Eigen::Dynamic, 1> magnitude_;
  std::vector<HookHandle> handles_;
};

}  // namespace glassbox::inspect
