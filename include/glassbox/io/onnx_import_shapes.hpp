#pragma once
// ONNX import, what the graph computes from shapes alone: the shape-only
// subgraphs PyTorch writes (Shape -> Gather -> Concat -> ConstantOfShape to
// size zero initial states; Shape -> Gather -> Unsqueeze -> Concat for
// x.view(x.size(0), -1)), Reshape's target evaluated with the batch kept
// symbolic, and whether a node flattens; the model's input shapes, and
// its boundary when it has several inputs or outputs. Out-of-class definitions of
// io/onnx_import.hpp's Importer, which includes this file; include that one.

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "glassbox/io/onnx_import.hpp"

namespace glassbox::io::onnx_detail {

// Marks what a node computes from shapes alone: PyTorch sizes the zero
// initial state of a recurrent layer from the input's batch dimension.
template <class T>
void Importer<T>::shape_node(const OnnxNode& n) {
  static const std::set<std::string> shape_ops{"Gather", "Unsqueeze", "Squeeze",        "Concat",
                                               "Cast",   "Slice",     "ConstantOfShape"};
  bool from_shape = n.op == "Shape";
  if (shape_ops.count(n.op)) {
    from_shape = false;
    for (const std::string& in : n.inputs) {
      if (in.empty() || constant(in)) continue;
      if (!shape_derived_.count(in)) return;
      from_shape = true;
    }
  }
  if (!from_shape) return;
  double fill = std::nan("");
  if (n.op == "ConstantOfShape") {
    fill = 0;
    if (const OnnxAttribute* v = n.attribute("value"))
      fill = v->tensor_value.size() == 1 && v->tensor_value[0].values.size() == 1 ? v->tensor_value[0].values[0]
                                                                                  : std::nan("");
  }
  for (const std::string& out : n.outputs)
    if (!out.empty()) shape_derived_[out] = fill;
}

// Reshape's target for an input of `in` (batch 1), or an error.
template <class T>
Shape Importer<T>::reshape_target(const OnnxNode& n, const Shape& in, bool* keeps_batch) const {
  allow(n, {"allowzero"});
  if (n.inputs.size() < 2 || n.inputs[1].empty()) fail(n, "has no shape (input 1)");
  std::size_t budget = 256;
  const std::vector<std::int64_t> target = shape_values(n, n.inputs[1], in, budget);
  const bool allow_zero = int_attr(n, "allowzero", 0) != 0;
  std::vector<index_t> dims;
  index_t known = 1;
  int inferred = -1;
  // Entry 0 is the batch when it reads it, copies it (0), is inferred (-1)
  // or is the batch the file was exported with.
  if (keeps_batch)
    *keeps_batch = !target.empty() && (target[0] == batch_entry || target[0] == -1 || (target[0] == 0 && !allow_zero) ||
                                       (target[0] == declared_batch_ && target[0] > 0));
  for (std::size_t i = 0; i < target.size(); ++i) {
    std::int64_t v = target[i] == batch_entry ? in[0] : target[i];
    if (v == 0 && !allow_zero) {
      if (static_cast<int>(i) >= in.rank())
        fail(n, fmt::format("shape entry {} copies a dimension the input lacks", i));
      v = in[static_cast<int>(i)];
    }
    if (i == 0 && v == declared_batch_ && v > 0) v = in[0];  // a batch fixed at export time
    if (v == -1) {
      if (inferred >= 0) fail(n, "its shape has two -1 entries");
      inferred = static_cast<int>(i);
      dims.push_back(1);
      continue;
    }
    if (v < 0 || v > in.size() || (v > 0 && known > in.size() / v))
      fail(n, fmt::format("its shape has the entry {} for an input of {}", v, in.str()));
    known *= v;
    dims.push_back(v);
  }
  if (inferred >= 0) {
    if (known == 0 || in.size() % known != 0) fail(n, fmt::format("cannot reshape {}", in.str()));
    dims[static_cast<std::size_t>(inferred)] = in.size() / known;
  }
  if (inferred == 0 && dims[0] != in[0]) fail(n, "its shape does not keep the batch dimension");
  return Shape(dims.begin(), dims.end());
}

// The values of Reshape `n`'s shape input `name`: a constant, or computed
// from the reshaped tensor's own shape, as PyTorch writes x.view(x.size(0),
// -1): Shape -> Gather -> Unsqueeze -> Concat. The batch reads batch_entry.
// `budget` bounds the nodes visited (a shared input is visited each time).
template <class T>
std::vector<std::int64_t> Importer<T>::shape_values(const OnnxNode& n, const std::string& name, const Shape& in,
                                                    std::size_t& budget) const {
  if (const OnnxTensor* c = constant(name)) {
    if (c->values.size() > 64) fail(n, fmt::format("its shape '{}' has {} entries", name, c->values.size()));
    std::vector<std::int64_t> values;
    for (const double v : c->values) values.push_back(integer(n, v, "shape"));
    return values;
  }
  const auto p = producer_.find(name);
  if (budget-- == 0 || p == producer_.end() || !shape_derived_.count(name))
    fail(n, fmt::format("its shape '{}' is computed other than from the reshaped tensor's own shape", name));
  const OnnxNode& s = *p->second;
  auto input = [&](std::size_t i) {
    if (i >= s.inputs.size() || s.inputs[i].empty()) fail(s, fmt::format("has no input {}", i));
    return shape_values(n, s.inputs[i], in, budget);
  };
  std::vector<std::int64_t> out;
  if (s.op == "Shape") {
    if (s.inputs.empty() || s.inputs[0] != n.inputs[0])
      fail(n, "its shape comes from the shape of a tensor other than the one it reshapes");
    allow(s, {"start", "end"});
    const std::int64_t rank = in.rank();
    auto position = [&](std::int64_t v) { return std::clamp<std::int64_t>(v < 0 ? v + rank : v, 0, rank); };
    const std::int64_t start = position(int_attr(s, "start", 0)), end = position(int_attr(s, "end", rank));
    for (std::int64_t d = start; d < end; ++d) out.push_back(d == 0 ? batch_entry : in[static_cast<int>(d)]);
  } else if (s.op == "Gather") {
    allow(s, {"axis"});
    if (int_attr(s, "axis", 0) != 0) fail(s, "gathers a shape along an axis other than 0");
    const std::vector<std::int64_t> data = input(0), indices = input(1);
    const auto size = static_cast<std::int64_t>(data.size());
    for (const std::int64_t i : indices) {
      if (i < -size || i >= size) fail(s, fmt::format("index {} is outside a shape of {} entries", i, size));
      out.push_back(data[static_cast<std::size_t>(i < 0 ? i + size : i)]);
    }
  } else if (s.op == "Unsqueeze" || s.op == "Squeeze" || s.op == "Cast") {
    out = input(0);  // shape values are scalars or vectors: the values stay
  } else if (s.op == "Concat") {
    for (std::size_t i = 0; i < s.inputs.size() && out.size() <= 64; ++i) {
      const std::vector<std::int64_t> part = input(i);
      out.insert(out.end(), part.begin(), part.end());
    }
  } else {
    fail(s, "is not read as part of a Reshape's shape");
  }
  if (out.size() > 64) fail(n, fmt::format("its shape '{}' has more than 64 entries", name));
  return out;
}

// True when `n` turns `in` into (batch, everything else).
template <class T>
bool Importer<T>::flattens(const OnnxNode& n, const Shape& in) const {
  if (n.op == "Flatten") {
    allow(n, {"axis"});
    std::int64_t axis = int_attr(n, "axis", 1);
    if (axis < 0) axis += in.rank();
    return axis == 1;
  }
  if (n.op != "Reshape") return false;
  const Shape s = reshape_target(n, in);
  return s.rank() == 2 && s[0] == in[0] && s[1] == in.sample().size();
}

// Flatten (axis 1), Reshape, Squeeze and Unsqueeze of non-batch axes: the
// Flatten layer when the result is (batch, features), an Identity when the
// shape stays, otherwise a Reshape layer; glassbox's own Reshape nodes are
// always its Reshape layers.
template <class T>
void Importer<T>::reshape(const OnnxNode& n, Sink& sink) {
  const Shape& in = sink.shape;  // batch 1
  if (n.op == "Flatten") {
    if (!flattens(n, in)) fail(n, "flattens from an axis other than 1; glassbox keeps the batch apart");
    emit(sink, std::make_unique<nn::Flatten<T>>(), n);
    return;
  }
  Shape target;
  if (n.op == "Reshape") {
    bool keeps_batch = false;
    target = reshape_target(n, in, &keeps_batch);
    if (!keeps_batch || target[0] != in[0])
      fail(n, fmt::format("reshapes {} to {} without keeping the batch as entry 0 (the batch read from the input, "
                          "0 or -1)",
                          in.str(), target.str()));
  } else {
    allow(n, {"axes"});
    std::vector<std::int64_t> axes;
    if (const OnnxAttribute* a = typed(n, "axes", OnnxAttribute::ints)) axes = a->int_list;
    if (n.inputs.size() > 1 && !n.inputs[1].empty())
      for (const double v : constant_input(n, 1, "axes").values) axes.push_back(integer(n, v, "axes"));
    if (axes.empty()) fail(n, "has no axes; glassbox squeezes named axes only, never the batch");
    const bool squeeze = n.op == "Squeeze";
    const auto rank = static_cast<std::int64_t>(in.rank()) + (squeeze ? 0 : static_cast<std::int64_t>(axes.size()));
    if (rank > Shape::max_rank) fail(n, fmt::format("would give a rank of {} (at most {})", rank, Shape::max_rank));
    std::vector<bool> chosen(static_cast<std::size_t>(rank), false);
    for (std::int64_t a : axes) {
      const std::int64_t at = a < 0 ? a + rank : a;
      if (at < 1 || at >= rank || chosen[static_cast<std::size_t>(at)])
        fail(n, fmt::format("axis {} is the batch, out of range for rank {}, or repeated", a, rank));
      chosen[static_cast<std::size_t>(at)] = true;
    }
    std::vector<index_t> dims;
    for (int d = 0, k = 0; d < rank; ++d) {
      if (squeeze && chosen[static_cast<std::size_t>(d)] && in[d] != 1)
        fail(n, fmt::format("squeezes axis {} of size {}", d, in[d]));
      if (squeeze && !chosen[static_cast<std::size_t>(d)]) dims.push_back(in[d]);
      if (!squeeze) dims.push_back(chosen[static_cast<std::size_t>(d)] ? 1 : in[k++]);
    }
    target = Shape(dims.begin(), dims.end());
  }
  if (m_.producer != "glassbox" && target == in) {
    emit(sink, std::make_unique<nn::Identity<T>>(), n);
  } else if (m_.producer != "glassbox" && target.rank() == 2) {
    emit(sink, std::make_unique<nn::Flatten<T>>(), n);
  } else {
    emit(sink, std::make_unique<nn::Reshape<T>>(target.sample()), n);
  }
}

// A graph input's per-sample shape, checked.
template <class T>
Shape Importer<T>::input_sample(const OnnxValueInfo& in) const {
  if (in.elem_type != float_type && in.elem_type != double_type)
    throw Error(fmt::format("{}: input '{}' has element type {}; glassbox imports float and double models", where_,
                            in.name, in.elem_type));
  if (!in.has_shape || in.dims.size() < 2 || in.dims.size() > static_cast<std::size_t>(Shape::max_rank))
    throw Error(
        fmt::format("{}: input '{}' declares no (batch, ...) shape of rank 2 to {}", where_, in.name, Shape::max_rank));
  if (in.name == packed_inputs || in.name == packed_outputs)
    throw Error(fmt::format("{}: input '{}' has a name glassbox keeps for itself", where_, in.name));
  std::vector<index_t> sample;
  std::int64_t values = 1;
  for (std::size_t d = 1; d < in.dims.size(); ++d) {
    if (in.dims[d] <= 0)
      throw Error(
          fmt::format("{}: input '{}' dimension {} is '{}', known only at run time; glassbox imports "
                      "fixed sample shapes (only the batch may vary)",
                      where_, in.name, d, in.dim_names[d].empty() ? "?" : in.dim_names[d]));
    sample.push_back(static_cast<index_t>(in.dims[d]));
    values *= in.dims[d];
    if (values > max_dimension)
      throw Error(
          fmt::format("{}: input '{}' declares more than {} values per sample", where_, in.name, max_dimension));
  }
  return Shape(sample.begin(), sample.end());
}

// Several inputs are read packed (model/graph.hpp), through a node that
// unpacks each; several outputs are packed by one node after them.
template <class T>
Shape Importer<T>::boundary(const std::vector<Shape>& samples, std::vector<const OnnxNode*>& nodes, std::string& from,
                            std::string& to) {
  Shape sample_shape = samples[0];
  if (m_.inputs.size() > 1) {
    from = packed_inputs;
    std::map<std::string, const OnnxNode*> reader;  // tensor -> its first reader
    for (const OnnxNode* n : nodes)
      for (const std::string& in : n->inputs) reader.emplace(in, n);
    index_t width = 0;
    std::vector<const OnnxNode*> unpacks;
    for (std::size_t k = 0; k < m_.inputs.size(); ++k) {
      width += samples[k].size();
      if (width > max_dimension)
        throw Error(fmt::format("{}: the inputs declare more than {} values per sample", where_, max_dimension));
      declared_inputs_[m_.inputs[k].name] = samples[k];
      const auto first = reader.find(m_.inputs[k].name);
      unpacks.push_back(
          &virtual_node(graph_input_op, {from}, {m_.inputs[k].name}, first == reader.end() ? nullptr : first->second));
    }
    nodes.insert(nodes.begin(), unpacks.begin(), unpacks.end());
    sample_shape = Shape{width};
  }
  if (m_.outputs.size() > 1) {
    std::vector<std::string> outputs;
    for (const OnnxValueInfo& out : m_.outputs) outputs.push_back(out.name);
    to = packed_outputs;
    const auto made = producer_.find(outputs[0]);
    nodes.push_back(&virtual_node(graph_outputs_op, outputs, {to}, made == producer_.end() ? nullptr : made->second));
  }
  return sample_shape;
}

}  // namespace glassbox::io::onnx_detail
