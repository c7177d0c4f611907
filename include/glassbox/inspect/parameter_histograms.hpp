#pragma once
// ParameterHistograms<T>: how each parameter's values and gradients are
// distributed, recorded before training and after every epoch (a callback of
// fit), the view of TensorBoard's weight and gradient histograms:
//
//   inspect::ParameterHistograms<float> params(model);
//   train::FitOptions o;  o.callbacks = {&params};
//   fit(...);
//   params.series("conv2d_1.weight").records  // before training, then one per epoch
//
// A record's gradient is the last training step's (what the optimizer used);
// before any step it is empty. In data-parallel training the callback runs on
// rank 0, where the parameters and the averaged gradients are every rank's.

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "glassbox/core/parameter.hpp"
#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/text_output.hpp"
#include "glassbox/inspect/histogram.hpp"
#include "glassbox/inspect/record.hpp"
#include "glassbox/model/sequential.hpp"
#include "glassbox/train/callback.hpp"

namespace glassbox::inspect {

// The finite values' count, mean, std, min and max, and their histogram.
struct ValueSummary {
  index_t count = 0;  // finite values
  double mean = std::numeric_limits<double>::quiet_NaN();
  double std = std::numeric_limits<double>::quiet_NaN();
  double min = std::numeric_limits<double>::quiet_NaN();
  double max = std::numeric_limits<double>::quiet_NaN();
  Histogram histogram;
};

struct ParameterHistogramRecord : RecordSource {  // layer: the parameter's name
  long long steps_taken = 0;                      // training steps before the record
  int epochs_done = 0;                            // 0: before training
  ValueSummary value;
  ValueSummary grad;  // count 0 when the parameter has no gradient yet
};

struct ParameterHistogramsOptions {
  int bins = 30;                // as TensorBoard's; at most max_histogram_bins
  bool at_train_begin = true;   // the initial values, before the first step
  std::size_t capacity = 1000;  // records kept per parameter
};

namespace detail {
template <class T>
ValueSummary summarize_values(const Tensor<T>& values, int bins) {
  ValueSummary s;
  double sum = 0, low = std::numeric_limits<double>::infinity(), high = -low;
  for (const T v : values)
    if (std::isfinite(v)) {
      ++s.count;
      sum += static_cast<double>(v);
      low = std::min(low, static_cast<double>(v));
      high = std::max(high, static_cast<double>(v));
    }
  if (s.count == 0) return s;
  s.mean = sum / static_cast<double>(s.count);
  double squares = 0;  // two passes: accurate when |mean| >> std
  for (const T v : values)
    if (std::isfinite(v)) squares += (static_cast<double>(v) - s.mean) * (static_cast<double>(v) - s.mean);
  s.std = std::sqrt(squares / static_cast<double>(s.count));
  s.min = low;
  s.max = high;
  fill_histogram(values.data(), values.size(), bins, std::nullopt, low, high, s.histogram);
  return s;
}

inline std::string value_summary_csv(const ValueSummary& s) {
  return fmt::format("{},{},{},{},{},{},{},{},{}", s.count, number_text(s.mean), number_text(s.std), number_text(s.min),
                     number_text(s.max), number_text(s.histogram.low), number_text(s.histogram.high), s.histogram.zeros,
                     fmt::join(s.histogram.counts, ";"));
}

inline std::string value_summary_json(const ValueSummary& s) {
  return fmt::format(
      "{{\"count\":{},\"mean\":{},\"std\":{},\"min\":{},\"max\":{},\"histogram\":{{\"low\":{},\"high\":{},"
      "\"zeros\":{},\"counts\":[{}]}}}}",
      s.count, json_number(s.mean), json_number(s.std), json_number(s.min), json_number(s.max),
      json_number(s.histogram.low), json_number(s.histogram.high), s.histogram.zeros,
      fmt::join(s.histogram.counts, ","));
}
}  // namespace detail

template <class T>
class ParameterHistograms : public train::Callback {
 public:
  using Options = ParameterHistogramsOptions;

  // The model must outlive the recorder and stay where it is.
  explicit ParameterHistograms(Sequential<T>& model, Options options = {}) : model_(model), options_(options) {
    if (options_.bins < 1 || options_.bins > max_histogram_bins)
      throw Error(
          fmt::format("ParameterHistograms: bins must be in [1, {}], got {}", max_histogram_bins, options_.bins));
  }

  // Records every parameter now, after `epochs_done` epochs.
  void record(int epochs_done) {
    for (std::size_t i = 0; i < model_.size(); ++i)
      for (const Parameter<T>* p : model_.layer(i).parameters()) {
        ParameterHistogramRecord r;
        r.layer = p->name;
        r.layer_index = i;
        r.context = model_.context();
        r.steps_taken = model_.training_steps();
        r.epochs_done = epochs_done;
        r.value = detail::summarize_values(p->value, options_.bins);
        if (p->grad.size() == p->value.size() && model_.training_steps() > 0)
          r.grad = detail::summarize_values(p->grad, options_.bins);
        series_for(series_, p->name, i).push(std::move(r), options_.capacity);
      }
  }

  void on_train_begin() override {
    if (options_.at_train_begin) record(0);
  }
  void on_epoch_end(const train::EpochLogs& logs) override { record(logs.epoch + 1); }

  const std::vector<Series<ParameterHistogramRecord>>& all() const { return series_; }
  const Series<ParameterHistogramRecord>& series(const std::string& parameter) const {
    return find_series(series_, parameter, "ParameterHistograms");
  }

  // One row per record: the values' columns, then the gradient's (empty
  // counts and nan before the first step). Counts are ';'-separated.
  std::string to_csv() const {
    std::string s = source_csv_header();
    s += ",steps_taken,epochs_done";
    for (const char* of : {"value", "grad"})
      s += fmt::format(
          ",{0}_count,{0}_mean,{0}_std,{0}_min,{0}_max,{0}_hist_low,{0}_hist_high,{0}_hist_zeros,"
          "{0}_hist_counts",
          of);
    s += "\n";
    for (const auto& series : series_)
      for (const ParameterHistogramRecord& r : series.records)
        s += fmt::format("{},{},{},{},{}\n", source_csv(r), r.steps_taken, r.epochs_done,
                         detail::value_summary_csv(r.value), detail::value_summary_csv(r.grad));
    return s;
  }

  std::string to_json() const {
    std::string s = "{\"recorder\":\"parameter_histograms\",\"parameters\":[";
    s += series_json(series_, "parameter", [](std::string& out, const ParameterHistogramRecord& r) {
      out += fmt::format("{{{},\"steps_taken\":{},\"epochs_done\":{},\"value\":{},\"grad\":{}}}", source_json(r),
                         r.steps_taken, r.epochs_done, detail::value_summary_json(r.value),
                         detail::value_summary_json(r.grad));
    });
    return s + "]}\n";
  }
  void write_csv(const std::string& path) const { write_text_file(path, to_csv()); }
  void write_json(const std::string& path) const { write_text_file(path, to_json()); }

 private:
  Sequential<T>& model_;
  Options options_;
  std::vector<Series<ParameterHistogramRecord>> series_;
};

GLASSBOX_PRECOMPILED_INSTANCE(class ParameterHistograms<float>)
}  // namespace glassbox::inspect
