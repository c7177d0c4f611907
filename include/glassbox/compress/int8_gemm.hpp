#pragma once
// The int8 kernels of the int8 inference path, each with requantization
// fused: uint8 activations x int8 weights -> int32 sums -> uint8 (or float,
// for the last layer). The layout and the numbers are defined by the scalar
// twins (int8_scalar.hpp); a build runs the fastest kernel set its target
// has, all with identical results:
//   AVX-512 VNNI  int8_kernels_avx512.hpp  (vpdpbusd)
//   AVX2          int8_kernels_avx2.hpp    (exact vpmaddwd on widened bytes)
//   otherwise     int8_scalar.hpp
// Which one is chosen at compile time (a header-only library follows its
// user's -m flags): -march=native picks the CPU's own.

#include "glassbox/compress/int8_kernels_avx2.hpp"
#include "glassbox/compress/int8_kernels_avx512.hpp"
#include "glassbox/compress/int8_scalar.hpp"

namespace glassbox::quant::detail {

#if defined(GLASSBOX_INT8_VNNI)
using Int8Kernels = avx512::Kernels;
#elif defined(GLASSBOX_INT8_AVX2)
using Int8Kernels = avx2::Kernels;
#else
struct Int8Kernels {
  static constexpr const char* name = "portable scalar loop";
};
#endif

// The kernel set this build multiplies int8 with, in words.
constexpr const char* int8_kernel_name() { return Int8Kernels::name; }

// One image through a convolution with a vector kernel set: tiles of 4
// output positions (with pool, the 4 of each 2x2 window), then the rest one
// by one. See conv_image_scalar for what it computes.
template <class Kernels, class Out>
void conv_image_with(const ConvGeometry& g, const std::uint8_t* image, const std::uint8_t* padding_pixel,
                     const std::int8_t* weights, const Epilogue& e, Out* out, bool pool) {
  const index_t positions = g.out.h * g.out.w, ph = g.out.h / 2, pw = g.out.w / 2;
  if (pool) {
    for (index_t py = 0; py < ph; ++py)
      for (index_t px = 0; px < pw; ++px) {
        const index_t p = 2 * py * g.out.w + 2 * px;
        const index_t window[4] = {p, p + 1, p + g.out.w, p + g.out.w + 1};
        Kernels::template tiles<4, true>(g, image, padding_pixel, weights, window, e, out + (py * pw + px) * g.out16);
      }
    return;
  }
  index_t p = 0;
  for (; p + 4 <= positions; p += 4) {
    const index_t run[4] = {p, p + 1, p + 2, p + 3};
    Kernels::template tiles<4, false>(g, image, padding_pixel, weights, run, e, out + p * g.out16);
  }
  for (; p < positions; ++p)
    Kernels::template tiles<1, false>(g, image, padding_pixel, weights, &p, e, out + p * g.out16);
}

// One image through a convolution: out gets oh x ow pixels of out16 values
// (NHWC), or with pool the (oh / 2) x (ow / 2) maxima of 2x2 windows.
template <class Out>
void conv_image(const ConvGeometry& g, const std::uint8_t* image, const std::uint8_t* padding_pixel,
                const std::int8_t* weights, const Epilogue& e, Out* out, bool pool = false) {
#if defined(GLASSBOX_INT8_VNNI) || defined(GLASSBOX_INT8_AVX2)
  conv_image_with<Int8Kernels>(g, image, padding_pixel, weights, e, out, pool);
#else
  conv_image_scalar(g, image, padding_pixel, weights, e, out, pool);
#endif
}

// out(n, m) for a dense layer over the rows x (n x k, contiguous) with
// weights (m x k, contiguous); rows [first, last) of x.
template <class Out>
void dense_rows(const std::uint8_t* x, index_t first, index_t last, index_t k, const std::int8_t* weights, index_t m,
                const Epilogue& e, Out* out) {
#if defined(GLASSBOX_INT8_VNNI) || defined(GLASSBOX_INT8_AVX2)
  Int8Kernels::rows(x, first, last, k, weights, m, e, out);
#else
  dense_rows_scalar(x, first, last, k, weights, m, e, out);
#endif
}

}  // namespace glassbox::quant::detail
