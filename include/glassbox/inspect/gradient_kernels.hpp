#pragma once
// The kernels of GradientFlow (inspect/gradient_flow.hpp): the L2 norm and
// max |.| of a gradient, and of a parameter's gradient with its value's norm
// (copying the value for the update ratio), each in one pass, in chunks of
// 4,096 values spread over the threads. The tests check them against plain
// double-precision loops.

#include <algorithm>
#include <cmath>
#include <vector>

#include "glassbox/core/tensor.hpp"
#include "glassbox/core/threads.hpp"

namespace glassbox::inspect::detail {

struct GradientMagnitude {
  double norm = 0, max_abs = 0;
};

// Runs visit(begin, len, partial) over [0, size) in chunks of 4096 (T sums
// stay accurate within one; they are added up in double), one partial per
// thread; tensors of `split_from` values and more are split over the threads.
// A gradient wrt a layer's output is mostly in the cache of the core that
// wrote it, often the calling thread (a Dense layer's input gradient of 173k
// values, measured by both threads, took twice as long as by the calling one
// alone): split from 256k values. Parameters are read after the whole
// backward pass, from L3 (out of both cores' L2), which two cores read about
// twice as fast (the seed CNN's Dense weight, 54k values: 24 -> 14 us).
inline constexpr index_t split_written = 262144, split_parameters = 16384;
template <class Partial, class Visit>
std::vector<Partial> over_chunks(index_t size, index_t split_from, Visit visit) {
  constexpr index_t chunk = 4096;
  const index_t chunks = (size + chunk - 1) / chunk;
  const int threads = static_cast<int>(std::min<index_t>(size < split_from ? 1 : num_threads(), chunks));
  std::vector<Partial> partial(static_cast<std::size_t>(std::max(threads, 1)));
  parallel_for(threads, threads, [&](std::ptrdiff_t thread) {
    for (index_t c = chunks * thread / threads; c < chunks * (thread + 1) / threads; ++c)
      visit(c * chunk, std::min(chunk, size - c * chunk), partial[static_cast<std::size_t>(thread)]);
  });
  return partial;
}

// Adds the squares of x[0, len) to p.norm (a sum of squares until the
// sqrt) and their largest |.| to p.max_abs; len <= 4096, so T sums stay accurate.
template <class T>
void add_magnitude(const T* x, index_t len, GradientMagnitude& p) {
  // Four streams with their own accumulators: the loop is two dependent
  // chains (an FMA and a max, 4 cycles each), which with two streams wait
  // on their latency (measured 0.062 -> 0.042 ns/value in L1, 0.064 ->
  // 0.052 from L2, where block hooks find a layer's gradient).
  const index_t quarter = len / 64 * 16;
  const T* x1 = x + quarter;
  const T* x2 = x + 2 * quarter;
  const T* x3 = x + 3 * quarter;
  T s0 = 0, s1 = 0, s2 = 0, s3 = 0, m0 = 0, m1 = 0, m2 = 0, m3 = 0;
#ifdef _OPENMP
#pragma omp simd reduction(+ : s0, s1, s2, s3) reduction(max : m0, m1, m2, m3)
#endif
  for (index_t i = 0; i < quarter; ++i) {
    s0 += x[i] * x[i];
    s1 += x1[i] * x1[i];
    s2 += x2[i] * x2[i];
    s3 += x3[i] * x3[i];
    m0 = std::max(m0, std::abs(x[i]));
    m1 = std::max(m1, std::abs(x1[i]));
    m2 = std::max(m2, std::abs(x2[i]));
    m3 = std::max(m3, std::abs(x3[i]));
  }
  for (index_t i = 4 * quarter; i < len; ++i) {
    s0 += x[i] * x[i];
    m0 = std::max(m0, std::abs(x[i]));
  }
  p.norm += static_cast<double>((s0 + s1) + (s2 + s3));
  p.max_abs = std::max(p.max_abs, static_cast<double>(std::max(std::max(m0, m1), std::max(m2, m3))));
}

// L2 norm and max |.| in one pass.
template <class T>
GradientMagnitude magnitude(const Tensor<T>& t) {
  const std::vector<GradientMagnitude> partial = over_chunks<GradientMagnitude>(
      t.size(), split_written,
      [&](index_t begin, index_t len, GradientMagnitude& p) { add_magnitude(t.data() + begin, len, p); });
  GradientMagnitude total;
  for (const GradientMagnitude& p : partial) {
    total.norm += p.norm;
    total.max_abs = std::max(total.max_abs, p.max_abs);
  }
  total.norm = std::sqrt(total.norm);
  return total;
}

struct ParameterScan {
  GradientMagnitude grad;
  double weight_norm = 0;
};
// Adds a chunk of a parameter to p (sums of squares until the sqrt), and
// copies the values into `keep` when Copy. (A template rather than a branch
// inside the loop, which would keep it from vectorising.)
template <bool Copy, class T>
void scan_chunk(const T* g, const T* w, T* keep, index_t len, ParameterScan& p) {
  T g2 = 0, gmax = 0, w2 = 0;
#ifdef _OPENMP
#pragma omp simd reduction(+ : g2, w2) reduction(max : gmax)
#endif
  for (index_t i = 0; i < len; ++i) {
    g2 += g[i] * g[i];
    gmax = std::max(gmax, std::abs(g[i]));
    w2 += w[i] * w[i];
    if constexpr (Copy) keep[i] = w[i];
  }
  p.grad.norm += static_cast<double>(g2);
  p.grad.max_abs = std::max(p.grad.max_abs, static_cast<double>(gmax));
  p.weight_norm += static_cast<double>(w2);
}

// The gradient's magnitude and the value's norm, and the value copied into
// `keep` (when not null), in one pass over both tensors.
template <class T>
ParameterScan scan_parameter(const Tensor<T>& grad, const Tensor<T>& value, T* keep) {
  const std::vector<ParameterScan> partial =
      over_chunks<ParameterScan>(value.size(), split_parameters, [&](index_t begin, index_t len, ParameterScan& p) {
        if (keep)
          scan_chunk<true>(grad.data() + begin, value.data() + begin, keep + begin, len, p);
        else
          scan_chunk<false, T>(grad.data() + begin, value.data() + begin, nullptr, len, p);
      });
  ParameterScan total;
  for (const ParameterScan& p : partial) {
    total.grad.norm += p.grad.norm;
    total.grad.max_abs = std::max(total.grad.max_abs, p.grad.max_abs);
    total.weight_norm += p.weight_norm;
  }
  total.grad.norm = std::sqrt(total.grad.norm);
  total.weight_norm = std::sqrt(total.weight_norm);
  return total;
}

}  // namespace glassbox::inspect::detail
