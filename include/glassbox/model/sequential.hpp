#pragma once
// Sequential<T>: a chain of layers. Owns the layers, names them ("dense_1",
// "relu_2", unique per kind), caches every layer's output for backward and for
// inspection, and checks shapes: at add() when the input shape is declared,
// and at every forward.
//
// The model keeps a copy of the last forward's input, so backward() never
// depends on the caller's tensor staying alive.

#include <fmt/format.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "glassbox/core/threads.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox {

template <class T>
class Sequential {
 public:
  // seed drives the initialisation of every layer added.
  explicit Sequential(std::uint64_t seed = 42) : rng_(seed) { num_threads(); }
  // sample_shape: one sample's shape without the batch dimension, e.g. {784}.
  explicit Sequential(const Shape& sample_shape, std::uint64_t seed = 42) : rng_(seed), sample_shape_(sample_shape) {
    num_threads();  // applies GLASSBOX_NUM_THREADS before the first GEMM
  }

  Sequential(Sequential&&) noexcept = default;
  Sequential& operator=(Sequential&&) noexcept = default;

  // Constructs a layer in place: model.add<nn::Dense<float>>(784, 256).
  template <class L, class... Args>
  L& add(Args&&... args) {
    static_assert(std::is_base_of_v<Layer<T>, L>, "Sequential::add: L must derive from Layer<T>");
    auto owned = std::make_unique<L>(std::forward<Args>(args)...);
    L& ref = *owned;
    add(std::move(owned));
    return ref;
  }

  // Adds a layer named `name` (default: kind_N, N counting that kind from 1),
  // checks it accepts the previous output, and initialises its parameters
  // from the model's Rng. On error the model is unchanged.
  Layer<T>& add(std::unique_ptr<Layer<T>> layer, std::string name = {}) {
    if (!layer) throw Error("Sequential::add: null layer");
    int& kind_count = kind_counts_[layer->kind()];
    if (name.empty()) name = fmt::format("{}_{}", layer->kind(), kind_count + 1);
    if (find(name)) throw Error(fmt::format("Sequential::add: a layer named '{}' already exists", name));
    layer->set_name(name);
    if (sample_shape_) layer->output_shape(output_shape_of(layers_.size(), sample_shape_->batched(1)));
    ++kind_count;
    layer->reset_parameters(rng_);
    layers_.push_back(std::move(layer));
    outputs_.emplace_back();
    return *layers_.back();
  }

  std::size_t size() const { return layers_.size(); }
  Layer<T>& layer(std::size_t index) {
    if (index >= layers_.size())
      throw Error(fmt::format("Sequential: layer index {} out of range (model has {} layers)", index, layers_.size()));
    return *layers_[index];
  }
  Layer<T>& layer(const std::string& name) {
    if (Layer<T>* l = find(name)) return *l;
    throw Error(fmt::format("Sequential: no layer named '{}'", name));
  }
  const std::optional<Shape>& sample_shape() const { return sample_shape_; }

  // Runs every layer; returns the last output (owned by the model, valid until
  // the next forward). Throws glassbox::Error naming the first layer whose
  // input shape is wrong.
  const Tensor<T>& forward(const Tensor<T>& x, Mode mode = Mode::eval) {
    if (layers_.empty()) throw Error("Sequential::forward: the model has no layers");
    if (sample_shape_ && (x.rank() == 0 || x.shape().sample() != *sample_shape_))
      throw Error(fmt::format("model input: expected samples of shape {}, got a batch of shape {}",
                              sample_shape_->str(), x.shape().str()));
    input_.resize(x.shape());
    std::copy(x.begin(), x.end(), input_.begin());
    has_forward_ = true;
    has_input_grad_ = false;
    const Tensor<T>* in = &input_;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      layers_[i]->output_shape(in->shape());
      layers_[i]->forward(*in, outputs_[i], mode);
      in = &outputs_[i];
    }
    return *in;
  }

  // Backpropagates dLoss/d(output) through every layer, filling every
  // parameter's grad (overwritten, not accumulated). The gradient with respect
  // to the model's input is computed only when want_input_grad is true, and
  // then read with input_grad().
  void backward(const Tensor<T>& grad_output, bool want_input_grad = false) {
    if (!has_forward_) throw Error("Sequential::backward: call forward first");
    if (grad_output.shape() != outputs_.back().shape())
      throw Error(fmt::format("Sequential::backward: gradient shape {} differs from output shape {}",
                              grad_output.shape().str(), outputs_.back().shape().str()));
    const Tensor<T>* dy = &grad_output;
    for (std::size_t i = layers_.size(); i-- > 0;) {
      const Tensor<T>& x = i == 0 ? input_ : outputs_[i - 1];
      Tensor<T>* dx = (i > 0 || want_input_grad) ? &grads_[i % 2] : nullptr;
      layers_[i]->backward(x, outputs_[i], *dy, dx);
      dy = dx;
    }
    has_input_grad_ = want_input_grad;
  }

  const Tensor<T>& input_grad() const {
    if (!has_input_grad_) throw Error("Sequential::input_grad: call backward(grad, /*want_input_grad=*/true) first");
    return grads_[0];
  }

  // Output of layer i from the last forward.
  const Tensor<T>& output(std::size_t index) const { return outputs_.at(index); }

  // Eval-mode forward over x in batches; returns a new tensor.
  Tensor<T> predict(const Tensor<T>& x, index_t batch_size = 256) {
    if (x.rank() < 1) throw Error("Sequential::predict: input needs a batch dimension");
    if (batch_size <= 0)
      throw Error(fmt::format("Sequential::predict: batch_size must be positive, got {}", batch_size));
    const index_t n = x.dim(0);
    Tensor<T> result;
    Tensor<T> batch;
    for (index_t start = 0; start < n; start += batch_size) {
      const index_t count = std::min(batch_size, n - start);
      copy_rows(x, start, count, batch);
      const Tensor<T>& y = forward(batch, Mode::eval);
      if (start == 0) {
        Shape rs = y.shape();
        rs[0] = n;
        result.resize(rs);
      }
      std::copy(y.begin(), y.end(), result.data() + start * (y.size() / count));
    }
    return result;
  }

  std::vector<Parameter<T>*> parameters() {
    std::vector<Parameter<T>*> all;
    for (auto& l : layers_)
      for (Parameter<T>* p : l->parameters()) all.push_back(p);
    return all;
  }

  index_t parameter_count() {
    index_t n = 0;
    for (auto& l : layers_) n += l->parameter_count();
    return n;
  }

  // Keras-like table: layer name (kind), output shape, parameter count, totals.
  std::string summary() {
    const std::string rule(72, '-');
    std::string s = fmt::format("Model: sequential\n{}\n{:<32}{:<26}{:>14}\n{}\n", rule, "Layer (type)", "Output Shape",
                                "Param #", std::string(72, '='));
    index_t total = 0;
    std::optional<Shape> shape;
    if (sample_shape_) shape = sample_shape_->batched(1);
    for (auto& l : layers_) {
      std::string out = "?";  // unknown until the model's input shape is declared
      if (shape) {
        shape = l->output_shape(*shape);
        out = batch_free(*shape);
      }
      const index_t count = l->parameter_count();
      total += count;
      s += fmt::format("{:<32}{:<26}{:>14}\n", fmt::format("{} ({})", l->name(), l->kind()), out, count);
    }
    s += fmt::format("{}\nTotal params: {}\n{}\n", std::string(72, '='), total, rule);
    return s;
  }

 private:
  static std::string batch_free(const Shape& s) {
    std::string r = "(None";
    for (int i = 1; i < s.rank(); ++i) r += fmt::format(", {}", s[i]);
    return r + ")";
  }

  // Output shape of the first `count` layers for the given batch input shape.
  Shape output_shape_of(std::size_t count, Shape shape) const {
    for (std::size_t i = 0; i < count; ++i) shape = layers_[i]->output_shape(shape);
    return shape;
  }

  Layer<T>* find(const std::string& name) {
    for (auto& l : layers_)
      if (l->name() == name) return l.get();
    return nullptr;
  }

  Rng rng_;
  std::optional<Shape> sample_shape_;
  std::vector<std::unique_ptr<Layer<T>>> layers_;
  std::vector<Tensor<T>> outputs_;
  Tensor<T> input_;     // copy of the last forward's input
  Tensor<T> grads_[2];  // ping-pong buffers for input gradients
  bool has_forward_ = false;
  bool has_input_grad_ = false;
  std::map<std::string, int> kind_counts_;
};

}  // namespace glassbox
