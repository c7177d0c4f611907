#pragma once
// t-SNE (van der Maaten and Hinton 2008): a map of high-dimensional samples
// on a plane (or in 3-D) that keeps each sample's near neighbours near.
//
//   const Pca pca = inspect::pca(activations, 50);           // as is usual: 50 dims first
//   const TsneResult map = inspect::tsne(pca.project(activations));
//   map.embedding;                                           // (N, 2)
//
// Two methods, as scikit-learn's TSNE has them and with its defaults
// (perplexity 30, early exaggeration 12 for 250 of 1,000 iterations,
// learning rate max(N / 12 / 4, 50), momentum 0.5 then 0.8 with adaptive
// gains, PCA initialisation scaled to a standard deviation of 1e-4):
//   exact       input affinities between all pairs, the exact gradient:
//               O(N^2) time and memory a step, for up to a few thousand points
//   barnes_hut  affinities over each point's 3 x perplexity nearest neighbours
//               and repulsion summarised by a space-partitioning tree
//               (van der Maaten 2014), O(N log N) a step, 1 to 3 dimensions
// Distances are squared Euclidean. Given the same input, options and seed the
// embedding is the same bit for bit, whatever the number of threads.
// kl_divergence traces KL(P || Q) (P without exaggeration) as it falls; for
// Barnes-Hut over the neighbour pairs, with the tree's normalisation.

#include <fmt/format.h>

#include <Eigen/Dense>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "glassbox/core/error.hpp"
#include "glassbox/core/rng.hpp"
#include "glassbox/core/tensor.hpp"
#include "glassbox/core/threads.hpp"
#include "glassbox/inspect/projection.hpp"
#include "glassbox/inspect/space_tree.hpp"

namespace glassbox::inspect {

enum class TsneMethod { barnes_hut, exact };

struct TsneOptions {
  index_t dimensions = 2;
  double perplexity = 30;
  int iterations = 1000;
  int exaggeration_iterations = 250;  // the first iterations, with P multiplied by early_exaggeration
  double early_exaggeration = 12;
  double learning_rate = 0;  // 0: max(N / early_exaggeration / 4, 50)
  TsneMethod method = TsneMethod::barnes_hut;
  double theta = 0.5;    // Barnes-Hut: a cell is summarised when its width / distance < theta
  bool pca_init = true;  // false: Gaussian, standard deviation 1e-4, from seed
  std::uint64_t seed = 0;
  int kl_every = 50;  // KL(P || Q) at iteration 0, every kl_every iterations and at the end
  int threads = 0;    // 0: glassbox::num_threads()
};

struct TsneResult {
  Eigen::MatrixXd embedding;                          // (N, dimensions)
  std::vector<std::pair<int, double>> kl_divergence;  // (iteration, KL(P || Q))
  double learning_rate = 0;
};

namespace detail {

// Sparse symmetric affinities in rows: the neighbours of i are
// columns[offsets[i] .. offsets[i + 1]).
struct SparseAffinities {
  std::vector<index_t> offsets, columns;
  std::vector<double> values;
};

// p_{j|i} over the candidates j of one point, given their squared distances:
// the Gaussian whose precision beta makes the entropy log(perplexity) (a
// bisection, to 1e-5 nats). Writes the probabilities into `p`; returns beta.
inline double calibrate_row(const double* distances, index_t count, double perplexity, double* p) {
  const double target = std::log(perplexity);
  const double nearest = *std::min_element(distances, distances + count);  // shifts out of exp's underflow
  double beta = 1, low = -1, high = -1;                                    // -1: no bound yet
  for (int round = 0; round < 200; ++round) {
    double sum = 0, weighted = 0;
    for (index_t j = 0; j < count; ++j) {
      p[j] = std::exp(-(distances[j] - nearest) * beta);
      sum += p[j];
      weighted += (distances[j] - nearest) * p[j];
    }
    const double entropy = std::log(sum) + beta * weighted / sum;
    for (index_t j = 0; j < count; ++j) p[j] /= sum;
    if (std::abs(entropy - target) < 1e-5) break;
    if (entropy > target) {  // too flat: sharpen
      low = beta;
      beta = high < 0 ? beta * 2 : (beta + high) / 2;
    } else {
      high = beta;
      beta = low < 0 ? beta / 2 : (beta + low) / 2;
    }
  }
  return beta;
}

inline Eigen::VectorXd squared_norms(const Eigen::MatrixXd& x) { return x.rowwise().squaredNorm(); }

// The dense joint affinities P (N x N, zero diagonal, summing to 1).
inline Eigen::MatrixXd exact_affinities(const Eigen::MatrixXd& x, double perplexity) {
  const index_t n = x.rows();
  const Eigen::VectorXd norms = squared_norms(x);
  Eigen::MatrixXd p(n, n);
  std::vector<double> distances(static_cast<std::size_t>(n - 1)), row(static_cast<std::size_t>(n - 1));
  for (index_t i = 0; i < n; ++i) {
    index_t k = 0;
    for (index_t j = 0; j < n; ++j)
      if (j != i)
        distances[static_cast<std::size_t>(k++)] = std::max(0.0, norms(i) + norms(j) - 2 * x.row(i).dot(x.row(j)));
    calibrate_row(distances.data(), n - 1, perplexity, row.data());
    k = 0;
    for (index_t j = 0; j < n; ++j) p(i, j) = j == i ? 0.0 : row[static_cast<std::size_t>(k++)];
  }
  const Eigen::MatrixXd joint = (p + p.transpose()) / (2.0 * static_cast<double>(n));
  return joint;
}

// Each point's k nearest neighbours (itself excluded), nearest first, with
// their squared distances: a blocked brute force through GEMM, so that
// memory stays at a block of rows times N.
inline void nearest_neighbours(const Eigen::MatrixXd& x, index_t k, std::vector<index_t>& neighbours,
                               std::vector<double>& distances, int threads) {
  const index_t n = x.rows();
  const Eigen::VectorXd norms = squared_norms(x);
  neighbours.assign(static_cast<std::size_t>(n * k), 0);
  distances.assign(static_cast<std::size_t>(n * k), 0);
  constexpr index_t block = 256;
  for (index_t start = 0; start < n; start += block) {
    const index_t rows = std::min(block, n - start);
    const Eigen::MatrixXd products = x.middleRows(start, rows) * x.transpose();  // (rows, n)
    parallel_for(rows, threads, [&](std::ptrdiff_t r) {
      const index_t i = start + r;
      std::vector<std::pair<double, index_t>> candidates;
      candidates.reserve(static_cast<std::size_t>(n - 1));
      for (index_t j = 0; j < n; ++j)
        if (j != i) candidates.emplace_back(std::max(0.0, norms(i) + norms(j) - 2 * products(r, j)), j);
      std::partial_sort(candidates.begin(), candidates.begin() + k, candidates.end());  // ties by index
      for (index_t m = 0; m < k; ++m) {
        neighbours[static_cast<std::size_t>(i * k + m)] = candidates[static_cast<std::size_t>(m)].second;
        distances[static_cast<std::size_t>(i * k + m)] = candidates[static_cast<std::size_t>(m)].first;
      }
    });
  }
}

// The symmetric sparse P over each point's k = min(N - 1, 3 x perplexity)
// nearest neighbours: (p_{j|i} + p_{i|j}) / 2N over the union of the pairs.
inline SparseAffinities sparse_affinities(const Eigen::MatrixXd& x, double perplexity, int threads) {
  const index_t n = x.rows();
  const index_t k = std::min<index_t>(n - 1, static_cast<index_t>(3 * perplexity + 1));
  std::vector<index_t> neighbours;
  std::vector<double> distances, conditional(static_cast<std::size_t>(n * k));
  nearest_neighbours(x, k, neighbours, distances, threads);
  parallel_for(n, threads, [&](std::ptrdiff_t i) {
    calibrate_row(&distances[static_cast<std::size_t>(i * k)], k, perplexity,
                  &conditional[static_cast<std::size_t>(i * k)]);
  });
  struct Entry {
    index_t row, column;
    double value;
  };
  std::vector<Entry> entries;
  entries.reserve(static_cast<std::size_t>(2 * n * k));
  for (index_t i = 0; i < n; ++i)
    for (index_t m = 0; m < k; ++m) {
      const index_t j = neighbours[static_cast<std::size_t>(i * k + m)];
      const double v = conditional[static_cast<std::size_t>(i * k + m)];
      entries.push_back({i, j, v});
      entries.push_back({j, i, v});
    }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.row != b.row ? a.row < b.row : a.column < b.column; });
  SparseAffinities p;
  p.offsets.assign(static_cast<std::size_t>(n + 1), 0);
  const double scale = 1.0 / (2.0 * static_cast<double>(n));
  for (std::size_t e = 0; e < entries.size();) {
    std::size_t end = e;
    double sum = 0;
    for (; end < entries.size() && entries[end].row == entries[e].row && entries[end].column == entries[e].column;
         ++end)
      sum += entries[end].value;
    p.columns.push_back(entries[e].column);
    p.values.push_back(sum * scale);
    ++p.offsets[static_cast<std::size_t>(entries[e].row + 1)];
    e = end;
  }
  std::partial_sum(p.offsets.begin(), p.offsets.end(), p.offsets.begin());
  return p;
}

// dC/dY for the exact method: 4 sum_j (exaggeration p_ij - q_ij) q_ij Z (y_i - y_j).
inline Eigen::MatrixXd exact_gradient(const Eigen::MatrixXd& p, const Eigen::MatrixXd& y, double exaggeration,
                                      double* kl = nullptr) {
  const index_t n = y.rows();
  const Eigen::VectorXd norms = squared_norms(y);
  Eigen::MatrixXd q = -2 * y * y.transpose();
  q.colwise() += norms;
  q.rowwise() += norms.transpose();
  q = (1 + q.array().max(0.0)).inverse().matrix();  // the Student-t kernel 1 / (1 + d^2)
  q.diagonal().setZero();
  const double z = q.sum();
  const Eigen::MatrixXd weights = ((exaggeration * p).array() - q.array() / z) * q.array();
  Eigen::MatrixXd grad = 4 * (weights.rowwise().sum().asDiagonal() * y - weights * y);
  if (kl) {
    *kl = 0;
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j)
        if (p(i, j) > 0) *kl += p(i, j) * std::log(p(i, j) / std::max(q(i, j) / z, 1e-300));
  }
  return grad;
}

// dC/dY for Barnes-Hut: 4 (exaggeration F_attract - F_repulse / Z), the
// attraction over P's pairs, the repulsion and Z from the tree.
inline Eigen::MatrixXd barnes_hut_gradient(const SparseAffinities& p, const Eigen::MatrixXd& y, double exaggeration,
                                           double theta, int threads, double* kl = nullptr) {
  const index_t n = y.rows(), d = y.cols();
  const SpaceTree tree(y);
  Eigen::MatrixXd attract = Eigen::MatrixXd::Zero(n, d), repulse(n, d);
  std::vector<double> z_shares(static_cast<std::size_t>(n));
  parallel_for(n, threads, [&](std::ptrdiff_t i) {
    double force[3];
    z_shares[static_cast<std::size_t>(i)] = tree.repulsion(i, theta, force);
    for (index_t a = 0; a < d; ++a) repulse(i, a) = force[a];
    for (index_t e = p.offsets[static_cast<std::size_t>(i)]; e < p.offsets[static_cast<std::size_t>(i + 1)]; ++e) {
      const index_t j = p.columns[static_cast<std::size_t>(e)];
      const double q = 1 / (1 + (y.row(i) - y.row(j)).squaredNorm());
      attract.row(i) += p.values[static_cast<std::size_t>(e)] * q * (y.row(i) - y.row(j));
    }
  });
  const double z = std::accumulate(z_shares.begin(), z_shares.end(), 0.0);  // in index order: deterministic
  if (kl) {
    *kl = 0;
    for (index_t i = 0; i < n; ++i)
      for (index_t e = p.offsets[static_cast<std::size_t>(i)]; e < p.offsets[static_cast<std::size_t>(i + 1)]; ++e) {
        const double pij = p.values[static_cast<std::size_t>(e)];
        const double q = 1 / (1 + (y.row(i) - y.row(p.columns[static_cast<std::size_t>(e)])).squaredNorm()) / z;
        if (pij > 0) *kl += pij * std::log(pij / std::max(q, 1e-300));
      }
  }
  return 4 * (exaggeration * attract - repulse / z);
}

}  // namespace detail

// Embeds the rows of x (N, D) in options.dimensions dimensions.
inline TsneResult tsne(const Eigen::MatrixXd& x, const TsneOptions& options = {}) {
  const index_t n = x.rows(), d = options.dimensions;
  const bool exact = options.method == TsneMethod::exact;
  if (n < 3) throw Error(fmt::format("tsne: needs at least 3 samples (rows), got {}", n));
  if (!(options.perplexity > 0) || options.perplexity >= static_cast<double>(n))
    throw Error(fmt::format("tsne: perplexity must be in (0, {}) for {} samples, got {}", n, n, options.perplexity));
  if (d < 1 || (!exact && d > 3))
    throw Error(
        fmt::format("tsne: dimensions must be in [1, 3] for Barnes-Hut (use the exact method beyond), got {}", d));
  if (d > x.cols()) throw Error(fmt::format("tsne: {} dimensions asked of samples of {} features", d, x.cols()));
  if (exact && n > 5000)
    throw Error(fmt::format("tsne: the exact method keeps N x N matrices; {} samples is too many (use Barnes-Hut)", n));
  if (options.iterations < 0 || options.exaggeration_iterations < 0 ||
      options.exaggeration_iterations > options.iterations)
    throw Error(fmt::format("tsne: need 0 <= exaggeration_iterations ({}) <= iterations ({})",
                            options.exaggeration_iterations, options.iterations));
  if (!(options.theta >= 0) || !(options.early_exaggeration > 0) || !(options.learning_rate >= 0) ||
      options.kl_every < 1)
    throw Error("tsne: theta and learning_rate must be >= 0, early_exaggeration > 0 and kl_every >= 1");
  for (Eigen::Index i = 0; i < x.size(); ++i)
    if (!std::isfinite(x.data()[i])) throw Error(fmt::format("tsne: sample {} holds a non-finite value", i % n));
  const int threads = options.threads > 0 ? options.threads : num_threads();

  TsneResult result;
  result.learning_rate = options.learning_rate > 0
                             ? options.learning_rate
                             : std::max(static_cast<double>(n) / options.early_exaggeration / 4, 50.0);
  Eigen::MatrixXd& y = result.embedding;
  if (options.pca_init) {
    Tensor<double> rows(Shape{n, x.cols()});
    rows.matrix() = x;
    PcaOptions pca_options;
    pca_options.seed = options.seed;
    const Pca p = pca(rows, d, pca_options);
    y = p.project(rows);
    const double spread = std::sqrt((y.col(0).array() - y.col(0).mean()).square().sum() / static_cast<double>(n));
    y *= spread > 0 ? 1e-4 / spread : 0.0;
  } else {
    Rng rng(options.seed);
    y.resize(n, d);
    for (Eigen::Index i = 0; i < y.size(); ++i) y.data()[i] = 1e-4 * rng.normal();
  }

  Eigen::MatrixXd dense;
  detail::SparseAffinities sparse;
  if (exact)
    dense = detail::exact_affinities(x, options.perplexity);
  else
    sparse = detail::sparse_affinities(x, options.perplexity, threads);

  auto gradient = [&](double exaggeration, double* kl) {
    return exact ? detail::exact_gradient(dense, y, exaggeration, kl)
                 : detail::barnes_hut_gradient(sparse, y, exaggeration, options.theta, threads, kl);
  };
  Eigen::MatrixXd update = Eigen::MatrixXd::Zero(n, d), gains = Eigen::MatrixXd::Ones(n, d);
  for (int it = 0;; ++it) {
    double kl = 0;
    if (it == options.iterations) {
      gradient(1.0, &kl);
      result.kl_divergence.emplace_back(it, kl);
      break;
    }
    const bool trace = it % options.kl_every == 0;
    const double exaggeration = it < options.exaggeration_iterations ? options.early_exaggeration : 1.0;
    const bool kl_in_step = trace && exaggeration == 1.0;  // else the trace, which wants P as it is, costs a pass
    if (trace && !kl_in_step) gradient(1.0, &kl);
    const Eigen::MatrixXd grad = gradient(exaggeration, kl_in_step ? &kl : nullptr);
    if (trace) result.kl_divergence.emplace_back(it, kl);
    // Gradient descent with momentum and per-coordinate gains (Jacobs 1988).
    const double momentum = it < options.exaggeration_iterations ? 0.5 : 0.8;
    for (Eigen::Index i = 0; i < y.size(); ++i) {
      double& gain = gains.data()[i];
      gain = (update.data()[i] * grad.data()[i] < 0) ? gain + 0.2 : std::max(gain * 0.8, 0.01);
      update.data()[i] = momentum * update.data()[i] - result.learning_rate * gain * grad.data()[i];
    }
    y += update;
    y.rowwise() -= y.colwise().mean();
  }
  return result;
}

// The rows of a tensor (N, ...), flattened per sample.
template <class T>
TsneResult tsne(const Tensor<T>& x, const TsneOptions& options = {}) {
  if (x.rank() < 2) throw Error(fmt::format("tsne: samples in rows expected, got shape {}", x.shape().str()));
  return tsne(Eigen::MatrixXd(x.matrix().template cast<double>()), options);
}

}  // namespace glassbox::inspect
