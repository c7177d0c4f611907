#pragma once
// The int8 kernels on AVX-512 VNNI (vpdpbusd: 64 uint8 x int8 products
// summed into 16 int32 lanes per instruction), compiled where the build
// targets it (-march=native on such a CPU). They compute exactly what the
// scalar twins in int8_scalar.hpp compute (tests/test_int8_kernels.cpp).

#include "glassbox/compress/int8_scalar.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define GLASSBOX_INT8_VNNI 1

namespace glassbox::quant::detail::avx512 {

inline __m512 dequantize16(const Epilogue& e, index_t c, __m512i acc) {
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(acc, _mm512_loadu_si512(e.offset + c))),
                       _mm512_loadu_ps(e.scale + c));
}
inline void store16(const Epilogue& e, index_t c, __m512i acc, float* out) {
  _mm512_storeu_ps(out, dequantize16(e, c, acc));
}
inline void store16(const Epilogue& e, index_t c, __m512i acc, std::uint8_t* out) {
  __m512 v = _mm512_max_ps(dequantize16(e, c, acc), _mm512_set1_ps(static_cast<float>(e.low - e.zero_point)));
  v = _mm512_min_ps(v, _mm512_set1_ps(static_cast<float>(e.high - e.zero_point)));
  const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), _mm512_set1_epi32(e.zero_point));  // nearest, ties to even
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(q));
}

// One tile: PT output positions x 16 * CV output channels from c16. Plain
// tiles store each position (out points at the first one's pixel); pooled
// tiles hold the 4 positions of a 2x2 pooling window and store their maximum
// once: requantization is monotone in the int32 sum, so pooling the sums
// first gives exactly the bytes that pooling the outputs would.
template <int PT, int CV, bool POOL, class Out>
void conv_tile(const ConvGeometry& g, const std::uint8_t* image, const std::uint8_t* padding_pixel,
               const std::int8_t* weights, const index_t* positions, index_t c16, const Epilogue& e, Out* out) {
  __m512i acc[PT][CV];
  Origin origins[PT];
  index_t base[PT];  // byte offsets: a pointer into the padding would be undefined
  bool interior = true;
  for (int t = 0; t < PT; ++t) {
    origins[t] = origin(g, positions[t]);
    interior = interior && g.interior(origins[t].y, origins[t].x);
    base[t] = (origins[t].y * g.w + origins[t].x) * g.in_stride;
    for (int v = 0; v < CV; ++v) acc[t][v] = _mm512_setzero_si512();
  }
  for (index_t ki = 0; ki < g.window.kernel.h; ++ki)
    for (index_t kj = 0; kj < g.window.kernel.w; ++kj) {
      const std::uint8_t* src[PT];
      const index_t offset = g.tap_offsets[std::size_t(ki * g.window.kernel.w + kj)];
      for (int t = 0; t < PT; ++t)
        src[t] = interior ? image + base[t] + offset : tap(g, image, padding_pixel, origins[t], ki, kj);
      const std::int8_t* wq = weights + ((ki * g.window.kernel.w + kj) * g.quads * g.out16 + c16) * 4;
      for (index_t q = 0; q < g.quads; ++q, wq += g.out16 * 4) {
        __m512i wv[CV];
        for (int v = 0; v < CV; ++v) wv[v] = _mm512_loadu_si512(wq + 64 * v);
        for (int t = 0; t < PT; ++t) {
          std::int32_t quad;
          std::memcpy(&quad, src[t] + 4 * q, 4);
          const __m512i a = _mm512_set1_epi32(quad);
          for (int v = 0; v < CV; ++v) acc[t][v] = _mm512_dpbusd_epi32(acc[t][v], a, wv[v]);
        }
      }
    }
  if constexpr (POOL) {
    for (int v = 0; v < CV; ++v) {
      const __m512i m =
          _mm512_max_epi32(_mm512_max_epi32(acc[0][v], acc[1][v]), _mm512_max_epi32(acc[2][v], acc[3][v]));
      store16(e, c16 + 16 * v, m, out + c16 + 16 * v);
    }
  } else {
    for (int t = 0; t < PT; ++t)
      for (int v = 0; v < CV; ++v) store16(e, c16 + 16 * v, acc[t][v], out + t * g.out16 + c16 + 16 * v);
  }
}

template <int PT, bool POOL, class Out>
void conv_tiles(const ConvGeometry& g, const std::uint8_t* image, const std::uint8_t* padding_pixel,
                const std::int8_t* weights, const index_t* positions, const Epilogue& e, Out* out) {
  index_t c = 0;
  for (; c + 64 <= g.out16; c += 64) conv_tile<PT, 4, POOL>(g, image, padding_pixel, weights, positions, c, e, out);
  switch ((g.out16 - c) / 16) {
    case 3: conv_tile<PT, 3, POOL>(g, image, padding_pixel, weights, positions, c, e, out); break;
    case 2: conv_tile<PT, 2, POOL>(g, image, padding_pixel, weights, positions, c, e, out); break;
    case 1: conv_tile<PT, 1, POOL>(g, image, padding_pixel, weights, positions, c, e, out); break;
    default: break;
  }
}

// Dense rows [first, last) (see dense_rows_scalar): one row against 4
// weight rows at a time, 64 bytes per vpdpbusd, the tail under a mask.
template <class Out>
void dense_rows(const std::uint8_t* x, index_t first, index_t last, index_t k, const std::int8_t* weights, index_t m,
                const Epilogue& e, Out* out) {
  for (index_t n = first; n < last; ++n) {
    const std::uint8_t* row = x + n * k;
    for (index_t c = 0; c < m; c += 4) {
      const int rows = static_cast<int>(std::min<index_t>(4, m - c));
      __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
      for (index_t j = 0; j < k; j += 64) {
        const __mmask64 mask = k - j >= 64 ? ~__mmask64(0) : (__mmask64(1) << (k - j)) - 1;
        const __m512i xv = _mm512_maskz_loadu_epi8(mask, row + j);
        for (int r = 0; r < 4; ++r)
          if (r < rows)
            acc[r] = _mm512_dpbusd_epi32(acc[r], xv, _mm512_maskz_loadu_epi8(mask, weights + (c + r) * k + j));
      }
      for (int r = 0; r < rows; ++r) store(e, c + r, _mm512_reduce_add_epi32(acc[r]), out + n * m + c + r);
    }
  }
}

// What int8_gemm.hpp's drivers call.
struct Kernels {
  static constexpr const char* name = "AVX-512 VNNI";
  template <int PT, bool POOL, class Out>
  static void tiles(const ConvGeometry& g, const std::uint8_t* image, const std::uint8_t* padding_pixel,
                    const std::int8_t* weights, const index_t* positions, const Epilogue& e, Out* out) {
    avx512::conv_tiles<PT, POOL>(g, image, padding_pixel, weights, positions, e, out);
  }
  template <class Out>
  static void rows(const std::uint8_t* x, index_t first, index_t last, index_t k, const std::int8_t* weights, index_t m,
                   const Epilogue& e, Out* out) {
    avx512::dense_rows(x, first, last, k, weights, m, e, out);
  }
};

}  // namespace glassbox::quant::detail::avx512
#endif
