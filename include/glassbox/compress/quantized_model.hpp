#pragma once
// QuantizedModel: the real int8 inference path of a float model and its
// calibrated Plan (compress/quantize.hpp). Dense and Conv2D run as uint8 x
// int8 -> int32 kernels with the requantization fused (compress/int8_gemm.hpp),
// max pooling runs on the quantized values (max commutes with a monotone
// quantizer), dropout is free, the last dense/conv2d layer's output is
// dequantized from int32 and a final softmax runs in float. Images are NHWC
// inside (channels padded to a multiple of 4 or 16); a dense layer after a
// Flatten gets its weight columns permuted once, at construction, to read
// the NHWC order, so flattening costs nothing.
//
// It computes what FakeQuantization computes in float, up to float rounding
// in the float model's sums: an intermediate value differs by at most one
// quantization step, where the float sum lands within rounding of a .5 tie.
//
// Like Sequential it keeps every layer's output of the last forward for
// inspection (output(i), dequantized). save()/load() use a small versioned
// binary format with a CRC-32C over its body; load() validates every size
// against the file before allocating.

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "glassbox/compress/int8_gemm.hpp"
#include "glassbox/compress/quantize.hpp"
#include "glassbox/core/binary_io.hpp"
#include "glassbox/core/crc32c.hpp"
#include "glassbox/core/text_output.hpp"
#include "glassbox/core/threads.hpp"
#include "glassbox/nn/conv2d.hpp"
#include "glassbox/nn/functional.hpp"
#include "glassbox/nn/max_pool2d.hpp"

namespace glassbox::quant {

class QuantizedModel {
 public:
  enum class Kind : std::uint32_t { conv2d = 1, dense = 2, max_pool2d = 3, flatten = 4, softmax = 5 };

  // One step of the int8 path. Dense and conv2d hold int8 weights in their
  // kernel's layout (int8_gemm.hpp), int32 biases and their quantizers.
  struct Op {
    Kind kind = Kind::flatten;
    std::string name;
    index_t in = 0, out = 0;  // features or channels
    nn::Window2D window;      // conv2d, max_pool2d
    bool relu = false, float_output = false;
    QParams input, output;
    std::vector<QParams> weight_params;  // per output channel
    std::vector<std::int32_t> bias;      // per output channel, at scale input.scale * weight scale
    std::vector<std::int8_t> weights;    // conv: [kh][kw][ceil(in/4)][out16][4]; dense: out x (its input's bytes)
  };

  QuantizedModel() = default;

  // fuse_pooling: a conv2d followed by 2x2 max pooling (stride 2, no
  // padding) runs as one pass that never stores the convolution's output
  // (the same numbers, faster); false keeps that output for output(i).
  template <class T>
  QuantizedModel(Sequential<T>& model, const Plan& plan, bool fuse_pooling = true) : fuse_pooling_(fuse_pooling) {
    if (!model.sample_shape())
      throw Error("QuantizedModel: the model must declare its input shape (Sequential(Shape{...}))");
    sample_shape_ = *model.sample_shape();
    if (sample_shape_.rank() != 1 && sample_shape_.rank() != 3)
      throw Error(
          fmt::format("QuantizedModel: samples of shape {}: the int8 path takes features (F) or images (C, H, W)",
                      sample_shape_.str()));
    input_ = plan.input;
    std::size_t next = 0;  // into plan.layers
    for (std::size_t i = 0; i < model.size(); ++i) {
      Layer<T>& l = model.layer(i);
      const std::string kind = l.kind();
      Op op;
      op.name = l.name();
      if (i >= plan.float_tail) {
        op.kind = Kind::softmax;
      } else if (kind == "dense" || kind == "conv2d") {
        if (next >= plan.layers.size() || plan.layers[next].index != i || plan.layers[next].name != op.name)
          throw Error(
              fmt::format("QuantizedModel: the plan does not describe {} (was it made for this model?)", op.name));
        const LayerQuant& q = plan.layers[next++];
        i = q.last;
        const std::vector<Parameter<T>*> params = l.parameters();
        const Tensor<T>& w = params[0]->value;
        if (auto* conv = dynamic_cast<nn::Conv2D<T>*>(&l)) {
          op.kind = Kind::conv2d;
          op.in = conv->in_channels();
          op.window = conv->window();
        } else {
          op.kind = Kind::dense;
          op.in = w.dim(1);
        }
        op.out = w.dim(0);
        if (static_cast<index_t>(q.weights.size()) != op.out)
          throw Error(fmt::format("QuantizedModel: the plan has {} weight scales for {}'s {} channels",
                                  q.weights.size(), op.name, op.out));
        op.relu = q.relu;
        op.float_output = q.float_output;
        op.input = q.input;
        op.output = q.output;
        op.weight_params = q.weights;
        // Quantized weights in the float layout (OIHW / out x in) first.
        const index_t fan_in = w.size() / op.out;
        std::vector<std::int8_t> plain(static_cast<std::size_t>(w.size()));
        for (index_t c = 0; c < op.out; ++c) {
          const QParams& wq = q.weights[static_cast<std::size_t>(c)];
          for (index_t k = 0; k < fan_in; ++k)
            plain[static_cast<std::size_t>(c * fan_in + k)] = static_cast<std::int8_t>(wq.quantize(w[c * fan_in + k]));
          op.bias.push_back(params.size() > 1 ? bias_params(q.input, wq).quantize(double(params[1]->value[c])) : 0);
        }
        ops_.push_back(std::move(op));
        arrange_weights(ops_.size() - 1, plain);
        continue;
      } else if (kind == "max_pool2d") {
        op.kind = Kind::max_pool2d;
        op.window = dynamic_cast<nn::MaxPool2D<T>&>(l).window();
      } else if (kind == "flatten") {
        op.kind = Kind::flatten;
      } else if (kind == "dropout") {
        continue;  // the identity at inference
      } else {
        throw Error(fmt::format("QuantizedModel: {} ({}) has no int8 kernel", op.name, kind));
      }
      ops_.push_back(std::move(op));
      chain();  // checks the chain so far
    }
    if (next != plan.layers.size()) throw Error("QuantizedModel: the plan describes layers the model lacks");
    prepare();
  }

  const Shape& sample_shape() const { return sample_shape_; }
  const QParams& input_params() const { return input_; }
  const std::vector<Op>& ops() const { return ops_; }

  // Runs a batch (N, sample shape...) and returns the float output (logits,
  // or probabilities after a final softmax); valid until the next forward.
  const Tensor<float>& forward(const Tensor<float>& x) {
    check_input("forward", x);
    return forward_rows(x.data(), x.dim(0));
  }

  // forward() over x in batches, outputs concatenated.
  Tensor<float> predict(const Tensor<float>& x, index_t batch_size = 256) {
    check_input("predict", x);
    if (batch_size <= 0) throw Error("QuantizedModel::predict: batch_size must be positive");
    Tensor<float> result;
    const index_t per_sample = x.size() / x.dim(0);
    for (index_t start = 0; start < x.dim(0); start += batch_size) {
      const Tensor<float>& y = forward_rows(x.data() + start * per_sample, std::min(batch_size, x.dim(0) - start));
      if (start == 0) {
        Shape s = y.shape();
        s[0] = x.dim(0);
        result = Tensor<float>(s);
      }
      std::copy(y.begin(), y.end(), result.begin() + start * (y.size() / y.dim(0)));
    }
    return result;
  }

  // Op i's output of the last forward, dequantized, in the float model's
  // layout (NCHW images; a Flatten's output in NCHW order).
  Tensor<float> output(std::size_t i) const {
    if (i >= outputs_.size()) throw Error(fmt::format("QuantizedModel::output: no output {} (run forward first)", i));
    const Activation& a = outputs_[i];
    if (a.pooled_by_next)
      throw Error(
          fmt::format("QuantizedModel::output: {}'s output is not kept: it is max-pooled in the same pass "
                      "(construct with fuse_pooling = false to keep it)",
                      ops_[i].name));
    const std::vector<std::uint8_t>& bytes = data_of(a);
    if (bytes.empty()) return a.values;
    const Layout& l = a.layout;
    if (!l.image && !l.flattened) {
      Tensor<float> t(Shape{a.n, l.features});
      for (index_t j = 0; j < t.size(); ++j) t[j] = a.params.dequantize(std::int32_t(bytes[std::size_t(j)]) - 128);
      return t;
    }
    Tensor<float> t(l.image ? Shape{a.n, l.c, l.h, l.w} : Shape{a.n, l.c * l.h * l.w});
    for (index_t s = 0; s < a.n; ++s)
      for (index_t c = 0; c < l.c; ++c)
        for (index_t p = 0; p < l.h * l.w; ++p)
          t[(s * l.c + c) * l.h * l.w + p] =
              a.params.dequantize(std::int32_t(bytes[std::size_t((s * l.h * l.w + p) * l.stride + c)]) - 128);
    return t;
  }

  // The serialised model (see save()).
  std::string bytes() const {
    std::string body;
    put_shape(body, sample_shape_);
    put_params(body, input_);
    put<std::uint32_t>(body, static_cast<std::uint32_t>(ops_.size()));
    for (const Op& op : ops_) {
      put<std::uint32_t>(body, static_cast<std::uint32_t>(op.kind));
      put_string(body, op.name);
      if (op.kind == Kind::conv2d || op.kind == Kind::max_pool2d) put_window(body, op.window);
      if (op.kind != Kind::conv2d && op.kind != Kind::dense) continue;
      put<std::int64_t>(body, op.in);
      put<std::int64_t>(body, op.out);
      put<std::uint8_t>(body, op.relu);
      put<std::uint8_t>(body, op.float_output);
      put_params(body, op.input);
      put_params(body, op.output);
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

  // Format (little-endian): "GBQ8", u32 version, u64 body size, u32 CRC-32C
  // of the body; body: input shape (u32 rank, i64 dims), input quantizer
  // (f32 scale, i32 zero point), u32 op count, then per op u32 kind, u32 name
  // length, name, [window: i64 kh kw sh sw dh dw, u32 padding, i64 pad h w],
  // [dense/conv2d: i64 in, i64 out, u8 relu, u8 float output, input and output
  // quantizers, f32 weight scale and i32 bias per channel, the int8 weights
  // in the kernel's layout]. Written atomically (temporary file, rename).
  void save(const std::string& path) const { write_file_atomically(path, bytes()); }

  static QuantizedModel load(const std::string& path) { return from_bytes(read_file(path), path); }

  static QuantizedModel from_bytes(const std::string& data, const std::string& source = "int8 model") {
    Reader header{{data, 0, source, "header"}};
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

    Reader r{{data, header.pos, source, "model"}};
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

 private:
  void check_input(const char* who, const Tensor<float>& x) const {
    if (ops_.empty()) throw Error(fmt::format("QuantizedModel::{}: empty model", who));
    if (x.rank() == 0 || x.dim(0) == 0 || x.shape().sample() != sample_shape_)
      throw Error(fmt::format("QuantizedModel::{}: expected a non-empty batch of samples of shape {}, got {}", who,
                              sample_shape_.str(), x.shape().str()));
  }

  // n samples read straight from x (no copy of the batch).
  const Tensor<float>& forward_rows(const float* x, index_t n) {
    const int threads = num_threads();
    quantize_input(x, n, threads);
    outputs_.resize(ops_.size());
    const Activation* in = &input_buffer_;
    for (std::size_t i = 0; i < ops_.size(); ++i) {
      const Op& op = ops_[i];
      Activation& out = outputs_[i];
      out.layout = layouts_[i + 1];
      out.n = n;
      out.source = kOwnBytes;
      out.pooled_by_next = false;
      if (derived_[i].pooled) {  // the conv writes the pooling op's output
        out.pooled_by_next = true;
        out.bytes.clear();
        Activation& pooled = outputs_[++i];
        pooled.layout = layouts_[i + 1];
        pooled.n = n;
        pooled.source = kOwnBytes;
        pooled.pooled_by_next = false;
        run_conv(i - 1, *in, pooled, threads);
        in = &pooled;
        continue;
      }
      switch (op.kind) {
        case Kind::conv2d: run_conv(i, *in, out, threads); break;
        case Kind::dense: run_dense(i, *in, out, threads); break;
        case Kind::max_pool2d: run_max_pool(op, *in, out, threads); break;
        case Kind::flatten:  // a view of the same bytes, read as features
          out.params = in->params;
          out.bytes.clear();
          if (data_of(*in).empty()) {
            out.values = in->values;
            out.values.reshape(Shape{n, in->values.size() / n});
          } else {
            out.source = i == 0 ? kInput : static_cast<std::ptrdiff_t>(i - 1);
          }
          break;
        case Kind::softmax:
          out.values.resize(in->values.shape());
          nn::functional::softmax_rows(in->values.matrix(), out.values.matrix());
          break;
      }
      in = &out;
    }
    return in->values;
  }

  static constexpr const char* kMagic = "GBQ8";
  static constexpr std::uint32_t kVersion = 1;
  // Spare bytes after an image batch that a 1-channel convolution may read (int8_gemm.hpp).
  static constexpr index_t kSpare = 4;
  static constexpr std::ptrdiff_t kOwnBytes = -2, kInput = -1;

  // How one sample's activation is stored.
  struct Layout {
    bool image = false;      // NHWC: h x w pixels of `stride` bytes, c of them channels
    bool flattened = false;  // features that are an image's NHWC bytes (after a Flatten)
    bool is_float = false;   // float values (the dequantized last layer and what follows), not bytes
    index_t c = 0, h = 0, w = 0, stride = 0;
    index_t features = 0;  // logical features when not an image
    index_t bytes() const { return image || flattened ? h * w * stride : features; }
  };

  struct Activation {
    Layout layout;
    index_t n = 0;
    std::vector<std::uint8_t> bytes;    // q + 128; empty for float outputs and views
    std::ptrdiff_t source = kOwnBytes;  // a Flatten's view: kInput or the index of the output it reads
    bool pooled_by_next = false;        // a conv2d fused with the max pooling after it: nothing stored
    Tensor<float> values;               // float outputs, in the float model's layout
    QParams params;
  };

  // Per weighted op, derived by prepare(): the kernels' epilogue and padding.
  struct Derived {
    std::vector<std::int32_t> offset;
    std::vector<float> scale;
    std::vector<std::uint8_t> padding_pixel;  // conv2d: one input pixel of zero points
    bool pooled = false;                      // conv2d: fused with the 2x2 max pooling after it
  };

  static void put_params(std::string& s, const QParams& q) {
    put<float>(s, q.scale);
    put<std::int32_t>(s, q.zero_point);
  }
  static void put_shape(std::string& s, const Shape& shape) {
    put<std::uint32_t>(s, static_cast<std::uint32_t>(shape.rank()));
    for (int i = 0; i < shape.rank(); ++i) put<std::int64_t>(s, shape[i]);
  }
  static void put_window(std::string& s, const nn::Window2D& w) {
    for (const index_t v : {w.kernel.h, w.kernel.w, w.stride.h, w.stride.w, w.dilation.h, w.dilation.w})
      put<std::int64_t>(s, v);
    put<std::uint32_t>(s, static_cast<std::uint32_t>(w.padding));
    put<std::int64_t>(s, w.pad.h);
    put<std::int64_t>(s, w.pad.w);
  }

  // Bounds-checked reading of this format's compound fields.
  struct Reader : ByteReader {
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

  // The bytes an activation holds or, for a Flatten's view, reads.
  const std::vector<std::uint8_t>& data_of(const Activation& a) const {
    if (a.source == kOwnBytes) return a.bytes;
    return a.source == kInput ? input_buffer_.bytes : data_of(outputs_[static_cast<std::size_t>(a.source)]);
  }

  // The layout before each op and after the last; throws naming the op whose
  // input does not fit.
  std::vector<Layout> layouts(const std::string& who = "QuantizedModel") const {
    std::vector<Layout> l = chain(who);
    if (!l.back().is_float) throw Error(who + ": the last layer must be dequantized (float output)");
    return l;
  }
  std::vector<Layout> chain(const std::string& who = "QuantizedModel") const {
    std::vector<Layout> l{input_layout()};
    for (const Op& op : ops_) l.push_back(next_layout(l.back(), op, who));
    return l;
  }

  Layout input_layout() const {
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
  static Layout next_layout(const Layout& in, const Op& op, const std::string& who) {
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
  static std::uint64_t weight_bytes(const Op& op, const Layout& in, const std::string& who = "QuantizedModel") {
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
  void arrange_weights(std::size_t i, const std::vector<std::int8_t>& plain) {
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
  void prepare() {
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

  detail::Epilogue epilogue(std::size_t i) const {
    const Op& op = ops_[i];
    detail::Epilogue e{derived_[i].offset.data(), derived_[i].scale.data()};
    e.zero_point = op.output.zero_point + 128;
    e.low = op.relu ? e.zero_point : 0;
    return e;
  }

  void quantize_input(const float* x, index_t n, int threads) {
    const Layout& l = layouts_[0];
    const index_t per_sample = l.bytes();
    Activation& a = input_buffer_;
    a.layout = l;
    a.n = n;
    a.params = input_;
    a.bytes.resize(static_cast<std::size_t>(n * per_sample + kSpare));
    const auto zero = static_cast<std::uint8_t>(input_.zero_point + 128);
    parallel_for(n, threads, [&](index_t s) {
      std::uint8_t* dst = a.bytes.data() + s * per_sample;
      if (!l.image) {
        const float* src = x + s * per_sample;
        for (index_t i = 0; i < per_sample; ++i) dst[i] = static_cast<std::uint8_t>(input_.quantize(src[i]) + 128);
        return;
      }
      const index_t plane = l.h * l.w;
      const float* src = x + s * l.c * plane;
      if (l.stride > l.c) std::fill(dst, dst + per_sample, zero);
      for (index_t c = 0; c < l.c; ++c)
        for (index_t p = 0; p < plane; ++p)
          dst[p * l.stride + c] = static_cast<std::uint8_t>(input_.quantize(src[c * plane + p]) + 128);
    });
  }

  void run_conv(std::size_t i, const Activation& in, Activation& out, int threads) {
    const Op& op = ops_[i];
    const Layout &li = layouts_[i], &lo = layouts_[i + 1];
    const detail::ConvGeometry g(li.h, li.w, li.stride, (op.in + 3) / 4, lo.stride, op.window, {lo.h, lo.w});
    // A 1-channel image reads each kernel row as round_up(kw, 4) consecutive
    // pixels (int8_gemm.hpp): straight from the image when no tap can fall
    // into padding, else from patches gathered first (a 1x1 convolution).
    const index_t kw4 = detail::round_up(op.window.kernel.w, 4), patch = op.window.kernel.h * kw4;
    const nn::Window2D::Pads pads = op.window.pads(li.h, li.w);
    const bool rows = li.stride == 1 && op.window.dilation.w == 1 && pads.top == 0 && pads.left == 0 &&
                      pads.bottom == 0 && pads.right == 0;
    const bool patched = li.stride == 1 && !rows;
    nn::Window2D row_window = op.window;
    row_window.kernel.w = 1;
    const detail::ConvGeometry over_rows(li.h, li.w, 1, kw4 / 4, lo.stride, row_window, {lo.h, lo.w});
    const detail::ConvGeometry over_patches(lo.h, lo.w, patch, patch / 4, lo.stride, nn::Window2D{}, {lo.h, lo.w});
    const bool pool = derived_[i].pooled;
    const index_t n = in.n, in_size = li.bytes(), out_size = pool ? layouts_[i + 2].bytes() : lo.bytes();
    const detail::Epilogue e = epilogue(i);
    const std::uint8_t* pad = derived_[i].padding_pixel.data();
    const auto zero = static_cast<std::uint8_t>(op.input.zero_point + 128);
    patches_.resize(static_cast<std::size_t>(threads));
    if (patched)
      for (auto& b : patches_) b.resize(static_cast<std::size_t>(lo.h * lo.w * patch));
    auto convolve = [&](index_t s, auto* result) {
      const std::uint8_t* image = data_of(in).data() + s * in_size;
      if (rows) return detail::conv_image(over_rows, image, pad, op.weights.data(), e, result, pool);
      if (!patched) return detail::conv_image(g, image, pad, op.weights.data(), e, result, pool);
      std::uint8_t* patches = patches_[static_cast<std::size_t>(thread_index())].data();
      detail::build_patches(g, image, zero, patches);
      detail::conv_image(over_patches, patches, pad, op.weights.data(), e, result, pool);
    };
    out.params = op.output;
    if (!op.float_output) {
      out.bytes.resize(static_cast<std::size_t>(n * out_size + kSpare));
      parallel_for(n, threads, [&](index_t s) { convolve(s, out.bytes.data() + s * out_size); });
      return;
    }
    out.bytes.clear();
    out.values.resize(Shape{n, op.out, lo.h, lo.w});
    float_scratch_.resize(static_cast<std::size_t>(threads));
    for (auto& b : float_scratch_) b.resize(static_cast<std::size_t>(out_size));
    parallel_for(n, threads, [&](index_t s) {
      std::vector<float>& nhwc = float_scratch_[static_cast<std::size_t>(thread_index())];
      convolve(s, nhwc.data());
      float* dst = out.values.data() + s * op.out * lo.h * lo.w;
      for (index_t c = 0; c < op.out; ++c)
        for (index_t p = 0; p < lo.h * lo.w; ++p)
          dst[c * lo.h * lo.w + p] =
              op.relu ? std::max(nhwc[std::size_t(p * lo.stride + c)], 0.0f) : nhwc[std::size_t(p * lo.stride + c)];
    });
  }

  void run_dense(std::size_t i, const Activation& in, Activation& out, int threads) {
    const Op& op = ops_[i];
    const index_t n = in.n, k = layouts_[i].bytes();
    const detail::Epilogue e = epilogue(i);
    const index_t blocks = (n + 15) / 16;
    out.params = op.output;
    if (!op.float_output) {
      out.bytes.resize(static_cast<std::size_t>(n * op.out));
      parallel_for(blocks, threads, [&](index_t b) {
        detail::dense_rows(data_of(in).data(), 16 * b, std::min(n, 16 * b + 16), k, op.weights.data(), op.out, e,
                           out.bytes.data());
      });
      return;
    }
    out.bytes.clear();
    out.values.resize(Shape{n, op.out});
    parallel_for(blocks, threads, [&](index_t b) {
      detail::dense_rows(data_of(in).data(), 16 * b, std::min(n, 16 * b + 16), k, op.weights.data(), op.out, e,
                         out.values.data());
    });
    if (op.relu)
      for (float& v : out.values) v = std::max(v, 0.0f);
  }

  void run_max_pool(const Op& op, const Activation& in, Activation& out, int threads) const {
    const Layout &li = in.layout, &lo = out.layout;
    const nn::Window2D::Pads pads = op.window.pads(li.h, li.w);
    out.params = in.params;
    out.bytes.resize(static_cast<std::size_t>(in.n * lo.bytes() + kSpare));
    parallel_for(in.n, threads, [&](index_t s) {
      detail::max_pool_image(data_of(in).data() + s * li.bytes(), li.h, li.w, li.stride, op.window, pads, {lo.h, lo.w},
                             out.bytes.data() + s * lo.bytes());
    });
  }

  Shape sample_shape_;
  QParams input_;
  std::vector<Op> ops_;
  std::vector<Layout> layouts_;
  std::vector<Derived> derived_;
  Activation input_buffer_;
  std::vector<Activation> outputs_;
  std::vector<std::vector<float>> float_scratch_;
  std::vector<std::vector<std::uint8_t>> patches_;
  bool fuse_pooling_ = true;
};

}  // namespace glassbox::quant
