#pragma once
// Pool2D<T>: what max and average pooling share — the options, the window
// (stride defaulting to the kernel, no dilation) and the output shape.

#include <fmt/format.h>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/window.hpp"

namespace glassbox::nn {

struct PoolOptions {
  Size2 stride{0, 0};  // 0: the kernel size
  Padding padding = Padding::valid;
  Size2 pad{0, 0};  // with Padding::explicit_
};

// The pooling window: stride defaulting to the kernel, no dilation.
inline Window2D pool_window(const std::string& layer, Size2 kernel, const PoolOptions& o) {
  Window2D w{
      kernel, {o.stride.h ? o.stride.h : kernel.h, o.stride.w ? o.stride.w : kernel.w}, {1, 1}, o.padding, o.pad};
  w.validate(layer);
  // As PyTorch: every window keeps at least one real pixel.
  if (o.padding == Padding::explicit_ && (2 * o.pad.h > kernel.h || 2 * o.pad.w > kernel.w))
    throw Error(
        fmt::format("{}: padding {}x{} exceeds half the {}x{} kernel", layer, o.pad.h, o.pad.w, kernel.h, kernel.w));
  return w;
}

template <class T>
class Pool2D : public Layer<T> {
 public:
  std::string config() const override { return window_.str(); }
  const Window2D& window() const { return window_; }

  Shape output_shape(const Shape& in) const override {
    require_nchw(this->name(), in);
    const Size2 o = window_.output(this->name(), in[2], in[3]);
    return Shape{in[0], in[1], o.h, o.w};
  }

 protected:
  Pool2D(const std::string& kind, Size2 kernel, const PoolOptions& options)
      : window_(pool_window(kind, kernel, options)) {}
  Window2D window_;
};

GLASSBOX_PRECOMPILED_INSTANCE(class Pool2D<float>)
}  // namespace glassbox::nn
