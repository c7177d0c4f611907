#pragma once
// GraphWiring<T>: what a Graph (model/graph.hpp) is made of: its nodes (the
// input or declared inputs, layers, and merges), their wiring and names, the
// outputs, and the shapes that flow through; checked as nodes are added.
// Graph adds how it runs (forward and backward); include graph.hpp.

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/model/graph_merge.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox {

template <class T>
class GraphWiring : public Layer<T> {
 public:
  enum class Op { input, layer, sum, multiply, concat };
  // A node of this graph, as returned by input(), add() and the merges.
  struct Node {
    std::size_t id = 0;
  };

  GraphWiring() { nodes_.push_back(Entry{Op::input, "input", {}, 0, 1, {}}); }

  std::string kind() const override { return "graph"; }

  // The graph's input tensor (a graph of one input).
  Node input() const { return Node{0}; }
  // One of several inputs, of per-sample shape `sample`, named input_N by
  // default: the graph then reads them packed (see the top).
  Node input(const Shape& sample, std::string name = {}) {
    require_not_in_model();
    if (sample.rank() < 1 || sample.size() < 1)
      throw Error(fmt::format("{}: input shape {} needs rank >= 1 and no zero dimension", this->name(), sample.str()));
    if (name.empty()) name = unique_name("input");
    check_new_name(name);
    return append(Entry{Op::input, std::move(name), {}, 0, 1, sample});
  }
  // The declared inputs, in packing order (empty for a graph of one input).
  std::vector<Node> declared_inputs() const {
    std::vector<Node> r;
    for (std::size_t k = 1; k < nodes_.size(); ++k)
      if (nodes_[k].op == Op::input) r.push_back(Node{k});
    return r;
  }
  const Shape& input_sample(Node n) const { return entry(n).sample; }  // of a declared input
  // What the graph reads per sample when its inputs are declared: (S1 + S2 + ...).
  Shape packed_input_shape() const {
    if (!packed_width()) throw Error(fmt::format("{}: declares no inputs (input(shape))", this->name()));
    return Shape{packed_width()};
  }
  // S1 + S2 + ..., 0 when no input is declared (without allocating: each pass asks).
  index_t packed_width() const {
    index_t total = 0;
    for (std::size_t k = 1; k < nodes_.size(); ++k)
      if (nodes_[k].op == Op::input) total += nodes_[k].sample.size();
    return total;
  }

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
    return append(Entry{Op::layer, std::move(name), {from.id}, layers_.size() - 1, 1, {}});
  }

  // Elementwise sum or product of nodes of one shape (at least two; a node
  // may appear twice), named sum_N / multiply_N by default.
  Node sum(const std::vector<Node>& inputs, std::string name = {}) {
    return merge(MergeOp::sum, inputs, 1, std::move(name));
  }
  Node multiply(const std::vector<Node>& inputs, std::string name = {}) {
    return merge(MergeOp::multiply, inputs, 1, std::move(name));
  }
  // Concatenation along `axis` (1: channels or features; negative counts from
  // the end) of nodes whose other dimensions agree.
  Node concat(const std::vector<Node>& inputs, int axis = 1, std::string name = {}) {
    if (axis == 0) throw Error(fmt::format("{}: concat along axis 0 would mix samples", this->name()));
    return merge(MergeOp::concat, inputs, axis, std::move(name));
  }

  // The node whose value the graph returns (default: the last one added).
  void set_output(Node node) { set_outputs({node}); }
  // Several outputs, returned packed (see the top).
  void set_outputs(const std::vector<Node>& nodes) {
    require_not_in_model();
    if (nodes.empty()) throw Error(fmt::format("{}: set_outputs needs at least one node", this->name()));
    std::vector<std::size_t> ids;
    for (Node n : nodes) {
      check_node(n, "set_outputs");
      if (std::find(ids.begin(), ids.end(), n.id) != ids.end())
        throw Error(fmt::format("{}: node '{}' is listed twice as an output", this->name(), nodes_[n.id].name));
      ids.push_back(n.id);
    }
    outputs_ = std::move(ids);
  }
  Node output() const { return Node{outputs_.empty() ? nodes_.size() - 1 : outputs_[0]}; }  // the first
  std::vector<Node> outputs() const {
    if (outputs_.empty()) return {output()};
    std::vector<Node> r;
    for (std::size_t id : outputs_) r.push_back(Node{id});
    return r;
  }

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
  // The layer of a node: its layer, or a merge's GraphMerge.
  Layer<T>& layer(Node n) {
    if (entry(n).op == Op::input) throw Error(fmt::format("{}: the input is not a layer", this->name()));
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
    const index_t width = packed_width();
    if (width && (in.rank() != 2 || in[1] != width)) {
      std::string parts;
      for (Node n : declared_inputs())
        parts += fmt::format("{}{} {}", parts.empty() ? "" : ", ", node_name(n), input_sample(n).str());
      throw Error(
          fmt::format("{}: its inputs {} pack to (batch, {}); got input {}", this->name(), parts, width, in.str()));
    }
    std::vector<Shape> shapes{in};
    for (std::size_t k = 1; k < nodes_.size(); ++k)
      shapes.push_back(nodes_[k].op == Op::input ? nodes_[k].sample.batched(in[0]) : node_shape(k, shapes));
    return shapes;
  }
  // The shapes of the outputs for a batch input shape, in order.
  std::vector<Shape> output_shapes(const Shape& in) const {
    const std::vector<Shape> shapes = node_shapes(in);
    std::vector<Shape> r;
    for (Node n : outputs()) r.push_back(shapes[n.id]);
    return r;
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
      if (e.op != Op::input)
        for (auto& [name, tensor] : layers_[e.layer]->buffers()) all.emplace_back(e.name + "." + name, tensor);
    return all;
  }
  void reset_parameters(Rng& rng) override {
    for (auto& l : layers_) l->reset_parameters(rng);
  }
  void set_name(std::string name) override {
    this->set_own_name(std::move(name));
    for (const Entry& e : nodes_)
      if (e.op != Op::input) layers_[e.layer]->set_name(qualified(e.name));
  }
  std::string config() const override {
    std::size_t merges = 0;
    for (const Entry& e : nodes_) merges += e.op != Op::input && e.op != Op::layer;
    return fmt::format("{} layers, {} merges", layers_.size() - merges, merges);
  }

  Shape output_shape(const Shape& in) const override {
    const std::vector<Shape> shapes = output_shapes(in);
    if (shapes.size() == 1) return shapes[0];
    index_t total = 0;
    for (const Shape& s : shapes) total += s.sample().size();
    return Shape{in[0], total};
  }

 protected:
  struct Entry {
    Op op;
    std::string name;
    std::vector<std::size_t> inputs;
    std::size_t layer;  // index into layers_ (layers and merges)
    int axis;           // for Op::concat
    Shape sample;       // for a declared input
  };
  static constexpr std::size_t none = static_cast<std::size_t>(-1);

  // The node that writes the graph's output in place, or none when several
  // outputs are packed into it.
  std::size_t direct_output() const { return outputs_.size() > 1 ? none : output().id; }

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
    for (Node n : outputs()) needed[n.id] = true;
    for (std::size_t k = nodes_.size(); k-- > 1;)
      if (needed[k])
        for (std::size_t i : nodes_[k].inputs) needed[i] = true;
    const bool declared = packed_width() > 0;
    if (declared && needed[0])
      throw Error(fmt::format("{}: a graph with declared inputs (input(shape)) reads them, not input()", this->name()));
    for (std::size_t k = declared ? 1 : 0; k < nodes_.size(); ++k)
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
  Node merge(MergeOp op, const std::vector<Node>& inputs, int axis, std::string name) {
    require_not_in_model();
    const char* what = GraphMerge<T>::op_name(op);
    if (inputs.size() < 2)
      throw Error(fmt::format("{}: {} needs at least two inputs, got {}", this->name(), what, inputs.size()));
    std::vector<std::size_t> ids;
    for (Node n : inputs) {
      check_node(n, what);
      ids.push_back(n.id);
    }
    if (name.empty()) name = unique_name(what);
    check_new_name(name);
    auto layer = std::make_unique<GraphMerge<T>>(op, axis);
    layer->set_name(qualified(name));
    layers_.push_back(std::move(layer));
    const Op kind = op == MergeOp::sum ? Op::sum : op == MergeOp::multiply ? Op::multiply : Op::concat;
    return append(Entry{kind, std::move(name), std::move(ids), layers_.size() - 1, axis, {}});
  }
  GraphMerge<T>& merge_of(const Entry& e) { return static_cast<GraphMerge<T>&>(*layers_[e.layer]); }

  // Output shape of node k, given the shapes of the nodes before it.
  Shape node_shape(std::size_t k, const std::vector<Shape>& shapes) const {
    const Entry& e = nodes_[k];
    if (e.op == Op::layer) return layers_[e.layer]->output_shape(shapes[e.inputs[0]]);
    std::vector<Shape> in;
    std::vector<std::string> names;
    for (std::size_t i : e.inputs) {
      in.push_back(shapes[i]);
      names.push_back(nodes_[i].name);
    }
    const auto& merge = static_cast<const GraphMerge<T>&>(*layers_[e.layer]);
    return GraphMerge<T>::merged_shape(qualified(e.name), merge.op(), e.axis, in, names);
  }

  std::vector<Entry> nodes_;
  std::vector<std::unique_ptr<Layer<T>>> layers_;
  std::vector<std::size_t> outputs_;  // empty: the last node
  std::map<std::string, int> kind_counts_;
};

GLASSBOX_PRECOMPILED_INSTANCE(class GraphWiring<float>)
}  // namespace glassbox
