#pragma once
// BatchNorm over features (N, F) or channels (N, C, H, W), as
// torch.nn.BatchNorm1d / BatchNorm2d: training normalises with the batch's
// mean and biased variance and updates the running statistics
//   running = (1 - momentum) * running + momentum * batch
// (the variance term unbiased, n / (n - 1)); eval mode uses the running
// statistics. Learnable scale `weight` (ones) and shift `bias` (zeros). Note
// that Keras' momentum is PyTorch's 1 - momentum.
//
// In data-parallel training whose BatchShard carries replicas (layer.hpp),
// training normalises with the statistics of the whole global batch, summed
// over the replicas (as torch.nn.SyncBatchNorm), so that it equals one
// process training on that batch: two sums per forward (the channel sums,
// then the squared deviations from the global mean) and one per backward.

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
      ReplicaSum* replicas = synced();
      const index_t count = (replicas ? this->batch_shard()->global : l.n) * l.spatial;
      if (count < 2)
        throw Error(fmt::format("{}: training needs more than one value per channel, got input {}", this->name(),
                                x.shape().str()));
      // Two passes, each summed over the replicas when synchronised.
      std::vector<double>& sums = sums_;  // kept: no allocation per batch
      sums.assign(static_cast<std::size_t>(features_), 0.0);
      for (index_t c = 0; c < features_; ++c)
        for_channel(l, c, [&](index_t i) { sums[static_cast<std::size_t>(c)] += static_cast<double>(x[i]); });
      if (replicas) replicas->sum(sums.data(), sums.size());
      for (index_t c = 0; c < features_; ++c) {
        const double mean = sums[static_cast<std::size_t>(c)] / static_cast<double>(count);
        mean_[c] = static_cast<T>(mean);
        double sum_sq = 0;
        for_channel(l, c, [&](index_t i) {
          const double d = static_cast<double>(x[i]) - mean;
          sum_sq += d * d;
        });
        sums[static_cast<std::size_t>(c)] = sum_sq;
      }
      if (replicas) replicas->sum(sums.data(), sums.size());
      for (index_t c = 0; c < features_; ++c) {
        const double var = sums[static_cast<std::size_t>(c)] / static_cast<double>(count);
        inv_std_[c] = static_cast<T>(1.0 / std::sqrt(var + static_cast<double>(options_.eps)));
        const T m = options_.momentum;
        running_mean_[c] = (T(1) - m) * running_mean_[c] + m * mean_[c];
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

  // Synchronised (see the top): this replica's dy is d(its own mean loss)/dy,
  // 1 / share times the global batch's. The parameter gradients stay this
  // replica's sums (the replicas' weighted average is the global one), while
  // dx needs the global sums of dy and dy * xhat, each replica weighting its
  // own by its share; dividing them by the local count gives dx in the
  // replica's own units.
  void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    const Layout l = layout(x.shape());
    const T count = static_cast<T>(l.n * l.spatial);
    if (dx) dx->resize(x.shape());
    std::vector<double>& global = sums_;  // per channel: sum of dy, sum of dy * xhat
    ReplicaSum* replicas = training_ && dx ? synced() : nullptr;
    global.assign(2 * static_cast<std::size_t>(features_), 0.0);
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
      global[2 * static_cast<std::size_t>(c)] = static_cast<double>(sum_dy);
      global[2 * static_cast<std::size_t>(c) + 1] = static_cast<double>(sum_dy_xhat);
    }
    if (!dx) return;
    if (replicas) {
      const BatchShard& shard = *this->batch_shard();
      const double share = static_cast<double>(shard.count) / static_cast<double>(shard.global);
      for (double& v : global) v *= share;
      replicas->sum(global.data(), global.size());
    }
    for (index_t c = 0; c < features_; ++c) {
      const T inv_std = inv_std_[c], mean = mean_[c];
      const T g = weight_.value[c] * inv_std;
      if (training_) {  // the batch statistics depend on x too
        const T mean_dy = static_cast<T>(global[2 * static_cast<std::size_t>(c)]) / count;
        const T mean_dy_xhat = static_cast<T>(global[2 * static_cast<std::size_t>(c) + 1]) / count;
        for_channel(l, c,
                    [&](index_t i) { (*dx)[i] = g * (dy[i] - mean_dy - (x[i] - mean) * inv_std * mean_dy_xhat); });
      } else {
        for_channel(l, c, [&](index_t i) { (*dx)[i] = g * dy[i]; });
      }
    }
  }

  std::vector<Parameter<T>*> parameters() override { return {&weight_, &bias_}; }

 private:
  // What the global batch's statistics are summed through, or null.
  ReplicaSum* synced() const {
    const BatchShard* shard = this->batch_shard();
    return shard ? shard->replicas : nullptr;
  }

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
  std::vector<double> sums_;  // per-channel sums, summed over replicas when synchronised
  bool training_ = false;
};

GLASSBOX_PRECOMPILED_INSTANCE(class BatchNorm<float>)
}  // namespace glassbox::nn
