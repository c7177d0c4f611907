#pragma once
// QuantizedModel: the real int8 inference path of a float model and its
// calibrated Plan (compress/quantize.hpp). Dense and Conv2D run as int8 x
// uint8 -> int32 GEMMs with the requantization fused (compress/int8_gemm.hpp),
// max pooling runs on the quantized values (max commutes with a monotone
// quantizer), flatten and dropout are free, the last dense/conv2d layer's
// output is dequantized from int32 and a final softmax runs in float.
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
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "glassbox/compress/int8_gemm.hpp"
#include "glassbox/compress/quantize.hpp"
#include "glassbox/core/crc32c.hpp"
#include "glassbox/core/text_output.hpp"
#include "glassbox/core/threads.hpp"
#include "glassbox/nn/conv2d.hpp"
#include "glassbox/nn/functional.hpp"
#include "glassbox/nn/im2col.hpp"
#include "glassbox/nn/max_pool2d.hpp"

namespace glassbox::quant {

class QuantizedModel {
 public:
  enum class Kind : std::uint32_t { conv2d = 1, dense = 2, max_pool2d = 3, flatten = 4, softmax = 5 };

  // One step of the int8 path. Dense and conv2d hold int8 weights (rows padded
  // to a multiple of 4), int32 biases and their quantizers.
  struct Op {
    Kind kind = Kind::flatten;
    std::string name;
    index_t in = 0, out = 0;  // features or channels
    nn::Window2D window;      // conv2d, max_pool2d
    bool relu = false, float_output = false;
    QParams input, output;
    std::vector<QParams> weight_params;
    std::vector<std::int8_t> weights;  // out x padded_depth(fan_in)
    std::vector<std::int32_t> bias;    // out, at scale input.scale * weight scale
    // Derived by prepare(): the GEMM epilogue.
    std::vector<std::int32_t> offset;
    std::vector<float> scale;
    index_t fan_in() const { return kind == Kind::conv2d ? in * window.kernel.h * window.kernel.w : in; }
  };

  QuantizedModel() = default;

  template <class T>
  QuantizedModel(Sequential<T>& model, const Plan& plan) {
    if (!model.sample_shape())
      throw Error("QuantizedModel: the model must declare its input shape (Sequential(Shape{...}))");
    sample_shape_ = *model.sample_shape();
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
          throw Error(fmt::format("QuantizedModel: the plan does not describe {} (was it made for this model?)", op.name));
        const LayerQuant& q = plan.layers[next];
        i = q.last;
        ++next;
        std::vector<Parameter<T>*> params = l.parameters();
        const Tensor<T>& w = params[0]->value;
        if (auto* conv = dynamic_cast<nn::Conv2D<T>*>(&l)) {
          op.kind = Kind::conv2d;
          op.in = conv->in_channels();
          op.out = conv->out_channels();
          op.window = conv->window();
        } else {
          op.kind = Kind::dense;
          op.in = w.dim(1);
          op.out = w.dim(0);
        }
        if (static_cast<index_t>(q.weights.size()) != op.out)
          throw Error(fmt::format("QuantizedModel: the plan has {} weight scales for {}'s {} channels",
                                  q.weights.size(), op.name, op.out));
        op.relu = q.relu;
        op.float_output = q.float_output;
        op.input = q.input;
        op.output = q.output;
        op.weight_params = q.weights;
        const index_t fan_in = op.fan_in(), kp = detail::padded_depth(fan_in);
        op.weights.assign(static_cast<std::size_t>(op.out * kp), 0);
        op.bias.assign(static_cast<std::size_t>(op.out), 0);
        for (index_t c = 0; c < op.out; ++c) {
          const QParams& wq = q.weights[static_cast<std::size_t>(c)];
          for (index_t k = 0; k < fan_in; ++k)
            op.weights[static_cast<std::size_t>(c * kp + k)] = static_cast<std::int8_t>(wq.quantize(w[c * fan_in + k]));
          if (params.size() > 1) op.bias[static_cast<std::size_t>(c)] = bias_params(q.input, wq).quantize(params[1]->value[c]);
        }
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
    if (ops_.empty()) throw Error("QuantizedModel::forward: empty model");
    if (x.rank() == 0 || x.shape().sample() != sample_shape_)
      throw Error(fmt::format("QuantizedModel: expected samples of shape {}, got a batch of shape {}",
                              sample_shape_.str(), x.shape().str()));
    const int threads = num_threads();
    Activation* in = &input_buffer_;
    in->shape = x.shape();
    in->bytes.resize(static_cast<std::size_t>(x.size()));
    for (index_t i = 0; i < x.size(); ++i)
      in->bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(input_.quantize(x[i]) + 128);
    outputs_.resize(ops_.size());
    const Tensor<float>* last_float = nullptr;
    for (std::size_t i = 0; i < ops_.size(); ++i) {
      Op& op = ops_[i];
      Activation& out = outputs_[i];
      switch (op.kind) {
        case Kind::conv2d: run_conv(op, *in, out, threads); break;
        case Kind::dense: run_dense(op, *in, out, threads); break;
        case Kind::max_pool2d: run_max_pool(op, *in, out); break;
        case Kind::flatten:  // a copy, so that every op's output stays inspectable
          out.shape = Shape{in->shape[0], in->shape.size() / in->shape[0]};
          out.bytes = in->bytes;
          out.params = in->params;
          if (in->bytes.empty()) {
            out.values = in->values;
            out.values.reshape(out.shape);
          }
          break;
        case Kind::softmax:
          out.values.resize(last_float->shape());
          nn::functional::softmax_rows(last_float->matrix(), out.values.matrix());
          out.shape = out.values.shape();
          break;
      }
      if (out.bytes.empty()) last_float = &out.values;
      else if (op.kind != Kind::flatten) out.params = op.kind == Kind::max_pool2d ? in->params : op.output;
      in = &out;
    }
    if (!last_float) throw Error("QuantizedModel: no layer produces a float output");
    return *last_float;
  }

  // forward() over x in batches, outputs concatenated.
  Tensor<float> predict(const Tensor<float>& x, index_t batch_size = 256) {
    if (batch_size <= 0) throw Error("QuantizedModel::predict: batch_size must be positive");
    Tensor<float> result, batch;
    for (index_t start = 0; start < x.dim(0); start += batch_size) {
      copy_rows(x, start, std::min(batch_size, x.dim(0) - start), batch);
      const Tensor<float>& y = forward(batch);
      if (start == 0) {
        Shape s = y.shape();
        s[0] = x.dim(0);
        result = Tensor<float>(s);
      }
      std::copy(y.begin(), y.end(), result.begin() + start * (y.size() / y.dim(0)));
    }
    return result;
  }

  // Op i's output of the last forward, dequantized (or as computed, in float).
  Tensor<float> output(std::size_t i) const {
    if (i >= outputs_.size()) throw Error(fmt::format("QuantizedModel::output: no output {} (run forward first)", i));
    const Activation& a = outputs_[i];
    if (!a.values.empty() && a.bytes.empty()) return a.values;
    Tensor<float> t(a.shape);
    for (index_t j = 0; j < t.size(); ++j) t[j] = a.params.dequantize(std::int32_t(a.bytes[std::size_t(j)]) - 128);
    return t;
  }
  // Op i's int8 output of the last forward (q, not the stored q + 128).
  std::vector<std::int8_t> quantized_output(std::size_t i) const {
    if (i >= outputs_.size() || outputs_[i].bytes.empty())
      throw Error(fmt::format("QuantizedModel::quantized_output: op {} has no int8 output", i));
    std::vector<std::int8_t> q(outputs_[i].bytes.size());
    for (std::size_t j = 0; j < q.size(); ++j) q[j] = static_cast<std::int8_t>(int(outputs_[i].bytes[j]) - 128);
    return q;
  }

  // The serialised model (see save()).
  std::string bytes() const {
    std::string body;
    put_shape(body, sample_shape_);
    put_params(body, input_);
    put<std::uint32_t>(body, static_cast<std::uint32_t>(ops_.size()));
    for (const Op& op : ops_) {
      put<std::uint32_t>(body, static_cast<std::uint32_t>(op.kind));
      put<std::uint32_t>(body, static_cast<std::uint32_t>(op.name.size()));
      body += op.name;
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
  // quantizers, f32 weight scale per channel, i32 bias per channel, int8
  // weights out x padded fan-in]. Written atomically (temporary file, rename).
  void save(const std::string& path) const { write_text_file(path, bytes()); }

  static QuantizedModel load(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(fmt::format("{}: cannot open", path));
    const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return from_bytes(data, path);
  }

  static QuantizedModel from_bytes(const std::string& data, const std::string& source = "int8 model") {
    Reader header{data, 0, source, "header"};
    if (data.size() < 20 || data.compare(0, 4, kMagic) != 0)
      throw Error(fmt::format("{}: not a glassbox int8 model (bad magic)", source));
    header.pos = 4;
    const auto version = header.get<std::uint32_t>("version");
    if (version != kVersion) throw Error(fmt::format("{}: format version {} (this build reads {})", source, version, kVersion));
    const auto size = header.get<std::uint64_t>("body size");
    const auto crc = header.get<std::uint32_t>("checksum");
    if (size != data.size() - header.pos)
      throw Error(fmt::format("{}: body of {} bytes, header says {} (truncated?)", source, data.size() - header.pos, size));
    if (crc32c(data.data() + header.pos, size) != crc) throw Error(fmt::format("{}: checksum mismatch", source));

    Reader r{data, header.pos, source, "model"};
    QuantizedModel m;
    m.sample_shape_ = r.shape("input shape");
    m.input_ = r.params("input quantizer");
    const auto count = r.get<std::uint32_t>("op count");
    r.need(std::uint64_t(count) * 8, "op count");
    for (std::uint32_t i = 0; i < count; ++i) {
      r.section = fmt::format("op {}", i);
      Op op;
      const auto kind = r.get<std::uint32_t>("kind");
      if (kind < 1 || kind > 5) throw r.error("kind", fmt::format("unknown kind {}", kind));
      op.kind = static_cast<Kind>(kind);
      const auto name_size = r.get<std::uint32_t>("name length");
      r.need(name_size, "name");
      op.name = data.substr(r.pos, name_size);
      r.pos += name_size;
      if (op.kind == Kind::conv2d || op.kind == Kind::max_pool2d) op.window = r.window();
      if (op.kind == Kind::conv2d || op.kind == Kind::dense) {
        op.in = r.positive("in");
        op.out = r.positive("out");
        op.relu = r.get<std::uint8_t>("relu") != 0;
        op.float_output = r.get<std::uint8_t>("float output") != 0;
        op.input = r.params("input quantizer");
        op.output = r.params("output quantizer");
        // Each factor is below 2^24 and the file below 2^64 bytes: check before multiplying further.
        const auto depth = static_cast<std::uint64_t>(detail::padded_depth(op.fan_in()));
        if (depth > data.size() || std::uint64_t(op.out) > data.size() / depth)
          throw r.error("weights", fmt::format("{} x {} weights exceed the file", op.out, depth));
        const std::uint64_t weight_bytes = std::uint64_t(op.out) * depth;
        r.need(std::uint64_t(op.out) * 8 + weight_bytes, "weights");
        for (index_t c = 0; c < op.out; ++c) {
          QParams q = weight_params(0);
          q.scale = r.get<float>("weight scale");
          if (!(q.scale > 0) || !std::isfinite(q.scale)) throw r.error("weight scale", "not a positive number");
          op.weight_params.push_back(q);
        }
        for (index_t c = 0; c < op.out; ++c) op.bias.push_back(r.get<std::int32_t>("bias"));
        op.weights.resize(static_cast<std::size_t>(weight_bytes));
        std::memcpy(op.weights.data(), data.data() + r.pos, op.weights.size());
        r.pos += op.weights.size();
      }
      m.ops_.push_back(std::move(op));
    }
    if (r.pos != data.size()) throw r.error("end", fmt::format("{} bytes left over", data.size() - r.pos));
    m.prepare();
    // The shapes must chain: a corrupt but checksummed file still fails here, not in a kernel.
    m.check_shapes(source);
    return m;
  }

 private:
  static constexpr const char* kMagic = "GBQ8";
  static constexpr std::uint32_t kVersion = 1;

  struct Activation {
    Shape shape;
    std::vector<std::uint8_t> bytes;  // q + 128
    Tensor<float> values;             // float outputs
    QParams params;
  };

  template <class V>
  static void put(std::string& s, V v) {
    char b[sizeof(V)];
    std::memcpy(b, &v, sizeof(V));
    s.append(b, sizeof(V));
  }
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

  // Bounds-checked reading; errors name the source, section and field.
  struct Reader {
    const std::string& data;
    std::size_t pos;
    std::string source, section;

    Error error(const char* field, const std::string& what) const {
      return Error(fmt::format("{}: {}, field '{}': {}", source, section, field, what));
    }
    void need(std::uint64_t bytes, const char* field) const {
      if (bytes > data.size() - pos)
        throw error(field, fmt::format("needs {} bytes, {} left (truncated or corrupt)", bytes, data.size() - pos));
    }
    template <class V>
    V get(const char* field) {
      need(sizeof(V), field);
      V v;
      std::memcpy(&v, data.data() + pos, sizeof(V));
      pos += sizeof(V);
      return v;
    }
    index_t positive(const char* field, std::int64_t max = std::int64_t(1) << 24) {
      const auto v = get<std::int64_t>(field);
      if (v <= 0 || v > max) throw error(field, fmt::format("{} is outside [1, {}]", v, max));
      return static_cast<index_t>(v);
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

  void check_shapes(const std::string& source) const {
    Shape s = sample_shape_.batched(1);
    for (const Op& op : ops_) {
      const std::string where = fmt::format("{}: op {}", source, op.name);
      switch (op.kind) {
        case Kind::conv2d:
          if (s.rank() != 4 || s[1] != op.in) throw Error(where + ": input shape " + s.str() + " does not fit");
          s = Shape{1, op.out, op.window.output(where, s[2], s[3]).h, op.window.output(where, s[2], s[3]).w};
          break;
        case Kind::max_pool2d:
          if (s.rank() != 4) throw Error(where + ": input shape " + s.str() + " does not fit");
          s = Shape{1, s[1], op.window.output(where, s[2], s[3]).h, op.window.output(where, s[2], s[3]).w};
          break;
        case Kind::flatten: s = Shape{1, s.size()}; break;
        case Kind::dense:
          if (s.rank() != 2 || s[1] != op.in) throw Error(where + ": input shape " + s.str() + " does not fit");
          s = Shape{1, op.out};
          break;
        case Kind::softmax:
          if (s.rank() != 2) throw Error(where + ": softmax needs (batch, classes)");
          break;
      }
    }
  }

  // The GEMM epilogues: zero point and bias folded into offset, scales per row.
  void prepare() {
    for (Op& op : ops_) {
      if (op.kind != Kind::conv2d && op.kind != Kind::dense) continue;
      const index_t kp = detail::padded_depth(op.fan_in());
      op.offset.assign(static_cast<std::size_t>(op.out), 0);
      op.scale.assign(static_cast<std::size_t>(op.out), 0);
      const std::int32_t zp = op.input.zero_point + 128;
      for (index_t c = 0; c < op.out; ++c) {
        std::int32_t sum = 0;
        for (index_t k = 0; k < kp; ++k) sum += op.weights[static_cast<std::size_t>(c * kp + k)];
        const auto ci = static_cast<std::size_t>(c);
        op.offset[ci] = op.bias[ci] - zp * sum;
        const float s = op.input.scale * op.weight_params[ci].scale;
        op.scale[ci] = op.float_output ? s : s / op.output.scale;
      }
    }
  }

  detail::Epilogue epilogue(const Op& op) const {
    detail::Epilogue e{op.offset.data(), op.scale.data()};
    e.zero_point = op.output.zero_point + 128;
    e.low = op.relu ? e.zero_point : 0;
    return e;
  }

  void run_conv(const Op& op, const Activation& in, Activation& out, int threads) {
    const index_t n = in.shape[0], h = in.shape[2], w = in.shape[3];
    const nn::Size2 o = op.window.output(op.name, h, w);
    const nn::Window2D::Pads pads = op.window.pads(h, w);
    const index_t positions = o.h * o.w, patch = op.fan_in(), kp = detail::padded_depth(patch);
    out.shape = Shape{n, op.out, o.h, o.w};
    const auto plane = static_cast<std::size_t>(op.out * positions);
    if (op.float_output) out.values.resize(out.shape);
    else out.bytes.resize(static_cast<std::size_t>(n) * plane);
    columns_.resize(static_cast<std::size_t>(threads));
    packed_.resize(static_cast<std::size_t>(threads));
    for (auto& c : columns_) c.resize(static_cast<std::size_t>(patch * positions));
    for (auto& p : packed_) p.resize(static_cast<std::size_t>(kp * positions));
    const detail::Epilogue e = epilogue(op);
    const auto pad = static_cast<std::uint8_t>(op.input.zero_point + 128);
    parallel_for(n, threads, [&](index_t s) {
      const auto t = static_cast<std::size_t>(thread_index());
      nn::detail::im2col(in.bytes.data() + s * op.in * h * w, op.in, h, w, op.window, pads, o, columns_[t].data(), pad);
      detail::pack_rows(columns_[t].data(), patch, positions, positions, packed_[t].data());
      if (op.float_output)
        detail::gemm_u8s8(op.weights.data(), op.out, kp, packed_[t].data(), positions, 0, positions, e,
                          out.values.data() + s * plane);
      else
        detail::gemm_u8s8(op.weights.data(), op.out, kp, packed_[t].data(), positions, 0, positions, e,
                          out.bytes.data() + s * plane);
    });
    if (op.float_output && op.relu)
      for (float& v : out.values) v = std::max(v, 0.0f);
  }

  void run_dense(const Op& op, const Activation& in, Activation& out, int threads) {
    const index_t n = in.shape[0], k = op.in, kp = detail::padded_depth(k);
    out.shape = Shape{n, op.out};
    dense_packed_.resize(static_cast<std::size_t>(kp * n));
    detail::pack_transposed(in.bytes.data(), n, k, dense_packed_.data());
    const detail::Epilogue e = epilogue(op);
    const index_t blocks = (n + 63) / 64;
    auto transpose_into = [&](auto* result, const auto* feature_major) {
      for (index_t s = 0; s < n; ++s)
        for (index_t c = 0; c < op.out; ++c) result[s * op.out + c] = feature_major[c * n + s];
    };
    if (op.float_output) {
      dense_float_.resize(Shape{op.out, n});
      parallel_for(blocks, threads, [&](index_t b) {
        detail::gemm_u8s8(op.weights.data(), op.out, kp, dense_packed_.data(), n, 64 * b, std::min(n, 64 * b + 64), e,
                          dense_float_.data());
      });
      out.values.resize(out.shape);
      transpose_into(out.values.data(), dense_float_.data());
      if (op.relu)
        for (float& v : out.values) v = std::max(v, 0.0f);
    } else {
      dense_bytes_.resize(static_cast<std::size_t>(op.out * n));
      parallel_for(blocks, threads, [&](index_t b) {
        detail::gemm_u8s8(op.weights.data(), op.out, kp, dense_packed_.data(), n, 64 * b, std::min(n, 64 * b + 64), e,
                          dense_bytes_.data());
      });
      out.bytes.resize(static_cast<std::size_t>(n * op.out));
      transpose_into(out.bytes.data(), dense_bytes_.data());
    }
  }

  void run_max_pool(const Op& op, const Activation& in, Activation& out) const {
    const index_t planes = in.shape[0] * in.shape[1], h = in.shape[2], w = in.shape[3];
    const nn::Size2 o = op.window.output(op.name, h, w);
    const nn::Window2D::Pads p = op.window.pads(h, w);
    out.shape = Shape{in.shape[0], in.shape[1], o.h, o.w};
    out.bytes.resize(static_cast<std::size_t>(planes * o.h * o.w));
    for (index_t c = 0; c < planes; ++c) {
      const std::uint8_t* src = in.bytes.data() + c * h * w;
      std::uint8_t* dst = out.bytes.data() + c * o.h * o.w;
      for (index_t oy = 0; oy < o.h; ++oy)
        for (index_t ox = 0; ox < o.w; ++ox) {
          std::uint8_t best = 0;  // padding never wins: every window holds a real pixel
          for (index_t ky = 0; ky < op.window.kernel.h; ++ky) {
            const index_t iy = oy * op.window.stride.h - p.top + ky;
            if (iy < 0 || iy >= h) continue;
            for (index_t kx = 0; kx < op.window.kernel.w; ++kx) {
              const index_t ix = ox * op.window.stride.w - p.left + kx;
              if (ix >= 0 && ix < w) best = std::max(best, src[iy * w + ix]);
            }
          }
          dst[oy * o.w + ox] = best;
        }
    }
  }

  Shape sample_shape_;
  QParams input_;
  std::vector<Op> ops_;
  Activation input_buffer_;
  std::vector<Activation> outputs_;
  std::vector<std::vector<std::uint8_t>> columns_, packed_;
  std::vector<std::uint8_t> dense_packed_, dense_bytes_;
  Tensor<float> dense_float_;
};

}  // namespace glassbox::quant
