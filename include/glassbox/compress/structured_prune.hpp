#pragma once
// Structured pruning: removes whole output units — neurons of a Dense layer,
// filters of a Conv2D — and physically shrinks the layer and the next layer
// that reads those units (fewer parameters, less work), instead of masking.
// Units are ranked by the L1 or L2 norm of their weights (each filter's
// in x kh x kw weights, each neuron's row), as torch's ln_structured does.
//
// Between the pruned layer and its consumer may lie layers that treat units
// independently (activations, pooling, dropout) and a Flatten, where each
// channel becomes h * w consecutive features. The consumer is a Dense
// (columns go) or a Conv2D (input channels go). Kept units keep their
// weights, biases and masks exactly, so the outputs of the kept units — and
// everything downstream, when the removed units were zero — are unchanged.
// Optimizers built before hold the old parameters: build a new one.

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "glassbox/model/sequential.hpp"
#include "glassbox/nn/conv2d.hpp"
#include "glassbox/nn/dense.hpp"

namespace glassbox::prune {

enum class Norm { l1, l2 };

namespace detail {

inline bool passes_units_through(const std::string& kind) {
  return kind == "relu" || kind == "leaky_relu" || kind == "sigmoid" || kind == "tanh" || kind == "gelu" ||
         kind == "max_pool2d" || kind == "avg_pool2d" || kind == "global_avg_pool2d" || kind == "dropout" ||
         kind == "flatten";
}

// Copies the entries of `from` selected by `keep` along dimension `axis`
// (0: rows of an (A, B...) tensor; 1: the second dimension), `group` entries
// per selected index along that axis (a channel's h * w features).
template <class T>
Tensor<T> select(const Tensor<T>& from, int axis, const std::vector<index_t>& keep, index_t group = 1) {
  if (from.empty()) return from;
  Shape shape = from.shape();
  const index_t outer = axis == 0 ? 1 : shape[0];
  const index_t along = shape[axis];
  const index_t inner = from.size() / (outer * along);  // per index along the axis, times group
  shape[axis] = static_cast<index_t>(keep.size()) * group;
  Tensor<T> to(shape);
  const index_t block = inner * group;
  const index_t old_stride = along * inner, new_stride = shape[axis] * inner;
  for (index_t o = 0; o < outer; ++o)
    for (std::size_t k = 0; k < keep.size(); ++k)
      std::copy_n(from.data() + o * old_stride + keep[k] * block, block,
                  to.data() + o * new_stride + static_cast<index_t>(k) * block);
  return to;
}

template <class T>
void copy_parameter(Parameter<T>& to, const Parameter<T>& from, int axis, const std::vector<index_t>& keep,
                    index_t group = 1) {
  to.value = select(from.value, axis, keep, group);
  to.grad = Tensor<T>(to.value.shape());
  if (from.has_mask()) to.set_mask(select(from.mask, axis, keep, group));
}

}  // namespace detail

// Units of `layer` (a dense or conv2d) ranked by the norm of their weights,
// weakest first.
template <class T>
std::vector<index_t> units_by_norm(Layer<T>& layer, Norm norm = Norm::l1) {
  if (layer.kind() != "dense" && layer.kind() != "conv2d")
    throw Error(fmt::format("prune: {} is a {}; structured pruning removes units of dense and conv2d layers",
                            layer.name(), layer.kind()));
  const Tensor<T>& w = layer.parameters()[0]->value;
  const index_t units = w.dim(0), fan_in = w.size() / units;
  std::vector<double> norms(static_cast<std::size_t>(units));
  for (index_t u = 0; u < units; ++u) {
    double s = 0;
    for (index_t j = 0; j < fan_in; ++j) {
      const double v = w[u * fan_in + j];
      s += norm == Norm::l1 ? std::abs(v) : v * v;
    }
    norms[static_cast<std::size_t>(u)] = norm == Norm::l1 ? s : std::sqrt(s);
  }
  std::vector<index_t> order(static_cast<std::size_t>(units));
  std::iota(order.begin(), order.end(), index_t{0});
  std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) {
    return norms[static_cast<std::size_t>(a)] < norms[static_cast<std::size_t>(b)];
  });
  return order;
}

// Keeps only the units `keep` (ascending, distinct) of the dense or conv2d
// layer `name` and shrinks the next dense or conv2d layer to match.
template <class T>
void keep_units(Sequential<T>& model, const std::string& name, std::vector<index_t> keep) {
  const std::size_t index = model.index_of(name);
  Layer<T>& layer = model.layer(index);
  const std::vector<index_t> all = units_by_norm(layer);  // also checks the kind
  const auto units = static_cast<index_t>(all.size());
  std::sort(keep.begin(), keep.end());
  if (keep.empty() || std::adjacent_find(keep.begin(), keep.end()) != keep.end() || keep.front() < 0 ||
      keep.back() >= units)
    throw Error(fmt::format("prune: {}: units to keep must be distinct, in [0, {}), and at least one", name, units));

  // The consumer: the next dense or conv2d, past layers that keep units apart.
  std::size_t next = index + 1;
  for (; next < model.size() && detail::passes_units_through(model.layer(next).kind()); ++next) {
  }
  if (next == model.size())
    throw Error(
        fmt::format("prune: {} feeds the model's output; removing its units would change the output shape", name));
  Layer<T>& consumer = model.layer(next);
  if (consumer.kind() != "dense" && consumer.kind() != "conv2d")
    throw Error(
        fmt::format("prune: {} ({}) lies between {} and the next dense or conv2d layer; structured pruning "
                    "cannot pass through it",
                    consumer.name(), consumer.kind(), name));

  const auto kept = static_cast<index_t>(keep.size());
  std::unique_ptr<Layer<T>> pruned, shrunk;
  if (auto* dense = dynamic_cast<nn::Dense<T>*>(&layer)) {
    auto d = std::make_unique<nn::Dense<T>>(dense->in_features(), kept, dense->options());
    detail::copy_parameter(d->weight(), dense->weight(), 0, keep);
    if (dense->options().bias) detail::copy_parameter(d->bias(), dense->bias(), 0, keep);
    pruned = std::move(d);
  } else {
    auto& conv = dynamic_cast<nn::Conv2D<T>&>(layer);
    auto c = std::make_unique<nn::Conv2D<T>>(conv.in_channels(), kept, conv.window().kernel, conv.options());
    detail::copy_parameter(c->weight(), conv.weight(), 0, keep);
    if (conv.options().bias) detail::copy_parameter(c->bias(), conv.bias(), 0, keep);
    pruned = std::move(c);
  }
  if (auto* dense = dynamic_cast<nn::Dense<T>*>(&consumer)) {
    // Each unit became in / units consecutive features (h * w after a Flatten).
    if (dense->in_features() % units != 0)
      throw Error(fmt::format("prune: {} has {} input features, not a multiple of {}'s {} units", consumer.name(),
                              dense->in_features(), name, units));
    const index_t group = dense->in_features() / units;
    auto d = std::make_unique<nn::Dense<T>>(kept * group, dense->out_features(), dense->options());
    detail::copy_parameter(d->weight(), dense->weight(), 1, keep, group);
    if (dense->options().bias) d->bias() = dense->bias();
    shrunk = std::move(d);
  } else {
    auto& conv = dynamic_cast<nn::Conv2D<T>&>(consumer);
    if (conv.in_channels() != units)
      throw Error(fmt::format("prune: {} reads {} channels, not {}'s {} units", consumer.name(), conv.in_channels(),
                              name, units));
    auto c = std::make_unique<nn::Conv2D<T>>(kept, conv.out_channels(), conv.window().kernel, conv.options());
    detail::copy_parameter(c->weight(), conv.weight(), 1, keep);
    if (conv.options().bias) c->bias() = conv.bias();
    shrunk = std::move(c);
  }
  model.replace(index, std::move(pruned));
  model.replace(next, std::move(shrunk));
}

// Removes the `count` units of layer `name` with the smallest weight norms;
// returns the indices (in the old layer) of the units kept.
template <class T>
std::vector<index_t> structured(Sequential<T>& model, const std::string& name, index_t count, Norm norm = Norm::l1) {
  const std::vector<index_t> order = units_by_norm(model.layer(name), norm);
  if (count < 0 || count >= static_cast<index_t>(order.size()))
    throw Error(fmt::format("prune::structured: {}: can remove 0 to {} of its {} units, not {}", name, order.size() - 1,
                            order.size(), count));
  std::vector<index_t> keep(order.begin() + count, order.end());
  std::sort(keep.begin(), keep.end());
  keep_units(model, name, keep);
  return keep;
}

}  // namespace glassbox::prune
