#pragma once
// Tensor<T>: a Shape plus one contiguous, aligned, row-major buffer. One sample
// is contiguous (batch is the outer dimension). matrix() and flat() are Eigen
// views of the same memory, never copies.
//
// resize() keeps the allocation when the new size fits, so layers that reuse
// their output tensors allocate nothing per batch in the steady state.

#include <Eigen/Core>
#include <algorithm>
#include <initializer_list>
#include <new>
#include <utility>
#include <vector>

#include "glassbox/core/error.hpp"
#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/shape.hpp"

namespace glassbox {

namespace detail {
// Eigen's aligned allocator, but growing a vector leaves new elements
// uninitialised: Tensor::resize on a reused buffer must not cost a memset.
template <class T>
struct uninitialized_allocator : Eigen::aligned_allocator<T> {
  template <class U>
  struct rebind {
    using other = uninitialized_allocator<U>;
  };
  uninitialized_allocator() = default;
  template <class U>
  uninitialized_allocator(const uninitialized_allocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
}  // namespace detail

template <class T>
class Tensor {
 public:
  using Scalar = T;
  using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using MatrixMap = Eigen::Map<Matrix>;
  using ConstMatrixMap = Eigen::Map<const Matrix>;
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  using ArrayMap = Eigen::Map<Array>;
  using ConstArrayMap = Eigen::Map<const Array>;

  Tensor() = default;
  explicit Tensor(const Shape& shape) : shape_(shape), data_(static_cast<std::size_t>(shape.size()), T(0)) {}
  Tensor(const Shape& shape, T fill) : shape_(shape), data_(static_cast<std::size_t>(shape.size()), fill) {}
  Tensor(const Shape& shape, std::initializer_list<T> values) : Tensor(shape, values.begin(), values.end()) {}
  template <class It>
  Tensor(const Shape& shape, It first, It last) : shape_(shape), data_(first, last) {
    if (static_cast<index_t>(data_.size()) != shape.size())
      throw Error(fmt::format("Tensor: shape {} needs {} values, got {}", shape.str(), shape.size(), data_.size()));
  }

  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  index_t dim(int axis) const { return shape_[axis]; }
  index_t size() const { return static_cast<index_t>(data_.size()); }
  bool empty() const { return data_.empty(); }

  T* data() { return data_.data(); }
  const T* data() const { return data_.data(); }
  T* begin() { return data_.data(); }
  T* end() { return data_.data() + data_.size(); }
  const T* begin() const { return data_.data(); }
  const T* end() const { return data_.data() + data_.size(); }
  T& operator[](index_t i) { return data_[static_cast<std::size_t>(i)]; }
  const T& operator[](index_t i) const { return data_[static_cast<std::size_t>(i)]; }

  // Changes the shape; contents are unspecified when the size changes.
  // Never shrinks the allocation.
  void resize(const Shape& shape) {
    shape_ = shape;
    data_.resize(static_cast<std::size_t>(shape.size()));
  }

  // Same elements, new shape (e.g. (N, 1, 28, 28) -> (N, 784)).
  void reshape(const Shape& shape) {
    if (shape.size() != size())
      throw Error(fmt::format("Tensor::reshape: cannot view {} ({} elements) as {} ({} elements)", shape_.str(), size(),
                              shape.str(), shape.size()));
    shape_ = shape;
  }

  void fill(T value) { std::fill(data_.begin(), data_.end(), value); }
  void set_zero() { fill(T(0)); }

  // Rows = first dimension (batch), columns = everything else.
  MatrixMap matrix() { return MatrixMap(data(), rows(), cols()); }
  ConstMatrixMap matrix() const { return ConstMatrixMap(data(), rows(), cols()); }
  ArrayMap flat() { return ArrayMap(data(), size()); }
  ConstArrayMap flat() const { return ConstArrayMap(data(), size()); }

 private:
  index_t rows() const { return shape_.rank() == 0 ? 1 : shape_[0]; }
  index_t cols() const {
    const index_t r = rows();
    return r == 0 ? 0 : size() / r;
  }

  Shape shape_;
  std::vector<T, detail::uninitialized_allocator<T>> data_;
};

// Copies rows [first, first + count) of src into dst, resized to (count, ...).
template <class T>
void copy_rows(const Tensor<T>& src, index_t first, index_t count, Tensor<T>& dst) {
  if (src.rank() == 0) throw Error("copy_rows: source has no batch dimension");
  if (first < 0 || count < 0 || first > src.dim(0) - count)
    throw Error(fmt::format("copy_rows: rows [{}, {}) out of range [0, {})", first, first + count, src.dim(0)));
  Shape shape = src.shape();
  shape[0] = count;
  dst.resize(shape);
  const index_t row = src.dim(0) == 0 ? 0 : src.size() / src.dim(0);
  std::copy(src.data() + first * row, src.data() + (first + count) * row, dst.data());
}

// Copies rows (samples) src[indices[i]] into dst[i], resizing dst to
// (indices.size(), ...). Used to assemble shuffled mini-batches.
template <class T, class IndexIt>
void gather_rows(const Tensor<T>& src, IndexIt first, IndexIt last, Tensor<T>& dst) {
  if (src.rank() == 0) throw Error("gather_rows: source has no batch dimension");
  Shape shape = src.shape();
  shape[0] = static_cast<index_t>(last - first);
  dst.resize(shape);
  const index_t row = src.dim(0) == 0 ? 0 : src.size() / src.dim(0);
  T* out = dst.data();
  for (; first != last; ++first, out += row) {
    const auto i = static_cast<index_t>(*first);
    if (i < 0 || i >= src.dim(0)) throw Error(fmt::format("gather_rows: row {} out of range [0, {})", i, src.dim(0)));
    std::copy(src.data() + i * row, src.data() + (i + 1) * row, out);
  }
}

GLASSBOX_PRECOMPILED_INSTANCE(class Tensor<float>)
}  // namespace glassbox
