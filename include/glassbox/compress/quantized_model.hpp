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
// binary format with a CRC-32C over its body (compress/quantized_format.hpp);
// load() validates every size against the file before allocating. The
// layouts and the weights' arrangement: compress/quantized_layout.hpp.

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "glassbox/compress/int8_gemm.hpp"
#include "glassbox/compress/quantize.hpp"
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

  // The file format (compress/quantized_format.hpp): the serialised model,
  // written atomically (temporary file, rename); load and from_bytes check
  // every field and size before they allocate.
  std::string bytes() const;
  void save(const std::string& path) const;
  static QuantizedModel load(const std::string& path);
  static QuantizedModel from_bytes(const std::string& data, const std::string& source = "int8 model");

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

  // The bytes an activation holds or, for a Flatten's view, reads.
  const std::vector<std::uint8_t>& data_of(const Activation& a) const {
    if (a.source == kOwnBytes) return a.bytes;
    return a.source == kInput ? input_buffer_.bytes : data_of(outputs_[static_cast<std::size_t>(a.source)]);
  }

  // The layouts and the kernels' constants (compress/quantized_layout.hpp).
  // The layout before each op and after the last; throws naming the op whose
  // input does not fit.
  std::vector<Layout> layouts(const std::string& who = "QuantizedModel") const;
  std::vector<Layout> chain(const std::string& who = "QuantizedModel") const;
  Layout input_layout() const;
  static Layout next_layout(const Layout& in, const Op& op, const std::string& who);
  static std::uint64_t weight_bytes(const Op& op, const Layout& in, const std::string& who = "QuantizedModel");
  void arrange_weights(std::size_t i, const std::vector<std::int8_t>& plain);
  void prepare();
  detail::Epilogue epilogue(std::size_t i) const;

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

#include "glassbox/compress/quantized_format.hpp"
#include "glassbox/compress/quantized_layout.hpp"
