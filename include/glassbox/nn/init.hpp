#pragma once
// Weight initialisers, seeded through an Rng. Definitions as in Keras and
// PyTorch:
//   glorot_uniform  U(-a, a), a = sqrt(6 / (fan_in + fan_out))
//   glorot_normal   N(0, s),  s = sqrt(2 / (fan_in + fan_out))
//   he_uniform      U(-a, a), a = sqrt(6 / fan_in)
//   he_normal       N(0, s),  s = sqrt(2 / fan_in)
// (Keras truncates its normals at 2 s; PyTorch does not, and neither do we.)

#include <cmath>
#include <string>

#include "glassbox/core/rng.hpp"
#include "glassbox/core/tensor.hpp"

namespace glassbox::nn {

enum class Init { glorot_uniform, glorot_normal, he_uniform, he_normal, zeros };

inline std::string to_string(Init init) {
  switch (init) {
    case Init::glorot_uniform: return "glorot_uniform";
    case Init::glorot_normal: return "glorot_normal";
    case Init::he_uniform: return "he_uniform";
    case Init::he_normal: return "he_normal";
    case Init::zeros: return "zeros";
  }
  return "unknown";
}

template <class T>
void initialize(Tensor<T>& tensor, Init init, index_t fan_in, index_t fan_out, Rng& rng) {
  const double fi = static_cast<double>(fan_in), fo = static_cast<double>(fan_out);
  switch (init) {
    case Init::zeros: tensor.set_zero(); return;
    case Init::glorot_uniform: {
      const double a = std::sqrt(6.0 / (fi + fo));
      for (T& v : tensor) v = static_cast<T>(rng.uniform(-a, a));
      return;
    }
    case Init::he_uniform: {
      const double a = std::sqrt(6.0 / fi);
      for (T& v : tensor) v = static_cast<T>(rng.uniform(-a, a));
      return;
    }
    case Init::glorot_normal: {
      const double s = std::sqrt(2.0 / (fi + fo));
      for (T& v : tensor) v = static_cast<T>(rng.normal(0.0, s));
      return;
    }
    case Init::he_normal: {
      const double s = std::sqrt(2.0 / fi);
      for (T& v : tensor) v = static_cast<T>(rng.normal(0.0, s));
      return;
    }
  }
}

}  // namespace glassbox::nn
