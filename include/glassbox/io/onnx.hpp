#pragma once
// ONNX export: io::export_onnx(model, "model.onnx") writes an ONNX ModelProto
// (IR version 8, default opset 13; 13 to 17 are accepted) that Netron,
// onnxruntime and onnx.checker read. The protobuf is encoded here directly,
// so there is no protobuf dependency.
//
//   - The graph input is "input", of shape (batch, sample shape...), with a
//     symbolic batch dimension; the graph output is "output".
//   - Each layer becomes a node named after the layer, whose output tensor
//     carries the layer's name; parameters and buffers become initializers
//     named as in glassbox ("conv2d_1.weight", "batch_norm_1.running_mean").
//   - Dense -> Gemm (transB = 1; glassbox's (out, in) weight is ONNX's B);
//     Conv2D -> Conv (OIHW weights, as glassbox), plus a Relu node when the
//     ReLU is fused; "same" padding becomes explicit pads for the sample
//     shape; pooling -> MaxPool / AveragePool / GlobalAveragePool; Flatten ->
//     Flatten (axis 1); Reshape -> Reshape (shape [0, ...]: the batch kept); Dropout -> Identity; BatchNorm ->
//     BatchNormalization (ONNX's momentum is 1 - glassbox's); Affine -> Mul by its weight and Add of its bias
//     ("<layer>/shift"); ReLU, LeakyReLU, Sigmoid, Tanh, Softmax and LogSoftmax (last axis) -> their ONNX ops. GELU has
//     no ONNX op before opset 20, so it is written as its formula (Erf, or Tanh for the tanh form) in nodes named
//     "<layer>/<step>"; SimpleRNN, LSTM and GRU -> RNN, LSTM and GRU (gates in ONNX's order, GRU with
//     linear_before_reset = 1, which is PyTorch's and glassbox's GRU) between Transposes to and from time-major, with
//     W, R and B as initializers "<layer>.W" and so on.
//   - Graph -> its nodes (layers as above; sums as Add or Sum, products as
//     Mul, concats as Concat), named "<graph>.<node>"; the metadata entry
//     "glassbox.graphs" lists the graphs, so that import groups them again.
//     A first Graph's declared inputs are the model's inputs, named as the
//     nodes; a last Graph's several outputs are its outputs ("<graph>.<node>").
// A model without a declared sample shape needs one passed in.
// Import (io::import_onnx) is io/onnx_import.hpp, kept out of this header
// (and of glassbox.hpp) so that the programs that only export compile faster.

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "glassbox/core/binary_io.hpp"
#include "glassbox/io/layer_spec.hpp"
#include "glassbox/io/onnx_model.hpp"
#include "glassbox/io/protobuf.hpp"
#include "glassbox/model/graph.hpp"
#include "glassbox/model/sequential.hpp"

namespace glassbox::io {

namespace onnx_detail {

using Proto = ProtoWriter;

// onnx.proto's AttributeProto types.
enum AttributeType { attr_float = 1, attr_int = 2, attr_ints = 7 };

inline Proto attribute_int(const std::string& name, std::int64_t v) {
  Proto a;
  a.bytes(1, name).int64(3, v).varint(20, attr_int);
  return a;
}
inline Proto attribute_float(const std::string& name, double v) {
  Proto a;
  a.bytes(1, name).float32(2, static_cast<float>(v)).varint(20, attr_float);
  return a;
}
inline Proto attribute_ints(const std::string& name, const std::vector<std::int64_t>& v) {
  Proto a;
  a.bytes(1, name);
  for (const std::int64_t x : v) a.int64(8, x);
  a.varint(20, attr_ints);
  return a;
}

template <class T>
constexpr TensorType data_type() {
  return sizeof(T) == 4 ? float_type : double_type;
}

// ValueInfoProto of a tensor whose first dimension is the symbolic "batch".
template <class T>
Proto value_info(const std::string& name, const Shape& sample) {
  Proto shape;
  shape.message(1, Proto().bytes(2, "batch"));
  for (int i = 0; i < sample.rank(); ++i) shape.message(1, Proto().int64(1, sample[i]));
  Proto tensor;
  tensor.varint(1, data_type<T>()).message(2, shape);
  Proto value;
  value.bytes(1, name).message(2, Proto().message(1, tensor));
  return value;
}

// Accumulates the graph's nodes and initializers.
template <class T>
class GraphBuilder {
 public:
  void node(const std::string& op, const std::vector<std::string>& inputs, const std::string& output,
            const std::string& name, const std::vector<Proto>& attributes = {}) {
    node(op, inputs, std::vector<std::string>{output}, name, attributes);
  }
  void node(const std::string& op, const std::vector<std::string>& inputs, const std::vector<std::string>& outputs,
            const std::string& name, const std::vector<Proto>& attributes = {}) {
    Proto n;
    for (const std::string& in : inputs) n.bytes(1, in);
    for (const std::string& out : outputs) n.bytes(2, out);
    n.bytes(3, name).bytes(4, op);
    for (const Proto& a : attributes) n.message(5, a);
    graph_.message(1, n);
  }
  void initializer(const std::string& name, const Tensor<T>& t) {
    Proto p;
    for (int i = 0; i < t.shape().rank(); ++i) p.int64(1, t.shape()[i]);
    p.varint(2, data_type<T>()).bytes(8, name);
    p.bytes(9, std::string(reinterpret_cast<const char*>(t.data()), static_cast<std::size_t>(t.size()) * sizeof(T)));
    graph_.message(5, p);
  }
  void scalar(const std::string& name, double v) { initializer(name, Tensor<T>(Shape{}, {static_cast<T>(v)})); }
  void int64s(const std::string& name, const std::vector<std::int64_t>& values) {
    Proto p;
    p.int64(1, static_cast<std::int64_t>(values.size())).varint(2, int64_type).bytes(8, name);
    p.bytes(9, std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(std::int64_t)));
    graph_.message(5, p);
  }
  Proto& graph() { return graph_; }
  // The names of the Graph layers written, for the importer to group their
  // nodes again (metadata "glassbox.graphs").
  std::vector<std::string> graph_layers;
  // A first Graph's declared inputs and a last Graph's several outputs: the
  // model's own inputs and outputs (name, sample shape), in order.
  std::vector<std::pair<std::string, Shape>> model_inputs, model_outputs;

 private:
  Proto graph_;
};

// The window attributes of a Conv or pooling node, with the pads applied to
// an input of h x w ([top, left, bottom, right], ONNX's begin-then-end order).
inline std::vector<Proto> window_attributes(const nn::Window2D& w, index_t h, index_t wd, bool dilations) {
  const nn::Window2D::Pads p = w.pads(h, wd);
  std::vector<Proto> a{attribute_ints("kernel_shape", {w.kernel.h, w.kernel.w}),
                       attribute_ints("strides", {w.stride.h, w.stride.w}),
                       attribute_ints("pads", {p.top, p.left, p.bottom, p.right})};
  if (dilations) a.push_back(attribute_ints("dilations", {w.dilation.h, w.dilation.w}));
  return a;
}

// A recurrent layer as ONNX writes one over time-major sequences: Transpose
// to (T, N, F), the LSTM / GRU / RNN node with W, R and B in ONNX's gate
// order, then every step's output Y squeezed and transposed back to (N, T, H)
// (return_sequences), or the last hidden state Y_h squeezed to (N, H).
template <class T>
void emit_recurrent(GraphBuilder<T>& g, nn::Recurrent<T>& r, const std::string& input, const std::string& output) {
  const std::string& name = r.name();
  const std::string op = r.kind() == "lstm" ? "LSTM" : r.kind() == "gru" ? "GRU" : "RNN";
  // ONNX's gate order in glassbox's (PyTorch's) blocks: LSTM i o f c of i f g o, GRU z r h of r z n.
  const std::vector<index_t> order = op == "LSTM"  ? std::vector<index_t>{0, 3, 1, 2}
                                     : op == "GRU" ? std::vector<index_t>{1, 0, 2}
                                                   : std::vector<index_t>{0};
  const index_t h = r.hidden_size(), gates = r.gates();
  auto reordered = [&](const Tensor<T>& from, T* to, index_t block) {
    for (const index_t gate : order) to = std::copy(from.data() + gate * block, from.data() + (gate + 1) * block, to);
  };
  Tensor<T> w(Shape{1, gates * h, r.input_size()}), rec(Shape{1, gates * h, h}), b(Shape{1, 2 * gates * h});
  reordered(r.weight_ih().value, w.data(), h * r.input_size());
  reordered(r.weight_hh().value, rec.data(), h * h);
  reordered(r.bias_ih().value, b.data(), h);
  reordered(r.bias_hh().value, b.data() + gates * h, h);
  g.initializer(name + ".W", w);
  g.initializer(name + ".R", rec);
  g.initializer(name + ".B", b);
  g.node("Transpose", {input}, name + "/time_major", name + "/transpose_in", {attribute_ints("perm", {1, 0, 2})});
  std::vector<Proto> attributes{attribute_int("hidden_size", h)};
  if (op == "GRU") attributes.push_back(attribute_int("linear_before_reset", 1));
  const std::vector<std::string> inputs{name + "/time_major", name + ".W", name + ".R", name + ".B"};
  if (r.options().return_sequences) {
    g.int64s(name + "/step_axis", {1});
    g.node(op, inputs, std::vector<std::string>{name + "/y"}, name, attributes);
    g.node("Squeeze", {name + "/y", name + "/step_axis"}, name + "/steps", name + "/squeeze");
    g.node("Transpose", {name + "/steps"}, output, name + "/transpose_out", {attribute_ints("perm", {1, 0, 2})});
  } else {
    g.int64s(name + "/direction_axis", {0});
    g.node(op, inputs, std::vector<std::string>{"", name + "/y_h"}, name, attributes);
    g.node("Squeeze", {name + "/y_h", name + "/direction_axis"}, output, name + "/squeeze");
  }
}

template <class T>
void emit_layer(GraphBuilder<T>& g, Layer<T>& layer, const std::string& input, const std::string& output,
                const Shape& in_shape);

// A Graph's nodes: each layer node as its layer, a sum of two as Add (more:
// Sum), a product as a chain of Mul, a concat as Concat; node tensors are
// named "<graph>.<node>".
template <class T>
void emit_graph(GraphBuilder<T>& g, Graph<T>& graph, const std::string& input, const std::string& output,
                const Shape& in_shape) {
  using Node = typename Graph<T>::Node;
  using Op = typename Graph<T>::Op;
  const std::vector<Shape> shapes = graph.node_shapes(in_shape);
  const std::vector<Node> outputs = graph.outputs();
  const bool declared = !graph.declared_inputs().empty(), several = outputs.size() > 1;
  const bool inputs_inside = declared && input != "input", outputs_inside = several && output != "output";
  if (inputs_inside || outputs_inside)
    throw Error(fmt::format(
        "export_onnx: {} has {}; it exports only as the model's {} layer (ONNX's inputs and "
        "outputs are the model's)",
        graph.name(), inputs_inside ? "declared inputs" : "several outputs", inputs_inside ? "first" : "last"));
  std::vector<std::string> tensors{input};
  for (std::size_t j = 1; j < graph.node_count(); ++j) {
    const Node node{j};
    const std::string name = graph.name() + "." + graph.node_name(node);
    const std::string tensor = j == graph.output().id && !several ? output : name;
    std::vector<std::string> inputs;
    for (Node in : graph.inputs(node)) inputs.push_back(tensors[in.id]);
    const Op op = graph.op(node);
    if (op == Op::input) {  // the model's input, named as the node
      tensors.push_back(graph.node_name(node));
      g.model_inputs.emplace_back(graph.node_name(node), graph.input_sample(node));
      continue;
    }
    if (op == Op::layer) {
      emit_layer(g, graph.layer(node), inputs[0], tensor, shapes[graph.inputs(node)[0].id]);
    } else if (op == Op::concat) {
      g.node("Concat", inputs, tensor, name, {attribute_int("axis", graph.axis(node))});
    } else if (op == Op::sum && inputs.size() > 2) {
      g.node("Sum", inputs, tensor, name);
    } else {  // in the order Graph computes it: ((a op b) op c) ...
      std::string from = inputs[0];
      for (std::size_t k = 1; k < inputs.size(); ++k) {
        const bool last = k + 1 == inputs.size();
        const std::string step = last ? tensor : fmt::format("{}/{}", name, k);
        g.node(op == Op::sum ? "Add" : "Mul", {from, inputs[k]}, step, last ? name : step);
        from = step;
      }
    }
    tensors.push_back(tensor);
  }
  if (several)
    for (Node n : outputs) g.model_outputs.emplace_back(tensors[n.id], shapes[n.id].sample());
  g.graph_layers.push_back(graph.name());
}

// Writes the nodes (and, for layers without children, the initializers) that
// compute `layer` from the tensor `input` into the tensor `output`.
template <class T>
void emit_layer(GraphBuilder<T>& g, Layer<T>& layer, const std::string& input, const std::string& output,
                const Shape& in_shape) {
  const std::string& name = layer.name();
  const std::string kind = layer.kind();
  if (name == "input" || name == "output")
    throw Error(fmt::format("export_onnx: a layer named '{}' would clash with the graph's {} tensor", name, name));
  if (auto* block = dynamic_cast<nn::Residual<T>*>(&layer)) {
    // The body's chain, the shortcut, and an Add of the two.
    std::string from = input;
    Shape shape = in_shape;
    for (std::size_t i = 0; i < block->size(); ++i) {
      Layer<T>& child = block->body(i);
      emit_layer(g, child, from, child.name(), shape);
      shape = child.output_shape(shape);
      from = child.name();
    }
    emit_layer(g, block->shortcut(), input, block->shortcut().name(), in_shape);
    g.node("Add", {from, block->shortcut().name()}, output, name);
    return;
  }
  if (auto* graph = dynamic_cast<Graph<T>*>(&layer)) {
    emit_graph(g, *graph, input, output, in_shape);
    return;
  }
  if (auto* r = dynamic_cast<nn::Recurrent<T>*>(&layer)) {
    emit_recurrent(g, *r, input, output);
    return;
  }
  for (Parameter<T>* p : layer.parameters()) g.initializer(p->name, p->value);
  for (const auto& [buffer, tensor] : layer.buffers()) g.initializer(name + "." + buffer, *tensor);
  if (auto* d = dynamic_cast<nn::Dense<T>*>(&layer)) {
    std::vector<std::string> inputs{input, name + ".weight"};
    if (d->options().bias) inputs.push_back(name + ".bias");
    g.node("Gemm", inputs, output, name, {attribute_int("transB", 1)});
  } else if (auto* c = dynamic_cast<nn::Conv2D<T>*>(&layer)) {
    std::vector<std::string> inputs{input, name + ".weight"};
    if (c->options().bias) inputs.push_back(name + ".bias");
    const bool relu = c->options().activation == nn::Activation::relu;
    g.node("Conv", inputs, relu ? name + "/conv" : output, name,
           window_attributes(c->window(), in_shape[2], in_shape[3], true));
    if (relu) g.node("Relu", {name + "/conv"}, output, name + "/relu");
  } else if (auto* m = dynamic_cast<nn::MaxPool2D<T>*>(&layer)) {
    g.node("MaxPool", {input}, output, name, window_attributes(m->window(), in_shape[2], in_shape[3], false));
  } else if (auto* a = dynamic_cast<nn::AvgPool2D<T>*>(&layer)) {
    auto attributes = window_attributes(a->window(), in_shape[2], in_shape[3], false);
    attributes.push_back(attribute_int("count_include_pad", a->count_include_pad()));
    g.node("AveragePool", {input}, output, name, attributes);
  } else if (dynamic_cast<nn::GlobalAvgPool2D<T>*>(&layer)) {
    // ONNX keeps the 1x1 spatial dimensions that glassbox drops.
    g.node("GlobalAveragePool", {input}, name + "/pool", name);
    g.node("Flatten", {name + "/pool"}, output, name + "/flatten", {attribute_int("axis", 1)});
  } else if (dynamic_cast<nn::Flatten<T>*>(&layer)) {
    g.node("Flatten", {input}, output, name, {attribute_int("axis", 1)});
  } else if (auto* reshape = dynamic_cast<nn::Reshape<T>*>(&layer)) {
    std::vector<std::int64_t> shape{0};  // 0: the input's batch
    shape.insert(shape.end(), reshape->shape().begin(), reshape->shape().end());
    g.int64s(name + ".shape", shape);
    g.node("Reshape", {input, name + ".shape"}, output, name);
  } else if (dynamic_cast<nn::Dropout<T>*>(&layer)) {
    g.node("Identity", {input}, output, name);
  } else if (auto* f = dynamic_cast<nn::Affine<T>*>(&layer)) {
    // The (C, 1, 1)-style parameters broadcast from the right, as ONNX does.
    const bool scale = f->options().scale, shift = f->options().shift;
    if (scale) g.node("Mul", {input, name + ".weight"}, shift ? name + "/scaled" : output, name);
    if (shift)
      g.node("Add", {scale ? name + "/scaled" : input, name + ".bias"}, output, scale ? name + "/shift" : name);
  } else if (auto* b = dynamic_cast<nn::BatchNorm<T>*>(&layer)) {
    g.node("BatchNormalization",
           {input, name + ".weight", name + ".bias", name + ".running_mean", name + ".running_var"}, output, name,
           {attribute_float("epsilon", static_cast<double>(b->options().eps)),
            attribute_float("momentum", 1.0 - static_cast<double>(b->options().momentum))});
  } else if (dynamic_cast<nn::ReLU<T>*>(&layer)) {
    g.node("Relu", {input}, output, name);
  } else if (auto* l = dynamic_cast<nn::LeakyReLU<T>*>(&layer)) {
    g.node("LeakyRelu", {input}, output, name, {attribute_float("alpha", static_cast<double>(l->negative_slope()))});
  } else if (dynamic_cast<nn::Sigmoid<T>*>(&layer)) {
    g.node("Sigmoid", {input}, output, name);
  } else if (dynamic_cast<nn::Tanh<T>*>(&layer)) {
    g.node("Tanh", {input}, output, name);
  } else if (dynamic_cast<nn::Softmax<T>*>(&layer)) {
    g.node("Softmax", {input}, output, name, {attribute_int("axis", -1)});
  } else if (dynamic_cast<nn::LogSoftmax<T>*>(&layer)) {
    g.node("LogSoftmax", {input}, output, name, {attribute_int("axis", -1)});
  } else if (auto* e = dynamic_cast<nn::GELU<T>*>(&layer)) {
    const std::string s = name + "/";
    g.scalar(s + "half", 0.5);
    g.scalar(s + "one", 1.0);
    if (e->approximation() == nn::GELU<T>::Approximation::none) {
      // x * 0.5 * (1 + erf(x / sqrt(2)))
      g.scalar(s + "sqrt2", std::sqrt(2.0));
      g.node("Div", {input, s + "sqrt2"}, s + "scaled", s + "div");
      g.node("Erf", {s + "scaled"}, s + "erf", s + "erf");
    } else {
      // x * 0.5 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))
      g.scalar(s + "cubic", 0.044715);
      g.scalar(s + "sqrt_2_over_pi", std::sqrt(2.0 / 3.14159265358979323846));
      g.node("Mul", {input, input}, s + "x2", s + "square");
      g.node("Mul", {s + "x2", input}, s + "x3", s + "cube");
      g.node("Mul", {s + "x3", s + "cubic"}, s + "cx3", s + "scale_cube");
      g.node("Add", {input, s + "cx3"}, s + "inner", s + "add_cube");
      g.node("Mul", {s + "inner", s + "sqrt_2_over_pi"}, s + "scaled", s + "scale");
      g.node("Tanh", {s + "scaled"}, s + "erf", s + "tanh");
    }
    g.node("Add", {s + "erf", s + "one"}, s + "plus1", s + "add_one");
    g.node("Mul", {input, s + "half"}, s + "half_x", s + "half_x");
    g.node("Mul", {s + "half_x", s + "plus1"}, output, name);
  } else if (dynamic_cast<nn::Identity<T>*>(&layer)) {
    g.node("Identity", {input}, output, name);
  } else {
    throw Error(fmt::format("export_onnx: {} (kind '{}') has no ONNX export", name, kind));
  }
}

}  // namespace onnx_detail

// The ONNX model as bytes (export_onnx writes these).
template <class T>
std::string onnx_bytes(Sequential<T>& model, int opset = 13, std::optional<Shape> sample_shape = std::nullopt) {
  using namespace onnx_detail;
  if (opset < 13 || opset > 17) throw Error(fmt::format("export_onnx: opset {} is not supported (13 to 17)", opset));
  if (!sample_shape) sample_shape = model.sample_shape();
  if (!sample_shape) throw Error("export_onnx: the model has no sample shape; pass one (e.g. Shape{1, 28, 28})");
  if (model.size() == 0) throw Error("export_onnx: the model has no layers");

  GraphBuilder<T> g;
  Shape in_shape = sample_shape->batched(1);
  std::string input = "input";
  for (std::size_t i = 0; i < model.size(); ++i) {
    Layer<T>& layer = model.layer(i);
    const Shape out_shape = layer.output_shape(in_shape);  // also checks the chain
    const std::string output = i + 1 == model.size() ? "output" : layer.name();
    emit_layer(g, layer, input, output, in_shape);
    input = output;
    in_shape = out_shape;
  }

  Proto& graph = g.graph();
  graph.bytes(2, "glassbox");
  if (g.model_inputs.empty()) g.model_inputs.emplace_back("input", *sample_shape);
  if (g.model_outputs.empty()) g.model_outputs.emplace_back("output", in_shape.sample());
  for (const auto& [name, sample] : g.model_inputs) {
    for (std::size_t i = 0; i < model.size(); ++i)
      if (model.layer(i).name() == name)
        throw Error(fmt::format("export_onnx: the input '{}' and a layer have one name", name));
    graph.message(11, value_info<T>(name, sample));
  }
  for (const auto& [name, sample] : g.model_outputs) graph.message(12, value_info<T>(name, sample));
  Proto m;
  m.int64(1, 8);  // IR version 8 (ONNX 1.10 to 1.12)
  m.bytes(2, "glassbox").bytes(3, "0.1.0");
  m.message(7, graph);
  m.message(8, Proto().bytes(1, "").int64(2, opset));
  if (!g.graph_layers.empty()) {
    std::string names;
    for (const std::string& n : g.graph_layers) names += (names.empty() ? "" : "\n") + n;
    m.message(14, Proto().bytes(1, "glassbox.graphs").bytes(2, names));
  }
  return m.str();
}

template <class T>
void export_onnx(Sequential<T>& model, const std::string& path, int opset = 13,
                 std::optional<Shape> sample_shape = std::nullopt) {
  write_file_atomically(path, onnx_bytes(model, opset, std::move(sample_shape)));
}

}  // namespace glassbox::io
