#pragma once
// ONNX import, one node to one layer: the Importer's members that map an op
// and its attributes to a glassbox layer (Conv, Gemm, MatMul + Add, pools,
// batch norm, Flatten / Reshape (their targets: onnx_import_shapes.hpp), Pad,
// Dropout, activations), its window and
// padding rules, Constant nodes, and how initializers fill the parameters.
// Out-of-class definitions of io/onnx_import.hpp's Importer, which includes
// this file; include that one.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "glassbox/io/onnx_import.hpp"

namespace glassbox::io::onnx_detail {

template <class T>
void Importer<T>::assign(const Assignment& a) const {
  Tensor<T>& to = *a.target;
  const OnnxTensor& from = *a.source;
  const bool broadcast = from.values.size() == 1 && to.size() > 1;
  if (static_cast<index_t>(from.values.size()) != to.size() && !broadcast)
    fail(*a.node, fmt::format("'{}' has {} values, the layer needs {} ({})", from.name, from.values.size(), to.size(),
                              to.shape().str()));
  if (a.transpose) {  // from is (cols, rows) of to's (rows, cols)
    const index_t rows = to.dim(0), cols = to.dim(1);
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < cols; ++c)
        to.data()[r * cols + c] = static_cast<T>(from.values[static_cast<std::size_t>(c * rows + r)] * a.scale);
    return;
  }
  for (index_t i = 0; i < to.size(); ++i)
    to.data()[i] = static_cast<T>(from.values[broadcast ? 0 : static_cast<std::size_t>(i)] * a.scale);
}

template <class T>
void Importer<T>::constant_node(const OnnxNode& n) {
  if (n.outputs.size() != 1 || n.attributes.size() != 1) fail(n, "expects one output and one attribute");
  const OnnxAttribute& a = n.attributes[0];
  OnnxTensor t;
  t.name = n.outputs[0];
  if (a.name == "value" && a.type == OnnxAttribute::tensor && a.tensor_value.size() == 1) {
    t.dims = a.tensor_value[0].dims;
    t.data_type = a.tensor_value[0].data_type;
    t.values = a.tensor_value[0].values;
  } else if (a.name == "value_float" && a.type == OnnxAttribute::float_) {
    t.data_type = float_type;
    t.values = {a.f};
  } else if (a.name == "value_floats" && a.type == OnnxAttribute::floats) {
    t.data_type = float_type;
    t.dims = {static_cast<std::int64_t>(a.float_list.size())};
    t.values = a.float_list;
  } else if (a.name == "value_int" && a.type == OnnxAttribute::int_) {
    t.data_type = int64_type;
    t.values = {static_cast<double>(a.i)};
  } else if (a.name == "value_ints" && a.type == OnnxAttribute::ints) {
    t.data_type = int64_type;
    t.dims = {static_cast<std::int64_t>(a.int_list.size())};
    t.values.assign(a.int_list.begin(), a.int_list.end());
  } else {
    fail(n, fmt::format("attribute '{}' (type {}) is not supported", a.name, a.type));
  }
  node_constants_.push_back(std::move(t));
  constants_[n.outputs[0]] = &node_constants_.back();
}

// The window of a Conv or pooling node, as glassbox's padding.
template <class T>
nn::Window2D Importer<T>::window(const OnnxNode& n, const Sink& sink, nn::Size2 kernel, bool dilations) {
  require_rank(n, sink, 4);
  const auto strides = ints_attr(n, "strides", 2, 1);
  const auto dil = dilations ? ints_attr(n, "dilations", 2, 1) : std::vector<std::int64_t>{1, 1};
  if (!dilations && n.attribute("dilations") && ints_attr(n, "dilations", 2, 1) != std::vector<std::int64_t>{1, 1})
    fail(n, "attribute 'dilations' other than 1 is not supported for pooling");
  nn::Window2D w{kernel, {strides[0], strides[1]}, {dil[0], dil[1]}, nn::Padding::valid, {0, 0}};
  check_window(n, w);  // before any padding arithmetic divides by a stride
  const bool after_pad_node = !pad_node_pads_.empty();
  if (after_pad_node && string_attr(n, "auto_pad", "NOTSET") != "NOTSET")
    fail(n, "attribute 'auto_pad' after a Pad node is not supported");
  const std::string auto_pad = string_attr(n, "auto_pad", "NOTSET");
  if (auto_pad == "SAME_UPPER") {
    if (n.attribute("pads")) fail(n, "attributes 'auto_pad' and 'pads' are both set");
    w.padding = nn::Padding::same;
  } else if (auto_pad == "VALID") {
    if (n.attribute("pads")) fail(n, "attributes 'auto_pad' and 'pads' are both set");
  } else if (auto_pad == "NOTSET") {
    auto p = ints_attr(n, "pads", 4, 0);  // top, left, bottom, right
    for (std::size_t i = 0; i < 4 && !pad_node_pads_.empty(); ++i) p[i] += pad_node_pads_[i];
    for (const std::int64_t v : p)
      if (v < 0 || v > max_window) fail(n, fmt::format("attribute 'pads' has the value {}", v));
    if (p[0] == p[2] && p[1] == p[3]) {
      if (p[0] || p[1]) w.padding = nn::Padding::explicit_, w.pad = {p[0], p[1]};
    } else {
      w.padding = nn::Padding::same;  // the only uneven padding glassbox has: does it match?
      const nn::Window2D::Pads s = w.pads(sink.shape[2], sink.shape[3]);
      if (s.top != p[0] || s.left != p[1] || s.bottom != p[2] || s.right != p[3])
        fail(n, fmt::format("attribute 'pads' = [{}, {}, {}, {}] is uneven and not 'same' padding; glassbox "
                            "pads evenly",
                            p[0], p[1], p[2], p[3]));
    }
  } else {
    fail(n, fmt::format("attribute 'auto_pad' = '{}' is not supported (NOTSET, VALID, SAME_UPPER)", auto_pad));
  }
  check_window(n, w);
  pad_node_pads_.clear();
  return w;
}

template <class T>
void Importer<T>::check_window(const OnnxNode& n, const nn::Window2D& w) const {
  for (const index_t v : {w.kernel.h, w.kernel.w, w.stride.h, w.stride.w, w.dilation.h, w.dilation.w, w.pad.h, w.pad.w})
    if (v > max_window)
      fail(n, fmt::format("a window size, stride, dilation or padding of {} is past {}", v, max_window));
  w.validate(fmt::format("{}: {}", where_, n.label()));
}

// Add, Sub, Mul or Div of the live tensor and a constant: an Affine layer,
// whose parameters the constants fill, stretched where they broadcast. A
// scale (Mul, Div) takes the shift (Add, Sub) right after it, as x * w + b;
// in glassbox's own files only its "<layer>/shift", so that two Affine
// layers stay two. Returns 1 when it took the shift.
template <class T>
std::size_t Importer<T>::affine(const OnnxNode& n, const std::string& x, const OnnxNode* after, Sink& sink) {
  struct Step {
    const OnnxNode* node;
    const OnnxTensor* constant;
    Shape shape;          // the constant's, per sample
    bool constant_first;  // c - x rather than x - c
  };
  const Shape& in = sink.shape;  // batch 1
  const auto step_of = [&](const OnnxNode& m, const std::string& live) {
    allow(m, {});
    if (m.inputs.size() != 2 || m.outputs.size() != 1) fail(m, "expects two inputs and one output");
    const bool constant_first = m.inputs[1] == live && m.inputs[0] != live;
    const std::string& other = m.inputs[constant_first ? 0 : 1];
    const OnnxTensor* c = constant(other);
    if (!c)
      fail(m, fmt::format("combines the computed tensors '{}' and '{}'; glassbox does that only in a graph's "
                          "merges (Add, Sum, Mul of branches)",
                          m.inputs[0], m.inputs[1]));
    if (c->data_type != float_type && c->data_type != double_type)
      fail(m, fmt::format("constant '{}' has element type {}; glassbox takes float or double values", c->name,
                          c->data_type));
    if (m.op == "Div" && constant_first)
      fail(m,
           fmt::format("divides the constant '{}' by the input (a reciprocal); glassbox has no such layer", c->name));
    const auto rank = static_cast<int>(c->dims.size());
    std::vector<index_t> sample;
    bool fits = rank <= in.rank();
    for (int a = 0; fits && a < in.rank(); ++a) {
      const std::int64_t d = a < in.rank() - rank ? 1 : c->dims[static_cast<std::size_t>(a - (in.rank() - rank))];
      fits = d == 1 || (a > 0 && d == in[a]);
      if (a > 0) sample.push_back(d);
    }
    if (!fits)
      fail(m, fmt::format("its constant '{}' of shape ({}) does not broadcast over the input {} without changing "
                          "its shape; glassbox's Affine keeps the shape",
                          c->name, fmt::join(c->dims, ", "), in.str()));
    const Shape shape(sample.begin(), sample.end());
    if (static_cast<index_t>(c->values.size()) != shape.size())
      fail(m, fmt::format("constant '{}' has {} values for its shape", c->name, c->values.size()));
    return Step{&m, c, shape, constant_first};
  };
  std::vector<Step> steps{step_of(n, x)};
  const bool scales = n.op == "Mul" || n.op == "Div";
  if (scales && after && (after->op == "Add" || after->op == "Sub") && after->inputs.size() == 2 &&
      (m_.producer != "glassbox" || after->name == n.name + "/shift")) {
    const std::string& y = n.outputs[0];
    const std::string& other = after->inputs[0] == y ? after->inputs[1] : after->inputs[0];
    if ((after->inputs[0] == y || after->inputs[1] == y) && other != y && constant(other))
      steps.push_back(step_of(*after, y));
  }
  Shape shape = steps[0].shape;
  for (const Step& s : steps)
    for (int d = 0; d < shape.rank(); ++d) shape[d] = std::max(shape[d], s.shape[d]);
  std::vector<double> w(static_cast<std::size_t>(shape.size()), 1.0), b(w.size(), 0.0);
  typename nn::Affine<T>::Options o{false, false};
  for (const Step& s : steps) {
    const std::string& op = s.node->op;
    broadcast_walk(s.shape, shape, [&](index_t out, index_t i) {
      const double c = s.constant->values[static_cast<std::size_t>(i)];
      double &wo = w[static_cast<std::size_t>(out)], &bo = b[static_cast<std::size_t>(out)];
      if (op == "Mul") {
        wo *= c, bo *= c;
      } else if (op == "Div") {
        wo /= c, bo /= c;
      } else if (op == "Add") {
        bo += c;
      } else if (s.constant_first) {  // c - (w x + b)
        wo = -wo, bo = c - bo;
      } else {
        bo -= c;
      }
    });
    o.scale = o.scale || op == "Mul" || op == "Div" || (op == "Sub" && s.constant_first);
    o.shift = o.shift || op == "Add" || op == "Sub";
  }
  auto layer = std::make_unique<nn::Affine<T>>(shape, o);
  const auto parameter = [&](const char* key, std::vector<double> values) {
    OnnxTensor t;
    t.name = n.name + "/" + key;
    t.data_type = float_type;
    t.dims.assign(shape.begin(), shape.end());
    t.values = std::move(values);
    node_constants_.push_back(std::move(t));
    fill(*layer, key, node_constants_.back(), n);
  };
  if (o.scale) parameter("weight", std::move(w));
  if (o.shift) parameter("bias", std::move(b));
  emit(sink, std::move(layer), n);
  return steps.size() - 1;
}

// 2-D kernel size from a pooling node's kernel_shape.
template <class T>
nn::Size2 Importer<T>::kernel_shape(const OnnxNode& n) const {
  const OnnxAttribute* k = typed(n, "kernel_shape", OnnxAttribute::ints);
  if (!k || k->int_list.size() != 2) fail(n, "needs a 2-D 'kernel_shape'");
  return {k->int_list[0], k->int_list[1]};
}

// One node; `following` are the nodes of the one-node pieces after it,
// which some ops absorb (Pad + Conv + Relu, MatMul + Add, GlobalAveragePool
// + Flatten, Transpose + LSTM + Squeeze + Transpose). Returns how many it absorbed.
template <class T>
std::size_t Importer<T>::single(const OnnxNode& n, const std::string& x, const std::vector<const OnnxNode*>& following,
                                Sink& sink) {
  const OnnxNode* after = following.empty() ? nullptr : following[0];
  if (n.op == "Add" || n.op == "Sub" || n.op == "Mul" || n.op == "Div") return affine(n, x, after, sink);
  if (n.inputs.empty() || n.inputs[0] != x) fail(n, fmt::format("reads '{}' only as a later input", x));
  for (std::size_t i = 1; i < n.inputs.size(); ++i)
    if (dynamic(n.inputs[i]))
      fail(n, fmt::format("input {} ('{}') is computed; it must be a constant", i, n.inputs[i]));
  const std::string& op = n.op;
  if (op == "Conv") {
    allow(n, {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"});
    require(n, "group", 1, 1, "grouped and depthwise convolutions are not imported");
    const OnnxTensor& w = constant_input(n, 1, "weight");
    if (w.dims.size() != 4) fail(n, fmt::format("weight '{}' has rank {}, expected 4 (OIHW)", w.name, w.dims.size()));
    const nn::Size2 kernel{w.dims[2], w.dims[3]};
    if (n.attribute("kernel_shape") && kernel_shape(n).h != kernel.h)
      fail(n, "'kernel_shape' differs from the weight's");
    const nn::Window2D win = window(n, sink, kernel, true);
    typename nn::Conv2D<T>::Options o;
    o.stride = win.stride;
    o.dilation = win.dilation;
    o.padding = win.padding;
    o.pad = win.pad;
    o.bias = n.inputs.size() > 2 && !n.inputs[2].empty();
    const bool relu = after && after->op == "Relu" && after->attributes.empty();
    if (relu) o.activation = nn::Activation::relu;
    auto layer = std::make_unique<nn::Conv2D<T>>(w.dims[1], w.dims[0], kernel, o);
    fill(*layer, "weight", w, n);
    if (o.bias) fill(*layer, "bias", constant_input(n, 2, "bias"), n);
    emit(sink, std::move(layer), n);
    return relu;
  }
  if (op == "Gemm") {
    allow(n, {"alpha", "beta", "transA", "transB"});
    require(n, "transA", 0, 0, "the input must not be transposed");
    require_rank(n, sink, 2);
    const OnnxTensor& b = constant_input(n, 1, "weight");
    const bool trans_b = int_attr(n, "transB", 0) != 0;
    if (b.dims.size() != 2) fail(n, fmt::format("weight '{}' has rank {}, expected 2", b.name, b.dims.size()));
    const index_t in = trans_b ? b.dims[1] : b.dims[0], out = trans_b ? b.dims[0] : b.dims[1];
    typename nn::Dense<T>::Options o;
    o.bias = n.inputs.size() > 2 && !n.inputs[2].empty();
    auto layer = std::make_unique<nn::Dense<T>>(in, out, o);
    fill(*layer, "weight", b, n, !trans_b, float_attr(n, "alpha", 1));
    if (o.bias) fill(*layer, "bias", constant_input(n, 2, "bias"), n, false, float_attr(n, "beta", 1));
    emit(sink, std::move(layer), n);
    return false;
  }
  if (op == "MatMul") {
    require_rank(n, sink, 2);
    const OnnxTensor& b = constant_input(n, 1, "weight");
    if (b.dims.size() != 2) fail(n, fmt::format("weight '{}' has rank {}, expected 2", b.name, b.dims.size()));
    const OnnxTensor* bias = nullptr;
    if (after && after->op == "Add" && after->inputs.size() == 2) {
      const std::string& other = after->inputs[0] == n.outputs[0] ? after->inputs[1] : after->inputs[0];
      const OnnxTensor* c = constant(other);
      if (c && c->size() == b.dims[1] && (after->inputs[0] == n.outputs[0] || after->inputs[1] == n.outputs[0]))
        bias = c;
    }
    typename nn::Dense<T>::Options o;
    o.bias = bias != nullptr;
    auto layer = std::make_unique<nn::Dense<T>>(b.dims[0], b.dims[1], o);
    fill(*layer, "weight", b, n, true);
    if (bias) fill(*layer, "bias", *bias, *after);
    emit(sink, std::move(layer), n);
    return bias != nullptr;
  }
  if (op == "Relu" || op == "Sigmoid" || op == "Tanh" || op == "Identity") {
    allow(n, {});
    std::unique_ptr<Layer<T>> layer;
    if (op == "Relu")
      layer = std::make_unique<nn::ReLU<T>>();
    else if (op == "Sigmoid")
      layer = std::make_unique<nn::Sigmoid<T>>();
    else if (op == "Tanh")
      layer = std::make_unique<nn::Tanh<T>>();
    else
      layer = std::make_unique<nn::Identity<T>>();
    emit(sink, std::move(layer), n);
    return false;
  }
  if (op == "Gelu") {  // opset 20
    allow(n, {"approximate"});
    const std::string form = string_attr(n, "approximate", "none");
    if (form != "none" && form != "tanh") fail(n, fmt::format("attribute 'approximate' = '{}' is not GELU's", form));
    emit(sink,
         std::make_unique<nn::GELU<T>>(form == "tanh" ? nn::GELU<T>::Approximation::tanh
                                                      : nn::GELU<T>::Approximation::none),
         n);
    return false;
  }
  if (op == "LeakyRelu") {
    allow(n, {"alpha"});
    emit(sink, std::make_unique<nn::LeakyReLU<T>>(static_cast<T>(float_attr(n, "alpha", 0.01))), n);
    return false;
  }
  if (op == "Softmax" || op == "LogSoftmax") {
    allow(n, {"axis"});
    const std::int64_t rank = sink.shape.rank();
    std::int64_t axis = int_attr(n, "axis", m_.opset >= 13 ? -1 : 1);
    if (axis < 0) axis += rank;
    if (axis != rank - 1)
      fail(n, fmt::format("attribute 'axis' = {} is not supported: glassbox's softmax is over the last axis ({})",
                          int_attr(n, "axis", 0), rank - 1));
    if (op == "Softmax")
      emit(sink, std::make_unique<nn::Softmax<T>>(), n);
    else
      emit(sink, std::make_unique<nn::LogSoftmax<T>>(), n);
    return false;
  }
  if (op == "MaxPool" || op == "AveragePool") {
    allow(n, {"auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "storage_order",
              "strides"});
    require(n, "ceil_mode", 0, 0, "glassbox's pooling rounds the output size down");
    if (op == "MaxPool")
      require(n, "storage_order", 0, 0, "indices are not imported");
    else if (n.attribute("storage_order"))
      fail(n, "attribute 'storage_order' is not supported");
    const bool padded_by_node = !pad_node_pads_.empty();
    const nn::Window2D win = window(n, sink, kernel_shape(n), false);
    nn::PoolOptions o;
    o.stride = win.stride;
    o.padding = win.padding;
    o.pad = win.pad;
    if (op == "MaxPool") {
      if (n.attribute("count_include_pad")) fail(n, "attribute 'count_include_pad' is not supported");
      emit(sink, std::make_unique<nn::MaxPool2D<T>>(win.kernel, o), n);
    } else {
      // A Pad node's zeros are values, which the average counts.
      const bool include = int_attr(n, "count_include_pad", 0) != 0;
      if (padded_by_node && !include && ints_attr(n, "pads", 4, 0) != std::vector<std::int64_t>(4, 0))
        fail(n, "its own 'pads' after a Pad node with count_include_pad = 0");
      emit(sink, std::make_unique<nn::AvgPool2D<T>>(win.kernel, o, include || padded_by_node), n);
    }
    return false;
  }
  if (op == "GlobalAveragePool") {
    allow(n, {});
    require_rank(n, sink, 4);
    // glassbox's global pooling drops the 1x1 that ONNX keeps, as the flatten
    // after it does; without one (a squeeze-and-excitation gate) it is an
    // average pool over the whole image.
    if (after && flattens(*after, Shape{sink.shape[0], sink.shape[1], 1, 1})) {
      emit(sink, std::make_unique<nn::GlobalAvgPool2D<T>>(), n);
      return true;
    }
    emit(sink, std::make_unique<nn::AvgPool2D<T>>(nn::Size2{sink.shape[2], sink.shape[3]}), n);
    return false;
  }
  if (op == "Flatten" || op == "Reshape" || op == "Squeeze" || op == "Unsqueeze") {
    reshape(n, sink);
    return false;
  }
  if (op == "BatchNormalization") {
    allow(n, {"epsilon", "momentum", "training_mode", "spatial"});
    require(n, "training_mode", 0, 0, "only inference graphs are imported");
    require(n, "spatial", 1, 1, "per-activation statistics are not imported");
    const OnnxTensor& scale = constant_input(n, 1, "scale");
    typename nn::BatchNorm<T>::Options o;
    o.eps = static_cast<T>(float_attr(n, "epsilon", 1e-5));
    o.momentum = static_cast<T>(1 - float_attr(n, "momentum", 0.9));
    auto layer = std::make_unique<nn::BatchNorm<T>>(scale.size(), o);
    fill(*layer, "weight", scale, n);
    fill(*layer, "bias", constant_input(n, 2, "bias"), n);
    fill(*layer, "running_mean", constant_input(n, 3, "mean"), n);
    fill(*layer, "running_var", constant_input(n, 4, "variance"), n);
    emit(sink, std::move(layer), n);
    return false;
  }
  if (op == "Dropout") {
    allow(n, {"ratio", "seed"});
    double ratio = float_attr(n, "ratio", 0.5);
    if (n.inputs.size() > 1 && !n.inputs[1].empty()) {
      const OnnxTensor& r = constant_input(n, 1, "ratio");
      if (r.values.size() != 1) fail(n, "its ratio is not one number");
      ratio = r.values[0];
    }
    if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
      const OnnxTensor& training = constant_input(n, 2, "training_mode");
      if (training.values.size() != 1 || training.values[0] != 0) fail(n, "training_mode true is not imported");
    }
    emit(sink, std::make_unique<nn::Dropout<T>>(static_cast<T>(ratio)), n);
    return false;
  }
  if (op == "Pad") {
    // Zero padding before a Conv or an AveragePool is theirs (PyTorch writes
    // AvgPool2d(padding, count_include_pad=True) so).
    allow(n, {"mode"});
    if (string_attr(n, "mode", "constant") != "constant") fail(n, "only constant (zero) padding is imported");
    require_rank(n, sink, 4);
    const OnnxTensor& pads = constant_input(n, 1, "pads");
    if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
      const OnnxTensor& value = constant_input(n, 2, "constant_value");
      if (value.values.size() != 1 || value.values[0] != 0) fail(n, "pads with a value other than 0");
    }
    if (n.inputs.size() > 3 && !n.inputs[3].empty()) fail(n, "input 3 (axes) is not supported");
    const std::vector<double>& v = pads.values;
    if (v.size() != 8 || v[0] != 0 || v[1] != 0 || v[4] != 0 || v[5] != 0)
      fail(n, "pads other than the height and width are not imported");
    if (!after || (after->op != "Conv" && after->op != "AveragePool"))
      fail(n, "is imported only right before a Conv or an AveragePool, which take its padding");
    pad_node_pads_ = {integer(n, v[2], "pads"), integer(n, v[3], "pads"), integer(n, v[6], "pads"),
                      integer(n, v[7], "pads")};
    return 1 + single(*after, n.outputs[0], {following.begin() + 1, following.end()}, sink);
  }
  if (op == "Transpose" && after && (after->op == "LSTM" || after->op == "GRU" || after->op == "RNN"))
    return recurrent(n, following, sink);
  if (op == "LSTM" || op == "GRU" || op == "RNN")
    fail(n, "is imported only after a Transpose of batch-first sequences (perm [1, 0, 2]), as exporters write it");
  fail(n, "this op is not supported");
}

}  // namespace glassbox::io::onnx_detail
