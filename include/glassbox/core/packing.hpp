#pragma once
// Several tensors of one batch as one packed (N, S1 + S2 + ...) tensor, each
// sample's parts flattened one after another: how a Graph with several
// inputs or outputs (model/graph.hpp) and nn::MultiOutputLoss see them.
//
//   pack({images, features}) -> (N, 784 + 4)
//   unpack(packed, {Shape{1, 28, 28}, Shape{4}}) -> {(N, 1, 28, 28), (N, 4)}
//
// read_part / write_part move one part in place, without allocating.

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "glassbox/core/tensor.hpp"

namespace glassbox {

// Values per sample of a batch-first tensor (1 for a rank-1 tensor of labels).
template <class T>
index_t per_sample(const Tensor<T>& t) {
  return t.shape().rank() == 0 || t.shape()[0] == 0 ? 0 : t.size() / t.shape()[0];
}

// `part` (N, ...) gets values [offset, offset + its size per sample) of each
// row of `packed`; `part` must already have its shape.
template <class T>
void read_part(const Tensor<T>& packed, index_t offset, Tensor<T>& part) {
  const index_t n = packed.shape()[0], width = per_sample(packed), size = per_sample(part);
  for (index_t s = 0; s < n; ++s)
    std::copy(packed.data() + s * width + offset, packed.data() + s * width + offset + size, part.data() + s * size);
}

// The reverse: `part` written into (or, with `add`, added to) those values.
template <class T>
void write_part(const Tensor<T>& part, index_t offset, Tensor<T>& packed, bool add = false) {
  const index_t n = packed.shape()[0], width = per_sample(packed), size = per_sample(part);
  for (index_t s = 0; s < n; ++s) {
    const T* from = part.data() + s * size;
    T* to = packed.data() + s * width + offset;
    for (index_t i = 0; i < size; ++i) to[i] = add ? to[i] + from[i] : from[i];
  }
}

template <class T>
Tensor<T> pack(const std::vector<Tensor<T>>& parts) {
  if (parts.empty()) throw Error("pack: no tensors");
  const index_t n = parts[0].shape().rank() ? parts[0].shape()[0] : 0;
  index_t width = 0;
  for (std::size_t k = 0; k < parts.size(); ++k) {
    if (parts[k].shape().rank() < 1 || parts[k].shape()[0] != n)
      throw Error(fmt::format("pack: tensor {} has shape {}; all need the batch of the first, {}", k + 1,
                              parts[k].shape().str(), n));
    width += per_sample(parts[k]);
  }
  Tensor<T> packed(Shape{n, width});
  index_t offset = 0;
  for (const Tensor<T>& part : parts) {
    write_part(part, offset, packed);
    offset += per_sample(part);
  }
  return packed;
}

template <class T>
std::vector<Tensor<T>> unpack(const Tensor<T>& packed, const std::vector<Shape>& samples) {
  index_t width = 0;
  for (const Shape& s : samples) width += s.size();
  if (packed.shape().rank() != 2 || packed.shape()[1] != width)
    throw Error(fmt::format("unpack: {} parts of {} values per sample in all, but the tensor has shape {}",
                            samples.size(), width, packed.shape().str()));
  std::vector<Tensor<T>> parts;
  index_t offset = 0;
  for (const Shape& sample : samples) {
    parts.emplace_back(sample.batched(packed.shape()[0]));
    read_part(packed, offset, parts.back());
    offset += sample.size();
  }
  return parts;
}

}  // namespace glassbox
