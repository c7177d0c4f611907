#pragma once
// Dense: y = x W^T + b, x of shape (N, in), W of shape (out, in) as in
// torch.nn.Linear, b of shape (out). Default initialisation as in Keras:
// Glorot-uniform weights, zero bias.

#include <fmt/format.h>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/init.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox::nn {

template <class T>
class Dense : public Layer<T> {
 public:
  struct Options {
    bool bias = true;
    Init weight_init = Init::glorot_uniform;
    Init bias_init = Init::zeros;
  };

  Dense(index_t in_features, index_t out_features) : Dense(in_features, out_features, Options{}) {}
  Dense(index_t in_features, index_t out_features, Options options)
      : in_(in_features), out_(out_features), options_(options), weight_("weight", Shape{out_features, in_features}) {
    if (in_features <= 0 || out_features <= 0)
      throw Error(fmt::format("dense: features must be positive, got in={} out={}", in_features, out_features));
    if (options_.bias) bias_ = Parameter<T>("bias", Shape{out_features});
  }

  std::string kind() const override { return "dense"; }
  std::string config() const override { return fmt::format("{} -> {}{}", in_, out_, options_.bias ? "" : ", no bias"); }
  index_t in_features() const { return in_; }
  index_t out_features() const { return out_; }
  const Options& options() const { return options_; }

  Parameter<T>& weight() { return weight_; }
  Parameter<T>& bias() {
    if (!options_.bias) throw Error(this->name() + ": layer was built without a bias");
    return bias_;
  }

  Shape output_shape(const Shape& in) const override {
    if (in.rank() != 2)
      throw_shape_error(this->name(),
                        fmt::format("expects input of shape (batch, {}), got {} (flatten it first)", in_, in.str()));
    if (in[1] != in_)
      throw_shape_error(this->name(), fmt::format("input has {} features, layer expects {}", in[1], in_));
    return Shape{in[0], out_};
  }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(Shape{x.dim(0), out_});
    auto out = y.matrix();
    out.noalias() = x.matrix() * weight_.value.matrix().transpose();
    if (options_.bias) out.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias_.value.data(), out_);
  }

  void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    const auto g = dy.matrix();
    if (this->parameter_grads_wanted()) {
      weight_.grad.matrix().noalias() = g.transpose() * x.matrix();
      if (options_.bias) bias_.grad.flat() = g.colwise().sum().transpose().array();
    }
    if (dx) {
      dx->resize(x.shape());
      // An input gradient of 32k values or more is split over the batch, one
      // single-threaded GEMM per thread (Eigen's own split of this thin
      // product was slower: seed CNN backward 125 -> 110 us), and each thread
      // reports its rows while they are in its cache (block hooks,
      // model/hooks.hpp). A smaller one stays one GEMM, as before.
      const index_t n = x.dim(0);
      const int threads = dx->size() >= 32768 ? static_cast<int>(std::min<index_t>(num_threads(), n)) : 1;
      const auto w = weight_.value.matrix();
      auto d = dx->matrix();
      parallel_for(threads, threads, [&](std::ptrdiff_t t) {
        const index_t first = n * t / threads, last = n * (t + 1) / threads;
        d.middleRows(first, last - first).noalias() = g.middleRows(first, last - first) * w;
        this->input_grad_block_done(first, last);
      });
    }
  }

  std::vector<Parameter<T>*> parameters() override {
    if (options_.bias) return {&weight_, &bias_};
    return {&weight_};
  }

  void reset_parameters(Rng& rng) override {
    initialize(weight_.value, options_.weight_init, in_, out_, rng);
    if (options_.bias) initialize(bias_.value, options_.bias_init, in_, out_, rng);
    weight_.apply_mask();
  }

 private:
  index_t in_, out_;
  Options options_;
  Parameter<T> weight_;
  Parameter<T> bias_;
};

GLASSBOX_PRECOMPILED_INSTANCE(class Dense<float>)
}  // namespace glassbox::nn
