#pragma once
// MaxPool2D over NCHW input, as torch.nn.MaxPool2d / Keras MaxPooling2D:
// stride defaults to the kernel; padded positions never win. Backward routes
// each output gradient to the input position that won the forward (the first
// maximum on ties, as PyTorch).

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/threads.hpp"
#include "glassbox/nn/pool2d.hpp"

namespace glassbox::nn {

template <class T>
class MaxPool2D : public Pool2D<T> {
  using Winner = std::int32_t;  // an index within one input plane

 public:
  explicit MaxPool2D(Size2 kernel, PoolOptions options = {}) : Pool2D<T>("max_pool2d", kernel, options) {}

  std::string kind() const override { return "max_pool2d"; }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    const Shape out = this->output_shape(x.shape());
    y.resize(out);
    const index_t h = x.dim(2), w = x.dim(3), oh = out[2], ow = out[3];
    const Window2D::Pads p = window_.pads(h, w);
    if (h * w > std::numeric_limits<Winner>::max())
      throw Error(fmt::format("{}: input planes of {}x{} are too large (at most 2^31 values)", this->name(), h, w));
    winners_.resize(static_cast<std::size_t>(y.size()));
    const T* xd = x.data();
    T* yd = y.data();
    Winner* wd = winners_.data();
    const bool unpadded = p.top == 0 && p.left == 0 && p.bottom == 0 && p.right == 0;
    for_planes(
        x.dim(0), x.dim(1),
        [&](index_t plane) {
          const T* in = xd + plane * h * w;
          T* out = yd + plane * oh * ow;
          Winner* win = wd + plane * oh * ow;
          if (unpadded)
            pool_inside(in, w, oh, ow, out, win);
          else
            pool_padded(in, h, w, p, oh, ow, out, win);
        },
        [this](index_t s) { this->output_block_done(s, s + 1); });
  }

  void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    dx->resize(x.shape());
    const index_t planes = x.dim(0) * x.dim(1), in_plane = x.dim(2) * x.dim(3);
    const index_t out_plane = dy.size() / (planes ? planes : 1);
    if (static_cast<std::size_t>(dy.size()) != winners_.size() || out_plane * planes != dy.size())
      throw Error(fmt::format("{}: backward of a gradient {} that does not match the last forward", this->name(),
                              dy.shape().str()));
    const T* g = dy.data();
    T* d = dx->data();
    const Winner* wd = winners_.data();
    const index_t h = x.dim(2), w = x.dim(3), oh = dy.dim(2), ow = dy.dim(3);
    const Window2D::Pads p = window_.pads(h, w);
    const bool tiled = window_.kernel.h == 2 && window_.kernel.w == 2 && window_.stride.h == 2 &&
                       window_.stride.w == 2 && p.top == 0 && p.left == 0 && 2 * oh <= h && 2 * ow <= w;
    for_planes(
        x.dim(0), x.dim(1),
        [&](index_t plane) {
          T* dplane = d + plane * in_plane;
          if (tiled) return scatter_2x2(g + plane * out_plane, wd + plane * out_plane, h, w, oh, ow, dplane);
          std::fill(dplane, dplane + in_plane, T(0));  // here, not in a separate pass: the plane is in cache
          for (index_t o = plane * out_plane; o < (plane + 1) * out_plane; ++o) dplane[wd[o]] += g[o];
        },
        [this](index_t s) { this->input_grad_block_done(s, s + 1); });
  }

 private:
  // Backward of non-overlapping 2x2 windows (the seed CNN's pooling): every
  // input value is written once, the winner's gradient or zero, so no pass
  // zeroes the plane first; a last odd row or column, in no window, gets zeros.
  static void scatter_2x2(const T* g, const Winner* winners, index_t h, index_t w, index_t oh, index_t ow, T* d) {
    for (index_t oy = 0; oy < oh; ++oy) {
      T* top = d + 2 * oy * w;
      T* bottom = top + w;
      const auto first = static_cast<Winner>(2 * oy * w), width = static_cast<Winner>(w);
      for (index_t ox = 0; ox < ow; ++ox) {
        const Winner win = winners[oy * ow + ox] - first - 2 * static_cast<Winner>(ox);
        const T grad = T(0) + g[oy * ow + ox];  // as 0 + grad, the sum it replaces (-0 becomes +0)
        top[2 * ox] = win == 0 ? grad : T(0);
        top[2 * ox + 1] = win == 1 ? grad : T(0);
        bottom[2 * ox] = win == width ? grad : T(0);
        bottom[2 * ox + 1] = win == width + 1 ? grad : T(0);
      }
      std::fill(top + 2 * ow, top + w, T(0));
      std::fill(bottom + 2 * ow, bottom + w, T(0));
    }
    std::fill(d + 2 * oh * w, d + h * w, T(0));
  }

  // Runs plane_fn on every plane over the threads. With a sample or more per
  // thread it goes sample by sample (the same split of the planes) and calls
  // sample_done(s) after each, so that the sample can be reported.
  template <class PlaneFn, class SampleDone>
  static void for_planes(index_t samples, index_t channels, PlaneFn plane_fn, SampleDone sample_done) {
    const int threads = num_threads();
    if (samples < threads) {
      parallel_for(samples * channels, threads, plane_fn);
      return;
    }
    parallel_for(samples, threads, [&](index_t s) {
      for (index_t plane = s * channels; plane < (s + 1) * channels; ++plane) plane_fn(plane);
      sample_done(s);
    });
  }

  // PyTorch's rule: a larger value, or a NaN, takes the window.
  static bool wins(T v, T best) { return v > best || v != v; }

  // Every window inside the plane: no bounds checks, and branch-free
  // selects (the branches of a max over data mispredict half the time).
  void pool_inside(const T* in, index_t w, index_t oh, index_t ow, T* out, Winner* win) const {
    const Window2D& k = window_;
    if (k.kernel.h == 2 && k.kernel.w == 2 && k.stride.h == 2 && k.stride.w == 2) {
      for (index_t oy = 0; oy < oh; ++oy) pool_2x2_row(in, 2 * oy * w, w, ow, out + oy * ow, win + oy * ow);
      return;
    }
    for (index_t oy = 0; oy < oh; ++oy)
      for (index_t ox = 0; ox < ow; ++ox) {
        const index_t first = oy * k.stride.h * w + ox * k.stride.w;
        T best = in[first];
        index_t arg = first;
        for (index_t ki = 0; ki < k.kernel.h; ++ki)
          for (index_t kj = 0; kj < k.kernel.w; ++kj) {
            const index_t i = first + ki * w + kj;
            const bool take = wins(in[i], best);
            best = take ? in[i] : best;
            arg = take ? i : arg;
          }
        out[oy * ow + ox] = best;
        win[oy * ow + ox] = static_cast<Winner>(arg);
      }
  }

  // The seed CNN's pooling: one output row from the input rows starting at
  // plane[first] and plane[first + w], in blocks of 8 outputs; a last partial
  // block is redone overlapping the one before (same values), so no scalar,
  // branchy remainder loop runs (13 outputs per row in the seed CNN).
  static void pool_2x2_row(const T* plane, index_t first, index_t w, index_t ow, T* out, Winner* win) {
    constexpr index_t block = 8;
    if (ow < block) {
      pool_2x2_block(plane, first, w, ow, out, win);
      return;
    }
    for (index_t ox = 0;; ox += block) {
      ox = std::min(ox, ow - block);
      pool_2x2_block<block>(plane, first + 2 * ox, w, block, out + ox, win + ox);
      if (ox + block == ow) return;
    }
  }

  // 32-bit offsets keep the float and index lanes of one width, so the loop
  // vectorises; Count > 0 fixes the trip count at compile time.
  template <index_t Count = 0>
  static void pool_2x2_block(const T* plane, index_t first_index, index_t w_index, index_t count, T* __restrict out,
                             Winner* __restrict win) {
    const auto first = static_cast<Winner>(first_index), w = static_cast<Winner>(w_index);
    const T* __restrict top = plane + first;
    const T* __restrict bottom = top + w;
    const index_t n = Count > 0 ? Count : count;
    for (index_t ox = 0; ox < n; ++ox) {
      const T a = top[2 * ox], b = top[2 * ox + 1], c = bottom[2 * ox], d = bottom[2 * ox + 1];
      T best = a;
      Winner offset = 0;
      bool take = wins(b, best);
      best = take ? b : best;
      offset = take ? 1 : offset;
      take = wins(c, best);
      best = take ? c : best;
      offset = take ? w : offset;
      take = wins(d, best);
      best = take ? d : best;
      offset = take ? w + 1 : offset;
      out[ox] = best;
      win[ox] = first + 2 * static_cast<Winner>(ox) + offset;
    }
  }

  // Windows may reach into the padding, which never wins.
  void pool_padded(const T* in, index_t h, index_t w, const Window2D::Pads& p, index_t oh, index_t ow, T* out,
                   Winner* win) const {
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
            if (arg < 0 || wins(in[iy * w + ix], best)) {
              best = in[iy * w + ix];
              arg = iy * w + ix;
            }
          }
        }
        out[oy * ow + ox] = best;
        win[oy * ow + ox] = static_cast<Winner>(arg);  // >= 0: padding is at most half the kernel
      }
  }

  using Pool2D<T>::window_;
  std::vector<Winner> winners_;  // per output: index of the max within its input plane
};

GLASSBOX_PRECOMPILED_INSTANCE(class MaxPool2D<float>)
}  // namespace glassbox::nn
