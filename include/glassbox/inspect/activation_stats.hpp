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
#include <bitset>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/threads.hpp"
#include "glassbox/inspect/histogram.hpp"
#include "glassbox/inspect/record.hpp"

// AVX-512 builds summarize float outputs with the pass below that keeps one
// alive bit per unit (see alive_as_bits), which changes the layout of the
// scratch: every translation unit of a program needs the same -march, as
// Eigen's alignment already requires (CMakeLists.txt, glassbox_precompiled).
#ifdef __AVX512F__
#include <immintrin.h>
#define GLASSBOX_SUMMARY_AVX512 1
#endif

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

// A value's bits, OR-ed per unit to find the dead units: a unit is dead when
// its bits, the sign left out, are zero in every sample (+0 and -0 only); NaN
// counts as alive.
template <class T>
using ValueBits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

template <class T>
ValueBits<T> bits_of(T v) {
  static_assert(sizeof(T) == sizeof(ValueBits<T>), "float or double");
  ValueBits<T> b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

// Whether a unit whose OR-ed bits are b was zero in every sample.
template <class T>
bool never_nonzero(ValueBits<T> b) {
  return (b << 1) == 0;
}

// What a thread keeps per unit to find the dead units. With AVX-512, a float
// summary keeps one bit per unit (16 units to a word), set where the value
// compares unequal to zero: the compare is the one that counts the zeros, and
// the bits of a row fit in L1 (the seed CNN's conv output: 2.7 KB rather than
// 86 KB of OR-ed values, whose loads and stores cost a third of the pass).
// Otherwise a unit keeps its values' OR-ed bits (see never_nonzero). Both
// count -0 as zero and NaN and denormals as alive (the compare would not with
// denormals-are-zero set, under which they are zero to the CPU too).
#ifdef GLASSBOX_SUMMARY_AVX512
template <class T>
constexpr bool alive_as_bits = std::is_same_v<T, float>;
#else
template <class T>
constexpr bool alive_as_bits = false;
#endif
template <class T>
using AliveWord = std::conditional_t<alive_as_bits<T>, std::uint16_t, ValueBits<T>>;
template <class T>
constexpr index_t units_per_alive_word = alive_as_bits<T> ? 16 : 1;

// How many of `units` units the alive words say were zero in every sample.
template <class T>
index_t dead_units(const AliveWord<T>* alive, index_t units) {
  index_t dead = 0;
  if constexpr (alive_as_bits<T>) {
    dead = units;
    for (index_t w = 0; w < (units + 15) / 16; ++w) dead -= static_cast<index_t>(std::bitset<16>(alive[w]).count());
  } else {
    for (index_t u = 0; u < units; ++u) dead += never_nonzero<T>(alive[u]);
  }
  return dead;
}

// The ratio mean^2 / variance of a chunk above which its unshifted float sums
// lose too many digits (about 1e-5 * (1 + ratio), relative); such a chunk is
// summed again around its first value.
constexpr double unshifted_sums_limit = 16;

// The sums of one pass over a chunk, in T.
template <class T>
struct ChunkSums {
  T sum = 0, squares = 0;
  T lo = std::numeric_limits<T>::infinity(), hi = -std::numeric_limits<T>::infinity();
  T zeros = 0;  // exact up to 2^24 > chunk
};

// The fused pass of summarize_chunk, portable: the bits OR-ed per unit.
template <class T>
ChunkSums<T> chunk_sums(const T* x, index_t len, ValueBits<T>* alive) {
  // Two interleaved streams with their own accumulators: with one, each
  // vector's add would wait for the previous one (4 cycles for the squares).
  // Zeros are counted in T: a masked add, one vector op instead of the three
  // an int count compiles to.
  const index_t half = len / 32 * 16;
  const T* x2 = x + half;
  ValueBits<T>* alive2 = alive + half;
  constexpr T inf = std::numeric_limits<T>::infinity();
  T s1 = 0, s2 = 0, lo = inf, hi = -inf, t1 = 0, t2 = 0, lo2 = inf, hi2 = -inf;
  T zeros = 0, zeros2 = 0;
#ifdef _OPENMP
#pragma omp simd reduction(+ : s1, s2, zeros, t1, t2, zeros2) reduction(min : lo, lo2) reduction(max : hi, hi2)
#endif
  for (index_t i = 0; i < half; ++i) {
    const T v = x[i], w = x2[i];
    alive[i] |= bits_of(v);
    alive2[i] |= bits_of(w);
    s1 += v;
    t1 += w;
    s2 += v * v;
    t2 += w * w;
    lo = std::min(lo, v);
    lo2 = std::min(lo2, w);
    hi = std::max(hi, v);
    hi2 = std::max(hi2, w);
    zeros = v == T(0) ? zeros + T(1) : zeros;
    zeros2 = w == T(0) ? zeros2 + T(1) : zeros2;
  }
  ChunkSums<T> r{s1 + t1, s2 + t2, std::min(lo, lo2), std::max(hi, hi2), zeros + zeros2};
  for (index_t i = 2 * half; i < len; ++i) {
    const T v = x[i];
    alive[i] |= bits_of(v);
    r.sum += v;
    r.squares += v * v;
    r.lo = std::min(r.lo, v);
    r.hi = std::max(r.hi, v);
    r.zeros += v == T(0);
  }
  return r;
}

#ifdef GLASSBOX_SUMMARY_AVX512
// The fused pass for float with AVX-512, alive bits for units [0, len) in
// alive[0, (len + 15) / 16) (see alive_as_bits). The zeros are counted from
// the same masks, by popcount on the scalar ports, which leaves the two
// 512-bit ports to the sums (conv output of the seed CNN: -3 us a step).
inline ChunkSums<float> chunk_sums(const float* x, index_t len, std::uint16_t* alive) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  const __m512 minus_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 s1 = zero, s2 = zero, t1 = zero, t2 = zero;
  index_t nonzeros = 0;
  __m512 lo1 = inf, lo2 = inf, hi1 = minus_inf, hi2 = minus_inf;
  index_t i = 0;
  for (; i + 32 <= len; i += 32) {  // two streams, as in the portable pass
    const __m512 v = _mm512_loadu_ps(x + i), w = _mm512_loadu_ps(x + i + 16);
    const __mmask16 v_nonzero = _mm512_cmp_ps_mask(v, zero, _CMP_NEQ_UQ);
    const __mmask16 w_nonzero = _mm512_cmp_ps_mask(w, zero, _CMP_NEQ_UQ);
    alive[i / 16] = static_cast<std::uint16_t>(alive[i / 16] | v_nonzero);
    alive[i / 16 + 1] = static_cast<std::uint16_t>(alive[i / 16 + 1] | w_nonzero);
    s1 = _mm512_add_ps(s1, v);
    t1 = _mm512_add_ps(t1, w);
    s2 = _mm512_fmadd_ps(v, v, s2);
    t2 = _mm512_fmadd_ps(w, w, t2);
    lo1 = _mm512_min_ps(lo1, v);
    lo2 = _mm512_min_ps(lo2, w);
    hi1 = _mm512_max_ps(hi1, v);
    hi2 = _mm512_max_ps(hi2, w);
    nonzeros += static_cast<index_t>(std::bitset<32>(static_cast<std::uint32_t>(v_nonzero) << 16 | w_nonzero).count());
  }
  ChunkSums<float> r{_mm512_reduce_add_ps(_mm512_add_ps(s1, t1)), _mm512_reduce_add_ps(_mm512_add_ps(s2, t2)),
                     _mm512_reduce_min_ps(_mm512_min_ps(lo1, lo2)), _mm512_reduce_max_ps(_mm512_max_ps(hi1, hi2)),
                     static_cast<float>(i - nonzeros)};
  for (; i < len; ++i) {
    const float v = x[i];
    if (!(v == 0)) alive[i / 16] = static_cast<std::uint16_t>(alive[i / 16] | 1u << (i % 16));
    r.sum += v;
    r.squares += v * v;
    r.lo = std::min(r.lo, v);
    r.hi = std::max(r.hi, v);
    r.zeros += v == 0;
  }
  return r;
}
#endif

// One fused pass over a chunk (<= 4096 values, so T sums stay accurate): sum,
// sum of squares, min, max, zeros, and the chunk's units marked in `alive`
// (its words from the chunk's first unit; see AliveWord). Its cost is vector
// arithmetic and dependency chains, so it does the least per value:
// - the sums are not shifted; a chunk whose mean dwarfs its spread (see
//   unshifted_sums_limit) is summed again around its first value;
// - a NaN or inf makes the sum of squares non-finite (so does a finite value
//   whose square overflows), which sends the chunk to a second pass, value by
//   value, that counts the non-finite values and leaves them out.
template <class T>
void summarize_chunk(const T* x, index_t len, AliveWord<T>* alive, Summary<T>& out) {
  const ChunkSums<T> c = chunk_sums(x, len, alive);
  if (std::isfinite(c.squares)) {
    const double n = static_cast<double>(len), sum = static_cast<double>(c.sum);
    double mean = sum / n, m2 = static_cast<double>(c.squares) - sum * sum / n;
    if (!(m2 * unshifted_sums_limit > sum * sum / n)) {  // includes m2 <= 0 (rounding)
      const T shift = x[0];
      T d1 = 0, d2 = 0;
#ifdef _OPENMP
#pragma omp simd reduction(+ : d1, d2)
#endif
      for (index_t i = 0; i < len; ++i) {
        const T d = x[i] - shift;
        d1 += d;
        d2 += d * d;
      }
      const double dsum = static_cast<double>(d1);
      mean = static_cast<double>(shift) + dsum / n;
      m2 = static_cast<double>(d2) - dsum * dsum / n;
    }
    out.moments.merge(n, mean, std::max(0.0, m2));
    out.lo = std::min(out.lo, c.lo);
    out.hi = std::max(out.hi, c.hi);
    out.zeros += static_cast<index_t>(c.zeros);
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

// The histogram bins runs of 16 consecutive values (one cache line of
// floats), every `every`-th run from the start of the tensor, `every` chosen
// so that at most `histogram_values` values are binned (0: all, every == 1).
constexpr index_t histogram_run = 16;

inline index_t histogram_stride(index_t n, index_t histogram_values) {
  const index_t runs = (n + histogram_run - 1) / histogram_run;
  if (histogram_values <= 0) return 1;
  const index_t max_runs = std::max<index_t>(1, histogram_values / histogram_run);
  return std::max<index_t>(1, (runs + max_runs - 1) / max_runs);
}

// How many values the sampled runs hold (the last run may be short).
inline index_t histogram_sample_size(index_t n, index_t every) {
  if (n == 0) return 0;
  const index_t last = (n - 1) / histogram_run / every * every;  // index of the last sampled run
  return last / every * histogram_run + std::min(histogram_run, n - last * histogram_run);
}

// What one thread has summarized of a tensor; a cache line of its own, as
// each thread updates its summary after every chunk.
template <class T>
struct alignas(64) ThreadSummary {
  Summary<T> summary;
  index_t rows = 0;                                                         // rows summarized
  bool started = false;                                                     // `alive` is zeroed for this tensor
  std::vector<AliveWord<T>, Eigen::aligned_allocator<AliveWord<T>>> alive;  // see AliveWord
};

// One summary in progress, and the buffers kept from one to the next.
template <class T>
struct SummaryScratch {
  index_t n = 0, rows = 0, units = 0, every = 1;
  std::vector<ThreadSummary<T>> threads;
  std::vector<T> sample;  // the histogram's runs

  // Prepares a summary of a tensor of `shape` by at most `thread_count` threads.
  void begin(const Shape& shape, int thread_count, index_t histogram_every) {
    n = shape.size();
    rows = shape.rank() >= 2 ? shape[0] : 1;
    units = rows > 0 ? n / rows : 0;
    every = histogram_every;
    threads.resize(static_cast<std::size_t>(thread_count));
    for (ThreadSummary<T>& t : threads) {
      t.summary = Summary<T>{};
      t.rows = 0;
      t.started = false;
    }
    if (every > 1) sample.resize(static_cast<std::size_t>(histogram_sample_size(n, every)));
  }

  // Summarizes rows [first, last) of y (as begun) on thread `thread`, which
  // ORs its own per-unit bits; when every > 1 it copies the sampled runs'
  // values that lie in these rows (see histogram_stride) while they are in
  // cache: gathering them afterwards costs a cache miss per run.
  void add_rows(const T* y, index_t first, index_t last, int thread) {
    constexpr index_t chunk = 4096;
    static_assert(chunk % units_per_alive_word<T> == 0, "chunks start on an alive word");
    ThreadSummary<T>& part = threads[static_cast<std::size_t>(thread)];
    if (!part.started) {  // zeroed by the thread that uses it, into its own cache
      part.alive.assign(static_cast<std::size_t>((units + units_per_alive_word<T> - 1) / units_per_alive_word<T>), 0);
      part.started = true;
    }
    // Units outer, samples inner: the chunk's slice of the bits stays in L1.
    for (index_t u = 0; u < units; u += chunk)
      for (index_t row = first; row < last; ++row) {
        const index_t begin = row * units + u, len = std::min(chunk, units - u);
        summarize_chunk(y + begin, len, part.alive.data() + u / units_per_alive_word<T>, part.summary);
        if (every > 1) copy_sampled(y, begin, begin + len);
      }
    part.rows += last - first;
  }

  // Merges what the threads summarized into r (the statistics and the dead
  // units; the first thread's bits become those of all).
  void finish(bool per_unit, ActivationRecord& r) {
    r.count = n;
    if (n == 0) return;
    Summary<T> total;
    for (const ThreadSummary<T>& t : threads) total.merge(t.summary);
    if (total.moments.count > 0) {
      r.mean = total.moments.mean;
      r.std = std::sqrt(total.moments.m2 / total.moments.count);
      r.min = static_cast<double>(total.lo);
      r.max = static_cast<double>(total.hi);
    }
    r.zero_fraction = static_cast<double>(total.zeros) / static_cast<double>(n);
    r.nonfinite_fraction = static_cast<double>(total.nonfinite) / static_cast<double>(n);
    if (!per_unit) return;
    AliveWord<T>* alive = nullptr;
    for (ThreadSummary<T>& t : threads) {
      if (!t.started) continue;
      if (!alive) {
        alive = t.alive.data();
        continue;
      }
      const AliveWord<T>* other = t.alive.data();
      for (std::size_t w = 0; w < t.alive.size(); ++w) alive[w] |= other[w];
    }
    if (!alive || units == 0) return;
    r.dead_fraction = static_cast<double>(dead_units<T>(alive, units)) / static_cast<double>(units);
  }

  // After finish(): the threads' alive words merged, or null (see AliveWord).
  const AliveWord<T>* merged_alive() const {
    for (const ThreadSummary<T>& t : threads)
      if (t.started) return t.alive.data();
    return nullptr;
  }

  index_t rows_done() const {
    index_t done = 0;
    for (const ThreadSummary<T>& t : threads) done += t.rows;
    return done;
  }

 private:
  // Copies the values of the sampled runs that lie in [begin, end); a run
  // that spans two rows is copied in two parts, each by the thread that
  // summarizes its row (the other row may not be written yet).
  void copy_sampled(const T* y, index_t begin, index_t end) {
    for (index_t k = (begin / histogram_run + every - 1) / every * every; k * histogram_run < end; k += every) {
      const index_t run = k * histogram_run;
      const index_t from = std::max(begin, run), to = std::min({end, run + histogram_run, n});
      std::copy(y + from, y + to, sample.data() + k / every * histogram_run + (from - run));
    }
  }
};

// Statistics of y's values into r, and the fraction of dead units. Samples are
// spread over the threads as the layers spread them, so that each thread reads
// what its core wrote.
template <class T>
void summarize(const Tensor<T>& y, ActivationRecord& r, index_t every, SummaryScratch<T>& scratch) {
  const index_t n = y.size();
  const index_t rows = y.rank() >= 2 ? y.dim(0) : 1;
  const int threads = static_cast<int>(std::min<index_t>(n < 65536 ? 1 : num_threads(), rows));
  scratch.begin(y.shape(), std::max(threads, 1), every);
  parallel_for(threads, threads, [&](std::ptrdiff_t t) {
    scratch.add_rows(y.data(), rows * t / threads, rows * (t + 1) / threads, static_cast<int>(t));
  });
  scratch.finish(y.rank() >= 2, r);
}

template <class T>
void fill_histogram(const T* values, index_t n, const ActivationStatsOptions& o, ActivationRecord& r) {
  fill_histogram(values, n, o.bins, o.range, r.min, r.max, r.histogram);
}

}  // namespace detail

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
    attach_to(handles_, options_.layers, [&](const HookTarget& t) {
      return model.add_forward_hook(t, [this](const ForwardEvent<T>& e) { record(e); });
    });
    // Large outputs are summarized block by block as the layer writes them,
    // when it reports blocks (model/hooks.hpp): a pre-hook begins the summary,
    // an output-block hook adds each block, and record() finishes it.
    attach_to(handles_, options_.layers, [&](const HookTarget& t) {
      return model.add_forward_pre_hook(t, [this](const ForwardPreEvent<T>& e) { begin_stream(e); });
    });
    attach_to(handles_, options_.layers, [&](const HookTarget& t) {
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
