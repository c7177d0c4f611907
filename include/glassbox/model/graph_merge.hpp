#pragma once
// GraphMerge<T>: a merge node of a Graph (model/graph.hpp) as a layer, so
// that hooks and recorders see merges as they see any node: the elementwise
// sum or product of its inputs, or their concatenation along a non-batch
// axis.
//
// Sums and products broadcast as NumPy does, within one rank: a dimension
// of 1 stretches to the other inputs' (a squeeze-and-excitation gate of
// shape (N, C, 1, 1) scales (N, C, H, W)); the batch must agree.
//
// A layer has one input. A merge's first input is the x a pass gives it (the
// input its hooks are shown); its graph points it at the others before each
// pass (set_inputs). Backward writes the first input's gradient to dx and
// the others' to input_grad(k), for the graph to pass on.

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox {

enum class MergeOp { sum, multiply, concat };

template <class T>
class GraphMerge : public Layer<T> {
 public:
  explicit GraphMerge(MergeOp op, int axis = 1) : op_(op), axis_(axis) {
    if (op == MergeOp::concat && axis == 0) throw Error("concat along axis 0 would mix samples");
  }

  std::string kind() const override { return op_name(op_); }
  static const char* op_name(MergeOp op) {
    return op == MergeOp::sum ? "sum" : op == MergeOp::multiply ? "multiply" : "concat";
  }
  MergeOp op() const { return op_; }
  int axis() const { return axis_; }  // as given (negative counts from the end)

  // The inputs of the next pass, the first being the x it will be given.
  void set_inputs(const std::vector<const Tensor<T>*>& inputs) { inputs_.assign(inputs.begin(), inputs.end()); }
  // Whether backward should compute input k's gradient (k >= 1; the first
  // input's is wanted when dx is given).
  void want_input_grads(const std::vector<bool>& wanted) { wanted_.assign(wanted.begin(), wanted.end()); }
  const Tensor<T>& input_grad(std::size_t k) const { return grads_.at(k); }

  // The merged shape of inputs of these shapes; errors name the merge and,
  // from `names`, its inputs.
  static Shape merged_shape(const std::string& merge, MergeOp op, int axis, const std::vector<Shape>& shapes,
                            const std::vector<std::string>& names) {
    const Shape& first = shapes[0];
    const auto mismatch = [&](std::size_t i, const std::string& why) {
      return Error(fmt::format("{}: input {} ('{}') has shape {} but input 1 ('{}') {}; {}", merge, i + 1, names[i],
                               shapes[i].str(), names[0], first.str(), why));
    };
    if (op != MergeOp::concat) {
      Shape out = first;
      for (std::size_t i = 1; i < shapes.size(); ++i) {
        const Shape& s = shapes[i];
        bool fits = s.rank() == first.rank() && s[0] == first[0];
        for (int d = 1; fits && d < s.rank(); ++d) {
          fits = s[d] == out[d] || s[d] == 1 || out[d] == 1;
          out[d] = std::max(out[d], s[d]);
        }
        if (!fits)
          throw mismatch(i, fmt::format("a {} needs shapes of one rank and batch whose other dimensions are equal or "
                                        "1 (broadcast)",
                                        op_name(op)));
      }
      return out;
    }
    const int at = resolved_axis(merge, axis, first.rank());
    Shape out = first;
    for (std::size_t i = 1; i < shapes.size(); ++i) {
      const Shape& s = shapes[i];
      bool fits = s.rank() == first.rank();
      for (int d = 0; fits && d < s.rank(); ++d) fits = d == at || s[d] == first[d];
      if (!fits) throw mismatch(i, fmt::format("a concat along axis {} needs the other dimensions equal", at));
      out[at] += s[at];
    }
    return out;
  }
  static int resolved_axis(const std::string& merge, int axis, int rank) {
    const int at = axis < 0 ? axis + rank : axis;
    if (at < 1 || at >= rank)
      throw Error(fmt::format("{}: axis {} is not a non-batch axis of its rank-{} inputs", merge, axis, rank));
    return at;
  }

  // Known only during its graph's pass, when the other inputs are set.
  Shape output_shape(const Shape& first) const override {
    if (inputs_.size() < 2)
      throw Error(fmt::format("{}: a merge's shape depends on all its inputs; it is known inside its graph's pass",
                              this->name()));
    std::vector<Shape> shapes{first};
    std::vector<std::string> names{"1"};
    for (std::size_t k = 1; k < inputs_.size(); ++k) {
      shapes.push_back(inputs_[k]->shape());
      names.push_back(std::to_string(k + 1));
    }
    return merged_shape(this->name(), op_, axis_, shapes, names);
  }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(output_shape(x.shape()));
    if (op_ == MergeOp::concat) {
      const int at = resolved_axis(this->name(), axis_, x.rank());
      const auto [outer, row] = split_at(y.shape(), at);
      index_t offset = 0;
      for (std::size_t k = 0; k < inputs_.size(); ++k) {
        const Tensor<T>& v = input(k, x);
        const index_t part = split_at(v.shape(), at).second;
        for (index_t r = 0; r < outer; ++r)
          std::copy(v.data() + r * part, v.data() + (r + 1) * part, y.data() + r * row + offset);
        offset += part;
      }
      return;
    }
    for (std::size_t k = 0; k < inputs_.size(); ++k) {
      const Tensor<T>& v = input(k, x);
      if (v.shape() == y.shape()) {
        if (k == 0)
          y.flat() = v.flat();
        else if (op_ == MergeOp::sum)
          y.flat() += v.flat();
        else
          y.flat() *= v.flat();
        continue;
      }
      const bool first = k == 0, sum = op_ == MergeOp::sum;
      broadcast_walk(v.shape(), y.shape(), [&](index_t out, index_t in) {
        y[out] = first ? v[in] : sum ? y[out] + v[in] : y[out] * v[in];
      });
    }
  }

  void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    grads_.resize(inputs_.size());
    if (dx) gradient(0, x, dy, *dx);
    for (std::size_t k = 1; k < inputs_.size(); ++k)
      if (k < wanted_.size() && wanted_[k]) gradient(k, x, dy, grads_[k]);
  }

 private:
  const Tensor<T>& input(std::size_t k, const Tensor<T>& x) const { return k == 0 ? x : *inputs_[k]; }

  // Values before `axis` (batch included) and from `axis` on.
  static std::pair<index_t, index_t> split_at(const Shape& s, int axis) {
    index_t outer = 1;
    for (int d = 0; d < axis; ++d) outer *= s[d];
    return {outer, s.size() / std::max<index_t>(outer, 1)};
  }

  // d(loss)/d(input k) from dy.
  void gradient(std::size_t k, const Tensor<T>& x, const Tensor<T>& dy, Tensor<T>& out) {
    const Tensor<T>& in = input(k, x);
    out.resize(in.shape());
    if (op_ != MergeOp::concat) {
      // dy times the other factors, at the output's shape, then summed over
      // the dimensions this input was stretched along.
      const bool stretched = in.shape() != dy.shape();
      Tensor<T>& full = stretched ? full_ : out;
      full.resize(dy.shape());
      full.flat() = dy.flat();
      if (op_ == MergeOp::multiply)
        for (std::size_t j = 0; j < inputs_.size(); ++j) {
          if (j == k) continue;
          const Tensor<T>& v = input(j, x);
          if (v.shape() == dy.shape())
            full.flat() *= v.flat();
          else
            broadcast_walk(v.shape(), dy.shape(), [&](index_t o, index_t i) { full[o] *= v[i]; });
        }
      if (stretched) {
        out.flat() = T(0);
        broadcast_walk(in.shape(), dy.shape(), [&](index_t o, index_t i) { out[i] += full[o]; });
      }
    } else {
      const int at = resolved_axis(this->name(), axis_, dy.rank());
      const auto [outer, row] = split_at(dy.shape(), at);
      index_t offset = 0;
      for (std::size_t j = 0; j < k; ++j) offset += split_at(input(j, x).shape(), at).second;
      const index_t part = split_at(in.shape(), at).second;
      for (index_t r = 0; r < outer; ++r)
        std::copy(dy.data() + r * row + offset, dy.data() + r * row + offset + part, out.data() + r * part);
    }
  }

  MergeOp op_;
  int axis_;
  std::vector<const Tensor<T>*> inputs_;
  std::vector<bool> wanted_;
  std::vector<Tensor<T>> grads_;
  Tensor<T> full_;  // a stretched input's gradient before the sum
};

GLASSBOX_PRECOMPILED_INSTANCE(class GraphMerge<float>)
}  // namespace glassbox
