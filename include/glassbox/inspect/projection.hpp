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
//
// Two solvers, chosen as scikit-learn's PCA(svd_solver="auto") does: exact
// (an eigendecomposition of the smaller Gram matrix) for small data or many
// components, and randomized (Halko, Martinsson and Tropp 2011: a seeded
// random range finder with power iterations, then a small SVD) when both
// sides exceed 500 and k is under 80% of the smaller one. For 2,000
// activations of 5,408 features the randomized solver takes a fraction of a
// second where the exact one takes seconds.

#include <fmt/format.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "glassbox/core/error.hpp"
#include "glassbox/core/rng.hpp"
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
    Eigen::MatrixXd projected(x.dim(0), components.cols());
    for (index_t start = 0; start < x.dim(0); start += 256) {  // in blocks of rows: no full double copy of x
      const index_t rows = std::min<index_t>(256, x.dim(0) - start);
      Eigen::MatrixXd block = x.matrix().middleRows(start, rows).template cast<double>();
      block.rowwise() -= mean.transpose();
      projected.middleRows(start, rows) = block * components;
    }
    return projected;
  }
};

enum class PcaSolver { automatic, exact, randomized };

struct PcaOptions {
  PcaSolver solver = PcaSolver::automatic;
  int power_iterations = -1;  // randomized: -1 is 7 when k < 10% of min(N, features), else 4 (scikit-learn's)
  index_t oversamples = 10;   // randomized: extra random directions beyond k
  std::uint64_t seed = 0;     // randomized: the random directions
};

namespace detail {
// Signs each column so that its largest entry by magnitude is positive.
inline void fix_signs(Eigen::MatrixXd& columns) {
  for (Eigen::Index c = 0; c < columns.cols(); ++c) {
    Eigen::Index largest = 0;
    columns.col(c).cwiseAbs().maxCoeff(&largest);
    if (columns(largest, c) < 0) columns.col(c) *= -1;
  }
}

// An orthonormal basis of the columns of m (which has more rows than columns).
inline Eigen::MatrixXd orthonormal_basis(const Eigen::MatrixXd& m) {
  const Eigen::HouseholderQR<Eigen::MatrixXd> qr(m);
  return qr.householderQ() * Eigen::MatrixXd::Identity(m.rows(), m.cols());
}

inline void pca_exact(const Eigen::MatrixXd& centred, double divisor, index_t k, Pca& p) {
  // The smaller of the two Gram matrices: features x features (the
  // covariance), or samples x samples when there are fewer samples, whose
  // eigenvectors u give the components as centred^T u, normalised.
  const bool by_samples = centred.rows() < centred.cols();
  const Eigen::MatrixXd gram = by_samples ? Eigen::MatrixXd(centred * centred.transpose() / divisor)
                                          : Eigen::MatrixXd(centred.transpose() * centred / divisor);
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eigen(gram);
  if (eigen.info() != Eigen::Success) throw Error("pca: the eigen decomposition did not converge");
  const index_t n = gram.rows();
  p.components.resize(centred.cols(), k);
  p.explained_variance.resize(k);
  for (index_t c = 0; c < k; ++c) {  // Eigen sorts ascending: the strongest last
    Eigen::VectorXd v = eigen.eigenvectors().col(n - 1 - c);
    if (by_samples) {
      v = centred.transpose() * v;
      const double norm = v.norm();
      if (norm > 0) v /= norm;
    }
    p.components.col(c) = v;
    p.explained_variance(c) = std::max(0.0, eigen.eigenvalues()(n - 1 - c));
  }
}

inline void pca_randomized(const Eigen::MatrixXd& centred, double divisor, index_t k, const PcaOptions& options,
                           Pca& p) {
  const index_t smaller = std::min<index_t>(centred.rows(), centred.cols());
  const index_t width = std::min(smaller, k + options.oversamples);
  const int iterations = options.power_iterations >= 0 ? options.power_iterations : (10 * k < smaller ? 7 : 4);
  Rng rng(options.seed);
  Eigen::MatrixXd omega(centred.cols(), width);
  for (Eigen::Index i = 0; i < omega.size(); ++i) omega.data()[i] = rng.normal();
  // The range of centred, sharpened by power iterations (re-orthonormalised
  // each half step so that weak directions are not lost to rounding).
  Eigen::MatrixXd range = orthonormal_basis(centred * omega);
  for (int i = 0; i < iterations; ++i) {
    const Eigen::MatrixXd back = orthonormal_basis(centred.transpose() * range);
    range = orthonormal_basis(centred * back);
  }
  // centred ~ range * small: the small matrix's right singular vectors are the components.
  const Eigen::MatrixXd small_transposed = centred.transpose() * range;  // (features, width)
  const Eigen::BDCSVD<Eigen::MatrixXd> svd(small_transposed, Eigen::ComputeThinU);
  p.components = svd.matrixU().leftCols(k);
  p.explained_variance = svd.singularValues().head(k).array().square() / divisor;
}
}  // namespace detail

// The first k principal components of the rows of x (N, ...): N >= 2 samples.
template <class T>
Pca pca(const Tensor<T>& x, index_t k, const PcaOptions& options = {}) {
  if (x.rank() < 2 || x.dim(0) < 2)
    throw Error(fmt::format("pca: needs at least 2 samples (rows), got {}", x.shape().str()));
  const index_t features = x.size() / x.dim(0);
  if (k < 1 || k > features) throw Error(fmt::format("pca: k must be in [1, {}], got {}", features, k));
  if (k > x.dim(0)) throw Error(fmt::format("pca: {} components asked of {} samples", k, x.dim(0)));
  if (options.oversamples < 0 || options.power_iterations < -1)
    throw Error(fmt::format("pca: oversamples ({}) and power_iterations ({}) must not be negative", options.oversamples,
                            options.power_iterations));
  Eigen::MatrixXd centred = x.matrix().template cast<double>();  // one copy: 86 MB for 2,000 x 5,408
  for (index_t i = 0; i < centred.size(); ++i)
    if (!std::isfinite(centred.data()[i]))
      throw Error(fmt::format("pca: sample {} holds a non-finite value", i % x.dim(0)));
  Pca p;
  p.mean = centred.colwise().mean().transpose();
  centred.rowwise() -= p.mean.transpose();
  const double divisor = static_cast<double>(x.dim(0) - 1);
  p.total_variance = centred.squaredNorm() / divisor;
  const index_t smaller = std::min(x.dim(0), features);
  const bool randomized = options.solver == PcaSolver::randomized ||
                          (options.solver == PcaSolver::automatic && smaller > 500 && 5 * k < 4 * smaller);
  if (randomized)
    detail::pca_randomized(centred, divisor, k, options, p);
  else
    detail::pca_exact(centred, divisor, k, p);
  detail::fix_signs(p.components);
  return p;
}

}  // namespace glassbox::inspect
