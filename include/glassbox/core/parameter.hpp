#pragma once
// Parameter<T>: a trainable tensor, its gradient, an optional pruning mask and
// a stable dotted name ("dense_1.weight"). Optimizers and compression helpers
// see parameters, never layer internals.

#include <string>
#include <utility>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/tensor.hpp"

namespace glassbox {

template <class T>
struct Parameter {
  std::string name;  // "weight" until the owning layer is named, then "dense_1.weight"
  Tensor<T> value;
  Tensor<T> grad;
  Tensor<T> mask;  // empty: no mask; else same shape as value, entries 0 or 1

  Parameter() = default;
  Parameter(std::string local_name, const Shape& shape) : name(std::move(local_name)), value(shape), grad(shape) {}

  bool has_mask() const { return !mask.empty(); }

  // Installs a mask (same shape as value) and zeroes the masked entries.
  void set_mask(Tensor<T> new_mask) {
    if (new_mask.shape() != value.shape())
      throw Error(fmt::format("{}: mask shape {} does not match parameter shape {}", name, new_mask.shape().str(),
                              value.shape().str()));
    mask = std::move(new_mask);
    apply_mask();
  }
  void clear_mask() { mask = Tensor<T>(); }

  // Keeps pruned entries at exactly zero.
  void apply_mask() {
    if (has_mask()) value.flat() *= mask.flat();
  }

  // The part of the dotted name after the last '.'.
  std::string local_name() const {
    const auto dot = name.rfind('.');
    return dot == std::string::npos ? name : name.substr(dot + 1);
  }
};

GLASSBOX_PRECOMPILED_INSTANCE(struct Parameter<float>)
}  // namespace glassbox
