#pragma once
// The direct convolution of nn/conv_direct.hpp and a 2x2 max pooling after it
// (stride 2, no padding) in one pass: the seed CNN's Conv2D(relu) ->
// MaxPool2D. Run apart, the convolution writes its whole output, four times
// the pooled size, and pooling reads it back; backward spreads the pooled
// gradient over that size again and the weight gradient reads it. Here
// forward keeps only the pooled values and which corner of each window won
// (as a value of T: stored and read as whole vectors, no packing), and
// backward reads those. Sequential runs the two layers so
// while no hook watches either (Layer::fuses_next).
//
// Each input row is first copied once per column phase m = 0..kw, the
// columns 2j + m in phase m's row j (zero beyond the input): the four
// corners of consecutive windows (top or bottom row, even or odd column)
// then read consecutive values of one phase row for each tap. Rows are
// padded to whole vectors, so that no load straddles two cache lines (here,
// on AMD Zen 3, straddling loads halved the kernel's speed). Values equal
// those of the separate layers: the same sums in the same order, the ReLU,
// then PyTorch's pooling rule (a larger value or a NaN wins, the first on
// ties).

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include "glassbox/nn/conv_direct.hpp"
#include "glassbox/nn/window.hpp"

namespace glassbox::nn::detail {

struct DirectConvPool {
  static constexpr index_t kChunk = DirectConv::kChunk;  // windows per vector
  static constexpr index_t kMaxPatch = DirectConv::kMaxPatch;
  static constexpr int kCorners = 4;   // top-left, top-right, bottom-left, bottom-right: MaxPool2D's order
  static constexpr int kChannels = 2;  // output channels per forward block: 8 sums in registers
  static constexpr int kTapBlock = 9;  // taps per weight-gradient block: 9 sums and 4 gradients in registers

  index_t in = 0, out = 0, h = 0, w = 0, kh = 0, kw = 0;
  index_t ph = 0, pw = 0;  // pooled rows and columns
  index_t phases = 0;      // column phases: kw + 1
  index_t stride = 0;      // values per phase row: pw rounded up to whole vectors
  // Per corner and tap (c, ki, kj): where window (0, 0)'s input lies in the
  // split sample. A table, not a shift per corner added to each tap's
  // offset: GCC then folded the loads into the multiply-adds and loaded
  // each input twice (this kernel is bound by its loads).
  std::array<index_t, kCorners * kMaxPatch> offsets{};

  DirectConvPool(index_t in_, index_t out_, index_t h_, index_t w_, index_t kh_, index_t kw_)
      : in(in_),
        out(out_),
        h(h_),
        w(w_),
        kh(kh_),
        kw(kw_),
        ph((h_ - kh_ + 1) / 2),
        pw((w_ - kw_ + 1) / 2),
        phases(kw_ + 1),
        stride((pw + kChunk - 1) / kChunk * kChunk) {
    for (int corner = 0; corner < kCorners; ++corner)
      for (index_t c = 0; c < in; ++c)
        for (index_t ki = 0; ki < kh; ++ki)
          for (index_t kj = 0; kj < kw; ++kj)
            offsets[std::size_t(corner * taps() + (c * kh + ki) * kw + kj)] =
                ((c * h + corner / 2 + ki) * phases + corner % 2 + kj) * stride;
  }
  index_t taps() const { return in * kh * kw; }
  index_t split_size() const { return in * h * phases * stride; }
  index_t pooled_size() const { return out * ph * pw; }

  // Whether a max pooling `pool` over a direct convolution's oh x ow output
  // runs here: 2x2 windows, stride 2, no padding, rows of a vector at least.
  static bool applies(const Window2D& pool, index_t oh, index_t ow) {
    const Window2D::Pads p = pool.pads(oh, ow);
    return pool.kernel.h == 2 && pool.kernel.w == 2 && pool.stride.h == 2 && pool.stride.w == 2 &&
           pool.dilation.h == 1 && pool.dilation.w == 1 && p.top == 0 && p.left == 0 && p.bottom == 0 && p.right == 0 &&
           ow / 2 >= kChunk && oh >= 2;
  }

  // One sample (in x h x w) split into phase rows: row r's phase m holds
  // columns m, m + 2, m + 4, ... of input row r.
  template <class T>
  void split(const T* x, T* s) const {
    for (index_t row = 0; row < in * h; ++row, x += w)
      for (index_t m = 0; m < phases; ++m, s += stride)
        for (index_t j = 0; j < stride; ++j) s[j] = 2 * j + m < w ? x[2 * j + m] : T(0);
  }
  // The inverse for a gradient: writes all of dx (in x h x w), each input
  // value's gradient summed over the phase rows that hold it.
  template <class T>
  void merge(const T* ds, T* dx) const {
    for (index_t row = 0; row < in * h; ++row, dx += w, ds += phases * stride) {
      std::fill(dx, dx + w, T(0));
      for (index_t m = 0; m < phases; ++m)
        for (index_t j = 0; j < stride && 2 * j + m < w; ++j) dx[2 * j + m] += ds[m * stride + j];
    }
  }

  // One sample: y (out x ph x pw) = the pooled maximum of bias + weights
  // (out x taps) applied to the split input s, after the ReLU if asked;
  // winners: the corner (0-3) each maximum came from.
  template <class T>
  void forward(const T* s, const T* weights, const T* bias, bool relu, T* y, T* winners) const {
    const index_t taps_ = taps();
    T by_tap[kMaxPatch * kChannels];
    for (index_t c = 0; c < out; c += kChannels) {
      const int channels = DirectConv::gather_block<kChannels>(weights, taps_, out, c, by_tap);
      for (index_t oy = 0; oy < ph; ++oy)
        for (index_t x0 = 0; x0 < pw; x0 += kChunk) {
          const index_t at = oy * pw + x0, valid = std::min(kChunk, pw - x0);
          forward_block(s + row_of(oy) + x0, by_tap, bias, relu, c, channels, at, valid, y, winners);
        }
    }
  }

  // One sample's backward from the pooled gradient dy. Adds the weight
  // gradient to dw (out x taps) and the bias gradient to db, unless null;
  // adds the gradient wrt the split input to ds, unless null. With relu,
  // dy counts only where the pooled output y was positive (or NaN).
  template <class T>
  void backward(const T* s, const T* y, const T* dy, const T* winners, const T* weights, bool relu, T* dw, T* db,
                T* ds) const {
    const index_t taps_ = taps();
    for (index_t c = 0; c < out; ++c) {
      const index_t plane = c * ph * pw;
      const Plane<T> grads{y + plane, dy + plane, winners + plane, relu};
      if (dw)
        for (index_t t0 = 0; t0 < taps_; t0 += kTapBlock)
          weight_grad_block(s, grads, t0, dw + c * taps_ + t0, db && t0 == 0 ? db + c : nullptr);
      if (ds) input_grad(grads, weights + c * taps_, ds);
    }
  }

 private:
  template <class T>
  using Vector = typename ChunkOf<T, kChunk>::type;
  template <class T>
  using Mask = decltype(Vector<T>{} < Vector<T>{});

  // Where pooled row oy's windows start reading: two input rows per pooled row.
  index_t row_of(index_t oy) const { return 2 * oy * phases * stride; }

  // What backward reads of one output channel.
  template <class T>
  struct Plane {
    const T* y;
    const T* dy;
    const T* winners;
    bool relu;
  };

  // Windows [x0, x0 + kChunk) of one pooled row for channels c, c + 1; the
  // first `valid` are stored (the rest read the rows' zero padding).
  template <class T>
  void forward_block(const T* base, const T* by_tap, const T* bias, bool relu, index_t c, int channels, index_t at,
                     index_t valid, T* y, T* winners) const {
    using C = ChunkOf<T, kChunk>;
    using V = Vector<T>;
    const index_t taps_ = taps();
    V acc[kChannels][kCorners];
    for (int g = 0; g < kChannels; ++g)
      for (int k = 0; k < kCorners; ++k) acc[g][k] = V{} + (bias && g < channels ? bias[c + g] : T(0));
    // One input vector live at a time: the 8 sums and the weights keep to registers.
    for (index_t t = 0; t < taps_; ++t) {
      const T* weight = by_tap + t * kChannels;
#pragma GCC unroll 4
      for (int k = 0; k < kCorners; ++k) {
        V input;
        C::load(input, base + offsets[std::size_t(k * taps_ + t)]);
#pragma GCC unroll 2
        for (int g = 0; g < kChannels; ++g) acc[g][k] += weight[g] * input;
      }
    }
    for (int g = 0; g < channels; ++g) {
      if (relu)
        for (int k = 0; k < kCorners; ++k) acc[g][k] = acc[g][k] < T(0) ? V{} : acc[g][k];
      V best = acc[g][0], corner{};
      for (int k = 1; k < kCorners; ++k) {
        const Mask<T> take = (acc[g][k] > best) | (acc[g][k] != acc[g][k]);
        best = take ? acc[g][k] : best;
        corner = take ? V{} + T(k) : corner;
      }
      const index_t first = (c + g) * ph * pw + at;
      if (valid == kChunk) {
        C::store(y + first, best);
        C::store(winners + first, corner);
      } else {
        for (index_t lane = 0; lane < valid; ++lane) {
          y[first + lane] = best[lane];
          winners[first + lane] = corner[lane];
        }
      }
    }
  }

  // The gradient at each corner of windows [x0, x0 + valid) of pooled row
  // oy (at = oy * pw + x0): dy where the corner won, else 0; 0 beyond valid.
  template <class T>
  static void corner_grads(const Plane<T>& p, index_t at, index_t valid, Vector<T> (&grads)[kCorners]) {
    using C = ChunkOf<T, kChunk>;
    using V = Vector<T>;
    V grad{}, out{}, corner{};
    if (valid == kChunk) {
      C::load(grad, p.dy + at);
      if (p.relu) C::load(out, p.y + at);
      C::load(corner, p.winners + at);
    } else {
      for (index_t lane = 0; lane < valid; ++lane) {
        grad[lane] = p.dy[at + lane];
        out[lane] = p.relu ? p.y[at + lane] : T(0);
        corner[lane] = p.winners[at + lane];
      }
    }
    if (p.relu) grad = out <= T(0) ? V{} : grad;
    for (int k = 0; k < kCorners; ++k) grads[k] = corner == T(k) ? grad : V{};
  }

  // Visits every pooled row's vectors: visit(at, where its windows start
  // reading the split input, valid windows).
  template <class Visit>
  void for_each_vector(Visit&& visit) const {
    for (index_t oy = 0; oy < ph; ++oy)
      for (index_t x0 = 0; x0 < pw; x0 += kChunk) visit(oy * pw + x0, row_of(oy) + x0, std::min(kChunk, pw - x0));
  }

  // Taps [t0, t0 + kTapBlock) of one output channel. A last partial block
  // repeats its last tap in the sums beyond (which are dropped), so one
  // instance of the loop serves every patch size. Each tap's four corners
  // read at one offset plus a shift per corner (three registers), not from a
  // table of 36 offsets, which cost as many loads as the inputs themselves.
  template <class T>
  void weight_grad_block(const T* s, const Plane<T>& p, index_t t0, T* grads, T* bias_grad) const {
    using C = ChunkOf<T, kChunk>;
    using V = Vector<T>;
    const index_t taps_ = taps(), count = std::min<index_t>(kTapBlock, taps_ - t0);
    const index_t right = offsets[std::size_t(taps_ + t0)] - offsets[std::size_t(t0)];
    const index_t down = offsets[std::size_t(2 * taps_ + t0)] - offsets[std::size_t(t0)];
    index_t offset[kTapBlock];
    for (index_t t = 0; t < kTapBlock; ++t) offset[t] = offsets[std::size_t(t0 + std::min(t, count - 1))];
    V acc[kTapBlock] = {};
    V bias_acc = {};
    for (index_t oy = 0; oy < ph; ++oy)
      for (index_t x0 = 0; x0 < pw; x0 += kChunk) {
        V g[kCorners];
        corner_grads(p, oy * pw + x0, std::min(kChunk, pw - x0), g);
        const V top_left = g[0], top_right = g[1], bottom_left = g[2], bottom_right = g[3];
        const T* base = s + row_of(oy) + x0;
#pragma GCC unroll 9
        for (index_t t = 0; t < kTapBlock; ++t) {
          const T* at = base + offset[t];
          V input;
          C::load(input, at);
          acc[t] += top_left * input;
          C::load(input, at + right);
          acc[t] += top_right * input;
          C::load(input, at + down);
          acc[t] += bottom_left * input;
          C::load(input, at + down + right);
          acc[t] += bottom_right * input;
        }
        bias_acc += (top_left + top_right) + (bottom_left + bottom_right);
      }
    for (index_t t = 0; t < count; ++t) grads[t] += C::sum(acc[t]);
    if (bias_grad) *bias_grad += C::sum(bias_acc);
  }

  // One output channel's share of the input gradient: each corner's
  // gradient times each tap's weight, added where that tap read.
  template <class T>
  void input_grad(const Plane<T>& p, const T* weights, T* ds) const {
    using C = ChunkOf<T, kChunk>;
    using V = Vector<T>;
    const index_t taps_ = taps();
    for_each_vector([&](index_t at, index_t split_at, index_t valid) {
      V g[kCorners];
      corner_grads(p, at, valid, g);
      for (index_t t = 0; t < taps_; ++t)
#pragma GCC unroll 4
        for (int k = 0; k < kCorners; ++k) {
          T* target = ds + split_at + offsets[std::size_t(k * taps_ + t)];
          V sum;
          C::load(sum, target);
          sum += weights[t] * g[k];
          C::store(target, sum);
        }
    });
  }
};

}  // namespace glassbox::nn::detail
