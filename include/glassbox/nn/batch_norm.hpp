#pragma once
// BatchNorm over features (N, F) or channels (N, C, H, W), as
// torch.nn.BatchNorm1d / BatchNorm2d: training normalises with the batch's
// mean and biased variance and updates the running statistics
//   running = (1 - momentum) * running + momentum * batch
// (the variance term unbiased, n / (n - 1)); eval mode uses the running
// statistics. Learnable scale `weight` (ones) and shift `bias` (zeros). Note
// that Keras' momentum is PyTorch's 1 - momentum.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox::nn {

template <class T>
class BatchNorm : public Layer<T> {
 public:
  struct Options {
    T eps = T(1e-5);
    T momentum = T(0.1);
  };

  explicit BatchNorm(index_t features) : BatchNorm(features, Options{}) {}
  BatchNorm(index_t features, Options options)
      : features_(features),
        options_(options),
        weight_("weight", Shape{std::max<index_t>(features, 0)}),
        bias_("bias", Shape{std::max<index_t>(features, 0)}),
        running_mean_(Shape{std::max<index_t>(features, 0)}, T(0)),
        running_var_(Shape{std::max<index_t>(features, 0)}, T(1)) {
    if (features <= 0) throw Error(fmt::format("batch_norm: features must be positive, got {}", features));
    if (!(options.eps > T(0)) || !(options.momentum >= T(0) && options.momentum <= T(1)))
      throw Error(fmt::format("batch_norm: eps must be > 0 and momentum in [0, 1], got {} and {}", options.eps,
                              options.momentum));
    weight_.value.fill(T(1));
  }

  std::string kind() const override { return "batch_norm"; }
  std::string config() const override {
    return fmt::format("{} features, eps={}, momentum={}", features_, options_.eps, options_.momentum);
  }
  index_t features() const { return features_; }
  const Options& options() const { return options_; }
  Parameter<T>& weight() { return weight_; }
  Parameter<T>& bias() { return bias_; }
  std::vector<std::pair<std::string, Tensor<T>*>> buffers() override {
    return {{"running_mean", &running_mean_}, {"running_var", &running_var_}};
  }
  const Tensor<T>& running_mean() const { return running_mean_; }
  const Tensor<T>& running_var() const { return running_var_; }
  Tensor<T>& running_mean() { return running_mean_; }
  Tensor<T>& running_var() { return running_var_; }

  Shape output_shape(const Shape& in) const override {
    if (in.rank() != 2 && in.rank() != 4)
      throw_shape_error(this->name(), fmt::format("expects (batch, features) or NCHW input, got {}", in.str()));
    if (in[1] != features_)
      throw_shape_error(this->name(), fmt::format("input has {} {}, layer expects {}", in[1],
                                                  in.rank() == 2 ? "features" : "channels", features_));
    return in;
  }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override {
    const Layout l = layout(x.shape());
    y.resize(x.shape());
    training_ = mode == Mode::train;
    mean_.resize(Shape{features_});
    inv_std_.resize(Shape{features_});
    if (training_) {
      const index_t count = l.n * l.spatial;
      if (count < 2)
        throw Error(fmt::format("{}: training needs more than one value per channel, got input {}", this->name(),
                                x.shape().str()));
      for (index_t c = 0; c < features_; ++c) {
        double sum = 0, sum_sq = 0;
        for_channel(l, c, [&](index_t i) { sum += static_cast<double>(x[i]); });
        const double mean = sum / static_cast<double>(count);
        for_channel(l, c, [&](index_t i) {
          const double d = static_cast<double>(x[i]) - mean;
          sum_sq += d * d;
        });
        const double var = sum_sq / static_cast<double>(count);
        mean_[c] = static_cast<T>(mean);
        inv_std_[c] = static_cast<T>(1.0 / std::sqrt(var + static_cast<double>(options_.eps)));
        const T m = options_.momentum;
        running_mean_[c] = (T(1) - m) * running_mean_[c] + m * static_cast<T>(mean);
        running_var_[c] = (T(1) - m) * running_var_[c] +
                          m * static_cast<T>(var * static_cast<double>(count) / static_cast<double>(count - 1));
      }
    } else {
      for (index_t c = 0; c < features_; ++c) {
        mean_[c] = running_mean_[c];
        inv_std_[c] = T(1) / std::sqrt(running_var_[c] + options_.eps);
      }
    }
    for (index_t c = 0; c < features_; ++c) {
      const T scale = weight_.value[c] * inv_std_[c], shift = bias_.value[c] - mean_[c] * scale;
      for_channel(l, c, [&](index_t i) { y[i] = x[i] * scale + shift; });
    }
  }

  void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    const Layout l = layout(x.shape());
    const T count = static_cast<T>(l.n * l.spatial);
    if (dx) dx->resize(x.shape());
    for (index_t c = 0; c < features_; ++c) {
      T sum_dy = 0, sum_dy_xhat = 0;
      const T mean = mean_[c], inv_std = inv_std_[c];
      for_channel(l, c, [&](index_t i) {
        sum_dy += dy[i];
        sum_dy_xhat += dy[i] * (x[i] - mean) * inv_std;
      });
      if (this->parameter_grads_wanted()) {
        weight_.grad[c] = sum_dy_xhat;
        bias_.grad[c] = sum_dy;
      }
      if (!dx) continue;
      const T g = weight_.value[c] * inv_std;
      if (training_) {  // the batch statistics depend on x too
        const T mean_dy = sum_dy / count, mean_dy_xhat = sum_dy_xhat / count;
        for_channel(l, c,
                    [&](index_t i) { (*dx)[i] = g * (dy[i] - mean_dy - (x[i] - mean) * inv_std * mean_dy_xhat); });
      } else {
        for_channel(l, c, [&](index_t i) { (*dx)[i] = g * dy[i]; });
      }
    }
  }

  std::vector<Parameter<T>*> parameters() override { return {&weight_, &bias_}; }

 private:
  struct Layout {
    index_t n, spatial;  // element (s, c, k) at (s * features + c) * spatial + k
  };
  Layout layout(const Shape& in) const { return {in[0], in.rank() == 4 ? in[2] * in[3] : 1}; }

  template <class F>
  void for_channel(const Layout& l, index_t c, F f) const {
    for (index_t s = 0; s < l.n; ++s) {
      const index_t base = (s * features_ + c) * l.spatial;
      for (index_t k = 0; k < l.spatial; ++k) f(base + k);
    }
  }

  index_t features_;
  Options options_;
  Parameter<T> weight_, bias_;
  Tensor<T> running_mean_, running_var_;
  Tensor<T> mean_, inv_std_;  // statistics the last forward normalised with
  bool training_ = false;
};

GLASSBOX_PRECOMPILED_INSTANCE(class BatchNorm<float>)
}  // namespace glassbox::nn
