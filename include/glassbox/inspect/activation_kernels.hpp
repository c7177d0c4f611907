#pragma once
// The pass of ActivationStats (inspect/activation_stats.hpp) over a layer's
// output: one fused pass per chunk of values for the sums, extremes, zeros
// and dead units (a portable kernel, and one for float with AVX-512 that
// keeps an alive bit per unit), the strided histogram sample, and the
// per-thread summaries merged into an ActivationRecord. The [summary] tests
// check the records against values counted value by value, in the portable
// build and in the native one (test_inspect_native: AVX-512 where the CPU has it).

#include <Eigen/Core>
#include <algorithm>
#include <bitset>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "glassbox/core/threads.hpp"
#include "glassbox/inspect/activation_record.hpp"
#include "glassbox/inspect/histogram.hpp"

// AVX-512 builds summarize float outputs with the pass below that keeps one
// alive bit per unit (see alive_as_bits), which changes the layout of the
// scratch: every translation unit of a program needs the same -march, as
// Eigen's alignment already requires (CMakeLists.txt, glassbox_precompiled).
#ifdef __AVX512F__
#include <immintrin.h>
#define GLASSBOX_SUMMARY_AVX512 1
#endif

namespace glassbox::inspect {

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

}  // namespace glassbox::inspect
