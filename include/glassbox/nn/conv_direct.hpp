#pragma once
// Direct convolution kernels for Conv2D layers with small patches (the first
// layer of an image model: the seed CNN's 1 x 3 x 3). Lowered to a GEMM,
// such a layer multiplies by a 9-deep matrix: packing im2col's columns costs
// as much as the product, and backward lowers the input again. These
// kernels read the input directly instead: forward adds each tap's weight
// times the shifted input rows into a few channels' outputs at once, the
// bias first and the ReLU last in the same pass; the weight gradient sums
// each tap's shifted input times the (ReLU-masked) output gradient, with the
// bias gradient in the same pass. They take stride 1, no dilation, no
// padding. Conv2D runs the im2col + GEMM path otherwise; the tests check
// both against plain double loops.
//
// Sums run over chunks of kChunk outputs held in GCC/Clang vector types: the
// compiler keeps them in registers whatever the target's width (left to
// itself, it vectorised across taps with gathers, 8x slower).

#include <algorithm>
#include <array>
#include <cstring>

#include "glassbox/core/shape.hpp"

namespace glassbox::nn::detail {

// N consecutive values of T as one vector, loaded and stored unaligned.
// Vectors pass by reference: by value, their calling convention would
// depend on the target (GCC's -Wpsabi).
template <class T, index_t N>
struct ChunkOf {
  typedef T type __attribute__((vector_size(N * sizeof(T))));
  static void load(type& v, const T* p) { std::memcpy(&v, p, sizeof v); }
  static void store(T* p, const type& v) { std::memcpy(p, &v, sizeof v); }
  static T sum(const type& v) {
    T total = 0;
    for (index_t i = 0; i < N; ++i) total += v[i];
    return total;
  }
};

struct DirectConv {
  static constexpr index_t kChunk = 8;      // outputs per vector
  static constexpr index_t kMaxPatch = 32;  // in * kh * kw: beyond it the GEMM's depth pays off
  static constexpr int kChannels = 4;       // output channels per forward block
  static constexpr int kChunks = 2;         // vectors per row per forward block: 8 independent sums
  static constexpr int kMaxTaps = 12;       // taps summed at once in the weight gradient (registers)

  index_t in = 0, out = 0, h = 0, w = 0, kh = 0, kw = 0;
  index_t oh = 0, ow = 0;
  std::array<index_t, kMaxPatch> offsets{};  // per tap (c, ki, kj): its input's offset from the output's pixel

  DirectConv(index_t in_, index_t out_, index_t h_, index_t w_, index_t kh_, index_t kw_)
      : in(in_), out(out_), h(h_), w(w_), kh(kh_), kw(kw_), oh(h_ - kh_ + 1), ow(w_ - kw_ + 1) {
    for (index_t c = 0; c < in; ++c)
      for (index_t ki = 0; ki < kh; ++ki)
        for (index_t kj = 0; kj < kw; ++kj) offsets[std::size_t((c * kh + ki) * kw + kj)] = (c * h + ki) * w + kj;
  }
  index_t taps() const { return in * kh * kw; }

  // Output channels [c, c + Channels) of weights (out x taps) tap-major into
  // by_tap, one broadcast per (tap, channel), zero beyond the last channel;
  // returns how many channels are real.
  template <int Channels, class T>
  static int gather_block(const T* weights, index_t taps, index_t out, index_t c, T* by_tap) {
    const int channels = static_cast<int>(std::min<index_t>(Channels, out - c));
    for (index_t t = 0; t < taps; ++t)
      for (int g = 0; g < Channels; ++g) by_tap[t * Channels + g] = g < channels ? weights[(c + g) * taps + t] : T(0);
    return channels;
  }

  // Whether the kernels take a convolution of this geometry: stride 1, no
  // dilation or padding, small patches, rows of a whole forward block.
  static bool applies(index_t in, index_t kh, index_t kw, index_t ow, bool unit_stride_no_dilation, bool unpadded) {
    return unit_stride_no_dilation && unpadded && in * kh * kw <= kMaxPatch && ow >= kChunks * kChunk;
  }

  // One sample: y (out x oh x ow) = bias + w (out x taps) applied to x (in x h x w), then the ReLU if asked.
  template <class T>
  void forward(const T* x, const T* weights, const T* bias, bool relu, T* y) const {
    const index_t taps_ = taps();
    T by_tap[kMaxPatch * kChannels];
    for (index_t c = 0; c < out; c += kChannels) {
      const int channels = gather_block<kChannels>(weights, taps_, out, c, by_tap);
      switch (channels) {
        case 4: forward_block<4>(x, by_tap, bias, relu, c, y); break;
        case 3: forward_block<3>(x, by_tap, bias, relu, c, y); break;
        case 2: forward_block<2>(x, by_tap, bias, relu, c, y); break;
        default: forward_block<1>(x, by_tap, bias, relu, c, y); break;
      }
    }
  }

  // One sample's contribution to the weight gradient dw (out x taps) and the
  // bias gradient db (out; may be null), added to what they hold. With
  // relu_output, the output gradient dy counts only where the output was
  // positive (or NaN), as backward through the fused ReLU.
  template <class T>
  void weight_grad(const T* x, const T* dy, const T* relu_output, T* dw, T* db) const {
    const index_t taps_ = taps();
    const index_t blocks = (taps_ + kMaxTaps - 1) / kMaxTaps, per_block = (taps_ + blocks - 1) / blocks;
    for (index_t c = 0; c < out; ++c)
      for (index_t t0 = 0; t0 < taps_; t0 += per_block) {
        T* bias_grad = db && t0 == 0 ? db + c : nullptr;
        const index_t count = std::min(per_block, taps_ - t0);
        T* grads = dw + c * taps_ + t0;
        const T* g = dy + c * oh * ow;
        const T* mask = relu_output ? relu_output + c * oh * ow : nullptr;
        switch (count) {
#define GLASSBOX_DIRECT_TAPS(n) \
  case n: weight_grad_block<n>(x, g, mask, t0, grads, bias_grad); break;
          GLASSBOX_DIRECT_TAPS(1)
          GLASSBOX_DIRECT_TAPS(2)
          GLASSBOX_DIRECT_TAPS(3)
          GLASSBOX_DIRECT_TAPS(4) GLASSBOX_DIRECT_TAPS(5) GLASSBOX_DIRECT_TAPS(6) GLASSBOX_DIRECT_TAPS(7)
              GLASSBOX_DIRECT_TAPS(8) GLASSBOX_DIRECT_TAPS(9) GLASSBOX_DIRECT_TAPS(10) GLASSBOX_DIRECT_TAPS(11) default
              : weight_grad_block<kMaxTaps>(x, g, mask, t0, grads, bias_grad);
          break;
#undef GLASSBOX_DIRECT_TAPS
        }
      }
  }

 private:
  // Channels [c, c + G) of one sample, kChunks vectors along a row at a
  // time; a row's last block overlaps the one before (the same values
  // again), so no remainder loop runs.
  template <int G, class T>
  void forward_block(const T* x, const T* by_tap, const T* bias, bool relu, index_t c, T* y) const {
    using C = ChunkOf<T, kChunk>;
    using V = typename C::type;
    constexpr index_t width = kChunks * kChunk;
    const index_t taps_ = taps();
    for (index_t row = 0; row < oh; ++row)
      for (index_t x0 = 0;; x0 += width) {
        x0 = std::min(x0, ow - width);
        V acc[G][kChunks];
        for (int g = 0; g < G; ++g)
          for (int k = 0; k < kChunks; ++k) acc[g][k] = V{} + (bias ? bias[c + g] : T(0));
        const T* base = x + row * w + x0;
        for (index_t t = 0; t < taps_; ++t) {
          V in[kChunks];
          for (int k = 0; k < kChunks; ++k) C::load(in[k], base + offsets[std::size_t(t)] + k * kChunk);
          for (int g = 0; g < G; ++g) {
            const T weight = by_tap[t * kChannels + g];
            for (int k = 0; k < kChunks; ++k) acc[g][k] += weight * in[k];
          }
        }
        for (int g = 0; g < G; ++g)
          for (int k = 0; k < kChunks; ++k) {
            if (relu) acc[g][k] = acc[g][k] < T(0) ? V{} : acc[g][k];
            C::store(y + ((c + g) * oh + row) * ow + x0 + k * kChunk, acc[g][k]);
          }
        if (x0 + width == ow) break;
      }
  }

  // Taps [t0, t0 + N) of one output channel: N sums (and the bias's) over
  // every position. A row's last vector overlaps the one before; its lanes
  // counted already are masked out.
  template <int N, class T>
  void weight_grad_block(const T* x, const T* g, const T* mask, index_t t0, T* grads, T* bias_grad) const {
    using C = ChunkOf<T, kChunk>;
    using V = typename C::type;
    V acc[N] = {};
    V bias_acc = {};
    index_t offset[N];
    for (int t = 0; t < N; ++t) offset[t] = offsets[std::size_t(t0 + t)];
    const index_t last = ow - kChunk, whole = ow / kChunk * kChunk;
    V lane;
    for (index_t v = 0; v < kChunk; ++v) lane[v] = static_cast<T>(v);
    const auto fresh = lane >= static_cast<T>(whole - last);  // lanes of the last vector not yet counted
    const auto every = lane >= T(0);
    for (index_t row = 0; row < oh; ++row) {
      const T* g_row = g + row * ow;
      const T* mask_row = mask ? mask + row * ow : nullptr;
      const T* x_row = x + row * w;
      // Adds the vector at x0, its lanes where `keep` is false left out.
      auto add = [&](index_t x0, const decltype(fresh)& keep) {
        V grad, input;
        C::load(grad, g_row + x0);
        grad = keep ? grad : V{};
        if (mask_row) {
          V out;
          C::load(out, mask_row + x0);
          grad = out <= T(0) ? V{} : grad;
        }
        for (int t = 0; t < N; ++t) {
          C::load(input, x_row + offset[t] + x0);
          acc[t] += grad * input;
        }
        bias_acc += grad;
      };
      for (index_t x0 = 0; x0 < whole; x0 += kChunk) add(x0, every);
      if (whole < ow) add(last, fresh);
    }
    for (int t = 0; t < N; ++t) grads[t] += C::sum(acc[t]);
    if (bias_grad) *bias_grad += C::sum(bias_acc);
  }
};

}  // namespace glassbox::nn::detail
