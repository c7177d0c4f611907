#pragma once
// Graph<T>: layers wired as a directed acyclic graph, for what a chain and a
// residual block cannot express: branches that merge by a sum, a product or
// a concatenation (Inception's parallel convolutions, DenseNet's concats,
// shortcuts of several layers, gates), and tensors read by several layers.
//
// A graph is itself one layer, with one input and one output: put it in a
// Sequential, alone or between other layers, and it trains, saves to a
// checkpoint, exports to ONNX and is inspected like any layer there.
//
//   Graph<float> g;
//   auto x = g.input();
//   auto a = g.add<nn::Conv2D<float>>(x, 1, 8, nn::Size2{1, 1});
//   auto b = g.add<nn::Conv2D<float>>(x, 1, 8, nn::Size2{3, 3}, same);
//   g.concat({a, b});   // the output: the last node added, or set_output()
//   model.add(std::make_unique<Graph<float>>(std::move(g)));   // "graph_1"
//
// Hooks stay uniform: the layer nodes are the graph's children, named
// "<graph>.<node>" ("graph_1.conv2d_2"), and every hook fires for them as
// for a residual block's. Merge nodes ("sum_1", "multiply_1", "concat_1")
// have names but are not layers: what they compute is the input of the
// layers that read them, or the graph's output.
//
// Nodes run in the order they were added, which is topological since a node
// reads only earlier ones. Forward keeps every node's output for backward
// (buffers reused from batch to batch); backward runs the nodes in reverse
// and adds up the gradients of a tensor that several nodes read.

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox {

template <class T>
class Graph : public Layer<T> {
 public:
  enum class Op { input, layer, sum, multiply, concat };
  // A node of this graph, as returned by input(), add() and the merges.
  struct Node {
    std::size_t id = 0;
  };

  Graph() { nodes_.push_back(Entry{Op::input, "input", {}, 0, 1}); }

  std::string kind() const override { return "graph"; }

  // The graph's input tensor.
  Node input() const { return Node{0}; }

  // A layer reading node `from`, named kind_N within the graph by default.
  template <class L, class... Args>
  Node add(Node from, Args&&... args) {
    return add(from, std::make_unique<L>(std::forward<Args>(args)...));
  }
  Node add(Node from, std::unique_ptr<Layer<T>> layer, std::string name = {}) {
    if (!layer) throw Error(fmt::format("{}: null layer", this->name()));
    require_not_in_model();
    check_node(from, "add");
    if (name.empty()) name = unique_name(layer->kind());
    check_new_name(name);
    layer->set_name(qualified(name));
    layers_.push_back(std::move(layer));
    return append(Entry{Op::layer, std::move(name), {from.id}, layers_.size() - 1, 1});
  }

  // Elementwise sum or product of nodes of one shape (at least two; a node
  // may appear twice).
  Node sum(const std::vector<Node>& inputs) { return merge(Op::sum, inputs, 1); }
  Node multiply(const std::vector<Node>& inputs) { return merge(Op::multiply, inputs, 1); }
  // Concatenation along `axis` (1: channels or features; negative counts from
  // the end) of nodes whose other dimensions agree.
  Node concat(const std::vector<Node>& inputs, int axis = 1) {
    if (axis == 0) throw Error(fmt::format("{}: concat along axis 0 would mix samples", this->name()));
    return merge(Op::concat, inputs, axis);
  }

  // The node whose value the graph returns (default: the last one added).
  void set_output(Node node) {
    require_not_in_model();
    check_node(node, "set_output");
    output_ = node.id;
  }
  Node output() const { return Node{output_ ? output_ : nodes_.size() - 1}; }

  // ---- The wiring, read by checkpoints, the ONNX export and diagrams.
  std::size_t node_count() const { return nodes_.size(); }  // the input included
  Op op(Node n) const { return entry(n).op; }
  const std::string& node_name(Node n) const { return entry(n).name; }  // within the graph
  std::vector<Node> inputs(Node n) const {
    std::vector<Node> r;
    for (std::size_t i : entry(n).inputs) r.push_back(Node{i});
    return r;
  }
  int axis(Node n) const { return entry(n).axis; }  // of a concat, as given
  Layer<T>& layer(Node n) {
    if (entry(n).op != Op::layer) throw Error(fmt::format("{}: node '{}' is not a layer", this->name(), node_name(n)));
    return *layers_[entry(n).layer];
  }
  static const char* op_name(Op op) {
    switch (op) {
      case Op::input: return "input";
      case Op::layer: return "layer";
      case Op::sum: return "sum";
      case Op::multiply: return "multiply";
      case Op::concat: return "concat";
    }
    return "?";
  }

  // Every node's output shape for a batch input shape; throws naming the
  // node whose inputs do not fit.
  std::vector<Shape> node_shapes(const Shape& in) const {
    require_complete();
    std::vector<Shape> shapes{in};
    for (std::size_t k = 1; k < nodes_.size(); ++k) shapes.push_back(node_shape(k, shapes));
    return shapes;
  }

  std::vector<Layer<T>*> children() override {
    std::vector<Layer<T>*> all;
    for (auto& l : layers_) all.push_back(l.get());
    return all;
  }
  std::vector<Parameter<T>*> parameters() override {
    std::vector<Parameter<T>*> all;
    for (auto& l : layers_)
      for (Parameter<T>* p : l->parameters()) all.push_back(p);
    return all;
  }
  std::vector<std::pair<std::string, Tensor<T>*>> buffers() override {
    std::vector<std::pair<std::string, Tensor<T>*>> all;
    for (const Entry& e : nodes_)
      if (e.op == Op::layer)
        for (auto& [name, tensor] : layers_[e.layer]->buffers()) all.emplace_back(e.name + "." + name, tensor);
    return all;
  }
  void reset_parameters(Rng& rng) override {
    for (auto& l : layers_) l->reset_parameters(rng);
  }
  void set_name(std::string name) override {
    this->set_own_name(std::move(name));
    for (const Entry& e : nodes_)
      if (e.op == Op::layer) layers_[e.layer]->set_name(qualified(e.name));
  }
  std::string config() const override {
    return fmt::format("{} layers, {} merges", layers_.size(), nodes_.size() - 1 - layers_.size());
  }

  Shape output_shape(const Shape& in) const override { return node_shapes(in)[output().id]; }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override {
    const std::vector<Shape> shapes = node_shapes(x.shape());
    values_.resize(nodes_.size());
    const std::size_t out = output().id;
    for (std::size_t k = 1; k < nodes_.size(); ++k) {
      const Entry& e = nodes_[k];
      Tensor<T>& value = k == out ? y : values_[k];
      if (e.op == Op::layer)
        this->run_child_forward(*layers_[e.layer], node_value(e.inputs[0], x, y), value, mode);
      else
        merge_forward(e, shapes[k], x, y, value);
    }
  }

  void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>* dx) override {
    grads_.resize(nodes_.size());
    has_grad_.assign(nodes_.size(), false);
    input_grad_written_ = false;
    const std::size_t out = output().id;
    for (std::size_t k = nodes_.size(); k-- > 1;) {
      if (k != out && !has_grad_[k]) continue;  // unreachable: every node leads to the output
      const Entry& e = nodes_[k];
      const Tensor<T>& grad = k == out ? dy : grads_[k];
      if (e.op == Op::layer) {
        const std::size_t from = e.inputs[0];
        Tensor<T>* target = grad_target(from, dx);
        this->run_child_backward(*layers_[e.layer], node_value(from, x, y), node_value(k, x, y), grad, target);
        if (target == &scratch_) accumulate(from, dx, scratch_);
        continue;
      }
      for (std::size_t i = 0; i < e.inputs.size(); ++i) {
        const std::size_t from = e.inputs[i];
        Tensor<T>* target = grad_target(from, dx);
        if (!target) continue;
        merge_backward(e, i, grad, x, y, *target);
        if (target == &scratch_) accumulate(from, dx, scratch_);
      }
    }
    if (dx && !input_grad_written_)
      throw Error(fmt::format("{}: the output does not depend on the input", this->name()));
  }

 private:
  struct Entry {
    Op op;
    std::string name;
    std::vector<std::size_t> inputs;
    std::size_t layer;  // index into layers_ for Op::layer
    int axis;           // for Op::concat
  };

  const Entry& entry(Node n) const {
    if (n.id >= nodes_.size())
      throw Error(fmt::format("{}: node {} does not exist (the graph has {})", this->name(), n.id, nodes_.size()));
    return nodes_[n.id];
  }
  void check_node(Node n, const char* what) const {
    if (n.id >= nodes_.size())
      throw Error(
          fmt::format("{}: {} names node {}, but the graph has {} nodes", this->name(), what, n.id, nodes_.size()));
  }
  void require_not_in_model() const {
    if (this->in_model())
      throw Error(fmt::format("{}: a graph cannot change once it is in a model; build it first", this->name()));
  }
  // Every node must lead to the output: a node that does not would get no
  // gradient, and its parameters would keep stale ones.
  void require_complete() const {
    if (nodes_.size() < 2) throw Error(fmt::format("{}: the graph has no nodes", this->name()));
    std::vector<bool> needed(nodes_.size(), false);
    needed[output().id] = true;
    for (std::size_t k = nodes_.size(); k-- > 1;)
      if (needed[k])
        for (std::size_t i : nodes_[k].inputs) needed[i] = true;
    for (std::size_t k = 0; k < nodes_.size(); ++k)
      if (!needed[k])
        throw Error(fmt::format("{}: node '{}' does not lead to the output '{}'", this->name(), nodes_[k].name,
                                nodes_[output().id].name));
  }

  std::string qualified(const std::string& local) const {
    return this->name() == kind() ? local : this->name() + "." + local;
  }
  std::string unique_name(const std::string& stem) {
    std::string name;
    do name = fmt::format("{}_{}", stem, ++kind_counts_[stem]);
    while (taken(name));
    return name;
  }
  bool taken(const std::string& name) const {
    for (const Entry& e : nodes_)
      if (e.name == name) return true;
    return false;
  }
  void check_new_name(const std::string& name) const {
    if (taken(name)) throw Error(fmt::format("{}: a node named '{}' already exists", this->name(), name));
  }
  Node append(Entry e) {
    nodes_.push_back(std::move(e));
    return Node{nodes_.size() - 1};
  }
  Node merge(Op op, const std::vector<Node>& inputs, int axis) {
    require_not_in_model();
    if (inputs.size() < 2)
      throw Error(fmt::format("{}: {} needs at least two inputs, got {}", this->name(), op_name(op), inputs.size()));
    std::vector<std::size_t> ids;
    for (Node n : inputs) {
      check_node(n, op_name(op));
      ids.push_back(n.id);
    }
    return append(Entry{op, unique_name(op_name(op)), std::move(ids), 0, axis});
  }

  // Output shape of node k, given the shapes of the nodes before it.
  Shape node_shape(std::size_t k, const std::vector<Shape>& shapes) const {
    const Entry& e = nodes_[k];
    if (e.op == Op::layer) return layers_[e.layer]->output_shape(shapes[e.inputs[0]]);
    const Shape& first = shapes[e.inputs[0]];
    const auto mismatch = [&](std::size_t i, const std::string& why) {
      return Error(fmt::format("{}: input {} ('{}') has shape {} but input 1 ('{}') {}; {}", qualified(e.name), i + 1,
                               nodes_[e.inputs[i]].name, shapes[e.inputs[i]].str(), nodes_[e.inputs[0]].name,
                               first.str(), why));
    };
    if (e.op != Op::concat) {
      for (std::size_t i = 1; i < e.inputs.size(); ++i)
        if (shapes[e.inputs[i]] != first) throw mismatch(i, fmt::format("a {} needs equal shapes", op_name(e.op)));
      return first;
    }
    const int axis = concat_axis(e, first.rank());
    Shape out = first;
    for (std::size_t i = 1; i < e.inputs.size(); ++i) {
      const Shape& s = shapes[e.inputs[i]];
      bool fits = s.rank() == first.rank();
      for (int d = 0; fits && d < s.rank(); ++d) fits = d == axis || s[d] == first[d];
      if (!fits) throw mismatch(i, fmt::format("a concat along axis {} needs the other dimensions equal", axis));
      out[axis] += s[axis];
    }
    return out;
  }
  int concat_axis(const Entry& e, int rank) const {
    const int axis = e.axis < 0 ? e.axis + rank : e.axis;
    if (axis < 1 || axis >= rank)
      throw Error(
          fmt::format("{}: axis {} is not a non-batch axis of its rank-{} inputs", qualified(e.name), e.axis, rank));
    return axis;
  }
  // Values per sample before `axis` (batch included) and from `axis` on.
  static std::pair<index_t, index_t> split_at(const Shape& s, int axis) {
    index_t outer = 1;
    for (int d = 0; d < axis; ++d) outer *= s[d];
    return {outer, s.size() / std::max<index_t>(outer, 1)};
  }

  const Tensor<T>& node_value(std::size_t k, const Tensor<T>& x, const Tensor<T>& y) const {
    return k == 0 ? x : k == output().id ? y : values_[k];
  }

  void merge_forward(const Entry& e, const Shape& shape, const Tensor<T>& x, const Tensor<T>& y, Tensor<T>& out) {
    out.resize(shape);
    if (e.op == Op::concat) {
      const auto [outer, row] = split_at(shape, concat_axis(e, shape.rank()));
      index_t offset = 0;
      for (std::size_t i : e.inputs) {
        const Tensor<T>& v = node_value(i, x, y);
        const index_t part = split_at(v.shape(), concat_axis(e, shape.rank())).second;
        for (index_t r = 0; r < outer; ++r)
          std::copy(v.data() + r * part, v.data() + (r + 1) * part, out.data() + r * row + offset);
        offset += part;
      }
      return;
    }
    out.flat() = node_value(e.inputs[0], x, y).flat();
    for (std::size_t i = 1; i < e.inputs.size(); ++i) {
      if (e.op == Op::sum)
        out.flat() += node_value(e.inputs[i], x, y).flat();
      else
        out.flat() *= node_value(e.inputs[i], x, y).flat();
    }
  }

  // The gradient of merge `e` with respect to its input `which`, into `target`.
  void merge_backward(const Entry& e, std::size_t which, const Tensor<T>& grad, const Tensor<T>& x, const Tensor<T>& y,
                      Tensor<T>& target) {
    const Tensor<T>& in = node_value(e.inputs[which], x, y);
    target.resize(in.shape());
    if (e.op == Op::sum) {
      target.flat() = grad.flat();
    } else if (e.op == Op::multiply) {
      target.flat() = grad.flat();
      for (std::size_t i = 0; i < e.inputs.size(); ++i)
        if (i != which) target.flat() *= node_value(e.inputs[i], x, y).flat();
    } else {
      const int axis = concat_axis(e, grad.rank());
      const auto [outer, row] = split_at(grad.shape(), axis);
      index_t offset = 0;
      for (std::size_t i = 0; i < which; ++i) offset += split_at(node_value(e.inputs[i], x, y).shape(), axis).second;
      const index_t part = split_at(in.shape(), axis).second;
      for (index_t r = 0; r < outer; ++r)
        std::copy(grad.data() + r * row + offset, grad.data() + r * row + offset + part, target.data() + r * part);
    }
  }

  // Where the gradient wrt node `from` goes: straight into its buffer when it
  // is the first to arrive, else into scratch_ to be added; null when the
  // graph's input gradient is not wanted.
  Tensor<T>* grad_target(std::size_t from, Tensor<T>* dx) {
    if (from == 0) {
      if (!dx) return nullptr;
      if (input_grad_written_) return &scratch_;
      input_grad_written_ = true;
      return dx;
    }
    if (has_grad_[from]) return &scratch_;
    has_grad_[from] = true;
    return &grads_[from];
  }
  void accumulate(std::size_t from, Tensor<T>* dx, const Tensor<T>& part) {
    Tensor<T>& total = from == 0 ? *dx : grads_[from];
    total.flat() += part.flat();
  }

  std::vector<Entry> nodes_;
  std::vector<std::unique_ptr<Layer<T>>> layers_;
  std::size_t output_ = 0;  // 0: the last node
  std::map<std::string, int> kind_counts_;
  std::vector<Tensor<T>> values_, grads_;
  std::vector<bool> has_grad_;
  bool input_grad_written_ = false;
  Tensor<T> scratch_;
};

GLASSBOX_PRECOMPILED_INSTANCE(class Graph<float>)
}  // namespace glassbox
