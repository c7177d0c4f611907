#pragma once
// GradientFlow: how gradients travel through a model during training.
//
// Per layer and recorded step: L2 norm and max |.| of the gradient with
// respect to the layer's output. Per parameter: L2 norm and max |.| of its
// gradient, the L2 norm of its value, and the update-to-weight ratio
// ||w_after - w_before|| / ||w_before|| of the optimizer step that followed
// (filled in when the model's next forward begins; NaN until then).
//
// A gradient whose L2 norm is below `vanishing` (1e-7) or above `exploding`
// (1e3) is flagged on its record and reported by alerts(), naming the layer or
// parameter. Training passes are recorded; backward passes in eval mode
// (saliency, attributions) only when schedule.eval asks for them, as when a
// model that is examined rather than trained (one imported from ONNX) is
// run backward from its loss.
//
// In data-parallel training (dist::DataParallel), a step's records first
// describe this replica's share of the global batch; merged (merge_pending,
// inspect/record.hpp), they describe the global batch as one process's would:
// the gradient wrt a layer's output over every replica's samples (each
// replica's in the units of the global mean loss), and each parameter's
// gradient as averaged over the replicas, with each replica's own gradient
// norm before averaging beside it (rank_grad_norms), where a diverging rank
// shows. Alerts are raised on the merged records.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/threads.hpp"
#include "glassbox/inspect/gradient_kernels.hpp"
#include "glassbox/inspect/record.hpp"

namespace glassbox::inspect {

enum class GradientHealth { ok, vanishing, exploding };

inline const char* health_name(GradientHealth h) {
  switch (h) {
    case GradientHealth::vanishing: return "vanishing";
    case GradientHealth::exploding: return "exploding";
    default: return "ok";
  }
}

// Gradient with respect to a layer's output.
struct LayerGradientRecord : RecordSource {
  double norm = 0;
  double max_abs = 0;
  GradientHealth health = GradientHealth::ok;
};

struct ParameterGradientRecord : RecordSource {
  std::string parameter;  // dotted name, "conv2d_1.weight"
  double grad_norm = 0;
  double grad_max_abs = 0;
  double weight_norm = 0;
  double update_ratio = std::numeric_limits<double>::quiet_NaN();
  GradientHealth health = GradientHealth::ok;
  // Data-parallel training: by rank, the L2 norm of each replica's own
  // gradient (of its share's mean loss) before averaging; empty otherwise.
  std::vector<double> rank_grad_norms;
};

struct GradientAlert {
  std::string name;  // layer or parameter
  HookContext context;
  GradientHealth health = GradientHealth::ok;
  double norm = 0;
  std::string message;
};

struct GradientFlowOptions {
  Schedule schedule;               // eval passes only when schedule.eval
  std::vector<HookTarget> layers;  // empty: every layer
  double vanishing = 1e-7;
  double exploding = 1e3;
  std::size_t capacity = 1000;   // records kept per layer and per parameter
  std::size_t max_alerts = 100;  // alerts kept (alert_count() counts them all)
};

template <class T>
class GradientFlow : public MergeableRecorder {
 public:
  using Options = GradientFlowOptions;

  // Attaches to the model; detaches when destroyed. Neither copied nor moved.
  explicit GradientFlow(Sequential<T>& model, Options options = {}) : options_(std::move(options)) {
    options_.schedule.validate("GradientFlow");
    if (!(options_.vanishing >= 0 && options_.vanishing < options_.exploding))
      throw Error(fmt::format("GradientFlow: need 0 <= vanishing < exploding, got {} and {}", options_.vanishing,
                              options_.exploding));
    attach_to(handles_, options_.layers, options_.schedule.hook_schedule(), [&](const HookTarget& t) {
      return model.add_backward_hook(t, [this](const BackwardEvent<T>& e) { record_layer(e); });
    });
    // A large gradient wrt a layer's output is measured block by block as the
    // next layer's backward writes it, when that layer reports blocks
    // (model/hooks.hpp): the forward hook prepares, the block hook adds.
    attach_to(handles_, options_.layers, options_.schedule.hook_schedule(), [&](const HookTarget& t) {
      return model.add_forward_hook(t, [this](const ForwardEvent<T>& e) { begin_stream(e); });
    });
    attach_to(handles_, options_.layers, options_.schedule.hook_schedule(), [&](const HookTarget& t) {
      return model.add_output_grad_block_hook(t, [this](const OutputGradBlockEvent<T>& e) { add_block(e); });
    });
    attach_to(handles_, options_.layers, options_.schedule.hook_schedule(), [&](const HookTarget& t) {
      return model.add_param_grad_hook(t, [this](const ParamGradEvent<T>& e) { record_parameter(e); });
    });
    // The parameters have been updated by the time the next pass begins. The
    // hook watches the last layer, so that it keeps no other layers apart
    // from a fused pass (Conv2D with its MaxPool2D come first), and only
    // while updates are pending.
    const HookTarget last = model.size() > 0 ? HookTarget(model.size() - 1) : HookTarget::all();
    handles_.push_back(model.add_forward_pre_hook(last, [this](const ForwardPreEvent<T>& e) {
      if (e.depth == 0) finish_updates();
    }));
    handles_.back().only_when([this](const HookContext&) { return pending_count_ > 0; });
  }
  GradientFlow(const GradientFlow&) = delete;
  GradientFlow& operator=(const GradientFlow&) = delete;

  void detach() { handles_.clear(); }

  const std::vector<Series<LayerGradientRecord>>& layers() const { return layers_; }
  const std::vector<Series<ParameterGradientRecord>>& parameters() const { return parameters_; }
  const Series<LayerGradientRecord>& layer(const std::string& name) const {
    return find_series(layers_, name, "GradientFlow");
  }
  const Series<ParameterGradientRecord>& parameter(const std::string& name) const {
    return find_series(parameters_, name, "GradientFlow");
  }
  const std::vector<GradientAlert>& alerts() const { return alerts_; }
  std::uint64_t alert_count() const { return alert_count_; }
  const Options& options() const { return options_; }

  // Two tables in one file: rows with kind "layer" (gradient wrt the output)
  // and kind "parameter".
  std::string to_csv() const {
    std::string s =
        fmt::format("kind,{},parameter,grad_norm,grad_max_abs,weight_norm,update_ratio,health,rank_grad_norms\n",
                    source_csv_header());
    for (const auto& series : layers_)
      for (const LayerGradientRecord& r : series.records)
        s += fmt::format("layer,{},,{},{},,,{},\n", source_csv(r), number_text(r.norm), number_text(r.max_abs),
                         health_name(r.health));
    for (const auto& series : parameters_)
      for (const ParameterGradientRecord& r : series.records) {
        std::string ranks;
        for (const double n : r.rank_grad_norms) ranks += (ranks.empty() ? "" : ";") + number_text(n);
        s += fmt::format("parameter,{},{},{},{},{},{},{},{}\n", source_csv(r), r.parameter, number_text(r.grad_norm),
                         number_text(r.grad_max_abs), number_text(r.weight_norm), number_text(r.update_ratio),
                         health_name(r.health), ranks);
      }
    return s;
  }

  std::string to_json() const {
    std::string s = "{\"recorder\":\"gradient_flow\",\"layers\":[";
    s += series_json(layers_, "layer", [](std::string& out, const LayerGradientRecord& r) {
      out += fmt::format("{{{},\"grad_norm\":{},\"grad_max_abs\":{},\"health\":\"{}\"}}", source_json(r),
                         json_number(r.norm), json_number(r.max_abs), health_name(r.health));
    });
    s += "],\"parameters\":[";
    s += series_json(parameters_, "parameter", [](std::string& out, const ParameterGradientRecord& r) {
      std::string ranks;
      for (const double n : r.rank_grad_norms) ranks += (ranks.empty() ? "" : ",") + json_number(n);
      out += fmt::format(
          "{{{},\"parameter\":{},\"grad_norm\":{},\"grad_max_abs\":{},\"weight_norm\":{},\"update_ratio\":{},"
          "\"health\":\"{}\",\"rank_grad_norms\":[{}]}}",
          source_json(r), json_string(r.parameter), json_number(r.grad_norm), json_number(r.grad_max_abs),
          json_number(r.weight_norm), json_number(r.update_ratio), health_name(r.health), ranks);
    });
    s += "],\"alerts\":[";
    for (std::size_t i = 0; i < alerts_.size(); ++i)
      s += fmt::format("{}{}", i ? "," : "", json_string(alerts_[i].message));
    return s + fmt::format("],\"alert_count\":{}}}\n", alert_count_);
  }

  void write_csv(const std::string& path) const { write_text_file(path, to_csv()); }
  void write_json(const std::string& path) const { write_text_file(path, to_json()); }

  std::size_t pending() const override { return shares_.size(); }
  void set_merging(bool on) override {
    merging_ = on;
    shares_.clear();
  }
  void merge_pending(RecordReducer& reducer) override;

 private:
  // A record of this replica's share, to merge: a layer's (with the share's
  // weight in the global batch) or a parameter's.
  struct Share {
    const Parameter<T>* parameter;  // null for a layer record
    std::size_t series;
    double weight;
  };
  // Whether a record of this pass is a share to merge.
  bool sharing(const LayerEvent<T>& e) const { return merging_ && e.layer.batch_shard() && options_.capacity > 0; }

  struct PendingUpdate {
    const Parameter<T>* parameter = nullptr;
    std::size_t series = 0;
    Tensor<T> before;  // the value the optimizer step started from
  };

  bool due(const HookContext& c) const { return options_.schedule.due(c); }

  using Magnitude = detail::GradientMagnitude;
  using ParameterScan = detail::ParameterScan;
  struct Reshaped {  // the gradient magnitude a reshaping layer passed down to `layer`
    bool valid = false;
    std::size_t layer = 0;
    HookContext context;
    Magnitude magnitude;
  };

  GradientHealth check(const std::string& name, const std::string& what, const HookContext& c, double n) {
    GradientHealth h = GradientHealth::ok;
    if (n < options_.vanishing) h = GradientHealth::vanishing;
    if (n > options_.exploding || std::isnan(n)) h = GradientHealth::exploding;
    if (h == GradientHealth::ok) return h;
    ++alert_count_;
    if (alerts_.size() < options_.max_alerts)
      alerts_.push_back(
          GradientAlert{name, c, h, n,
                        fmt::format("{}: {} gradient{} at step {} (L2 norm {:.3g} {} {:.3g})", name, health_name(h),
                                    what, c.step, n, h == GradientHealth::vanishing ? "<" : ">",
                                    h == GradientHealth::vanishing ? options_.vanishing : options_.exploding)});
    return h;
  }

  void record_layer(const BackwardEvent<T>& e) {
    if (!due(e)) return;
    LayerGradientRecord r;
    r.layer = e.name;
    r.layer_index = e.index;
    r.context = e;
    // Below a layer that only reshapes (Flatten), the gradient wrt this
    // layer's output is the one just measured there, in another shape.
    // (Only between layers of the model: inside a block, e.index is the block's.)
    const bool known = e.depth == 0 && reshaped_.valid && reshaped_.layer == e.index && same_pass(reshaped_.context, e);
    Magnitude m;
    if (known)
      m = reshaped_.magnitude;
    else if (!streamed_magnitude(e, m))
      m = detail::magnitude(e.grad_output);
    reshaped_.valid = e.depth == 0 && e.layer.reshapes_only() && e.index > 0;
    if (reshaped_.valid) reshaped_ = {true, e.index - 1, e, m};
    r.norm = m.norm;
    r.max_abs = m.max_abs;
    const bool share = sharing(e);
    if (!share) r.health = check(e.name, " wrt its output", e, r.norm);  // else once merged
    Series<LayerGradientRecord>& series = series_for(layers_, e.name, e.index);
    series.push(std::move(r), options_.capacity);
    if (share) {
      const BatchShard& shard = *e.layer.batch_shard();
      shares_.push_back({nullptr, static_cast<std::size_t>(&series - layers_.data()),
                         static_cast<double>(shard.count) / static_cast<double>(shard.global)});
    }
  }

  void record_parameter(const ParamGradEvent<T>& e) {
    if (!due(e)) return;
    // The value the optimizer step starts from, kept for the update ratio
    // (buffers are reused from step to step).
    PendingUpdate* update = nullptr;
    if (options_.capacity > 0) {
      if (pending_count_ == pending_.size()) pending_.emplace_back();
      update = &pending_[pending_count_++];
      update->parameter = &e.parameter;
      update->before.resize(e.value.shape());
    }
    const ParameterScan scan = detail::scan_parameter(e.grad, e.value, update ? update->before.data() : nullptr);
    ParameterGradientRecord r;
    r.layer = e.name;
    r.layer_index = e.index;
    r.context = e;
    r.parameter = e.parameter.name;
    r.grad_norm = scan.grad.norm;
    r.grad_max_abs = scan.grad.max_abs;
    r.weight_norm = scan.weight_norm;
    const bool share = sharing(e);
    if (!share) r.health = check(e.parameter.name, "", e, r.grad_norm);  // else once merged
    Series<ParameterGradientRecord>& series = series_for(parameters_, e.parameter.name, e.index);
    series.push(std::move(r), options_.capacity);
    if (update) update->series = static_cast<std::size_t>(&series - parameters_.data());
    if (share) shares_.push_back({&e.parameter, static_cast<std::size_t>(&series - parameters_.data()), 1.0});
  }

  // What one thread measured of a streamed gradient; a cache line of its own.
  struct alignas(64) ThreadMagnitude {
    Magnitude magnitude;
    index_t rows = 0;
  };
  struct GradStream {
    bool armed = false;
    HookContext context;
    index_t size = 0, rows = 0;
    std::vector<ThreadMagnitude> threads;
  };

  void begin_stream(const ForwardEvent<T>& e) {
    if (e.depth != 0) return;
    if (!due(e) || e.output.rank() < 2 || e.output.size() < min_block_values) {
      if (e.index < streams_.size()) streams_[e.index].armed = false;  // no work for the blocks of this pass
      return;
    }
    if (streams_.size() <= e.index) streams_.resize(e.index + 1);
    GradStream& s = streams_[e.index];
    s.armed = true;
    s.context = e;
    s.size = e.output.size();
    s.rows = e.output.dim(0);
    s.threads.assign(static_cast<std::size_t>(num_threads()), ThreadMagnitude{});
  }

  // Runs on the next layer's worker threads: each touches only its own part.
  // A block that does not fit what begin_stream prepared is left out: the
  // rows then fall short, and record_layer() measures the whole gradient.
  void add_block(const OutputGradBlockEvent<T>& e) {
    if (e.depth != 0 || e.index >= streams_.size()) return;
    GradStream& s = streams_[e.index];
    if (!s.armed || e.grad_output.size() != s.size || e.thread < 0 ||
        static_cast<std::size_t>(e.thread) >= s.threads.size() || e.first < 0 || e.last > s.rows || e.first >= e.last)
      return;
    constexpr index_t chunk = 4096;
    ThreadMagnitude& part = s.threads[static_cast<std::size_t>(e.thread)];
    const index_t per_row = s.size / s.rows, end = e.last * per_row;
    for (index_t begin = e.first * per_row; begin < end; begin += chunk)
      detail::add_magnitude(e.grad_output.data() + begin, std::min(chunk, end - begin), part.magnitude);
    part.rows += e.last - e.first;
  }

  // The magnitude the blocks of this pass added up to, when they covered the
  // whole gradient; the measures start again from zero for another backward.
  bool streamed_magnitude(const BackwardEvent<T>& e, Magnitude& m) {
    if (e.depth != 0 || e.index >= streams_.size()) return false;
    GradStream& s = streams_[e.index];
    if (!s.armed || !same_pass(s.context, e) || e.grad_output.size() != s.size) return false;
    Magnitude total;
    index_t rows = 0;
    for (ThreadMagnitude& t : s.threads) {
      total.norm += t.magnitude.norm;
      total.max_abs = std::max(total.max_abs, t.magnitude.max_abs);
      rows += t.rows;
      t = ThreadMagnitude{};
    }
    if (rows != s.rows) return false;
    total.norm = std::sqrt(total.norm);
    m = total;
    return true;
  }

  // || before - value ||, without writing the difference.
  static double distance(const Tensor<T>& before, const Tensor<T>& value) {
    const std::vector<double> partial = detail::over_chunks<double>(value.size(), detail::split_parameters,
                                                                    [&](index_t begin, index_t len, double& squares) {
                                                                      const T* a = before.data() + begin;
                                                                      const T* b = value.data() + begin;
                                                                      T s = 0;
#ifdef _OPENMP
#pragma omp simd reduction(+ : s)
#endif
                                                                      for (index_t i = 0; i < len; ++i)
                                                                        s += (a[i] - b[i]) * (a[i] - b[i]);
                                                                      squares += static_cast<double>(s);
                                                                    });
    double squares = 0;
    for (double p : partial) squares += p;
    return std::sqrt(squares);
  }

  void finish_updates() {
    for (std::size_t i = 0; i < pending_count_; ++i) {
      PendingUpdate& u = pending_[i];
      ParameterGradientRecord& r = parameters_[u.series].records.back();
      r.update_ratio = distance(u.before, u.parameter->value) / r.weight_norm;
    }
    pending_count_ = 0;
  }

  Options options_;
  Reshaped reshaped_;
  std::vector<GradStream> streams_;  // by layer index
  std::vector<Series<LayerGradientRecord>> layers_;
  std::vector<Series<ParameterGradientRecord>> parameters_;
  std::vector<PendingUpdate> pending_;
  std::size_t pending_count_ = 0;
  std::vector<GradientAlert> alerts_;
  std::uint64_t alert_count_ = 0;
  std::vector<HookHandle> handles_;
  bool merging_ = false;
  std::vector<Share> shares_;
};

// A replica's gradient wrt a layer's output is d(its share's mean loss)/dy,
// 1 / weight times the global batch's for its samples: the global norm is
// sqrt(sum over replicas of (weight x norm)^2), the global max the largest
// weight x max. A parameter's gradient has been averaged over the replicas
// by now (DataParallel merges after averaging): it is measured again.
template <class T>
void GradientFlow<T>::merge_pending(RecordReducer& reducer) {
  std::vector<double> squares, largest, own;
  for (const Share& s : shares_) {
    if (s.parameter) {
      own.push_back(parameters_[s.series].records.back().grad_norm);
    } else {
      const LayerGradientRecord& r = layers_[s.series].records.back();
      squares.push_back(s.weight * s.weight * r.norm * r.norm);
      largest.push_back(s.weight * r.max_abs);
    }
  }
  reducer.sum(squares.data(), squares.size());
  reducer.max(largest.data(), largest.size());
  const std::vector<double> by_rank = reducer.gather(own.data(), own.size());
  const std::size_t ranks = own.empty() ? 0 : by_rank.size() / own.size();
  std::size_t layer = 0, parameter = 0;
  for (const Share& s : shares_) {
    if (s.parameter) {
      ParameterGradientRecord& r = parameters_[s.series].records.back();
      const Magnitude m = detail::magnitude(s.parameter->grad);
      r.grad_norm = m.norm;
      r.grad_max_abs = m.max_abs;
      r.rank_grad_norms.resize(ranks);
      for (std::size_t k = 0; k < ranks; ++k) r.rank_grad_norms[k] = by_rank[k * own.size() + parameter];
      r.health = check(r.parameter, "", r.context, r.grad_norm);
      ++parameter;
    } else {
      LayerGradientRecord& r = layers_[s.series].records.back();
      r.norm = std::sqrt(squares[layer]);
      r.max_abs = largest[layer];
      r.health = check(r.layer, " wrt its output", r.context, r.norm);
      ++layer;
    }
  }
  shares_.clear();
}

GLASSBOX_PRECOMPILED_INSTANCE(class GradientFlow<float>)
}  // namespace glassbox::inspect
