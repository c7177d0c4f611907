#pragma once
// Shape: the dimensions of a Tensor, batch first (N, F) or (N, C, H, W).
// Requires: rank <= Shape::max_rank, every dimension >= 0.

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <initializer_list>
#include <limits>
#include <string>

#include "glassbox/core/error.hpp"

namespace glassbox {

using index_t = std::ptrdiff_t;

class Shape {
 public:
  static constexpr int max_rank = 6;

  Shape() = default;
  Shape(std::initializer_list<index_t> dims) { assign(dims.begin(), dims.end()); }
  template <class It>
  Shape(It first, It last) {
    assign(first, last);
  }

  int rank() const { return rank_; }
  index_t operator[](int axis) const { return dims_[static_cast<std::size_t>(axis)]; }
  index_t& operator[](int axis) { return dims_[static_cast<std::size_t>(axis)]; }

  // Number of elements (1 for a rank-0 shape).
  index_t size() const {
    index_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<std::size_t>(i)];
    return n;
  }

  // Shape without the batch (first) dimension.
  Shape sample() const {
    if (rank_ == 0) throw Error("Shape::sample: a rank-0 shape has no batch dimension");
    return Shape(dims_.begin() + 1, dims_.begin() + rank_);
  }

  // Prepends a batch dimension: Shape{784}.batched(32) == Shape{32, 784}.
  Shape batched(index_t batch) const {
    Shape s;
    s.rank_ = rank_ + 1;
    if (s.rank_ > max_rank) throw Error(fmt::format("Shape: rank {} exceeds the maximum of {}", s.rank_, max_rank));
    s.dims_[0] = batch;
    std::copy(dims_.begin(), dims_.begin() + rank_, s.dims_.begin() + 1);
    s.check_size();
    return s;
  }

  const index_t* begin() const { return dims_.data(); }
  const index_t* end() const { return dims_.data() + rank_; }

  friend bool operator==(const Shape& a, const Shape& b) {
    return a.rank_ == b.rank_ && std::equal(a.begin(), a.end(), b.begin());
  }
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

  // "(32, 784)"
  std::string str() const { return fmt::format("({})", fmt::join(begin(), end(), ", ")); }

 private:
  template <class It>
  void assign(It first, It last) {
    const auto n = std::distance(first, last);
    if (n > max_rank) throw Error(fmt::format("Shape: rank {} exceeds the maximum of {}", n, max_rank));
    rank_ = static_cast<int>(n);
    std::size_t i = 0;
    for (; first != last; ++first, ++i) {
      if (*first < 0) throw Error(fmt::format("Shape: dimension {} is negative ({})", i, *first));
      dims_[i] = static_cast<index_t>(*first);
    }
    check_size();
  }

  // The product of the non-zero dimensions must fit index_t, so that size()
  // never overflows, nor the size of any part of the shape (a zero batch
  // dimension does not make the other dimensions safe to multiply).
  void check_size() const {
    index_t n = 1;
    for (int i = 0; i < rank_; ++i) {
      const index_t d = dims_[static_cast<std::size_t>(i)];
      if (d == 0) continue;
      if (n > std::numeric_limits<index_t>::max() / d)
        throw Error(fmt::format("Shape: {} has too many elements", str()));
      n *= d;
    }
  }

  std::array<index_t, max_rank> dims_{};
  int rank_ = 0;
};

// Calls f(index in `out`, index in `in`) for every element of a tensor of
// shape `out` in order, `in` (of the same rank) being stretched along its
// dimensions of 1, as NumPy broadcasts.
template <class F>
void broadcast_walk(const Shape& in, const Shape& out, F f) {
  const int rank = out.rank();
  index_t in_stride[Shape::max_rank] = {}, count[Shape::max_rank] = {};
  for (index_t d = rank - 1, stride = 1; d >= 0; --d) {
    const int at = static_cast<int>(d);
    in_stride[at] = in[at] == 1 && out[at] != 1 ? 0 : stride;
    stride *= in[at];
  }
  const index_t total = out.size();
  index_t i = 0;
  for (index_t o = 0; o < total; ++o) {
    f(o, i);
    for (int d = rank - 1; d >= 0; --d) {  // the next index, as an odometer turns
      i += in_stride[d];
      if (++count[d] < out[d]) break;
      i -= in_stride[d] * out[d];
      count[d] = 0;
    }
  }
}

}  // namespace glassbox
