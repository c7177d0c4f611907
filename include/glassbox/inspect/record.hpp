#pragma once
// What every recorder shares: where a record was taken (layer, mode, step,
// epoch, batch), a bounded per-layer series, the recording stride, and the
// CSV/JSON columns for the context. Recorders are ordinary users of the
// public hook API (model/hooks.hpp).

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <limits>
#include <string>
#include <vector>

#include "glassbox/core/text_output.hpp"
#include "glassbox/model/hooks.hpp"
#include "glassbox/model/sequential.hpp"

namespace glassbox::inspect {

inline const char* mode_name(Mode mode) { return mode == Mode::train ? "train" : "eval"; }

// Where a record comes from.
struct RecordSource {
  std::string layer;  // layer name, or parameter name for parameter records
  std::size_t layer_index = 0;
  HookContext context;
};

// Which passes a recorder looks at: training steps whose index is a multiple
// of `every`, and (when eval is on) eval batches whose index is a multiple of
// `every`.
struct Schedule {
  long long every = 1;
  bool train = true;
  bool eval = false;

  void validate(const char* who) const {
    if (every <= 0) throw Error(fmt::format("{}: every must be positive, got {}", who, every));
  }
  bool due(const HookContext& c) const {
    return c.mode == Mode::train ? train && c.step % every == 0 : eval && c.batch % every == 0;
  }
  HookSchedule hook_schedule() const {
    return [schedule = *this](const HookContext& c) { return schedule.due(c); };
  }
};

// Whether two hook events belong to the same pass of the model.
inline bool same_pass(const HookContext& a, const HookContext& b) {
  return a.mode == b.mode && a.step == b.step && a.epoch == b.epoch && a.batch == b.batch;
}

// The newest `capacity` records of one layer or parameter; older ones are
// dropped (and counted), so memory stays bounded however long training runs.
template <class Record>
struct Series {
  std::string name;
  std::size_t layer_index = 0;
  std::deque<Record> records;
  std::uint64_t dropped = 0;

  void push(Record r, std::size_t capacity) {
    if (capacity == 0) return;
    if (records.size() == capacity) {
      records.pop_front();
      ++dropped;
    }
    records.push_back(std::move(r));
  }
};

// Finds or appends the series for `name`. Series are few (one per layer or
// parameter), so a linear search beats a map here.
template <class Record>
Series<Record>& series_for(std::vector<Series<Record>>& all, const std::string& name, std::size_t layer_index) {
  for (auto& s : all)
    if (s.name == name) return s;
  all.push_back(Series<Record>{name, layer_index, {}, 0});
  return all.back();
}

template <class Record>
const Series<Record>& find_series(const std::vector<Series<Record>>& all, const std::string& name, const char* who) {
  for (const auto& s : all)
    if (s.name == name) return s;
  throw Error(fmt::format("{}: nothing recorded for '{}'", who, name));
}

// Series as a JSON array's items: {"<key>":name,"layer_index","dropped",
// "records":[...]} each, append_record(s, record) appending a record's object.
template <class Record, class AppendRecord>
std::string series_json(const std::vector<Series<Record>>& all, const char* key, AppendRecord append_record) {
  std::string s;
  for (std::size_t i = 0; i < all.size(); ++i) {
    s += fmt::format("{}{{\"{}\":{},\"layer_index\":{},\"dropped\":{},\"records\":[", i ? "," : "", key,
                     json_string(all[i].name), all[i].layer_index, all[i].dropped);
    bool first = true;
    for (const Record& r : all[i].records) {
      if (!first) s += ',';
      append_record(s, r);
      first = false;
    }
    s += "]}";
  }
  return s;
}

// Combines values over the replicas of a data-parallel job, for recorders
// that report the global batch (dist::DataParallel is one).
class RecordReducer : public virtual ReplicaSum {
 public:
  virtual void max(double* values, std::size_t count) = 0;
  virtual void bit_or(std::uint64_t* values, std::size_t count) = 0;
  // Every replica's `count` values, in replica order.
  virtual std::vector<double> gather(const double* values, std::size_t count) = 0;
};

// A recorder whose records of a data-parallel training step first cover this
// replica's share of the global batch, until merge_pending() combines every
// replica's shares into the global batch's records. dist::DataParallel
// merges the recorders it is given after each step, before callbacks run.
class MergeableRecorder {
 public:
  virtual ~MergeableRecorder() = default;
  // Records of shares made since the last merge (the same on every replica).
  virtual std::size_t pending() const = 0;
  // Every replica calls this together; afterwards the records are the
  // global batch's.
  virtual void merge_pending(RecordReducer& reducer) = 0;
  // Whether to keep what merging needs (off: records stay per replica).
  virtual void set_merging(bool on) = 0;
};

// Tensors of at least this many values are read block by block through block
// hooks (model/hooks.hpp) where the layer reports blocks; smaller ones are
// read whole, after the layer, at about the same cost.
constexpr index_t min_block_values = 65536;

// Registers `add(target)` for each target, or once for all layers, and keeps
// the handles in `handles`.
template <class Add>
void attach_to(std::vector<HookHandle>& handles, const std::vector<HookTarget>& targets, Add add) {
  if (targets.empty()) {
    handles.push_back(add(HookTarget::all()));
  } else {
    for (const HookTarget& t : targets) handles.push_back(add(t));
  }
}
// The same, the hooks firing only in the passes `when` is due for: in the
// others the model runs as if unwatched (fused passes included).
template <class Add>
void attach_to(std::vector<HookHandle>& handles, const std::vector<HookTarget>& targets, HookSchedule when, Add add) {
  const std::size_t first = handles.size();
  attach_to(handles, targets, add);
  for (std::size_t i = first; i < handles.size(); ++i) handles[i].only_when(when);
}

// Whether every value is finite, in one vectorised pass (Eigen's allFinite()
// is several times slower on large feature maps).
template <class T>
bool all_finite(const Tensor<T>& t) {
  constexpr index_t chunk = 4096;
  for (index_t start = 0; start < t.size(); start += chunk) {
    const T* x = t.data() + start;
    const index_t len = std::min(chunk, t.size() - start);
    int bad = 0;
#ifdef _OPENMP
#pragma omp simd reduction(+ : bad)
#endif
    for (index_t i = 0; i < len; ++i) bad += !(std::abs(x[i]) <= std::numeric_limits<T>::max());
    if (bad) return false;
  }
  return true;
}

// CSV and JSON for a record's source.
inline const char* source_csv_header() { return "layer,layer_index,mode,step,epoch,batch"; }
inline std::string source_csv(const RecordSource& s) {
  return fmt::format("{},{},{},{},{},{}", s.layer, s.layer_index, mode_name(s.context.mode), s.context.step,
                     s.context.epoch, s.context.batch);
}
inline std::string source_json(const RecordSource& s) {
  return fmt::format("\"layer\":{},\"layer_index\":{},\"mode\":\"{}\",\"step\":{},\"epoch\":{},\"batch\":{}",
                     json_string(s.layer), s.layer_index, mode_name(s.context.mode), s.context.step, s.context.epoch,
                     s.context.batch);
}

}  // namespace glassbox::inspect
