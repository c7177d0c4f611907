#pragma once
// The int8 GEMM of the int8 inference path, with its requantization fused:
//   acc(m, n)  = sum_k A(m, k) * B(k, n)          int8 weights x uint8 activations -> int32
//   C          = float(acc + offset[m]) * scale[m]
//   float out  = C                                 (the last layer: dequantized)
//   uint8 out  = clamp(nearbyint(C) + zero_point, low, high)
// Activations are stored as uint8 (q + 128) because AVX-512 VNNI's vpdpbusd
// multiplies unsigned by signed bytes; offset[m] folds the zero point and the
// int32 bias back in. Built with AVX-512 VNNI (-march=native on this CPU) the
// kernel runs 4 rows x 64 columns per tile on vpdpbusd; otherwise a scalar
// loop computes the identical numbers (the same integer sums, the same float
// operations), which the tests check in both builds.
//
// Layouts: A is M x Kp row-major, Kp = K rounded up to 4, padding zero. B is
// packed in groups of 4 rows: packed[((k / 4) * N + n) * 4 + k % 4] = B(k, n),
// so one 64-byte load holds 4 depths of 16 columns. out is M x N row-major.

#include <cmath>
#include <cstdint>
#include <cstring>

#include "glassbox/core/shape.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define GLASSBOX_INT8_VNNI 1
#endif

namespace glassbox::quant::detail {

inline index_t padded_depth(index_t k) { return (k + 3) / 4 * 4; }

// True when this build multiplies int8 with AVX-512 VNNI.
constexpr bool int8_gemm_uses_vnni() {
#ifdef GLASSBOX_INT8_VNNI
  return true;
#else
  return false;
#endif
}

struct Epilogue {
  const std::int32_t* offset;  // per row
  const float* scale;          // per row
  std::int32_t zero_point = 0;
  std::int32_t low = 0, high = 255;
};

inline void store(const Epilogue& e, index_t m, std::int32_t acc, float* out) {
  *out = static_cast<float>(acc + e.offset[m]) * e.scale[m];
}
inline void store(const Epilogue& e, index_t m, std::int32_t acc, std::uint8_t* out) {
  const float c = static_cast<float>(acc + e.offset[m]) * e.scale[m];
  const auto q = static_cast<std::int32_t>(std::nearbyint(c)) + e.zero_point;
  *out = static_cast<std::uint8_t>(q < e.low ? e.low : q > e.high ? e.high : q);
}

#ifdef GLASSBOX_INT8_VNNI
inline void store16(const Epilogue& e, index_t m, __m512i acc, __mmask16 mask, float* out) {
  const __m512 c = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(acc, _mm512_set1_epi32(e.offset[m]))),
                                 _mm512_set1_ps(e.scale[m]));
  _mm512_mask_storeu_ps(out, mask, c);
}
inline void store16(const Epilogue& e, index_t m, __m512i acc, __mmask16 mask, std::uint8_t* out) {
  const __m512 c = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(acc, _mm512_set1_epi32(e.offset[m]))),
                                 _mm512_set1_ps(e.scale[m]));
  __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(c), _mm512_set1_epi32(e.zero_point));  // nearest, ties to even
  q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(e.low)), _mm512_set1_epi32(e.high));
  _mm_mask_storeu_epi8(out, mask, _mm512_cvtepi32_epi8(q));
}

// Rows [row, row + MR) x columns [col, col + cols), cols <= 64.
template <int MR, class Out>
void tile(const std::int8_t* a, index_t kp, const std::uint8_t* b, index_t n, index_t row, index_t col, index_t cols,
          const Epilogue& e, Out* out) {
  __m512i acc[MR][4];
  __mmask16 mask[4];
  for (int v = 0; v < 4; ++v) {
    const index_t left = cols - 16 * v;
    mask[v] = left >= 16 ? __mmask16(0xffff) : left > 0 ? __mmask16((1u << left) - 1) : __mmask16(0);
    for (int i = 0; i < MR; ++i) acc[i][v] = _mm512_setzero_si512();
  }
  for (index_t g = 0; g < kp / 4; ++g) {
    const std::uint8_t* bg = b + (g * n + col) * 4;
    __m512i bv[4];
    for (int v = 0; v < 4; ++v) bv[v] = _mm512_maskz_loadu_epi32(mask[v], bg + 64 * v);
    for (int i = 0; i < MR; ++i) {
      std::int32_t quad;
      std::memcpy(&quad, a + (row + i) * kp + 4 * g, 4);
      const __m512i av = _mm512_set1_epi32(quad);
      for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_dpbusd_epi32(acc[i][v], bv[v], av);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < 4; ++v)
      if (mask[v]) store16(e, row + i, acc[i][v], mask[v], out + (row + i) * n + col + 16 * v);
}
#endif

// out(m, n) for every row m < rows and columns [col_begin, col_end).
template <class Out>
void gemm_u8s8(const std::int8_t* a, index_t rows, index_t kp, const std::uint8_t* b, index_t n, index_t col_begin,
               index_t col_end, const Epilogue& e, Out* out) {
#ifdef GLASSBOX_INT8_VNNI
  for (index_t col = col_begin; col < col_end; col += 64) {
    const index_t cols = std::min<index_t>(64, col_end - col);
    index_t row = 0;
    for (; row + 4 <= rows; row += 4) tile<4>(a, kp, b, n, row, col, cols, e, out);
    for (; row < rows; ++row) tile<1>(a, kp, b, n, row, col, cols, e, out);
  }
#else
  for (index_t m = 0; m < rows; ++m)
    for (index_t col = col_begin; col < col_end; ++col) {
      std::int32_t acc = 0;
      for (index_t k = 0; k < kp; ++k)
        acc += std::int32_t(a[m * kp + k]) * std::int32_t(b[((k / 4) * n + col) * 4 + k % 4]);
      store(e, m, acc, out + m * n + col);
    }
#endif
}

// Packs K x N rows (row r at rows + r * row_stride, columns contiguous) into
// the kernel's layout, zero rows up to Kp.
inline void pack_rows(const std::uint8_t* rows, index_t k, index_t n, index_t row_stride, std::uint8_t* packed) {
  const index_t kp = padded_depth(k);
  for (index_t g = 0; g < kp / 4; ++g)
    for (index_t j = 0; j < 4; ++j) {
      const index_t r = 4 * g + j;
      std::uint8_t* dst = packed + g * n * 4 + j;
      if (r < k) {
        const std::uint8_t* src = rows + r * row_stride;
        for (index_t c = 0; c < n; ++c) dst[4 * c] = src[c];
      } else {
        for (index_t c = 0; c < n; ++c) dst[4 * c] = 0;
      }
    }
}

// Packs the transpose of an N x K row-major matrix (samples by features), so
// that B(k, n) = x(n, k).
inline void pack_transposed(const std::uint8_t* x, index_t n, index_t k, std::uint8_t* packed) {
  const index_t kp = padded_depth(k);
  for (index_t c = 0; c < n; ++c) {
    const std::uint8_t* src = x + c * k;
    for (index_t g = 0; g < kp / 4; ++g) {
      std::uint8_t* dst = packed + (g * n + c) * 4;
      for (index_t j = 0; j < 4; ++j) dst[j] = 4 * g + j < k ? src[4 * g + j] : 0;
    }
  }
}

}  // namespace glassbox::quant::detail
