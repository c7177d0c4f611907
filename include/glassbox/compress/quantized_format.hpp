#pragma once
// QuantizedModel's file format (compress/quantized_model.hpp).
//
// Format (little-endian): "GBQ8", u32 version, u64 body size, u32 CRC-32C
// of the body; body: input shape (u32 rank, i64 dims), input quantizer
// (f32 scale, i32 zero point), u32 op count, then per op u32 kind, u32 name
// length, name, [window: i64 kh kw sh sw dh dw, u32 padding, i64 pad h w],
// [dense/conv2d: i64 in, i64 out, u8 relu, u8 float output, input and output
// quantizers, f32 weight scale and i32 bias per channel, the int8 weights
// in the kernel's layout]. Written atomically (temporary file, rename).
// Loading validates every size against the bytes left before allocating.

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "glassbox/compress/quantized_model.hpp"
#include "glassbox/core/binary_io.hpp"
#include "glassbox/core/crc32c.hpp"

namespace glassbox::quant {

namespace detail {

inline void put_params(std::string& s, const QParams& q) {
  put<float>(s, q.scale);
  put<std::int32_t>(s, q.zero_point);
}
inline void put_shape(std::string& s, const Shape& shape) {
  put<std::uint32_t>(s, static_cast<std::uint32_t>(shape.rank()));
  for (int i = 0; i < shape.rank(); ++i) put<std::int64_t>(s, shape[i]);
}
inline void put_window(std::string& s, const nn::Window2D& w) {
  for (const index_t v : {w.kernel.h, w.kernel.w, w.stride.h, w.stride.w, w.dilation.h, w.dilation.w})
    put<std::int64_t>(s, v);
  put<std::uint32_t>(s, static_cast<std::uint32_t>(w.padding));
  put<std::int64_t>(s, w.pad.h);
  put<std::int64_t>(s, w.pad.w);
}

// Bounds-checked reading of this format's compound fields.
struct ModelReader : ByteReader {
  index_t positive(const char* field, std::int64_t max = std::int64_t(1) << 24) {
    return static_cast<index_t>(integer(field, 1, max));
  }
  QParams params(const char* field) {
    QParams q;
    q.scale = get<float>(field);
    q.zero_point = get<std::int32_t>(field);
    if (!(q.scale > 0) || !std::isfinite(q.scale) || q.zero_point < -128 || q.zero_point > 127)
      throw error(field, fmt::format("scale {} / zero point {} out of range", q.scale, q.zero_point));
    return q;
  }
  Shape shape(const char* field) {
    const auto rank = get<std::uint32_t>(field);
    if (rank < 1 || rank > 3) throw error(field, fmt::format("sample rank {} (expected 1 to 3)", rank));
    std::vector<index_t> dims;
    for (std::uint32_t i = 0; i < rank; ++i) dims.push_back(positive(field, 1 << 16));
    if (rank == 1) return Shape{dims[0]};
    if (rank == 2) return Shape{dims[0], dims[1]};
    return Shape{dims[0], dims[1], dims[2]};
  }
  nn::Window2D window() {
    nn::Window2D w;
    w.kernel = {positive("kernel", 4096), positive("kernel", 4096)};
    w.stride = {positive("stride", 4096), positive("stride", 4096)};
    w.dilation = {positive("dilation", 4096), positive("dilation", 4096)};
    const auto padding = get<std::uint32_t>("padding");
    if (padding > 2) throw error("padding", fmt::format("unknown padding {}", padding));
    w.padding = static_cast<nn::Padding>(padding);
    const auto ph = get<std::int64_t>("pad"), pw = get<std::int64_t>("pad");
    if (ph < 0 || pw < 0 || ph > 1024 || pw > 1024) throw error("pad", "out of range");
    w.pad = {static_cast<index_t>(ph), static_cast<index_t>(pw)};
    return w;
  }
};

}  // namespace detail

// The serialised model (the format above).
inline std::string QuantizedModel::bytes() const {
  std::string body;
  detail::put_shape(body, sample_shape_);
  detail::put_params(body, input_);
  put<std::uint32_t>(body, static_cast<std::uint32_t>(ops_.size()));
  for (const Op& op : ops_) {
    put<std::uint32_t>(body, static_cast<std::uint32_t>(op.kind));
    put_string(body, op.name);
    if (op.kind == Kind::conv2d || op.kind == Kind::max_pool2d) detail::put_window(body, op.window);
    if (op.kind != Kind::conv2d && op.kind != Kind::dense) continue;
    put<std::int64_t>(body, op.in);
    put<std::int64_t>(body, op.out);
    put<std::uint8_t>(body, op.relu);
    put<std::uint8_t>(body, op.float_output);
    detail::put_params(body, op.input);
    detail::put_params(body, op.output);
    for (const QParams& q : op.weight_params) put<float>(body, q.scale);
    for (const std::int32_t b : op.bias) put(body, b);
    body.append(reinterpret_cast<const char*>(op.weights.data()), op.weights.size());
  }
  std::string file(kMagic, 4);
  put<std::uint32_t>(file, kVersion);
  put<std::uint64_t>(file, body.size());
  put<std::uint32_t>(file, crc32c(body.data(), body.size()));
  return file + body;
}

inline void QuantizedModel::save(const std::string& path) const { write_file_atomically(path, bytes()); }

inline QuantizedModel QuantizedModel::load(const std::string& path) { return from_bytes(read_file(path), path); }

inline QuantizedModel QuantizedModel::from_bytes(const std::string& data, const std::string& source) {
  detail::ModelReader header{{data, 0, source, "header"}};
  if (data.size() < 20 || data.compare(0, 4, kMagic) != 0)
    throw Error(fmt::format("{}: not a glassbox int8 model (bad magic or shorter than its header)", source));
  header.pos = 4;
  const auto version = header.get<std::uint32_t>("version");
  if (version != kVersion)
    throw Error(fmt::format("{}: format version {} (this build reads {})", source, version, kVersion));
  const auto size = header.get<std::uint64_t>("body size");
  const auto crc = header.get<std::uint32_t>("checksum");
  if (size != data.size() - header.pos)
    throw Error(
        fmt::format("{}: body of {} bytes, header says {} (truncated?)", source, data.size() - header.pos, size));
  if (crc32c(data.data() + header.pos, size) != crc) throw Error(fmt::format("{}: checksum mismatch", source));

  detail::ModelReader r{{data, header.pos, source, "model"}};
  QuantizedModel m;
  m.sample_shape_ = r.shape("input shape");
  if (m.sample_shape_.rank() == 2) throw r.error("input shape", "samples must be (F) or (C, H, W)");
  m.input_ = r.params("input quantizer");
  const auto count = r.get<std::uint32_t>("op count");
  if (count > 4096) throw r.error("op count", fmt::format("{} ops (at most 4096)", count));
  r.need(std::uint64_t(count) * 8, "op count");
  Layout layout = m.input_layout();
  for (std::uint32_t i = 0; i < count; ++i) {
    r.section = fmt::format("op {}", i);
    Op op;
    const auto kind = r.get<std::uint32_t>("kind");
    if (kind < 1 || kind > 5) throw r.error("kind", fmt::format("unknown kind {}", kind));
    op.kind = static_cast<Kind>(kind);
    op.name = r.string("name");
    if (op.kind == Kind::conv2d || op.kind == Kind::max_pool2d) op.window = r.window();
    const bool weighted = op.kind == Kind::conv2d || op.kind == Kind::dense;
    if (weighted) {
      op.in = r.positive("in");
      op.out = r.positive("out");
      op.relu = r.get<std::uint8_t>("relu") != 0;
      op.float_output = r.get<std::uint8_t>("float output") != 0;
      op.input = r.params("input quantizer");
      op.output = r.params("output quantizer");
      r.need(std::uint64_t(op.out) * 8, "weight scales and biases");
      for (index_t c = 0; c < op.out; ++c) {
        QParams q = weight_params(0);
        q.scale = r.get<float>("weight scale");
        if (!(q.scale > 0) || !std::isfinite(q.scale)) throw r.error("weight scale", "not a positive number");
        op.weight_params.push_back(q);
      }
      for (index_t c = 0; c < op.out; ++c) op.bias.push_back(r.get<std::int32_t>("bias"));
    }
    // The shapes must chain, and stay bounded.
    const Layout before = layout;
    layout = next_layout(layout, op, r.source + ": " + r.section);
    m.ops_.push_back(std::move(op));
    if (weighted) {
      const std::uint64_t bytes = weight_bytes(m.ops_.back(), before, r.source + ": " + r.section);
      r.need(bytes, "weights");
      m.ops_.back().weights.resize(static_cast<std::size_t>(bytes));
      std::memcpy(m.ops_.back().weights.data(), data.data() + r.pos, static_cast<std::size_t>(bytes));
      r.pos += static_cast<std::size_t>(bytes);
    }
  }
  if (r.pos != data.size()) throw r.error("end", fmt::format("{} bytes left over", data.size() - r.pos));
  if (!layout.is_float) throw Error(source + ": the last layer must be dequantized (float output)");
  m.prepare();
  return m;
}

}  // namespace glassbox::quant
