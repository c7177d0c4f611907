// The machine's float limits, for bench/compare.sh's GFLOP/s columns:
//   peak fma   independent fused multiply-adds on registers, on every thread
//              (the arithmetic limit no kernel can pass)
//   peak gemm  Eigen's 1024 x 1024 float GEMM on one thread and on all (what a
//              good GEMM reaches: the practical limit of large products)
// Each the median of 5 runs. Built with the benchmarks' -march=native.

#include <immintrin.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "bench_util.hpp"

namespace {

#if defined(__AVX512F__)
using Vector = __m512;
constexpr int kLanes = 16;
inline Vector fma(Vector a, Vector b, Vector c) { return _mm512_fmadd_ps(a, b, c); }
inline Vector splat(float v) { return _mm512_set1_ps(v); }
inline float first_lane(Vector v) { return _mm512_cvtss_f32(v); }
#elif defined(__FMA__)
using Vector = __m256;
constexpr int kLanes = 8;
inline Vector fma(Vector a, Vector b, Vector c) { return _mm256_fmadd_ps(a, b, c); }
inline Vector splat(float v) { return _mm256_set1_ps(v); }
inline float first_lane(Vector v) { return _mm256_cvtss_f32(v); }
#else
using Vector = __m128;
constexpr int kLanes = 4;
inline Vector fma(Vector a, Vector b, Vector c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
inline Vector splat(float v) { return _mm_set1_ps(v); }
inline float first_lane(Vector v) { return _mm_cvtss_f32(v); }
#endif

// 12 independent chains cover the FMA latency (4-5 cycles) of two pipes.
constexpr int kChains = 12;

float fma_chains(long long iterations) {
  Vector acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = splat(static_cast<float>(c) * 1e-3f);
  const Vector a = splat(0.999999f), b = splat(1e-7f);
  for (long long i = 0; i < iterations; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = fma(acc[c], a, b);
  float sum = 0;
  for (int c = 0; c < kChains; ++c) sum += first_lane(acc[c]);
  return sum;
}

}  // namespace

int main() {
  using namespace glassbox;
  const int threads = num_threads();
  const long long iterations = 20'000'000;
  std::vector<float> sink(static_cast<std::size_t>(threads));
  const double fma_seconds = bench::median_seconds([&] {
    parallel_for(threads, threads,
                 [&](std::ptrdiff_t t) { sink[static_cast<std::size_t>(t)] = fma_chains(iterations); });
  });
  const double fma_flops = 2.0 * kLanes * kChains * static_cast<double>(iterations) * threads;
  std::printf("peak fma %.1f GFLOP/s (%d threads; check %g)\n", fma_flops / fma_seconds * 1e-9, threads, sink[0]);

  const index_t n = 1024;
  Eigen::MatrixXf a = Eigen::MatrixXf::Random(n, n), b = Eigen::MatrixXf::Random(n, n), c(n, n);
  for (int gemm_threads : {1, threads}) {
    Eigen::setNbThreads(gemm_threads);
    const double seconds = bench::median_seconds([&] { c.noalias() = a * b; });
    std::printf("peak gemm%d %.1f GFLOP/s (Eigen, %td x %td, %d thread%s)\n", gemm_threads,
                2.0 * n * n * n / seconds * 1e-9, n, n, gemm_threads, gemm_threads == 1 ? "" : "s");
  }
  Eigen::setNbThreads(threads);
  return 0;
}
