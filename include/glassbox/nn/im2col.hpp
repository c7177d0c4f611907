#pragma once
// im2col / col2im for one NCHW sample: the lowering that turns a convolution
// into one GEMM. col is (C * kh * kw) x (oh * ow), row-major, row index
// (c * kh + ki) * kw + kj; positions in the padding read as zero.

#include <algorithm>

#include "glassbox/nn/window.hpp"

namespace glassbox::nn::detail {

// Output columns ox whose input column ox * stride + offset lies in [0, width).
inline void valid_range(index_t offset, index_t stride, index_t width, index_t out_w, index_t& lo, index_t& hi) {
  lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  hi = offset > width - 1 ? 0 : (width - 1 - offset) / stride + 1;
  lo = std::min(lo, out_w);
  hi = std::clamp(hi, lo, out_w);
}

template <class T>
void im2col(const T* x, index_t channels, index_t h, index_t w, const Window2D& win, const Window2D::Pads& pads,
            Size2 out, T* col) {
  const index_t plane = out.h * out.w;
  for (index_t c = 0; c < channels; ++c)
    for (index_t ki = 0; ki < win.kernel.h; ++ki)
      for (index_t kj = 0; kj < win.kernel.w; ++kj) {
        T* row = col + ((c * win.kernel.h + ki) * win.kernel.w + kj) * plane;
        const index_t x0 = kj * win.dilation.w - pads.left;
        index_t lo, hi;
        valid_range(x0, win.stride.w, w, out.w, lo, hi);
        for (index_t oy = 0; oy < out.h; ++oy) {
          T* dst = row + oy * out.w;
          const index_t iy = oy * win.stride.h - pads.top + ki * win.dilation.h;
          if (iy < 0 || iy >= h) {
            std::fill(dst, dst + out.w, T(0));
            continue;
          }
          const T* src = x + (c * h + iy) * w;  // input column of ox: ox * stride + x0
          // Rows are short (26 values in the seed CNN): the guards and the
          // plain loop avoid a library call per piece of a row.
          if (lo > 0) std::fill(dst, dst + lo, T(0));
          if (win.stride.w == 1)
            for (index_t ox = lo; ox < hi; ++ox) dst[ox] = src[ox + x0];
          else
            for (index_t ox = lo; ox < hi; ++ox) dst[ox] = src[ox * win.stride.w + x0];
          if (hi < out.w) std::fill(dst + hi, dst + out.w, T(0));
        }
      }
}

// dx += the scatter of col back onto the sample (the adjoint of im2col).
template <class T>
void col2im(const T* col, index_t channels, index_t h, index_t w, const Window2D& win, const Window2D::Pads& pads,
            Size2 out, T* dx) {
  const index_t plane = out.h * out.w;
  for (index_t c = 0; c < channels; ++c)
    for (index_t ki = 0; ki < win.kernel.h; ++ki)
      for (index_t kj = 0; kj < win.kernel.w; ++kj) {
        const T* row = col + ((c * win.kernel.h + ki) * win.kernel.w + kj) * plane;
        const index_t x0 = kj * win.dilation.w - pads.left;
        index_t lo, hi;
        valid_range(x0, win.stride.w, w, out.w, lo, hi);
        for (index_t oy = 0; oy < out.h; ++oy) {
          const index_t iy = oy * win.stride.h - pads.top + ki * win.dilation.h;
          if (iy < 0 || iy >= h) continue;
          const T* src = row + oy * out.w;
          T* dst = dx + (c * h + iy) * w;
          for (index_t ox = lo; ox < hi; ++ox) dst[ox * win.stride.w + x0] += src[ox];
        }
      }
}

}  // namespace glassbox::nn::detail
