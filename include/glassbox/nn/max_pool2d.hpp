#pragma once
// MaxPool2D over NCHW input, as torch.nn.MaxPool2d / Keras MaxPooling2D:
// stride defaults to the kernel; padded positions never win. Backward routes
// each output gradient to the input position that won the forward (the first
// maximum on ties, as PyTorch).

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <vector>

#include "glassbox/core/threads.hpp"
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
class MaxPool2D : public Layer<T> {
 public:
  explicit MaxPool2D(Size2 kernel, PoolOptions options = {}) : window_(pool_window("max_pool2d", kernel, options)) {}

  std::string kind() const override { return "max_pool2d"; }
  std::string config() const override { return window_.str(); }

  Shape output_shape(const Shape& in) const override {
    require_nchw(this->name(), in);
    const Size2 o = window_.output(this->name(), in[2], in[3]);
    return Shape{in[0], in[1], o.h, o.w};
  }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    const Shape out = output_shape(x.shape());
    y.resize(out);
    const index_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3), oh = out[2], ow = out[3];
    const Window2D::Pads p = window_.pads(h, w);
    winners_.resize(static_cast<std::size_t>(y.size()));
    const T* xd = x.data();
    T* yd = y.data();
    index_t* wd = winners_.data();
    GLASSBOX_PARALLEL_FOR
    for (index_t plane = 0; plane < planes; ++plane) {
      const T* in = xd + plane * h * w;
      for (index_t oy = 0; oy < oh; ++oy)
        for (index_t ox = 0; ox < ow; ++ox) {
          T best = -std::numeric_limits<T>::infinity();
          index_t arg = -1;
          for (index_t ki = 0; ki < window_.kernel.h; ++ki) {
            const index_t iy = oy * window_.stride.h - p.top + ki;
            if (iy < 0 || iy >= h) continue;
            for (index_t kj = 0; kj < window_.kernel.w; ++kj) {
              const index_t ix = ox * window_.stride.w - p.left + kj;
              if (ix < 0 || ix >= w) continue;
              const T v = in[iy * w + ix];
              if (v > best || arg < 0 || std::isnan(v)) {  // NaN propagates, as in PyTorch
                best = v;
                arg = iy * w + ix;
              }
            }
          }
          const index_t o = (plane * oh + oy) * ow + ox;
          yd[o] = best;
          wd[o] = arg;
        }
    }
  }

  void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    dx->resize(x.shape());
    dx->set_zero();
    const index_t planes = x.dim(0) * x.dim(1), in_plane = x.dim(2) * x.dim(3);
    const index_t out_plane = dy.size() / (planes ? planes : 1);
    const T* g = dy.data();
    T* d = dx->data();
    const index_t* wd = winners_.data();
    GLASSBOX_PARALLEL_FOR
    for (index_t plane = 0; plane < planes; ++plane)
      for (index_t o = plane * out_plane; o < (plane + 1) * out_plane; ++o) d[plane * in_plane + wd[o]] += g[o];
  }

 private:
  Window2D window_;
  std::vector<index_t> winners_;  // per output: index of the max within its input plane
};

}  // namespace glassbox::nn
