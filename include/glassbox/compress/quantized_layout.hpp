#pragma once
// How QuantizedModel (compress/quantized_model.hpp) lays out its int8 path:
// the layout of each activation (NHWC images with channels padded for the
// kernels, features, or float), checked op by op and capped in size so that
// a corrupt file cannot make forward() allocate without bound; the weights
// moved from the float model's layout into the kernels' (compress/int8_scalar.hpp);
// and the kernels' epilogues, with the zero point and bias folded into one
// offset per channel.

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "glassbox/compress/int8_gemm.hpp"
#include "glassbox/compress/quantized_model.hpp"

namespace glassbox::quant {

inline std::vector<QuantizedModel::Layout> QuantizedModel::layouts(const std::string& who) const {
  std::vector<Layout> l = chain(who);
  if (!l.back().is_float) throw Error(who + ": the last layer must be dequantized (float output)");
  return l;
}
inline std::vector<QuantizedModel::Layout> QuantizedModel::chain(const std::string& who) const {
  std::vector<Layout> l{input_layout()};
  for (const Op& op : ops_) l.push_back(next_layout(l.back(), op, who));
  return l;
}

inline QuantizedModel::Layout QuantizedModel::input_layout() const {
  Layout l;
  if (sample_shape_.rank() == 3)
    l = Layout{true,
               false,
               false,
               sample_shape_[0],
               sample_shape_[1],
               sample_shape_[2],
               sample_shape_[0] == 1 ? 1 : detail::round_up(sample_shape_[0], 4),
               0};
  else
    l.features = sample_shape_[0];
  return l;
}

// The layout after op, given the layout before it. Sizes are capped, so a
// corrupt file cannot make forward() allocate without bound.
inline QuantizedModel::Layout QuantizedModel::next_layout(const Layout& in, const Op& op, const std::string& who) {
  auto fail = [&](const std::string& what) { return Error(fmt::format("{}: {}: {}", who, op.name, what)); };
  if (in.is_float && op.kind != Kind::flatten && op.kind != Kind::softmax)
    throw fail("follows a float output; only flatten and softmax may");
  Layout out = in;
  switch (op.kind) {
    case Kind::conv2d:
    case Kind::max_pool2d: {
      if (!in.image) throw fail("expects an image input");
      if (op.kind == Kind::conv2d && in.c != op.in)
        throw fail(fmt::format("input has {} channels, layer expects {}", in.c, op.in));
      if (op.kind == Kind::max_pool2d && op.window.padding == nn::Padding::explicit_ &&
          (2 * op.window.pad.h > op.window.kernel.h || 2 * op.window.pad.w > op.window.kernel.w))
        throw fail("padding exceeds half the kernel");
      const nn::Size2 o = op.window.output(op.name, in.h, in.w);
      out.h = o.h;
      out.w = o.w;
      if (op.kind == Kind::conv2d) {
        out.c = op.out;
        out.stride = detail::round_up(op.out, 16);
        out.is_float = op.float_output;
      }
      break;
    }
    case Kind::flatten:
      if (in.image) out.image = false, out.flattened = true;
      break;
    case Kind::dense: {
      if (in.image) throw fail("expects features (flatten first)");
      const index_t features = in.flattened ? in.c * in.h * in.w : in.features;
      if (features != op.in) throw fail(fmt::format("input has {} features, layer expects {}", features, op.in));
      out = Layout{};
      out.features = op.out;
      out.is_float = op.float_output;
      break;
    }
    case Kind::softmax:
      if (!in.is_float || in.image || in.flattened) throw fail("softmax needs float (batch, classes) logits");
      break;
  }
  if (out.h > (1 << 16) || out.w > (1 << 16) || out.bytes() > (index_t(1) << 31))
    throw fail(fmt::format("activations of {} x {} x {} are too large", out.h, out.w, out.stride));
  return out;
}

// Bytes of a dense or conv2d op's int8 weights, given its input layout;
// throws when the count overflows (a corrupt file).
inline std::uint64_t QuantizedModel::weight_bytes(const Op& op, const Layout& in, const std::string& who) {
  std::uint64_t bytes = 1;
  auto times = [&](index_t factor) {
    const auto f = static_cast<std::uint64_t>(factor);
    if (f != 0 && bytes > std::numeric_limits<std::uint64_t>::max() / f)
      throw Error(fmt::format("{}: {}: weight size overflows", who, op.name));
    bytes *= f;
  };
  if (op.kind == Kind::dense) {
    times(op.out);
    times(in.bytes());
    return bytes;
  }
  times(detail::round_up(op.out, 16));
  times(op.window.kernel.h);
  if (in.stride == 1) {  // 1-channel rows: [kh][kw4 / 4][out16][4]
    times(detail::round_up(op.window.kernel.w, 4));
  } else {
    times(op.window.kernel.w);
    times((op.in + 3) / 4);
    times(4);
  }
  return bytes;
}

// Moves op i's weights from the float layout (OIHW, or out x in) into its kernel's.
inline void QuantizedModel::arrange_weights(std::size_t i, const std::vector<std::int8_t>& plain) {
  const Layout in = chain().at(i);
  Op& op = ops_[i];
  op.weights.assign(static_cast<std::size_t>(weight_bytes(op, in)), 0);
  if (op.kind == Kind::conv2d) {
    const index_t kh = op.window.kernel.h, kw = op.window.kernel.w, quads = (op.in + 3) / 4;
    const index_t out16 = detail::round_up(op.out, 16);
    if (in.stride == 1) {  // a 1-channel image's rows: [kh][kw4 / 4][out16][4]
      const index_t kw4 = detail::round_up(kw, 4);
      for (index_t o = 0; o < op.out; ++o)
        for (index_t ki = 0; ki < kh; ++ki)
          for (index_t kj = 0; kj < kw; ++kj)
            op.weights[std::size_t(((ki * kw4 + kj) / 4 * out16 + o) * 4 + kj % 4)] =
                plain[std::size_t((o * kh + ki) * kw + kj)];
      return;
    }
    for (index_t o = 0; o < op.out; ++o)
      for (index_t c = 0; c < op.in; ++c)
        for (index_t ki = 0; ki < kh; ++ki)
          for (index_t kj = 0; kj < kw; ++kj)
            op.weights[std::size_t((((ki * kw + kj) * quads + c / 4) * out16 + o) * 4 + c % 4)] =
                plain[std::size_t(((o * op.in + c) * kh + ki) * kw + kj)];
    return;
  }
  const index_t k = in.bytes();
  for (index_t o = 0; o < op.out; ++o) {
    if (!in.flattened) {
      std::copy_n(plain.begin() + o * op.in, op.in, op.weights.begin() + o * k);
      continue;
    }
    // The float model flattens NCHW (feature c * h * w + p); the int8 path NHWC (p * stride + c).
    for (index_t c = 0; c < in.c; ++c)
      for (index_t p = 0; p < in.h * in.w; ++p)
        op.weights[std::size_t(o * k + p * in.stride + c)] = plain[std::size_t(o * op.in + c * in.h * in.w + p)];
  }
}

// The epilogues: zero point and bias folded into offset, scales per channel.
inline void QuantizedModel::prepare() {
  layouts_ = layouts();
  derived_.assign(ops_.size(), Derived{});
  for (std::size_t i = 0; i < ops_.size(); ++i) {
    const Op& op = ops_[i];
    if (op.kind != Kind::conv2d && op.kind != Kind::dense) continue;
    Derived& d = derived_[i];
    if (fuse_pooling_ && op.kind == Kind::conv2d && !op.float_output && i + 1 < ops_.size()) {
      const nn::Window2D& w = ops_[i + 1].window;
      const nn::Window2D::Pads p = w.pads(layouts_[i + 1].h, layouts_[i + 1].w);
      d.pooled = ops_[i + 1].kind == Kind::max_pool2d && w.kernel.h == 2 && w.kernel.w == 2 && w.stride.h == 2 &&
                 w.stride.w == 2 && p.top == 0 && p.left == 0 && p.bottom == 0 && p.right == 0;
    }
    const index_t channels = op.kind == Kind::conv2d ? detail::round_up(op.out, 16) : op.out;
    d.offset.assign(static_cast<std::size_t>(channels), 0);
    d.scale.assign(static_cast<std::size_t>(channels), 0.0f);
    std::vector<std::int32_t> sums(static_cast<std::size_t>(channels), 0);
    if (op.kind == Kind::conv2d) {
      for (std::size_t j = 0; j < op.weights.size(); ++j)
        sums[(j / 4) % std::size_t(channels)] =
            detail::wrapping_add(sums[(j / 4) % std::size_t(channels)], op.weights[j]);
      d.padding_pixel.assign(static_cast<std::size_t>(layouts_[i].stride),
                             static_cast<std::uint8_t>(op.input.zero_point + 128));
    } else {
      const std::size_t k = op.weights.size() / std::size_t(op.out);
      for (std::size_t j = 0; j < op.weights.size(); ++j)
        sums[j / k] = detail::wrapping_add(sums[j / k], op.weights[j]);
    }
    const std::int32_t zp = op.input.zero_point + 128;
    for (index_t c = 0; c < op.out; ++c) {
      const auto ci = static_cast<std::size_t>(c);
      d.offset[ci] = detail::wrapping_add(op.bias[ci], -detail::wrapping_mul(zp, sums[ci]));
      const float s = op.input.scale * op.weight_params[ci].scale;
      d.scale[ci] = op.float_output ? s : s / op.output.scale;
    }
  }
}

inline detail::Epilogue QuantizedModel::epilogue(std::size_t i) const {
  const Op& op = ops_[i];
  detail::Epilogue e{derived_[i].offset.data(), derived_[i].scale.data()};
  e.zero_point = op.output.zero_point + 128;
  e.low = op.relu ? e.zero_point : 0;
  return e;
}

}  // namespace glassbox::quant
