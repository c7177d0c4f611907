#pragma once
// Principal component analysis of a set of samples (rows), for drawing
// high-dimensional data on a plane: embeddings of a layer's activations, or
// the plane through input space on which a decision boundary is drawn.
//
//   const inspect::Pca pca = inspect::pca(activations, 2);   // (N, ...) rows
//   const Eigen::MatrixXd xy = pca.project(activations);     // (N, 2)
//
// The components are the eigenvectors of the sample covariance (divisor
// N - 1), strongest first, each signed so that its largest entry by magnitude
// is positive (a choice, so that runs agree); explained_variance holds their
// eigenvalues.

#include <fmt/format.h>

#include <Eigen/Dense>
#include <cmath>

#include "glassbox/core/error.hpp"
#include "glassbox/core/tensor.hpp"

namespace glassbox::inspect {

struct Pca {
  Eigen::VectorXd mean;                // (features)
  Eigen::MatrixXd components;          // (features, k), orthonormal columns
  Eigen::VectorXd explained_variance;  // (k), descending
  double total_variance = 0;           // the sum over all features

  // Each row of x (N, ...) in the components' coordinates: (N, k).
  template <class T>
  Eigen::MatrixXd project(const Tensor<T>& x) const {
    if (x.rank() < 1 || x.size() != x.dim(0) * mean.size())
      throw Error(fmt::format("Pca::project: samples of {} features expected, got {}", mean.size(), x.shape().str()));
    const Eigen::MatrixXd rows = x.matrix().template cast<double>();
    return (rows.rowwise() - mean.transpose()) * components;
  }
};

// The first k principal components of the rows of x (N, ...): N >= 2 samples.
template <class T>
Pca pca(const Tensor<T>& x, index_t k) {
  if (x.rank() < 2 || x.dim(0) < 2)
    throw Error(fmt::format("pca: needs at least 2 samples (rows), got {}", x.shape().str()));
  const index_t features = x.size() / x.dim(0);
  if (k < 1 || k > features) throw Error(fmt::format("pca: k must be in [1, {}], got {}", features, k));
  const Eigen::MatrixXd rows = x.matrix().template cast<double>();
  for (index_t i = 0; i < rows.size(); ++i)
    if (!std::isfinite(rows.data()[i]))
      throw Error(fmt::format("pca: sample {} holds a non-finite value", i % x.dim(0)));
  Pca p;
  p.mean = rows.colwise().mean().transpose();
  const Eigen::MatrixXd centred = rows.rowwise() - p.mean.transpose();
  const double divisor = static_cast<double>(x.dim(0) - 1);
  // The smaller of the two Gram matrices: features x features (the
  // covariance), or samples x samples when there are fewer samples, whose
  // eigenvectors u give the components as centred^T u, normalised.
  const bool by_samples = x.dim(0) < features;
  const Eigen::MatrixXd gram = by_samples ? Eigen::MatrixXd(centred * centred.transpose() / divisor)
                                          : Eigen::MatrixXd(centred.transpose() * centred / divisor);
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eigen(gram);
  if (eigen.info() != Eigen::Success) throw Error("pca: the eigen decomposition did not converge");
  p.total_variance = gram.trace();  // the same for both: the sum of squared deviations / (N - 1)
  const index_t n = gram.rows();
  if (k > n) throw Error(fmt::format("pca: {} components asked of {} samples", k, x.dim(0)));
  p.components.resize(features, k);
  p.explained_variance.resize(k);
  for (index_t c = 0; c < k; ++c) {  // Eigen sorts ascending: the strongest last
    Eigen::VectorXd v = eigen.eigenvectors().col(n - 1 - c);
    if (by_samples) {
      v = centred.transpose() * v;
      const double norm = v.norm();
      if (norm > 0) v /= norm;
    }
    Eigen::Index largest = 0;
    v.cwiseAbs().maxCoeff(&largest);
    if (v(largest) < 0) v = -v;
    p.components.col(c) = v;
    p.explained_variance(c) = std::max(0.0, eigen.eigenvalues()(n - 1 - c));
  }
  return p;
}

}  // namespace glassbox::inspect
