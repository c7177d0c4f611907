#pragma once
// RecurrentStats: what happens inside a recurrent layer, step by step. For
// each recorded pass of a SimpleRNN, LSTM or GRU: the mean of every gate over
// the batch and the units at each time step (LSTM: input, forget, cell,
// output; GRU: reset, update, new; SimpleRNN: hidden), the mean |h_t|, and
// after backward the L2 norm of dLoss/dh_t per step, the picture of a
// gradient vanishing back through time. Built on the public hook API (a
// forward and a backward hook) and the layers' gate_values() /
// hidden_states() / step_grad_norms(); layers that are not recurrent are
// skipped. Bounded memory: `capacity` records per layer.

#include <fmt/format.h>

#include <string>
#include <vector>

#include "glassbox/inspect/record.hpp"
#include "glassbox/nn/recurrent.hpp"

namespace glassbox::inspect {

struct RecurrentRecord : RecordSource {
  std::vector<std::string> gates;         // gate names, in the layer's order
  std::vector<std::vector<double>> mean;  // [gate][step]: mean gate value
  std::vector<double> hidden_mean_abs;    // [step]: mean |h_t|
  std::vector<double> grad_norm;          // [step]: ||dLoss/dh_t||; empty without a backward
};

struct RecurrentStatsOptions {
  Schedule schedule;               // default: every training step
  std::vector<HookTarget> layers;  // empty: every layer (the recurrent ones are recorded)
  std::size_t capacity = 1000;     // records kept per layer
};

template <class T>
class RecurrentStats {
 public:
  using Options = RecurrentStatsOptions;

  explicit RecurrentStats(Sequential<T>& model, Options options = {}) : options_(std::move(options)) {
    options_.schedule.validate("RecurrentStats");
    attach_to(handles_, options_.layers, options_.schedule.hook_schedule(), [&](const HookTarget& t) {
      return model.add_forward_hook(t, [this](const ForwardEvent<T>& e) { record(e); });
    });
    attach_to(handles_, options_.layers, options_.schedule.hook_schedule(), [&](const HookTarget& t) {
      return model.add_backward_hook(t, [this](const BackwardEvent<T>& e) { record_gradients(e); });
    });
  }
  RecurrentStats(const RecurrentStats&) = delete;
  RecurrentStats& operator=(const RecurrentStats&) = delete;

  void detach() { handles_.clear(); }
  const std::vector<Series<RecurrentRecord>>& all() const { return series_; }
  const Series<RecurrentRecord>& series(const std::string& layer) const {
    return find_series(series_, layer, "RecurrentStats");
  }

  // One row per record and time step.
  std::string to_csv() const {
    std::string s = fmt::format("{},t,gate_means,hidden_mean_abs,grad_norm\n", source_csv_header());
    for (const auto& series : series_)
      for (const RecurrentRecord& r : series.records)
        for (std::size_t t = 0; t < r.hidden_mean_abs.size(); ++t) {
          std::string gates;
          for (std::size_t g = 0; g < r.gates.size(); ++g)
            gates += fmt::format("{}{}={}", g ? ";" : "", r.gates[g], number_text(r.mean[g][t]));
          s += fmt::format("{},{},{},{},{}\n", source_csv(r), t, gates, number_text(r.hidden_mean_abs[t]),
                           t < r.grad_norm.size() ? number_text(r.grad_norm[t]) : "");
        }
    return s;
  }

  std::string to_json() const {
    std::string s = "{\"recorder\":\"recurrent_stats\",\"layers\":[";
    s += series_json(series_, "layer", [](std::string& out, const RecurrentRecord& r) {
      out += fmt::format("{{{},\"gates\":{{", source_json(r));
      for (std::size_t g = 0; g < r.gates.size(); ++g)
        out += fmt::format("{}{}:{}", g ? "," : "", json_string(r.gates[g]), numbers(r.mean[g]));
      out +=
          fmt::format("}},\"hidden_mean_abs\":{},\"grad_norm\":{}}}", numbers(r.hidden_mean_abs), numbers(r.grad_norm));
    });
    return s + "]}\n";
  }
  void write_csv(const std::string& path) const { write_text_file(path, to_csv()); }
  void write_json(const std::string& path) const { write_text_file(path, to_json()); }

 private:
  static std::string numbers(const std::vector<double>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + json_number(v[i]);
    return s + "]";
  }

  static std::vector<std::string> gate_names(const std::string& kind) {
    if (kind == "lstm") return {"input", "forget", "cell", "output"};
    if (kind == "gru") return {"reset", "update", "new"};
    return {"hidden"};
  }

  void record(const ForwardEvent<T>& e) {
    const auto* cell = dynamic_cast<const nn::Recurrent<T>*>(&e.layer);
    if (!cell || !options_.schedule.due(e)) return;
    const Tensor<T>& acts = cell->gate_values();
    const Tensor<T>& hs = cell->hidden_states();
    const index_t steps = acts.dim(0), n = acts.dim(1), hidden = cell->hidden_size();
    RecurrentRecord r;
    r.layer = e.name;
    r.layer_index = e.index;
    r.context = e;
    r.gates = gate_names(e.layer.kind());
    r.mean.assign(r.gates.size(), std::vector<double>(static_cast<std::size_t>(steps)));
    r.hidden_mean_abs.resize(static_cast<std::size_t>(steps));
    const double per_gate = static_cast<double>(n * hidden);
    for (index_t t = 0; t < steps; ++t) {
      const auto a = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
          acts.data() + t * n * cell->gates() * hidden, n, cell->gates() * hidden);
      for (std::size_t g = 0; g < r.gates.size(); ++g)
        r.mean[g][static_cast<std::size_t>(t)] =
            static_cast<double>(a.middleCols(static_cast<index_t>(g) * hidden, hidden).sum()) / per_gate;
      const auto h = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(hs.data() + t * n * hidden, n * hidden);
      r.hidden_mean_abs[static_cast<std::size_t>(t)] = static_cast<double>(h.abs().sum()) / per_gate;
    }
    series_for(series_, e.name, e.index).push(std::move(r), options_.capacity);
  }

  // The newest record of this layer, when it is from the same pass.
  void record_gradients(const BackwardEvent<T>& e) {
    const auto* cell = dynamic_cast<const nn::Recurrent<T>*>(&e.layer);
    if (!cell) return;
    for (auto& series : series_)
      if (series.name == e.name && !series.records.empty() && same_pass(series.records.back().context, e))
        series.records.back().grad_norm = cell->step_grad_norms();
  }

  Options options_;
  std::vector<Series<RecurrentRecord>> series_;
  std::vector<HookHandle> handles_;
};

}  // namespace glassbox::inspect
