#pragma once
// AvgPool2D over NCHW input, as torch.nn.AvgPool2d: stride defaults to the
// kernel; with padding, the divisor counts the padded zeros
// (count_include_pad=true, PyTorch's default) or only real pixels (false).
// Keras' AveragePooling2D(padding="same") is Padding::same with false.

#include <fmt/format.h>

#include <algorithm>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/threads.hpp"
#include "glassbox/nn/pool2d.hpp"

namespace glassbox::nn {

template <class T>
class AvgPool2D : public Pool2D<T> {
 public:
  explicit AvgPool2D(Size2 kernel, PoolOptions options = {}, bool count_include_pad = true)
      : Pool2D<T>("avg_pool2d", kernel, options), count_include_pad_(count_include_pad) {}

  std::string kind() const override { return "avg_pool2d"; }
  bool count_include_pad() const { return count_include_pad_; }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(this->output_shape(x.shape()));
    for_each_window(
        x.shape(),
        [&](const T* in, T* out, index_t iy0, index_t iy1, index_t ix0, index_t ix1, index_t w, T scale) {
          T sum = 0;
          for (index_t iy = iy0; iy < iy1; ++iy)
            for (index_t ix = ix0; ix < ix1; ++ix) sum += in[iy * w + ix];
          *out = sum * scale;
        },
        x.data(), y.data());
  }

  void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    dx->resize(x.shape());
    dx->set_zero();
    // Windows overlap only within a plane, and each plane belongs to one thread.
    for_each_window(
        x.shape(),
        [&](T* in, const T* g, index_t iy0, index_t iy1, index_t ix0, index_t ix1, index_t w, T scale) {
          const T share = *g * scale;
          for (index_t iy = iy0; iy < iy1; ++iy)
            for (index_t ix = ix0; ix < ix1; ++ix) in[iy * w + ix] += share;
        },
        dx->data(), dy.data());
  }

 private:
  // Calls f(input plane, output element, clipped window rows
  // [iy0, iy1) and columns [ix0, ix1), input width, 1 / divisor) per output.
  template <class F, class In, class Out>
  void for_each_window(const Shape& in, F f, In* x, Out* y) const {
    const index_t planes = in[0] * in[1], h = in[2], w = in[3];
    const Size2 o = window_.output(this->name(), h, w);
    const Window2D::Pads p = window_.pads(h, w);
    const Window2D win = window_;
    const bool include_pad = count_include_pad_;
    parallel_for(planes, num_threads(), [&](index_t plane) {
      for (index_t oy = 0; oy < o.h; ++oy)
        for (index_t ox = 0; ox < o.w; ++ox) {
          const index_t y0 = oy * win.stride.h - p.top, x0 = ox * win.stride.w - p.left;
          // PyTorch's divisor: the window clipped to the padded input (or to the input).
          const index_t py1 = std::min(y0 + win.kernel.h, h + p.bottom), px1 = std::min(x0 + win.kernel.w, w + p.right);
          const index_t iy0 = std::max<index_t>(y0, 0), iy1 = std::min(y0 + win.kernel.h, h);
          const index_t ix0 = std::max<index_t>(x0, 0), ix1 = std::min(x0 + win.kernel.w, w);
          const index_t count = include_pad ? (py1 - y0) * (px1 - x0) : (iy1 - iy0) * (ix1 - ix0);
          const index_t out_index = (plane * o.h + oy) * o.w + ox;
          f(x + plane * h * w, y + out_index, iy0, iy1, ix0, ix1, w, T(1) / T(count));
        }
    });
  }

  using Pool2D<T>::window_;
  bool count_include_pad_;
};

// GlobalAvgPool2D: (N, C, H, W) -> (N, C), the mean of each channel's plane.
template <class T>
class GlobalAvgPool2D : public Layer<T> {
 public:
  std::string kind() const override { return "global_avg_pool2d"; }

  Shape output_shape(const Shape& in) const override {
    require_nchw(this->name(), in);
    if (in[2] * in[3] == 0) throw_shape_error(this->name(), fmt::format("input {} has empty planes", in.str()));
    return Shape{in[0], in[1]};
  }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(output_shape(x.shape()));
    y.flat() = planes(x).rowwise().mean();
  }

  void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    dx->resize(x.shape());
    const index_t area = x.dim(2) * x.dim(3);
    Eigen::Map<Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(dx->data(), dy.size(), area)
        .colwise() = dy.flat() / T(area);
  }

 private:
  static auto planes(const Tensor<T>& x) {
    return Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
        x.data(), x.dim(0) * x.dim(1), x.dim(2) * x.dim(3));
  }
};

GLASSBOX_PRECOMPILED_INSTANCE(class AvgPool2D<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class GlobalAvgPool2D<float>)
}  // namespace glassbox::nn
