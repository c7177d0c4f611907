#pragma once
// Dropout, inverted as in PyTorch and Keras: in training each element is
// zeroed with probability `rate` and the survivors are scaled by
// 1 / (1 - rate), so eval mode is the identity. The masks come from the
// layer's own Rng, reseeded from the model's seed when the layer is added
// (or from `seed`), so runs repeat exactly.

#include <fmt/format.h>

#include <algorithm>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox::nn {

template <class T>
class Dropout : public Layer<T> {
 public:
  explicit Dropout(T rate, std::uint64_t seed = 0) : rate_(rate), rng_(seed) {
    if (!(rate >= T(0) && rate < T(1))) throw Error(fmt::format("dropout: rate must lie in [0, 1), got {}", rate));
  }

  std::string kind() const override { return "dropout"; }
  std::string config() const override { return fmt::format("rate={}", rate_); }
  T rate() const { return rate_; }

  Shape output_shape(const Shape& in) const override {
    require_batch_first(this->name(), in);
    return in;
  }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override {
    y.resize(x.shape());
    dropped_ = mode == Mode::train && rate_ > T(0);
    if (!dropped_) {
      std::copy(x.begin(), x.end(), y.begin());
      return;
    }
    const double keep = 1.0 - static_cast<double>(rate_);
    const T scale = T(1) / static_cast<T>(keep);
    mask_.resize(x.shape());
    // In data-parallel training, the draws of this replica's samples within
    // the global batch's (layer.hpp, BatchShard).
    const BatchShard* shard = this->batch_shard();
    const index_t batch = x.dim(0);
    const auto per_sample = static_cast<std::uint64_t>(batch == 0 ? 0 : x.size() / batch);
    if (shard) {
      if (shard->count != batch || shard->first + shard->count > shard->global)
        throw Error(fmt::format("{}: batch of {} samples, but its shard is samples [{}, {}) of {}", this->name(), batch,
                                shard->first, shard->first + shard->count, shard->global));
      rng_.discard(static_cast<std::uint64_t>(shard->first) * per_sample);
    }
    for (T& m : mask_) m = rng_.uniform() < keep ? scale : T(0);
    if (shard) rng_.discard(static_cast<std::uint64_t>(shard->global - shard->first - shard->count) * per_sample);
    y.flat() = x.flat() * mask_.flat();
  }

  // Uses the mask of the last forward (identity after an eval forward).
  void backward(const Tensor<T>&, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    dx->resize(dy.shape());
    if (dropped_)
      dx->flat() = dy.flat() * mask_.flat();
    else
      std::copy(dy.begin(), dy.end(), dx->begin());
  }

  // Dropout has no parameters; the model's Rng seeds its masks.
  void reset_parameters(Rng& rng) override { rng_.reseed(rng.next_u64()); }

  Rng* rng() override { return &rng_; }

  // The last training mask: 0 for dropped elements, 1 / (1 - rate) for kept ones.
  const Tensor<T>& mask() const { return mask_; }

 private:
  T rate_;
  Rng rng_;
  Tensor<T> mask_;
  bool dropped_ = false;
};

GLASSBOX_PRECOMPILED_INSTANCE(class Dropout<float>)
}  // namespace glassbox::nn
