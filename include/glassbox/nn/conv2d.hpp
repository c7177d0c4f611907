#pragma once
// Conv2D: 2-D convolution (cross-correlation, as in PyTorch and Keras) over
// NCHW input. Weight layout OIHW as torch.nn.Conv2d: (out_channels,
// in_channels, kh, kw); bias (out_channels). Stride, dilation and padding
// valid / same / explicit, and an optional fused ReLU (Keras'
// Conv2D(..., activation="relu")). Default initialisation as Keras: Glorot-uniform
// with fan_in = in * kh * kw, fan_out = out * kh * kw; zero bias.
//
// Each sample is one GEMM, W (out x in*kh*kw) * im2col(x) (in*kh*kw x oh*ow),
// and samples are spread over the threads (one thread per GEMM: the GEMMs of
// small networks are too small to split). Workspaces are kept across batches.
// A layer with small patches (an image model's first layer) runs the direct
// kernels of nn/conv_direct.hpp instead, forward and for its weight gradient;
// followed by a 2x2 max pooling, it runs that pooling in the same pass
// (nn/conv_pool_direct.hpp) when its model lets it (Layer::fuses_next).

#include <fmt/format.h>

#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/threads.hpp"
#include "glassbox/nn/activations.hpp"
#include "glassbox/nn/conv_direct.hpp"
#include "glassbox/nn/conv_pool_direct.hpp"
#include "glassbox/nn/im2col.hpp"
#include "glassbox/nn/init.hpp"
#include "glassbox/nn/pool2d.hpp"
#include "glassbox/nn/window.hpp"

namespace glassbox::nn {

template <class T>
class Conv2D : public Layer<T> {
 public:
  struct Options {
    Size2 stride{1, 1};
    Padding padding = Padding::valid;
    Size2 pad{0, 0};  // with Padding::explicit_
    Size2 dilation{1, 1};
    bool bias = true;
    Activation activation = Activation::none;
    Init weight_init = Init::glorot_uniform;
    Init bias_init = Init::zeros;
  };

  Conv2D(index_t in_channels, index_t out_channels, Size2 kernel)
      : Conv2D(in_channels, out_channels, kernel, Options{}) {}
  Conv2D(index_t in_channels, index_t out_channels, Size2 kernel, Options options)
      : in_(in_channels),
        out_(out_channels),
        options_(options),
        window_{kernel, options.stride, options.dilation, options.padding, options.pad},
        weight_("weight", Shape{std::max<index_t>(out_channels, 0), std::max<index_t>(in_channels, 0),
                                std::max<index_t>(kernel.h, 0), std::max<index_t>(kernel.w, 0)}) {
    if (in_channels <= 0 || out_channels <= 0)
      throw Error(fmt::format("conv2d: channels must be positive, got in={} out={}", in_channels, out_channels));
    window_.validate("conv2d");
    if (options_.bias) bias_ = Parameter<T>("bias", Shape{out_channels});
  }

  std::string kind() const override { return "conv2d"; }
  std::string config() const override {
    return fmt::format("{} -> {}, {}{}{}", in_, out_, window_.str(), options_.bias ? "" : ", no bias",
                       options_.activation == Activation::relu ? ", relu" : "");
  }
  const Window2D& window() const { return window_; }
  index_t in_channels() const { return in_; }
  index_t out_channels() const { return out_; }
  const Options& options() const { return options_; }
  Parameter<T>& weight() { return weight_; }
  Parameter<T>& bias() {
    if (!options_.bias) throw Error(this->name() + ": layer was built without a bias");
    return bias_;
  }

  Shape output_shape(const Shape& in) const override {
    require_nchw(this->name(), in);
    if (in[1] != in_)
      throw_shape_error(this->name(), fmt::format("input has {} channels, layer expects {}", in[1], in_));
    const Size2 o = window_.output(this->name(), in[2], in[3]);
    return Shape{in[0], out_, o.h, o.w};
  }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    const Geometry g = geometry(x.shape());
    y.resize(Shape{g.n, out_, g.out.h, g.out.w});
    const int threads = num_threads();
    prepare_workspace(g, threads, false, false);
    const auto w = weight_matrix();
    const T* xd = x.data();
    T* yd = y.data();
    if (g.direct) {
      const detail::DirectConv direct = direct_kernels(g);
      const T* bias = options_.bias ? bias_.value.data() : nullptr;
      const bool relu = options_.activation == Activation::relu;
      parallel_for(g.n, threads, [&](index_t s) {
        direct.forward(xd + s * g.in_size, weight_.value.data(), bias, relu, yd + s * out_ * g.positions);
        this->output_block_done(s, s + 1);
      });
      return;
    }
    parallel_for(g.n, threads, [&](index_t s) {
      const ConstMap col = lower(xd + s * g.in_size, g);
      Map out(yd + s * out_ * g.positions, out_, g.positions);
      // Eigen zeroes the destination of `=` before accumulating: start from
      // the bias instead, one pass over the output fewer.
      if (options_.bias)
        out.colwise() = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(bias_.value.data(), out_);
      else
        out.setZero();
      out.noalias() += w * col;
      if (options_.activation == Activation::relu) out = out.cwiseMax(T(0));
      this->output_block_done(s, s + 1);
    });
  }

  void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>* dx) override {
    const Geometry g = geometry(x.shape());
    const int threads = num_threads();
    const bool parameter_grads = this->parameter_grads_wanted();
    if (!parameter_grads && !dx) return;
    prepare_workspace(g, threads, true, dx != nullptr);
    const auto w = weight_matrix();
    for (auto& acc : weight_grads_) acc.set_zero();
    for (auto& acc : bias_grads_) acc.set_zero();
    if (dx) {
      dx->resize(x.shape());
      dx->set_zero();
    }
    const T* xd = x.data();
    const T* yd = y.data();
    const T* dyd = dy.data();
    T* dxd = dx ? dx->data() : nullptr;
    const bool relu = options_.activation == Activation::relu;
    const bool direct_grads = g.direct && parameter_grads;
    const detail::DirectConv direct = direct_kernels(g);
    parallel_for(g.n, threads, [&](index_t s) {
      const auto t = static_cast<std::size_t>(thread_index());
      if (direct_grads)
        direct.weight_grad(xd + s * g.in_size, dyd + s * out_ * g.positions,
                           relu ? yd + s * out_ * g.positions : nullptr, weight_grads_[t].data(),
                           options_.bias ? bias_grads_[t].data() : nullptr);
      if (!dxd && direct_grads) return;
      const T* grad_data = dyd + s * out_ * g.positions;
      if (relu) {  // through the fused ReLU: zero where it was off (NaN passes, as in PyTorch)
        const ConstMap out(yd + s * out_ * g.positions, out_, g.positions);
        Map(masked_[t].data(), out_, g.positions) =
            (out.array() <= T(0)).select(T(0), ConstMap(grad_data, out_, g.positions).array()).matrix();
        grad_data = masked_[t].data();
      }
      const ConstMap grad_out(grad_data, out_, g.positions);
      if (parameter_grads && !direct_grads) {
        const ConstMap col = lower(xd + s * g.in_size, g);
        Map(weight_grads_[t].data(), out_, g.patch).noalias() += grad_out * col.transpose();
        if (options_.bias) bias_grads_[t].flat() += grad_out.rowwise().sum().array();
      }
      if (dxd) {
        Map grad_col(grad_columns_[t].data(), g.patch, g.positions);
        grad_col.noalias() = w.transpose() * grad_out;
        detail::col2im(grad_col.data(), in_, g.h, g.w, window_, g.pads, g.out, dxd + s * g.in_size);
        this->input_grad_block_done(s, s + 1);
      }
    });
    if (parameter_grads) sum_thread_grads();
  }

  // With a 2x2 max pooling after it, on a geometry the direct kernels take.
  bool fuses_next(const Shape& in, const Layer<T>& next) const override {
    const auto* pool = dynamic_cast<const Pool2D<T>*>(&next);
    if (!pool || next.kind() != "max_pool2d" || in.rank() != 4 || in[1] != in_) return false;
    const Geometry g = geometry(in);
    return g.direct && detail::DirectConvPool::applies(pool->window(), g.out.h, g.out.w);
  }

  void forward_fused(const Tensor<T>& x, Layer<T>& next, Tensor<T>& pooled) override {
    if (!fuses_next(x.shape(), next)) Layer<T>::forward_fused(x, next, pooled);
    const Geometry g = geometry(x.shape());
    const detail::DirectConvPool kernels = pool_kernels(g);
    pooled.resize(Shape{g.n, out_, kernels.ph, kernels.pw});
    pool_winners_.resize(static_cast<std::size_t>(pooled.size()));
    const int threads = num_threads();
    prepare_split_workspace(kernels, threads, false);
    const T* bias = options_.bias ? bias_.value.data() : nullptr;
    const bool relu = options_.activation == Activation::relu;
    const T* xd = x.data();
    T* yd = pooled.data();
    parallel_for(g.n, threads, [&](index_t s) {
      T* split = splits_[static_cast<std::size_t>(thread_index())].data();
      kernels.split(xd + s * g.in_size, split);
      const index_t at = s * kernels.pooled_size();
      kernels.forward(split, weight_.value.data(), bias, relu, yd + at, pool_winners_.data() + at);
    });
  }

  void backward_fused(const Tensor<T>& x, const Tensor<T>& pooled, const Tensor<T>& dpooled, Tensor<T>* dx) override {
    const Geometry g = geometry(x.shape());
    const detail::DirectConvPool kernels = pool_kernels(g);
    if (dpooled.shape() != pooled.shape() || static_cast<std::size_t>(pooled.size()) != pool_winners_.size())
      throw Error(fmt::format("{}: backward of a pooled gradient {} that does not match the last forward", this->name(),
                              dpooled.shape().str()));
    const bool parameter_grads = this->parameter_grads_wanted();
    if (!parameter_grads && !dx) return;
    const int threads = num_threads();
    prepare_workspace(g, threads, true, false);
    prepare_split_workspace(kernels, threads, dx != nullptr);
    for (auto& acc : weight_grads_) acc.set_zero();
    for (auto& acc : bias_grads_) acc.set_zero();
    if (dx) dx->resize(x.shape());
    const bool relu = options_.activation == Activation::relu;
    const T* xd = x.data();
    parallel_for(g.n, threads, [&](index_t s) {
      const auto t = static_cast<std::size_t>(thread_index());
      T* split = splits_[t].data();
      T* split_grad = dx ? split_grads_[t].data() : nullptr;
      kernels.split(xd + s * g.in_size, split);
      if (split_grad) split_grads_[t].set_zero();
      const index_t at = s * kernels.pooled_size();
      kernels.backward(split, pooled.data() + at, dpooled.data() + at, pool_winners_.data() + at, weight_.value.data(),
                       relu, parameter_grads ? weight_grads_[t].data() : nullptr,
                       parameter_grads && options_.bias ? bias_grads_[t].data() : nullptr, split_grad);
      if (split_grad) kernels.merge(split_grad, dx->data() + s * g.in_size);
    });
    if (parameter_grads) sum_thread_grads();
  }

 private:
  // The per-thread sums of backward into the parameters' grads.
  void sum_thread_grads() {
    weight_.grad.flat() = weight_grads_[0].flat();
    for (std::size_t t = 1; t < weight_grads_.size(); ++t) weight_.grad.flat() += weight_grads_[t].flat();
    if (options_.bias) {
      bias_.grad.flat() = bias_grads_[0].flat();
      for (std::size_t t = 1; t < bias_grads_.size(); ++t) bias_.grad.flat() += bias_grads_[t].flat();
    }
  }

 public:
  std::vector<Parameter<T>*> parameters() override {
    if (options_.bias) return {&weight_, &bias_};
    return {&weight_};
  }

  void reset_parameters(Rng& rng) override {
    const index_t area = window_.kernel.h * window_.kernel.w;
    initialize(weight_.value, options_.weight_init, in_ * area, out_ * area, rng);
    if (options_.bias) initialize(bias_.value, options_.bias_init, in_ * area, out_ * area, rng);
    weight_.apply_mask();
  }

 private:
  using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Map = Eigen::Map<Matrix>;
  using ConstMap = Eigen::Map<const Matrix>;

  struct Geometry {
    index_t n, h, w, in_size, patch, positions;
    Size2 out;
    Window2D::Pads pads;
    bool identity_lowering;  // 1x1, stride 1, no padding: im2col(x) is x itself
    bool direct;             // small patches, stride 1, no dilation or padding: nn/conv_direct.hpp
  };

  Geometry geometry(const Shape& in) const {
    Geometry g;
    g.n = in[0];
    g.h = in[2];
    g.w = in[3];
    g.in_size = in_ * g.h * g.w;
    g.out = window_.output(this->name(), g.h, g.w);
    g.pads = window_.pads(g.h, g.w);
    g.patch = in_ * window_.kernel.h * window_.kernel.w;
    g.positions = g.out.h * g.out.w;
    g.identity_lowering = window_.kernel.h == 1 && window_.kernel.w == 1 && window_.stride.h == 1 &&
                          window_.stride.w == 1 && g.pads.top == 0 && g.pads.left == 0 && g.pads.bottom == 0 &&
                          g.pads.right == 0;
    const bool unpadded = g.pads.top == 0 && g.pads.left == 0 && g.pads.bottom == 0 && g.pads.right == 0;
    const bool unit_steps =
        window_.stride.h == 1 && window_.stride.w == 1 && window_.dilation.h == 1 && window_.dilation.w == 1;
    g.direct = !g.identity_lowering &&
               detail::DirectConv::applies(in_, window_.kernel.h, window_.kernel.w, g.out.w, unit_steps, unpadded);
    return g;
  }

  detail::DirectConvPool pool_kernels(const Geometry& g) const {
    return detail::DirectConvPool(in_, out_, g.h, g.w, window_.kernel.h, window_.kernel.w);
  }

  detail::DirectConv direct_kernels(const Geometry& g) const {
    return g.direct ? detail::DirectConv(in_, out_, g.h, g.w, window_.kernel.h, window_.kernel.w)
                    : detail::DirectConv(1, 1, 1, 1, 1, 1);
  }

  ConstMap weight_matrix() const {
    return ConstMap(weight_.value.data(), out_, in_ * window_.kernel.h * window_.kernel.w);
  }

  // im2col of one sample into the calling thread's buffer (or a view of x
  // itself, when the lowering is the identity).
  ConstMap lower(const T* sample, const Geometry& g) {
    if (g.identity_lowering) return ConstMap(sample, g.patch, g.positions);
    T* buffer = columns_[static_cast<std::size_t>(thread_index())].data();
    detail::im2col(sample, in_, g.h, g.w, window_, g.pads, g.out, buffer);
    return ConstMap(buffer, g.patch, g.positions);
  }

  // One buffer of each kind per thread, grown only when shapes grow.
  void prepare_workspace(const Geometry& g, int thread_count, bool for_backward, bool input_grad) {
    const auto threads = static_cast<std::size_t>(thread_count);
    auto fit = [&](std::vector<Tensor<T>>& buffers, const Shape& shape) {
      buffers.resize(threads);
      for (auto& b : buffers)
        if (b.shape() != shape) b.resize(shape);
    };
    if (!g.identity_lowering && !g.direct) fit(columns_, Shape{g.patch, g.positions});
    if (input_grad) fit(grad_columns_, Shape{g.patch, g.positions});
    if (for_backward && options_.activation == Activation::relu && (input_grad || !g.direct))
      fit(masked_, Shape{out_, g.positions});
    if (for_backward) fit(weight_grads_, weight_.value.shape());
    if (for_backward && options_.bias) fit(bias_grads_, Shape{out_});
  }
  void prepare_split_workspace(const detail::DirectConvPool& kernels, int thread_count, bool input_grad) {
    auto fit = [&](std::vector<Tensor<T>>& buffers) {
      buffers.resize(static_cast<std::size_t>(thread_count));
      for (auto& b : buffers)
        if (b.size() != kernels.split_size()) b.resize(Shape{kernels.split_size()});
    };
    fit(splits_);
    if (input_grad) fit(split_grads_);
  }

  index_t in_, out_;
  Options options_;
  Window2D window_;
  Parameter<T> weight_;
  Parameter<T> bias_;
  std::vector<Tensor<T>> columns_, grad_columns_, masked_, weight_grads_, bias_grads_;
  std::vector<Tensor<T>> splits_, split_grads_;  // the fused pooling's inputs split by column parity, per thread
  std::vector<T> pool_winners_;                  // the fused pooling's winning corner (0-3) per output
};

GLASSBOX_PRECOMPILED_INSTANCE(class Conv2D<float>)
}  // namespace glassbox::nn
