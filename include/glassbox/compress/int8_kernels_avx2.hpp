#pragma once
// The int8 kernels on AVX2, for CPUs without AVX-512 VNNI, compiled where
// the build targets AVX2 (-march=native or -mavx2). They compute exactly
// what the scalar twins in int8_scalar.hpp compute
// (tests/test_int8_kernels.cpp).
//
// AVX2's byte product vpmaddubsw saturates its pair sums to int16 (255 * 127
// * 2 does not fit), so it cannot give the exact sums. Instead each 32-bit
// lane of 4 bytes is split into its even and odd bytes, widened in place to
// int16 (activations zero-extended, weights sign-extended by shifts), and
// vpmaddwd sums the exact pair products into int32: two vpmaddwd per 32
// byte products, against one vpdpbusd per 64 with VNNI. Same layout as the
// AVX-512 kernels: 16 output channels are two 256-bit weight vectors.

#include "glassbox/compress/int8_scalar.hpp"

#if defined(__AVX2__)
#include <immintrin.h>
#define GLASSBOX_INT8_AVX2 1

namespace glassbox::quant::detail::avx2 {

// A lane's even bytes as int16, and its odd bytes (weights: signed).
inline __m256i even_signed(__m256i w) { return _mm256_srai_epi16(_mm256_slli_epi16(w, 8), 8); }
inline __m256i odd_signed(__m256i w) { return _mm256_srai_epi16(w, 8); }
inline __m256i even_unsigned(__m256i a) { return _mm256_and_si256(a, _mm256_set1_epi16(0x00ff)); }
inline __m256i odd_unsigned(__m256i a) { return _mm256_srli_epi16(a, 8); }

// acc + the 4-byte dot products of a's and w's lanes (as vpdpbusd), given
// a's even and odd bytes widened.
inline __m256i dot4(__m256i acc, __m256i a_even, __m256i a_odd, __m256i w_even, __m256i w_odd) {
  return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(a_even, w_even), _mm256_madd_epi16(a_odd, w_odd)));
}

inline __m256 dequantize8(const Epilogue& e, index_t c, __m256i acc) {
  const __m256i offset = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.offset + c));
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(acc, offset)), _mm256_loadu_ps(e.scale + c));
}
inline void store8(const Epilogue& e, index_t c, __m256i acc, float* out) {
  _mm256_storeu_ps(out, dequantize8(e, c, acc));
}
inline void store8(const Epilogue& e, index_t c, __m256i acc, std::uint8_t* out) {
  __m256 v = _mm256_max_ps(dequantize8(e, c, acc), _mm256_set1_ps(static_cast<float>(e.low - e.zero_point)));
  v = _mm256_min_ps(v, _mm256_set1_ps(static_cast<float>(e.high - e.zero_point)));
  const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(e.zero_point));  // nearest, ties to even
  // q lies in [low, high] within 0..255: the saturating packs keep it.
  const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_packus_epi16(words, words));
}

// One tile: PT output positions x 16 output channels from c16 (two vectors
// of 8), as avx512::conv_tile; pooled tiles store the maximum of their 4
// positions' sums.
template <int PT, bool POOL, class Out>
void conv_tile(const ConvGeometry& g, const std::uint8_t* image, const std::uint8_t* padding_pixel,
               const std::int8_t* weights, const index_t* positions, index_t c16, const Epilogue& e, Out* out) {
  __m256i acc[PT][2];
  Origin origins[PT];
  index_t base[PT];  // byte offsets: a pointer into the padding would be undefined
  bool interior = true;
  for (int t = 0; t < PT; ++t) {
    origins[t] = origin(g, positions[t]);
    interior = interior && g.interior(origins[t].y, origins[t].x);
    base[t] = (origins[t].y * g.w + origins[t].x) * g.in_stride;
    acc[t][0] = acc[t][1] = _mm256_setzero_si256();
  }
  for (index_t ki = 0; ki < g.window.kernel.h; ++ki)
    for (index_t kj = 0; kj < g.window.kernel.w; ++kj) {
      const std::uint8_t* src[PT];
      const index_t offset = g.tap_offsets[std::size_t(ki * g.window.kernel.w + kj)];
      for (int t = 0; t < PT; ++t)
        src[t] = interior ? image + base[t] + offset : tap(g, image, padding_pixel, origins[t], ki, kj);
      const std::int8_t* wq = weights + ((ki * g.window.kernel.w + kj) * g.quads * g.out16 + c16) * 4;
      for (index_t q = 0; q < g.quads; ++q, wq += g.out16 * 4) {
        __m256i w_even[2], w_odd[2];
        for (int v = 0; v < 2; ++v) {
          const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + 32 * v));
          w_even[v] = even_signed(w);
          w_odd[v] = odd_signed(w);
        }
        for (int t = 0; t < PT; ++t) {
          std::uint32_t quad;
          std::memcpy(&quad, src[t] + 4 * q, 4);
          // The broadcast's even and odd bytes, widened before broadcasting.
          const __m256i a_even = _mm256_set1_epi32(static_cast<int>(quad & 0x00ff00ffu));
          const __m256i a_odd = _mm256_set1_epi32(static_cast<int>((quad >> 8) & 0x00ff00ffu));
          for (int v = 0; v < 2; ++v) acc[t][v] = dot4(acc[t][v], a_even, a_odd, w_even[v], w_odd[v]);
        }
      }
    }
  if constexpr (POOL) {
    for (int v = 0; v < 2; ++v) {
      const __m256i m =
          _mm256_max_epi32(_mm256_max_epi32(acc[0][v], acc[1][v]), _mm256_max_epi32(acc[2][v], acc[3][v]));
      store8(e, c16 + 8 * v, m, out + c16 + 8 * v);
    }
  } else {
    for (int t = 0; t < PT; ++t)
      for (int v = 0; v < 2; ++v) store8(e, c16 + 8 * v, acc[t][v], out + t * g.out16 + c16 + 8 * v);
  }
}

// Dense rows [first, last) (see dense_rows_scalar): one row against 4
// weight rows at a time, 32 bytes per step, the last k % 32 bytes scalar.
template <class Out>
void dense_rows(const std::uint8_t* x, index_t first, index_t last, index_t k, const std::int8_t* weights, index_t m,
                const Epilogue& e, Out* out) {
  const index_t vector_k = k / 32 * 32;
  for (index_t n = first; n < last; ++n) {
    const std::uint8_t* row = x + n * k;
    for (index_t c = 0; c < m; c += 4) {
      const int rows = static_cast<int>(std::min<index_t>(4, m - c));
      __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
      for (index_t j = 0; j < vector_k; j += 32) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + j));
        const __m256i x_even = even_unsigned(xv), x_odd = odd_unsigned(xv);
        for (int r = 0; r < 4; ++r)
          if (r < rows) {
            const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(weights + (c + r) * k + j));
            acc[r] = dot4(acc[r], x_even, x_odd, even_signed(w), odd_signed(w));
          }
      }
      for (int r = 0; r < rows; ++r) {
        alignas(32) std::int32_t lanes[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc[r]);
        std::int32_t sum = 0;
        for (std::int32_t lane : lanes) sum = wrapping_add(sum, lane);
        const std::int8_t* w = weights + (c + r) * k;
        for (index_t j = vector_k; j < k; ++j) sum = wrapping_add(sum, std::int32_t(row[j]) * std::int32_t(w[j]));
        store(e, c + r, sum, out + n * m + c + r);
      }
    }
  }
}

// What int8_gemm.hpp's drivers call.
struct Kernels {
  static constexpr const char* name = "AVX2";
  template <int PT, bool POOL, class Out>
  static void tiles(const ConvGeometry& g, const std::uint8_t* image, const std::uint8_t* padding_pixel,
                    const std::int8_t* weights, const index_t* positions, const Epilogue& e, Out* out) {
    for (index_t c = 0; c < g.out16; c += 16)
      avx2::conv_tile<PT, POOL>(g, image, padding_pixel, weights, positions, c, e, out);
  }
  template <class Out>
  static void rows(const std::uint8_t* x, index_t first, index_t last, index_t k, const std::int8_t* weights, index_t m,
                   const Epilogue& e, Out* out) {
    avx2::dense_rows(x, first, last, k, weights, m, e, out);
  }
};

}  // namespace glassbox::quant::detail::avx2
#endif
