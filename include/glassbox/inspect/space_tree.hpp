#pragma once
// The space-partitioning tree of Barnes-Hut t-SNE (inspect/tsne.hpp): it
// sums the repulsion on one point from all others in O(log N), summarising
// cells that look small from where the point stands.

#include <Eigen/Core>
#include <algorithm>
#include <vector>

#include "glassbox/core/shape.hpp"

namespace glassbox::inspect::detail {

// A 2^d-ary space-partitioning tree over the embedding (a quadtree in 2-D),
// each cell holding its points' count and centre of mass. A leaf holds one
// point, or several at one location (duplicates, or closer than 2^-40 of the
// map's width).
class SpaceTree {
 public:
  explicit SpaceTree(const Eigen::MatrixXd& y) : y_(y), d_(y.cols()), children_(index_t{1} << y.cols()) {
    Eigen::VectorXd low = y.colwise().minCoeff(), high = y.colwise().maxCoeff();
    cells_.reserve(static_cast<std::size_t>(2 * y.rows() + 1));
    Cell root;
    for (index_t a = 0; a < d_; ++a) {
      root.centre[a] = (low(a) + high(a)) / 2;
      root.half[a] = std::max((high(a) - low(a)) / 2, 1e-12) * (1 + 1e-9);
    }
    cells_.push_back(root);
    for (index_t i = 0; i < y.rows(); ++i) insert(i);
  }

  // The repulsive force numerator sum_j q_ij^2 (y_i - y_j) into force, and
  // this point's share of the normalisation sum_j q_ij (j != i) returned;
  // q_ij = 1 / (1 + |y_i - y_j|^2), summarised over cells narrower than
  // theta times their distance.
  double repulsion(index_t i, double theta, double* force) const {
    double z = 0;
    double yi[3], diff[3];
    for (index_t a = 0; a < d_; ++a) yi[a] = y_(i, a), force[a] = 0;
    std::vector<index_t>& stack = stack_for_thread();
    stack.assign(1, 0);
    while (!stack.empty()) {
      const Cell& c = cells_[static_cast<std::size_t>(stack.back())];
      stack.pop_back();
      if (c.count == 0) continue;
      double d2 = 0, width = 0;
      for (index_t a = 0; a < d_; ++a) {
        diff[a] = yi[a] - c.mass[a];
        d2 += diff[a] * diff[a];
        width = std::max(width, 2 * c.half[a]);
      }
      if (c.first_child < 0 || width * width < theta * theta * d2) {
        if (c.first_child < 0 && d2 == 0) {  // the leaf at this point's location: the others there only
          z += static_cast<double>(c.count - 1);
          continue;
        }
        const double q = 1 / (1 + d2), mult = static_cast<double>(c.count) * q;
        z += mult;
        for (index_t a = 0; a < d_; ++a) force[a] += mult * q * diff[a];
      } else {
        for (index_t child = 0; child < children_; ++child) stack.push_back(c.first_child + child);
      }
    }
    return z;
  }

 private:
  struct Cell {
    double centre[3] = {0, 0, 0}, half[3] = {0, 0, 0}, mass[3] = {0, 0, 0};
    index_t count = 0;
    index_t first_child = -1;  // -1: a leaf
    index_t point = -1;        // a leaf's first point
  };

  void insert(index_t i) {
    index_t at = 0;
    for (int depth = 0;; ++depth) {
      Cell& c = cells_[static_cast<std::size_t>(at)];
      const double weight = static_cast<double>(c.count);
      for (index_t a = 0; a < d_; ++a) c.mass[a] = (c.mass[a] * weight + y_(i, a)) / (weight + 1);
      ++c.count;
      if (c.first_child < 0) {
        if (c.count == 1) {
          c.point = i;
          return;
        }
        bool same = true;
        for (index_t a = 0; a < d_; ++a) same = same && y_(c.point, a) == y_(i, a);
        if (same || depth >= 40) return;  // one location: the leaf counts them all
        split(at);
      }
      at = child_for(at, i);
    }
  }

  // Makes a leaf with several points at one location into a parent.
  void split(index_t at) {
    const index_t first = static_cast<index_t>(cells_.size());
    for (index_t child = 0; child < children_; ++child) {
      Cell c;
      const Cell& parent = cells_[static_cast<std::size_t>(at)];
      for (index_t a = 0; a < d_; ++a) {
        c.half[a] = parent.half[a] / 2;
        c.centre[a] = parent.centre[a] + ((child >> a) & 1 ? c.half[a] : -c.half[a]);
      }
      cells_.push_back(c);
    }
    Cell& parent = cells_[static_cast<std::size_t>(at)];
    parent.first_child = first;
    // The points already here (all at parent.point's location) move down as one.
    const index_t moved = parent.count - 1, point = parent.point;
    parent.point = -1;
    Cell& child = cells_[static_cast<std::size_t>(child_for(at, point))];
    child.count = moved;
    child.point = point;
    for (index_t a = 0; a < d_; ++a) child.mass[a] = y_(point, a);
  }

  index_t child_for(index_t at, index_t i) const {
    const Cell& c = cells_[static_cast<std::size_t>(at)];
    index_t child = 0;
    for (index_t a = 0; a < d_; ++a)
      if (y_(i, a) > c.centre[a]) child |= index_t{1} << a;
    return c.first_child + child;
  }

  static std::vector<index_t>& stack_for_thread() {
    thread_local std::vector<index_t> stack;
    return stack;
  }

  const Eigen::MatrixXd& y_;
  index_t d_, children_;
  std::vector<Cell> cells_;
};

}  // namespace glassbox::inspect::detail
