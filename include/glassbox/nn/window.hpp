#pragma once
// Window2D: the geometry shared by convolution and pooling — kernel, stride,
// dilation and padding over (H, W) — and the output size it gives. Padding
// "same" follows TensorFlow and PyTorch: out = ceil(in / stride), the extra
// pixel of an odd total going to the bottom/right.

#include <fmt/format.h>

#include <string>

#include "glassbox/nn/layer.hpp"

namespace glassbox::nn {

struct Size2 {
  index_t h = 1, w = 1;
};

enum class Padding { valid, same, explicit_ };

struct Window2D {
  Size2 kernel;
  Size2 stride{1, 1};
  Size2 dilation{1, 1};
  Padding padding = Padding::valid;
  Size2 pad{0, 0};  // for Padding::explicit_: zeros added on each side

  // Padding actually applied for an input of h x w: top, left, bottom, right.
  struct Pads {
    index_t top = 0, left = 0, bottom = 0, right = 0;
  };

  Pads pads(index_t h, index_t w) const {
    switch (padding) {
      case Padding::valid: return {};
      case Padding::explicit_: return {pad.h, pad.w, pad.h, pad.w};
      case Padding::same: {
        const index_t th = same_total(h, kernel.h, stride.h, dilation.h);
        const index_t tw = same_total(w, kernel.w, stride.w, dilation.w);
        return {th / 2, tw / 2, th - th / 2, tw - tw / 2};
      }
    }
    return {};
  }

  // Output h x w for an input of h x w, or an error naming the layer.
  Size2 output(const std::string& layer, index_t h, index_t w) const {
    const Pads p = pads(h, w);
    const index_t span_h = dilation.h * (kernel.h - 1) + 1, span_w = dilation.w * (kernel.w - 1) + 1;
    if (h + p.top + p.bottom < span_h || w + p.left + p.right < span_w)
      throw_shape_error(layer, fmt::format("input of {}x{} (padded {}x{}) is smaller than the {}x{} window", h, w,
                                           h + p.top + p.bottom, w + p.left + p.right, span_h, span_w));
    return {(h + p.top + p.bottom - span_h) / stride.h + 1, (w + p.left + p.right - span_w) / stride.w + 1};
  }

  // Throws for non-positive sizes or negative padding.
  void validate(const std::string& layer) const {
    if (kernel.h <= 0 || kernel.w <= 0 || stride.h <= 0 || stride.w <= 0 || dilation.h <= 0 || dilation.w <= 0 ||
        pad.h < 0 || pad.w < 0)
      throw Error(fmt::format("{}: kernel {}x{}, stride {}x{} and dilation {}x{} must be positive, padding {}x{} >= 0",
                              layer, kernel.h, kernel.w, stride.h, stride.w, dilation.h, dilation.w, pad.h, pad.w));
  }

  std::string str() const {
    std::string s = fmt::format("{}x{}", kernel.h, kernel.w);
    if (stride.h != 1 || stride.w != 1) s += fmt::format(", stride {}x{}", stride.h, stride.w);
    if (dilation.h != 1 || dilation.w != 1) s += fmt::format(", dilation {}x{}", dilation.h, dilation.w);
    if (padding == Padding::same) s += ", same";
    if (padding == Padding::explicit_) s += fmt::format(", pad {}x{}", pad.h, pad.w);
    return s;
  }

 private:
  static index_t same_total(index_t in, index_t k, index_t s, index_t d) {
    const index_t out = (in + s - 1) / s;
    const index_t needed = (out - 1) * s + d * (k - 1) + 1 - in;
    return needed > 0 ? needed : 0;
  }
};

// Requires a rank-4 (N, C, H, W) input.
inline void require_nchw(const std::string& layer, const Shape& in) {
  if (in.rank() != 4)
    throw_shape_error(layer, fmt::format("expects an NCHW input (batch, channels, height, width), got {}", in.str()));
}

}  // namespace glassbox::nn
