#pragma once
// ONNX import: io::import_onnx<float>("model.onnx") builds a Sequential whose
// layers fire the same hooks as a model built in C++, so every recorder,
// attribution and pruning tool works on a model trained elsewhere (int8 on
// models without graphs or residual blocks).
//
// What is read (opsets 11 to 21): Gemm (transB either way, alpha and beta
// folded in), MatMul with a constant weight (+ Add of a bias), Conv (group 1;
// explicit, valid or SAME_UPPER padding, or a zero Pad node before it), Relu
// (fused into the Conv before it, as glassbox's own conv), LeakyRelu, Sigmoid,
// Tanh, Softmax and LogSoftmax over the last axis, Gelu (opset 20), GELU
// written as its formula (any arrangement of elementwise nodes that computes
// GELU, exact or tanh form: recognised by evaluating the nodes), MaxPool,
// AveragePool, GlobalAveragePool (+ Flatten; without, an average pool over the
// image), BatchNormalization (inference), Flatten, Reshape to (batch,
// features) (its shape constant or computed from the tensor's own shape),
// Dropout, Identity, Constant, initializers; Add, Sub, Mul and Div of a
// constant (scalar, per channel or per feature, broadcast as ONNX does):
// an nn::Affine, a scale taking the shift right after it (x * w + b);
// LSTM, GRU and RNN (forward, zero initial states, between the Transposes
// exporters write around them); residual blocks: a branch that leaves a
// tensor and comes back in an Add (a chain of layers on one side, the input
// or one layer on the other) becomes an nn::Residual; and any other
// branching (Add, Sum, Mul or Concat of branches, sums and products
// broadcasting dimensions of 1, shortcuts of several layers, tensors read by
// several nodes) becomes a Graph layer
// (onnx_import_graph.hpp): the model stays a Sequential, whose chain parts
// are its own layers.
//
// Layer names come from the node names (PyTorch's module paths; characters
// a hook target cannot hold become '_'), or kind_N when a node has none; a
// model exported by glassbox comes back with its own names and bit-for-bit
// its outputs (its Graph layers are grouped again from the metadata entry
// "glassbox.graphs"). Anything else (another op, an attribute glassbox does
// not implement, a shape known only at run time, merges that broadcast across
// ranks, a graph with several inputs or outputs) is a glassbox::Error naming the
// file, the node, its op and the attribute.

#include <fmt/format.h>

#include <cmath>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "glassbox/core/binary_io.hpp"
#include "glassbox/io/onnx_model.hpp"
#include "glassbox/model/graph.hpp"
#include "glassbox/model/sequential.hpp"
#include "glassbox/nn/activations.hpp"
#include "glassbox/nn/affine.hpp"
#include "glassbox/nn/avg_pool2d.hpp"
#include "glassbox/nn/batch_norm.hpp"
#include "glassbox/nn/conv2d.hpp"
#include "glassbox/nn/dense.hpp"
#include "glassbox/nn/dropout.hpp"
#include "glassbox/nn/flatten.hpp"
#include "glassbox/nn/max_pool2d.hpp"
#include "glassbox/nn/recurrent.hpp"
#include "glassbox/nn/reshape.hpp"
#include "glassbox/nn/residual.hpp"
#include "glassbox/nn/softmax.hpp"

namespace glassbox::io {

namespace onnx_detail {

// A hook target's name from a node's (onnx_import_patterns.hpp).
inline std::string layer_name(const std::string& node_name, const std::string& kind);

template <class T>
class Importer {
 public:
  Importer(const OnnxModel& model, std::string where) : m_(model), where_(std::move(where)) {}

  Sequential<T> run() {
    if (m_.inputs.empty() || m_.outputs.empty())
      throw Error(
          fmt::format("{}: the graph has {} inputs and {} outputs", where_, m_.inputs.size(), m_.outputs.size()));
    std::vector<Shape> samples;
    for (const OnnxValueInfo& in : m_.inputs) samples.push_back(input_sample(in));
    const OnnxValueInfo& in = m_.inputs[0];
    declared_batch_ = in.dims[0];
    for (const auto& [key, value] : m_.metadata)
      if (key == "glassbox.graphs")
        for (std::size_t start = 0; start <= value.size();) {
          const std::size_t end = std::min(value.find('\n', start), value.size());
          if (end > start) graph_layers_.insert(value.substr(start, end - start));
          start = end + 1;
        }
    for (const OnnxTensor& t : m_.initializers) constants_[t.name] = &t;
    for (const OnnxNode& n : m_.nodes)
      for (const std::string& out : n.outputs) producer_[out] = &n;
    for (const OnnxNode& n : m_.nodes) {
      if (!n.domain.empty() && n.domain != "ai.onnx")
        throw Error(
            fmt::format("{}: {} is in domain '{}'; glassbox reads the default domain", where_, n.label(), n.domain));
      if (n.op == "Constant") constant_node(n);
      // PyTorch copies some weights through an Identity: the copy is a constant too.
      if (n.op == "Identity" && n.inputs.size() == 1 && n.outputs.size() == 1 && constant(n.inputs[0]))
        constants_[n.outputs[0]] = constant(n.inputs[0]);
      shape_node(n);
      if (is_virtual(n)) fail(n, "this op is not supported");
      for (const std::string& out : n.outputs)
        if (out == packed_inputs || out == packed_outputs)
          fail(n, fmt::format("writes '{}', a name glassbox keeps", out));
    }
    for (std::size_t k = 1; k < m_.outputs.size(); ++k)
      for (std::size_t j = 0; j < k; ++j)
        if (m_.outputs[j].name == m_.outputs[k].name)
          throw Error(fmt::format("{}: output '{}' is listed twice", where_, m_.outputs[k].name));

    std::vector<const OnnxNode*> nodes = needed_nodes();
    std::string from = in.name, to = m_.outputs[0].name;
    const Shape sample_shape = boundary(samples, nodes, from, to);
    Sequential<T> model{sample_shape};
    Sink top;
    top.shape = sample_shape.batched(1);
    std::set<std::string> names;
    top.add = [&model, &names](std::unique_ptr<Layer<T>> layer, const std::string& name) {
      names.insert(model.add(std::move(layer), names.count(name) ? std::string() : name).name());
    };
    chain(nodes, from, to, top);
    if (top.layers == 0) throw Error(fmt::format("{}: the graph computes nothing (its output is its input)", where_));
    for (const Assignment& a : assignments_) assign(a);
    return model;
  }

 private:
  // A graph input's per-sample shape, checked; and the model's boundary:
  // several inputs read packed through nodes that unpack each, several
  // outputs packed by one node after them; returns the model's sample shape
  // (onnx_import_shapes.hpp).
  Shape input_sample(const OnnxValueInfo& in) const;
  Shape boundary(const std::vector<Shape>& samples, std::vector<const OnnxNode*>& nodes, std::string& from,
                 std::string& to);

  // The nodes that unpack several inputs and pack several outputs, named within
  // the glassbox Graph of `neighbour` (the input's first reader, the first
  // output's producer), so that a graph glassbox exported is grouped again.
  static constexpr const char *virtual_op = "glassbox.", *graph_input_op = "glassbox.input",
                              *graph_outputs_op = "glassbox.outputs", *packed_inputs = "glassbox.packed_inputs",
                              *packed_outputs = "glassbox.packed_outputs";
  const OnnxNode& virtual_node(const char* op, std::vector<std::string> inputs, std::vector<std::string> outputs,
                               const OnnxNode* neighbour);  // onnx_import_graph.hpp
  bool is_virtual(const OnnxNode& n) const { return n.op.rfind(virtual_op, 0) == 0; }

  // Where the layers of a chain go: the model, or a residual block's body.
  struct Sink {
    std::function<void(std::unique_ptr<Layer<T>>, const std::string&)> add;
    Shape shape;         // of the tensor the next layer reads, batch 1
    std::string prefix;  // "<block>.": stripped from its children's node names
    std::size_t layers = 0;
  };
  // Nodes between two tensors where the chain has one live tensor.
  struct Segment {
    std::vector<const OnnxNode*> nodes;
    std::string in, out;
  };
  // A parameter or buffer and the constant that fills it, once the model is built.
  struct Assignment {
    Tensor<T>* target;
    const OnnxTensor* source;
    const OnnxNode* node;
    bool transpose = false;
    double scale = 1;
  };

  [[noreturn]] void fail(const OnnxNode& n, const std::string& what) const {
    throw Error(fmt::format("{}: {}: {}", where_, n.label(), what));
  }

  const OnnxTensor* constant(const std::string& name) const {
    const auto c = constants_.find(name);
    return c == constants_.end() ? nullptr : c->second;
  }
  bool dynamic(const std::string& name) const {
    return !name.empty() && !constant(name) && !shape_derived_.count(name);
  }

  // The constant input `index` of `n`; `role` says what it is.
  const OnnxTensor& constant_input(const OnnxNode& n, std::size_t index, const char* role) const {
    if (index >= n.inputs.size() || n.inputs[index].empty()) fail(n, fmt::format("has no {} (input {})", role, index));
    const OnnxTensor* c = constant(n.inputs[index]);
    if (!c)
      fail(n, fmt::format("its {} '{}' is computed; glassbox imports it only as a constant (an initializer or a "
                          "Constant node)",
                          role, n.inputs[index]));
    return *c;
  }

  void constant_node(const OnnxNode& n);

  // Marks what a node computes from shapes alone: PyTorch sizes the zero
  // initial state of a recurrent layer from the input's batch dimension.
  void shape_node(const OnnxNode& n);

  // The non-Constant nodes the graph output depends on, in topological order.
  std::vector<const OnnxNode*> needed_nodes() {
    std::set<const OnnxNode*> needed;
    std::vector<std::string> pending;
    for (const OnnxValueInfo& out : m_.outputs) pending.push_back(out.name);
    while (!pending.empty()) {
      const std::string t = pending.back();
      pending.pop_back();
      const auto p = producer_.find(t);
      if (p == producer_.end() || p->second->op == "Constant" || !needed.insert(p->second).second) continue;
      for (const std::string& in : p->second->inputs) {
        uses_.insert(in);
        if (dynamic(in)) pending.push_back(in);
      }
    }
    std::vector<const OnnxNode*> ordered;
    for (const OnnxNode& n : m_.nodes)
      if (needed.count(&n)) ordered.push_back(&n);
    return ordered;
  }

  // Splits `nodes` (computing `output` from `input`) where one tensor alone
  // carries everything the rest needs, and turns each piece into layers
  // (onnx_import_graph.hpp).
  void chain(const std::vector<const OnnxNode*>& nodes, const std::string& input, const std::string& output,
             Sink& sink);

  // The Graph layers glassbox exported (named in the model's metadata) at
  // this level: for each segment that starts one, the last segment of it.
  static constexpr std::size_t no_group = static_cast<std::size_t>(-1);
  std::vector<std::size_t> graph_groups(const std::vector<Segment>& segments, const std::string& prefix) const;
  bool in_block(const Segment& s, const std::string& block) const;
  // The glassbox Graph directly under `prefix` that node `n` belongs to, or "".
  const std::string& graph_block_of(const OnnxNode& n, const std::string& prefix) const;

  void emit(Sink& sink, std::unique_ptr<Layer<T>> layer, const OnnxNode& n) {
    std::string name = n.name;
    if (!sink.prefix.empty() && name.compare(0, sink.prefix.size(), sink.prefix) == 0)
      name.erase(0, sink.prefix.size());
    Layer<T>* raw = layer.get();
    sink.add(std::move(layer), layer_name(name, raw->kind()));
    sink.shape = raw->output_shape(sink.shape);
    ++sink.layers;
  }

  // A value of an integer tensor (held as a double) as an integer, or an error.
  std::int64_t integer(const OnnxNode& n, double v, const char* what) const {
    if (!(std::abs(v) <= 9007199254740992.0) || v != std::floor(v))  // 2^53: exact in a double
      fail(n, fmt::format("its {} has the value {}, not an integer glassbox accepts", what, v));
    return static_cast<std::int64_t>(v);
  }

  // Attribute access; an attribute the op does not have, or of the wrong
  // type, is an error naming it.
  void allow(const OnnxNode& n, std::initializer_list<const char*> names) const {
    for (const OnnxAttribute& a : n.attributes) {
      bool known = false;
      for (const char* k : names) known = known || a.name == k;
      if (!known) fail(n, fmt::format("attribute '{}' is not supported", a.name));
    }
  }
  const OnnxAttribute* typed(const OnnxNode& n, const char* key, int type) const {
    const OnnxAttribute* a = n.attribute(key);
    if (a && a->type != type) fail(n, fmt::format("attribute '{}' has type {}, expected {}", key, a->type, type));
    return a;
  }
  std::int64_t int_attr(const OnnxNode& n, const char* key, std::int64_t fallback) const {
    const OnnxAttribute* a = typed(n, key, OnnxAttribute::int_);
    return a ? a->i : fallback;
  }
  double float_attr(const OnnxNode& n, const char* key, double fallback) const {
    const OnnxAttribute* a = typed(n, key, OnnxAttribute::float_);
    return a ? a->f : fallback;
  }
  std::vector<std::int64_t> ints_attr(const OnnxNode& n, const char* key, std::size_t count,
                                      std::int64_t fallback) const {
    const OnnxAttribute* a = typed(n, key, OnnxAttribute::ints);
    if (!a) return std::vector<std::int64_t>(count, fallback);
    if (a->int_list.size() != count)
      fail(n, fmt::format("attribute '{}' has {} values, expected {}", key, a->int_list.size(), count));
    return a->int_list;
  }
  std::string string_attr(const OnnxNode& n, const char* key, const std::string& fallback) const {
    const OnnxAttribute* a = typed(n, key, OnnxAttribute::string_);
    return a ? a->s : fallback;
  }
  // An int attribute that must have one value.
  void require(const OnnxNode& n, const char* key, std::int64_t fallback, std::int64_t wanted, const char* why) const {
    const std::int64_t v = int_attr(n, key, fallback);
    if (v != wanted) fail(n, fmt::format("attribute '{}' = {} is not supported ({})", key, v, why));
  }
  void require_rank(const OnnxNode& n, const Sink& sink, int rank) const {
    if (sink.shape.rank() != rank)
      fail(n, fmt::format("reads a rank-{} tensor {}, expected rank {}", sink.shape.rank(), sink.shape.str(), rank));
  }

  // The window of a Conv or pooling node, as glassbox's padding.
  nn::Window2D window(const OnnxNode& n, const Sink& sink, nn::Size2 kernel, bool dilations);
  void check_window(const OnnxNode& n, const nn::Window2D& w) const;

  // 2-D kernel size from a pooling node's kernel_shape.
  nn::Size2 kernel_shape(const OnnxNode& n) const;

  void fill(Layer<T>& layer, const char* key, const OnnxTensor& source, const OnnxNode& n, bool transpose = false,
            double scale = 1) {
    for (Parameter<T>* p : layer.parameters())
      if (p->local_name() == key) {
        assignments_.push_back({&p->value, &source, &n, transpose, scale});
        return;
      }
    for (auto& [name, tensor] : layer.buffers())
      if (name == key) {
        assignments_.push_back({tensor, &source, &n, transpose, scale});
        return;
      }
    fail(n, fmt::format("glassbox's {} has no '{}' to fill", layer.kind(), key));
  }

  void assign(const Assignment& a) const;

  // One node; `following` are the nodes of the one-node pieces after it,
  // which some ops absorb (Pad + Conv + Relu, MatMul + Add, GlobalAveragePool
  // + Flatten, Transpose + LSTM + Squeeze + Transpose). Returns how many it absorbed.
  std::size_t single(const OnnxNode& n, const std::string& x, const std::vector<const OnnxNode*>& following,
                     Sink& sink);
  // Add, Sub, Mul or Div of a constant: an Affine layer (with the shift after a scale).
  std::size_t affine(const OnnxNode& n, const std::string& x, const OnnxNode* after, Sink& sink);

  // Transpose (N, T, F) -> (T, N, F), an LSTM, GRU or RNN node, and the
  // nodes that bring its output back to glassbox's layout: Squeeze(Y, 1) +
  // Transpose for every step's output (return_sequences), then perhaps a
  // Gather of the last step; or Squeeze / Gather of Y_h, the last hidden state.
  std::size_t recurrent(const OnnxNode& transpose, const std::vector<const OnnxNode*>& following, Sink& sink);

  // `source`'s blocks of `block` values, from `offset` on, in `order`.
  const OnnxTensor& gate_blocks(const OnnxTensor& source, const std::vector<index_t>& order, index_t block,
                                index_t offset);
  const OnnxTensor& zero_tensor();

  // True when `name` is all zeros: a constant, or a ConstantOfShape of 0
  // sized from the input's shape (PyTorch's initial states).
  bool zeros(const std::string& name) const;

  // Squeeze of the one axis `axis` (as an attribute before opset 13, an input after).
  bool squeezes(const OnnxNode& n, std::int64_t axis) const;

  // Gather of the last index (-1 or count - 1) along `axis` with a scalar index.
  bool last_step(const OnnxNode& n, std::int64_t axis, index_t count) const;

  // Reshape's target for an input of `in` (batch 1), or an error.
  Shape reshape_target(const OnnxNode& n, const Shape& in, bool* keeps_batch = nullptr) const;
  // Flatten, Reshape, Squeeze or Unsqueeze as a Flatten, Identity or Reshape layer.
  void reshape(const OnnxNode& n, Sink& sink);
  std::vector<std::int64_t> shape_values(const OnnxNode& n, const std::string& name, const Shape& in,
                                         std::size_t& budget) const;
  static constexpr std::int64_t batch_entry = -2;  // in shape_values: the batch dimension

  // True when `n` turns `in` into (batch, everything else).
  bool flattens(const OnnxNode& n, const Shape& in) const;

  // GELU written as its formula (exporters do before opset 20): a branching
  // piece of elementwise nodes, perhaps with a few one-node pieces after it
  // (PyTorch's final "* 0.5"). Returns how many pieces it took, 0 if none.
  std::size_t gelu(const std::vector<Segment>& segments, std::size_t first, Sink& sink);

  // Evaluates the piece's nodes on sample points and compares with GELU's
  // two forms; adds the layer when one matches.
  bool computes_gelu(const Segment& s, Sink& sink);

  // A piece ending in Add(a, b) where a and b are computed from the piece's
  // input by separate nodes: a residual block. The body is the side with
  // more than one layer (or the first); the other side, the input itself or
  // one layer, is the shortcut.
  bool residual(const Segment& s, Sink& sink);

  // A branching piece as a Graph layer (onnx_import_graph.hpp), named `name`;
  // `prefix` is stripped from its nodes' names.
  struct GraphPiece;
  void graph(const std::vector<const OnnxNode*>& nodes, const std::string& in, const std::string& out, std::string name,
             const std::string& prefix, bool exported, Sink& sink);
  std::string merge_name(const GraphPiece& p, const OnnxNode& n, const char* kind) const;
  // True when the region is one child layer of an exported graph (not merges alone).
  bool one_layer(const GraphPiece& p, const std::vector<const OnnxNode*>& region) const;
  // Plans the step that builds `tensor` (and those it reads); runs one.
  std::size_t plan(GraphPiece& p, const std::string& tensor);
  typename Graph<T>::Node run_step(GraphPiece& p, const typename GraphPiece::Step& step,
                                   const std::vector<typename Graph<T>::Node>& built);
  // The nodes between tensors `from` and `to` (indices in p) when nothing
  // outside them reads what they compute, other than `to`.
  bool closed_region(GraphPiece& p, std::size_t from, std::size_t to, std::vector<const OnnxNode*>& region) const;

  static constexpr std::size_t max_graph_nodes = 4096;
  static constexpr std::size_t max_graph_work = std::size_t(1) << 24;
  static constexpr index_t max_window = 1 << 16;  // larger windows are absurd, and overflow index sums
  static constexpr int max_depth = 32;            // blocks (residual blocks, graphs) inside blocks
  // One level of block nesting for its scope; past max_depth, an error naming `n`.
  struct Nesting {
    Nesting(Importer& importer, const OnnxNode& n) : depth(importer.depth_) {
      if (depth == max_depth) importer.fail(n, fmt::format("blocks nest deeper than {}", max_depth));
      ++depth;
    }
    ~Nesting() { --depth; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;
    int& depth;
  };

  const OnnxModel& m_;
  std::string where_;
  int depth_ = 0;
  std::int64_t declared_batch_ = -1;
  std::map<std::string, const OnnxTensor*> constants_;
  std::deque<OnnxNode> virtual_nodes_;
  std::map<std::string, Shape> declared_inputs_;  // input tensor -> sample, when there are several
  std::deque<OnnxTensor> node_constants_;
  std::vector<Assignment> assignments_;
  std::vector<std::int64_t> pad_node_pads_;  // of a Pad node, for the Conv or AveragePool after it
  // Tensors computed from the input's shape alone (Shape, Gather, Concat, ...,
  // ConstantOfShape): the fill value of a ConstantOfShape, NaN for the others.
  std::map<std::string, double> shape_derived_;
  std::set<std::string> uses_;  // tensors some node the output depends on reads
  std::map<std::string, const OnnxNode*> producer_;
  std::set<std::string> graph_layers_;  // from the metadata of glassbox's export
};

}  // namespace onnx_detail

}  // namespace glassbox::io

// The Importer's members, defined out of the class by concern.
#include "glassbox/io/onnx_import_graph.hpp"
#include "glassbox/io/onnx_import_ops.hpp"
#include "glassbox/io/onnx_import_patterns.hpp"
#include "glassbox/io/onnx_import_shapes.hpp"

namespace glassbox::io {

// An ONNX model's bytes as a glassbox model; `where` names it in errors.
template <class T>
Sequential<T> onnx_from_bytes(std::string_view bytes, const std::string& where) {
  const OnnxModel model = parse_onnx(bytes, where);
  return onnx_detail::Importer<T>(model, where).run();
}

template <class T>
Sequential<T> import_onnx(const std::string& path) {
  return onnx_from_bytes<T>(read_file(path), path);
}

}  // namespace glassbox::io
