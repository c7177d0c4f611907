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

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/threads.hpp"
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
  // The histogram bins every k-th value, k chosen so that at most this many
  // are binned (0: every value); a strided sample keeps recording every step
  // cheap on large feature maps. The statistics always use every value.
  index_t histogram_values = 16384;
  std::size_t capacity = 1000;  // records kept per layer
};

namespace detail {

// Mean and sum of squared deviations, merged block by block (Chan et al.),
// so the std stays accurate when |mean| >> std.
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
struct Summary {
  Moments moments;
  T lo = std::numeric_limits<T>::infinity();
  T hi = -std::numeric_limits<T>::infinity();
  index_t zeros = 0, nonfinite = 0;

  void merge(const Summary& o) {
    moments.merge(o.moments.count, o.moments.mean, o.moments.m2);
    lo = std::min(lo, o.lo);
    hi = std::max(hi, o.hi);
    zeros += o.zeros;
    nonfinite += o.nonfinite;
  }
};

// One fused pass over a chunk (<= 4096 values, so T sums stay accurate):
// shifted sums, min, max, zeros, and |x| added into the per-unit magnitudes
// for the dead-unit count. A NaN or inf makes the sum of squares non-finite
// (so does a finite value whose square overflows), which sends the chunk to a
// second pass, value by value, that counts the non-finite values and leaves
// them out. Testing the sum instead of every value saves two of the pass's
// vector instructions per 16 values: it is bound by vector arithmetic.
template <class T>
void summarize_chunk(const T* x, index_t len, T* magnitude, Summary<T>& out) {
  const T shift = x[0];
  T s1 = 0, s2 = 0, lo = std::numeric_limits<T>::infinity(), hi = -lo;
  int zeros = 0;
#ifdef _OPENMP
#pragma omp simd reduction(+ : s1, s2, zeros) reduction(min : lo) reduction(max : hi)
#endif
  for (index_t i = 0; i < len; ++i) {
    const T v = x[i];
    magnitude[i] += std::abs(v);
    const T d = v - shift;
    s1 += d;
    s2 += d * d;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    zeros += v == T(0);
  }
  if (std::isfinite(s2)) {
    const double n = static_cast<double>(len), sum = static_cast<double>(s1);
    out.moments.merge(n, static_cast<double>(shift) + sum / n, std::max(0.0, static_cast<double>(s2) - sum * sum / n));
    out.lo = std::min(out.lo, lo);
    out.hi = std::max(out.hi, hi);
    out.zeros += zeros;
    return;
  }
  for (index_t i = 0; i < len; ++i) {  // rare: a chunk holding NaN or inf
    const T v = x[i];
    if (!std::isfinite(v)) {
      ++out.nonfinite;
      continue;
    }
    out.moments.merge(1, static_cast<double>(v), 0);
    out.lo = std::min(out.lo, v);
    out.hi = std::max(out.hi, v);
    out.zeros += v == T(0);
  }
}

// Statistics of y's values into r, and the fraction of dead units. Samples are
// spread over the threads; each thread keeps its own per-unit magnitudes.
template <class T>
void summarize(const Tensor<T>& y, ActivationRecord& r, std::vector<Eigen::Array<T, Eigen::Dynamic, 1>>& magnitudes) {
  constexpr index_t chunk = 4096;
  const index_t n = y.size();
  r.count = n;
  if (n == 0) return;
  const index_t rows = y.rank() >= 2 ? y.dim(0) : 1;
  const index_t units = n / rows;
  const int threads = static_cast<int>(std::min<index_t>(n < 65536 ? 1 : num_threads(), rows));
  magnitudes.resize(static_cast<std::size_t>(threads));
  std::vector<Summary<T>> partial(static_cast<std::size_t>(threads));
  parallel_for(threads, threads, [&](std::ptrdiff_t t) {
    auto& magnitude = magnitudes[static_cast<std::size_t>(t)];
    magnitude.setZero(units);
    for (index_t row = rows * t / threads; row < rows * (t + 1) / threads; ++row)
      for (index_t u = 0; u < units; u += chunk)
        summarize_chunk(y.data() + row * units + u, std::min(chunk, units - u), magnitude.data() + u,
                        partial[static_cast<std::size_t>(t)]);
  });
  Summary<T> total;
  for (const Summary<T>& p : partial) total.merge(p);
  for (int t = 1; t < threads; ++t) magnitudes[0] += magnitudes[static_cast<std::size_t>(t)];

  if (total.moments.count > 0) {
    r.mean = total.moments.mean;
    r.std = std::sqrt(total.moments.m2 / total.moments.count);
    r.min = static_cast<double>(total.lo);
    r.max = static_cast<double>(total.hi);
  }
  r.zero_fraction = static_cast<double>(total.zeros) / static_cast<double>(n);
  r.nonfinite_fraction = static_cast<double>(total.nonfinite) / static_cast<double>(n);
  // A unit is dead when zero in every sample; a NaN unit counts as alive.
  if (y.rank() >= 2)
    r.dead_fraction = static_cast<double>((magnitudes[0] == T(0)).count()) / static_cast<double>(units);
}

// Bins the values into r.histogram. Values are taken in runs of 16
// consecutive ones (one cache line of floats), every k-th run, k chosen so
// that at most o.histogram_values are binned. Each run's slots are computed
// in a vectorisable loop: 0 below the range, 1..bins the bins, bins + 1 above,
// bins + 2 non-finite; four interleaved tallies keep repeated slots (all the
// zeros after a ReLU) from serialising the increments.
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
  constexpr index_t run = 16;
  const index_t runs = (n + run - 1) / run;
  const index_t max_runs = o.histogram_values > 0 ? std::max<index_t>(1, o.histogram_values / run) : runs;
  const index_t every = std::max<index_t>(1, (runs + max_runs - 1) / max_runs);
  const int bins = o.bins;
  const T low = static_cast<T>(h.low), scale = static_cast<T>(bins / (h.high - h.low));
  const std::size_t slots = static_cast<std::size_t>(bins) + 3;
  const T bins_t = static_cast<T>(bins);
  std::vector<std::uint64_t> tally(4 * slots, 0);
  int slot[run];
  auto slot_of = [&](T v) {
    const T p = (v - low) * scale;
    T q = p < T(0) ? T(-1) : p < bins_t ? p : p == bins_t ? bins_t - 1 : bins_t;
    q = std::abs(v) <= std::numeric_limits<T>::max() ? q : bins_t + 1;
    return static_cast<int>(q) + 1;
  };
  for (index_t k = 0; k < runs; k += every) {
    const T* x = data + k * run;
#if defined(__GNUC__)
    // The runs are far apart: fetch a few ahead, or every run waits on a cache miss.
    if (k + 8 * every < runs) __builtin_prefetch(data + (k + 8 * every) * run);
#endif
    if (k * run + run <= n) {
      for (index_t i = 0; i < run; ++i) slot[i] = slot_of(x[i]);  // fixed trip count: vectorised
      for (std::size_t i = 0; i < static_cast<std::size_t>(run); ++i)
        ++tally[(i % 4) * slots + static_cast<std::size_t>(slot[i])];
    } else {
      for (index_t i = 0; k * run + i < n; ++i) ++tally[static_cast<std::size_t>(slot_of(x[i]))];
    }
  }
  for (std::size_t lane = 1; lane < 4; ++lane)
    for (std::size_t s = 0; s < slots; ++s) tally[s] += tally[lane * slots + s];
  std::copy(tally.begin() + 1, tally.begin() + 1 + bins, h.counts.begin());
  h.below = tally[0];
  h.above = tally[static_cast<std::size_t>(bins) + 1];
  if (!o.range) {  // an adaptive range holds every finite value: outside it is rounding
    h.counts.front() += h.below;
    h.counts.back() += h.above;
    h.below = h.above = 0;
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
    if (const ActivationRecord* same = reshaped_from_previous(e)) {
      r = *same;  // the same values in another shape: the same statistics
    } else {
      detail::summarize(e.output, r, magnitudes_);
      detail::fill_histogram(e.output.data(), e.output.size(), options_, r);
    }
    r.layer = e.name;
    r.layer_index = e.index;
    r.context = e;
    series_for(series_, e.name, e.index).push(std::move(r), options_.capacity);
  }

  // For a layer that only reshapes (Flatten), the record this pass made of
  // the layer before it, whose output is this layer's input; else null.
  const ActivationRecord* reshaped_from_previous(const ForwardEvent<T>& e) const {
    if (!e.layer.reshapes_only() || e.index == 0 || e.depth > 0) return nullptr;  // inside a block: no neighbours
    for (const auto& series : series_)
      if (series.layer_index == e.index - 1 && !series.records.empty() && same_pass(series.records.back().context, e))
        return &series.records.back();
    return nullptr;
  }

  Options options_;
  std::vector<Series<ActivationRecord>> series_;
  std::vector<Eigen::Array<T, Eigen::Dynamic, 1>> magnitudes_;  // per thread, reused
  std::vector<HookHandle> handles_;
};

GLASSBOX_PRECOMPILED_INSTANCE(class ActivationStats<float>)
}  // namespace glassbox::inspect
