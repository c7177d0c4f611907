#pragma once
// Numerically stable functions shared by layers and losses, written once.

#include <Eigen/Core>

namespace glassbox::nn::functional {

// y = 1 / (1 + exp(-x)) elementwise, with one exp of a non-positive number per
// element, so it never overflows. x and y are Eigen arrays of the same size.
template <class In, class Out>
void sigmoid(const In& x, Out&& y) {
  using T = typename In::Scalar;
  y = (-x.abs()).exp();
  y = (x >= T(0)).select(T(1) / (T(1) + y), y / (T(1) + y));
}

// p = softmax of each row of z (max-shifted). z and p are Eigen matrices of
// the same size; p may not alias z.
template <class In, class Out>
void softmax_rows(const In& z, Out&& p) {
  p = (z.colwise() - z.rowwise().maxCoeff()).array().exp().matrix();
  p.array().colwise() /= p.rowwise().sum().array();
}

// log(softmax) of each row of z, without forming the softmax: z - max -
// log(sum(exp(z - max))). Same shapes and aliasing rule as softmax_rows.
template <class In, class Out>
void log_softmax_rows(const In& z, Out&& y) {
  y = z.colwise() - z.rowwise().maxCoeff();
  y.colwise() -= y.array().exp().rowwise().sum().log().matrix();
}

}  // namespace glassbox::nn::functional
