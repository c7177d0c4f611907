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

//
// The record and options: inspect/activation_record.hpp; the pass that
// computes a record: inspect/activation_kernels.hpp.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/threads.hpp"
#include "glassbox/inspect/activation_kernels.hpp"
#include "glassbox/inspect/activation_record.hpp"
#include "glassbox/inspect/histogram.hpp"
#include "glassbox/inspect/record.hpp"

namespace glassbox::inspect {

// In data-parallel training (dist::DataParallel), the records of a training
// step first describe this replica's share of the global batch; merged
// (merge_pending, see inspect/record.hpp), they describe the global batch:
// counts, moments, min and max, zeros and dead units exactly (a unit is dead
// when it is zero on every replica), and histograms over the global range.
// A large output's histogram bins every k-th run of values, k chosen for
// the global batch, on each replica: a sample the size one process takes,
// though not the same values. Records of eval passes stay per replica.
template <class T>
class ActivationStats : public MergeableRecorder {
 public:
  using Options = ActivationStatsOptions;

  // Attaches to the model; detaches when destroyed (hooks capture this object,
  // so it is neither copied nor moved).
  explicit ActivationStats(Sequential<T>& model, Options options = {}) : options_(std::move(options)) {
    options_.schedule.validate("ActivationStats");
    if (options_.bins < 0 || options_.bins > max_histogram_bins)
      throw Error(fmt::format("ActivationStats: bins must be in [0, {}], got {}", max_histogram_bins, options_.bins));
    if (options_.range && !(options_.range->first < options_.range->second))
      throw Error(fmt::format("ActivationStats: histogram range [{}, {}] is empty", options_.range->first,
                              options_.range->second));
    attach_to(handles_, options_.layers, options_.schedule.hook_schedule(), [&](const HookTarget& t) {
      return model.add_forward_hook(t, [this](const ForwardEvent<T>& e) { record(e); });
    });
    // Large outputs are summarized block by block as the layer writes them,
    // when it reports blocks (model/hooks.hpp): a pre-hook begins the summary,
    // an output-block hook adds each block, and record() finishes it.
    attach_to(handles_, options_.layers, options_.schedule.hook_schedule(), [&](const HookTarget& t) {
      return model.add_forward_pre_hook(t, [this](const ForwardPreEvent<T>& e) { begin_stream(e); });
    });
    attach_to(handles_, options_.layers, options_.schedule.hook_schedule(), [&](const HookTarget& t) {
      return model.add_output_block_hook(t, [this](const OutputBlockEvent<T>& e) { add_block(e); });
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
        "hist_above,hist_zeros,hist_counts\n",
        source_csv_header());
    for (const auto& series : series_)
      for (const ActivationRecord& r : series.records) {
        s += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", source_csv(r), r.count, number_text(r.mean),
                         number_text(r.std), number_text(r.min), number_text(r.max), number_text(r.zero_fraction),
                         number_text(r.dead_fraction), number_text(r.nonfinite_fraction), number_text(r.histogram.low),
                         number_text(r.histogram.high), r.histogram.below, r.histogram.above, r.histogram.zeros,
                         fmt::join(r.histogram.counts, ";"));
      }
    return s;
  }

  std::string to_json() const {
    return "{\"recorder\":\"activation_stats\",\"layers\":[" +
           series_json(series_, "layer",
                       [](std::string& s, const ActivationRecord& r) {
                         s += fmt::format(
                             "{{{},\"count\":{},\"mean\":{},\"std\":{},\"min\":{},\"max\":{},\"zero_fraction\":{},"
                             "\"dead_fraction\":{},\"nonfinite_fraction\":{},\"histogram\":{{\"low\":{},\"high\":{},"
                             "\"below\":{},\"above\":{},\"zeros\":{},\"counts\":[{}]}}}}",
                             source_json(r), r.count, json_number(r.mean), json_number(r.std), json_number(r.min),
                             json_number(r.max), json_number(r.zero_fraction), json_number(r.dead_fraction),
                             json_number(r.nonfinite_fraction), json_number(r.histogram.low),
                             json_number(r.histogram.high), r.histogram.below, r.histogram.above, r.histogram.zeros,
                             fmt::join(r.histogram.counts, ","));
                       }) +
           "]}\n";
  }

  void write_csv(const std::string& path) const { write_text_file(path, to_csv()); }
  void write_json(const std::string& path) const { write_text_file(path, to_json()); }

  std::size_t pending() const override { return pending_.size(); }
  void set_merging(bool on) override {
    merging_ = on;
    pending_.clear();
  }
  void merge_pending(RecordReducer& reducer) override;

 private:
  // What merging a share's record needs beyond the record itself.
  struct Share {
    std::size_t series;                  // index in series_; the record is that series' newest
    std::optional<std::size_t> copy_of;  // a reshape: the merged record of that share
    index_t units = 0;                   // per sample, when dead units are counted
    std::vector<std::uint64_t> alive;    // the alive words (AliveWord), as they lie in memory
    std::vector<T> sample;               // what the histogram bins
  };

  // The size the output would have for the global batch.
  static index_t global_size(const Layer<T>& layer, index_t size) {
    const BatchShard* shard = layer.batch_shard();
    return shard && shard->count > 0 ? size / shard->count * shard->global : size;
  }

  void keep_share(const ForwardEvent<T>& e, bool reshaped, index_t every) {
    Share share{series_.size(), std::nullopt, 0, {}, {}};
    for (std::size_t i = 0; i < series_.size(); ++i)
      if (series_[i].name == e.name) share.series = i;
    if (reshaped) {
      for (std::size_t i = pending_.size(); i-- > 0 && !share.copy_of;)
        if (series_[pending_[i].series].layer_index == e.index - 1) share.copy_of = i;
      pending_.push_back(std::move(share));
      return;
    }
    if (e.output.rank() >= 2 && e.output.dim(0) > 0) {
      if (const detail::AliveWord<T>* alive = scratch_.merged_alive()) {
        share.units = scratch_.units;
        using Word = detail::AliveWord<T>;
        const std::size_t units = static_cast<std::size_t>(share.units);
        const std::size_t per = static_cast<std::size_t>(detail::units_per_alive_word<T>);
        const std::size_t bytes = (units + per - 1) / per * sizeof(Word);
        share.alive.assign((bytes + 7) / 8, 0);
        std::memcpy(share.alive.data(), alive, bytes);
      }
    }
    if (every == 1)
      share.sample.assign(e.output.begin(), e.output.end());
    else
      share.sample = scratch_.sample;
    pending_.push_back(std::move(share));
  }

  void record(const ForwardEvent<T>& e) {
    if (!options_.schedule.due(e)) return;
    ActivationRecord r;
    const bool streamed = stream_.armed && stream_.layer == e.index && stream_.depth == e.depth &&
                          same_pass(stream_.context, e) && scratch_.n == e.output.size() &&
                          scratch_.rows_done() == scratch_.rows;
    stream_.armed = false;
    const ActivationRecord* same = reshaped_from_previous(e);
    const index_t every = histogram_every(global_size(e.layer, e.output.size()));
    if (same) {
      r = *same;  // the same values in another shape: the same statistics
    } else {
      if (streamed)
        scratch_.finish(e.output.rank() >= 2, r);
      else
        detail::summarize(e.output, r, every, scratch_);
      if (every == 1)
        detail::fill_histogram(e.output.data(), e.output.size(), options_, r);
      else
        detail::fill_histogram(scratch_.sample.data(), static_cast<index_t>(scratch_.sample.size()), options_, r);
    }
    r.layer = e.name;
    r.layer_index = e.index;
    r.context = e;
    const bool share = merging_ && e.mode == Mode::train && e.layer.batch_shard() && options_.capacity > 0;
    if (share) keep_share(e, same != nullptr, every);
    series_for(series_, e.name, e.index).push(std::move(r), options_.capacity);
  }

  index_t histogram_every(index_t n) const {
    return options_.bins > 0 ? detail::histogram_stride(n, options_.histogram_values) : 1;
  }

  void begin_stream(const ForwardPreEvent<T>& e) {
    stream_.armed = false;
    if (!options_.schedule.due(e) || e.layer.reshapes_only()) return;
    const Shape out = e.layer.output_shape(e.input.shape());
    if (out.rank() < 2 || out.size() < min_block_values) return;
    scratch_.begin(out, num_threads(), histogram_every(global_size(e.layer, out.size())));
    stream_ = {true, e.index, e.depth, e};
  }

  // Runs on the layer's worker threads: each touches only its own part of
  // scratch_ (and its own values of the sample).
  void add_block(const OutputBlockEvent<T>& e) {
    if (!stream_.armed || stream_.layer != e.index || stream_.depth != e.depth) return;
    // A block that does not fit what begin_stream prepared is left out: the
    // rows then fall short, and record() summarizes the whole output instead.
    if (e.thread < 0 || static_cast<std::size_t>(e.thread) >= scratch_.threads.size() ||
        e.output.size() != scratch_.n || e.first < 0 || e.last > scratch_.rows || e.first >= e.last)
      return;
    scratch_.add_rows(e.output.data(), e.first, e.last, e.thread);
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

  // The summary that begin_stream() began, for the layer's output-block hooks.
  struct Stream {
    bool armed = false;
    std::size_t layer = 0;
    int depth = 0;
    HookContext context;
  };

  Options options_;
  std::vector<Series<ActivationRecord>> series_;
  detail::SummaryScratch<T> scratch_;
  Stream stream_;
  std::vector<HookHandle> handles_;
  bool merging_ = false;
  std::vector<Share> pending_;
};

// Two rounds over the replicas: the counts, sums, extremes and alive words;
// then the squared deviations from the global mean and the histogram counts
// over the global range.
template <class T>
void ActivationStats<T>::merge_pending(RecordReducer& reducer) {
  const std::size_t k = pending_.size();
  std::vector<double> sums(5 * k, 0.0), extremes(2 * k, -std::numeric_limits<double>::infinity());
  std::vector<double> finite(k, 0.0);  // this replica's finite values per share
  std::vector<std::uint64_t> alive;
  auto local = [&](const Share& s) -> ActivationRecord& { return series_[s.series].records.back(); };
  for (std::size_t i = 0; i < k; ++i) {
    const Share& s = pending_[i];
    if (s.copy_of) continue;
    const ActivationRecord& r = local(s);
    const double n = static_cast<double>(r.count);
    const double nonfinite = std::round(r.nonfinite_fraction * n);
    finite[i] = n - nonfinite;
    double* v = &sums[5 * i];
    v[0] = n;
    v[1] = finite[i];
    v[2] = finite[i] > 0 ? r.mean * finite[i] : 0.0;
    v[3] = std::round(r.zero_fraction * n);
    v[4] = nonfinite;
    if (finite[i] > 0) {
      extremes[2 * i] = r.max;
      extremes[2 * i + 1] = -r.min;
    }
    alive.insert(alive.end(), s.alive.begin(), s.alive.end());
  }
  reducer.sum(sums.data(), sums.size());
  reducer.max(extremes.data(), extremes.size());
  if (!alive.empty()) reducer.bit_or(alive.data(), alive.size());

  std::vector<ActivationRecord> merged(k);
  std::vector<double> second;
  std::size_t offset = 0;
  for (std::size_t i = 0; i < k; ++i) {
    const Share& s = pending_[i];
    if (s.copy_of) continue;
    const ActivationRecord& r = local(s);
    ActivationRecord& g = merged[i];
    const double* v = &sums[5 * i];
    g.count = static_cast<index_t>(v[0]);
    g.zero_fraction = v[0] > 0 ? v[3] / v[0] : 0;
    g.nonfinite_fraction = v[0] > 0 ? v[4] / v[0] : 0;
    if (v[1] > 0) {
      g.mean = v[2] / v[1];
      g.max = extremes[2 * i];
      g.min = -extremes[2 * i + 1];
    }
    if (s.units > 0) {
      const auto* words = reinterpret_cast<const detail::AliveWord<T>*>(alive.data() + offset);
      g.dead_fraction = static_cast<double>(detail::dead_units<T>(words, s.units)) / static_cast<double>(s.units);
    }
    offset += s.alive.size();
    // This replica's squared deviations from the global mean (Chan et al.).
    const double n = finite[i], d = n > 0 ? r.mean - g.mean : 0.0;
    second.push_back(n > 0 ? r.std * r.std * n + n * d * d : 0.0);
    detail::fill_histogram(s.sample.data(), static_cast<index_t>(s.sample.size()), options_, g);
    for (const std::uint64_t c : g.histogram.counts) second.push_back(static_cast<double>(c));
    second.push_back(static_cast<double>(g.histogram.below));
    second.push_back(static_cast<double>(g.histogram.above));
    second.push_back(static_cast<double>(g.histogram.zeros));
  }
  reducer.sum(second.data(), second.size());

  std::size_t at = 0;
  for (std::size_t i = 0; i < k; ++i) {
    const Share& s = pending_[i];
    ActivationRecord& r = local(s);
    ActivationRecord& g = merged[i];
    if (s.copy_of) {
      g = merged[*s.copy_of];  // the same values in another shape
    } else {
      const double n = sums[5 * i + 1];
      if (n > 0) g.std = std::sqrt(second[at] / n);
      ++at;
      for (std::uint64_t& c : g.histogram.counts) c = static_cast<std::uint64_t>(second[at++]);
      g.histogram.below = static_cast<std::uint64_t>(second[at++]);
      g.histogram.above = static_cast<std::uint64_t>(second[at++]);
      g.histogram.zeros = static_cast<std::uint64_t>(second[at++]);
    }
    static_cast<RecordSource&>(g) = r;
    r = g;
  }
  pending_.clear();
}

GLASSBOX_PRECOMPILED_INSTANCE(class ActivationStats<float>)
}  // namespace glassbox::inspect
