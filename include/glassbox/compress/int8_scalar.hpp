#pragma once
// The int8 path's data layout, its requantization epilogue and the scalar
// twins of its kernels (compress/int8_gemm.hpp picks the kernel a build
// runs). The scalar loops define the numbers: every vector kernel must give
// these bytes exactly (tests/test_int8_kernels.cpp checks each build's).
//   acc        = sum_k x_k * w_k                   uint8 activations x int8 weights -> int32
//   C          = float(acc + offset[c]) * scale[c]
//   float out  = C                                 (the last layer: dequantized)
//   uint8 out  = clamp(nearbyint(C) + zero_point, low, high)
// Activations are stored as uint8 (q + 128) because AVX-512 VNNI's vpdpbusd
// multiplies unsigned by signed bytes; offset[c] folds the zero point and the
// int32 bias back in.
//
// Images are NHWC inside the int8 path, each pixel's channels padded to a
// stride that is a multiple of 4: one 4-byte broadcast then feeds 4 input
// channels to 16 output channels at once, straight from the image, without
// im2col. Conv weights are laid out [kh][kw][ceil(in / 4)][out16][4], out16 =
// out rounded up to 16 (padding zero), so 64 bytes hold 4 input channels of
// 16 output channels. A 1-channel image (stride 1) would waste three
// quarters of every multiply that way: its kernel rows are read as
// round_up(kw, 4) consecutive pixels instead, weights [kh][ceil(kw / 4)][out16][4]
// (zero beyond kw, so the extra pixels, or the image's 4 spare bytes, count
// nothing). Without padding that reads the image directly (a kh x 1 kernel of
// ceil(kw / 4) quads per tap); with padding each position's patch is gathered
// first (build_patches) and convolved 1x1.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "glassbox/core/shape.hpp"
#include "glassbox/nn/window.hpp"

namespace glassbox::quant::detail {

inline index_t round_up(index_t n, index_t multiple) { return (n + multiple - 1) / multiple * multiple; }

struct Epilogue {
  const std::int32_t* offset;  // per output channel
  const float* scale;          // per output channel
  std::int32_t zero_point = 0;
  std::int32_t low = 0, high = 255;
};

// Integer sums wrap around as vpdpbusd's do (defined behaviour, same result).
inline std::int32_t wrapping_add(std::int32_t a, std::int32_t b) {
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(a) + static_cast<std::uint32_t>(b));
}
inline std::int32_t wrapping_mul(std::int32_t a, std::int32_t b) {
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(a) * static_cast<std::uint32_t>(b));
}

inline void store(const Epilogue& e, index_t c, std::int32_t acc, float* out) {
  *out = static_cast<float>(wrapping_add(acc, e.offset[c])) * e.scale[c];
}
// Clamped in float before the conversion (as the vector path: max, min, then
// round), so no value, not even NaN or infinity, converts out of range.
inline void store(const Epilogue& e, index_t c, std::int32_t acc, std::uint8_t* out) {
  float v = static_cast<float>(wrapping_add(acc, e.offset[c])) * e.scale[c];
  const auto low = static_cast<float>(e.low - e.zero_point), high = static_cast<float>(e.high - e.zero_point);
  v = v > low ? v : low;  // NaN -> low, as vmaxps(v, low)
  v = v < high ? v : high;
  *out = static_cast<std::uint8_t>(static_cast<std::int32_t>(std::nearbyint(v)) + e.zero_point);
}

// One NHWC image through a convolution: in is h x w pixels of in_stride
// bytes, out gets oh x ow pixels of out16 values (uint8, or float for the
// last layer). `padding_pixel` holds in_stride bytes of the input zero point.
struct ConvGeometry {
  index_t h, w, in_stride, quads;  // quads = ceil(in_channels / 4) per pixel
  index_t out16;                   // output channels rounded up to 16
  nn::Window2D window;
  nn::Window2D::Pads pads;
  nn::Size2 out;
  std::vector<index_t> tap_offsets;  // byte offset of each tap (ki, kj) from the origin pixel

  ConvGeometry(index_t h_, index_t w_, index_t in_stride_, index_t quads_, index_t out16_, const nn::Window2D& win,
               nn::Size2 out_)
      : h(h_),
        w(w_),
        in_stride(in_stride_),
        quads(quads_),
        out16(out16_),
        window(win),
        pads(win.pads(h_, w_)),
        out(out_) {
    for (index_t ki = 0; ki < win.kernel.h; ++ki)
      for (index_t kj = 0; kj < win.kernel.w; ++kj)
        tap_offsets.push_back((ki * win.dilation.h * w + kj * win.dilation.w) * in_stride);
  }
  // Whether every tap of the origin lies inside the image.
  bool interior(index_t y, index_t x) const {
    return y >= 0 && x >= 0 && y + (window.kernel.h - 1) * window.dilation.h < h &&
           x + (window.kernel.w - 1) * window.dilation.w < w;
  }
};

// Output position p's top-left input pixel (before dilation), which may lie in the padding.
struct Origin {
  index_t y, x;
};
inline Origin origin(const ConvGeometry& g, index_t p) {
  return {(p / g.out.w) * g.window.stride.h - g.pads.top, (p % g.out.w) * g.window.stride.w - g.pads.left};
}

// The input pixel under kernel tap (ki, kj) from an origin, or the padding pixel.
inline const std::uint8_t* tap(const ConvGeometry& g, const std::uint8_t* image, const std::uint8_t* padding_pixel,
                               Origin o, index_t ki, index_t kj) {
  const index_t iy = o.y + ki * g.window.dilation.h, ix = o.x + kj * g.window.dilation.w;
  if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) return padding_pixel;
  return image + (iy * g.w + ix) * g.in_stride;
}

// The int32 sum of output position p, channel c (the scalar path).
inline std::int32_t conv_sum(const ConvGeometry& g, const std::uint8_t* image, const std::uint8_t* padding_pixel,
                             const std::int8_t* weights, index_t p, index_t c) {
  std::int32_t acc = 0;
  for (index_t ki = 0; ki < g.window.kernel.h; ++ki)
    for (index_t kj = 0; kj < g.window.kernel.w; ++kj) {
      const std::uint8_t* src = tap(g, image, padding_pixel, origin(g, p), ki, kj);
      const std::int8_t* w = weights + (ki * g.window.kernel.w + kj) * g.quads * g.out16 * 4 + c * 4;
      for (index_t q = 0; q < g.quads; ++q)
        for (index_t j = 0; j < 4; ++j)
          acc = wrapping_add(acc, std::int32_t(src[4 * q + j]) * std::int32_t(w[q * g.out16 * 4 + j]));
    }
  return acc;
}

// One image through a convolution, one sum at a time: out gets oh x ow
// pixels of out16 values (NHWC), or with pool the (oh / 2) x (ow / 2) maxima
// of 2x2 windows.
template <class Out>
void conv_image_scalar(const ConvGeometry& g, const std::uint8_t* image, const std::uint8_t* padding_pixel,
                       const std::int8_t* weights, const Epilogue& e, Out* out, bool pool) {
  const index_t positions = g.out.h * g.out.w, ph = g.out.h / 2, pw = g.out.w / 2;
  if (pool) {
    for (index_t py = 0; py < ph; ++py)
      for (index_t px = 0; px < pw; ++px) {
        const index_t p = 2 * py * g.out.w + 2 * px;
        for (index_t c = 0; c < g.out16; ++c) {
          const std::int32_t m = std::max(std::max(conv_sum(g, image, padding_pixel, weights, p, c),
                                                   conv_sum(g, image, padding_pixel, weights, p + 1, c)),
                                          std::max(conv_sum(g, image, padding_pixel, weights, p + g.out.w, c),
                                                   conv_sum(g, image, padding_pixel, weights, p + g.out.w + 1, c)));
          store(e, c, m, out + (py * pw + px) * g.out16 + c);
        }
      }
    return;
  }
  for (index_t p = 0; p < positions; ++p)
    for (index_t c = 0; c < g.out16; ++c)
      store(e, c, conv_sum(g, image, padding_pixel, weights, p, c), out + p * g.out16 + c);
}

// out(n, m) for a dense layer over the rows x (n x k, contiguous) with
// weights (m x k, contiguous); rows [first, last) of x.
template <class Out>
void dense_rows_scalar(const std::uint8_t* x, index_t first, index_t last, index_t k, const std::int8_t* weights,
                       index_t m, const Epilogue& e, Out* out) {
  for (index_t n = first; n < last; ++n) {
    const std::uint8_t* row = x + n * k;
    for (index_t c = 0; c < m; ++c) {
      std::int32_t acc = 0;
      for (index_t j = 0; j < k; ++j) acc = wrapping_add(acc, std::int32_t(row[j]) * std::int32_t(weights[c * k + j]));
      store(e, c, acc, out + n * m + c);
    }
  }
}

// The patches of a 1-channel image (stride 1): for output position p, kh
// rows of kw4 = round_up(kw, 4) bytes, pixel (iy, ix + j * dilation) or the
// zero point outside the image. Beyond kw the bytes are whatever follows in
// memory (the image buffer keeps 4 spare bytes): their weights are zero.
inline void build_patches(const ConvGeometry& g, const std::uint8_t* image, std::uint8_t zero, std::uint8_t* patches) {
  const index_t kh = g.window.kernel.h, kw = g.window.kernel.w, kw4 = round_up(kw, 4);
  const index_t positions = g.out.h * g.out.w;
  for (index_t p = 0; p < positions; ++p) {
    const Origin o = origin(g, p);
    const bool whole_rows = g.window.dilation.w == 1 && o.x >= 0 && o.x + kw <= g.w;
    for (index_t ki = 0; ki < kh; ++ki) {
      std::uint8_t* dst = patches + (p * kh + ki) * kw4;
      const index_t iy = o.y + ki * g.window.dilation.h;
      if (iy < 0 || iy >= g.h) {
        std::fill(dst, dst + kw4, zero);
      } else if (whole_rows) {
        for (index_t q = 0; q < kw4; q += 4) std::memcpy(dst + q, image + iy * g.w + o.x + q, 4);  // inlined moves
      } else {
        for (index_t j = 0; j < kw4; ++j) {
          const index_t ix = o.x + j * g.window.dilation.w;
          dst[j] = j < kw && ix >= 0 && ix < g.w ? image[iy * g.w + ix] : zero;
        }
      }
    }
  }
}

// Max pooling of one NHWC image of `stride`-byte pixels (padding never wins:
// every window holds a real pixel).
inline void max_pool_image(const std::uint8_t* image, index_t h, index_t w, index_t stride, const nn::Window2D& win,
                           const nn::Window2D::Pads& pads, nn::Size2 out, std::uint8_t* result) {
  const bool two_by_two = win.kernel.h == 2 && win.kernel.w == 2 && win.stride.h == 2 && win.stride.w == 2 &&
                          pads.top == 0 && pads.left == 0 && 2 * out.h <= h && 2 * out.w <= w;
  for (index_t oy = 0; oy < out.h; ++oy)
    for (index_t ox = 0; ox < out.w; ++ox) {
      std::uint8_t* __restrict dst = result + (oy * out.w + ox) * stride;
      if (two_by_two) {  // the common case in one pass
        const std::uint8_t* __restrict a = image + (2 * oy * w + 2 * ox) * stride;
        const std::uint8_t* __restrict b = a + w * stride;
        for (index_t c = 0; c < stride; ++c)
          dst[c] = std::max(std::max(a[c], a[c + stride]), std::max(b[c], b[c + stride]));
        continue;
      }
      std::fill(dst, dst + stride, std::uint8_t(0));
      for (index_t ky = 0; ky < win.kernel.h; ++ky) {
        const index_t iy = oy * win.stride.h - pads.top + ky;
        if (iy < 0 || iy >= h) continue;
        for (index_t kx = 0; kx < win.kernel.w; ++kx) {
          const index_t ix = ox * win.stride.w - pads.left + kx;
          if (ix < 0 || ix >= w) continue;
          const std::uint8_t* __restrict src = image + (iy * w + ix) * stride;
          for (index_t c = 0; c < stride; ++c) dst[c] = std::max(dst[c], src[c]);
        }
      }
    }
}

}  // namespace glassbox::quant::detail
