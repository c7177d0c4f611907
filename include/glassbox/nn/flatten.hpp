#pragma once
// Flatten: (N, d1, d2, ...) -> (N, d1 * d2 * ...), keeping each sample's
// row-major (C, H, W) order, as torch.nn.Flatten and Keras Flatten on NCHW.

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/reshape.hpp"

namespace glassbox::nn {

template <class T>
class Flatten : public Regroup<T> {
 public:
  std::string kind() const override { return "flatten"; }

  Shape output_shape(const Shape& in) const override {
    require_batch_first(this->name(), in);
    return Shape{in[0], in.sample().size()};
  }
};

GLASSBOX_PRECOMPILED_INSTANCE(class Flatten<float>)
}  // namespace glassbox::nn
