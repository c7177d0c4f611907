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
// Hooks stay uniform: every node but the input is a child layer of the
// graph, named "<graph>.<node>" ("graph_1.conv2d_2", "graph_1.concat_1"),
// and every hook fires for it as for a residual block's layers. A merge is a
// GraphMerge layer (model/graph_merge.hpp) whose events show its first input.
//
// Several inputs and outputs: declare each input with its per-sample shape,
// input(Shape{1, 28, 28}, "image"), and name the outputs with set_outputs().
// The graph (a layer still) then reads one packed tensor, each sample's
// inputs flattened one after another, (N, S1 + S2 + ...), and returns its
// outputs packed the same way (one output keeps its own shape); pack() and
// unpack() (core/packing.hpp) convert. A model whose first layer is such a graph takes, and
// exports to ONNX as, several inputs (several outputs when it is the last).
//
//   auto image = g.input(Shape{1, 28, 28}, "image");
//   auto meta = g.input(Shape{4}, "meta");
//   ... g.set_outputs({digit, parity});
//   Sequential<float> model(g.packed_input_shape());   model.add(...)
//   auto [digit, parity] = unpack(model.predict(pack({images, metas})), ...)
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

#include "glassbox/core/packing.hpp"
#include "glassbox/core/precompiled.hpp"
#include "glassbox/model/graph_wiring.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox {

template <class T>
class Graph : public GraphWiring<T> {
 public:
  using Base = GraphWiring<T>;
  using Base::node_shapes;
  using Base::output_shape;
  using Base::packed_width;
  using typename Base::Node;
  using typename Base::Op;

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override {
    const std::vector<Shape> shapes = node_shapes(x.shape());
    values_.resize(nodes_.size());
    const std::size_t out = direct_output();
    index_t offset = 0;  // into a packed input
    for (std::size_t k = 1; k < nodes_.size(); ++k) {
      const Entry& e = nodes_[k];
      Tensor<T>& value = k == out ? y : values_[k];
      if (e.op == Op::input) {
        value.resize(shapes[k]);
        read_part(x, offset, value);
        offset += e.sample.size();
        continue;
      }
      if (e.op != Op::layer) {
        merge_inputs_.clear();  // reused: no allocation per batch
        for (std::size_t i : e.inputs) merge_inputs_.push_back(&node_value(i, x, y));
        merge_of(e).set_inputs(merge_inputs_);
      }
      this->run_child_forward(*layers_[e.layer], node_value(e.inputs[0], x, y), value, mode);
    }
    if (out != none) return;
    y.resize(output_shape(x.shape()));
    offset = 0;
    for (std::size_t id : outputs_) {
      write_part(values_[id], offset, y);
      offset += per_sample(values_[id]);
    }
  }

  void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>* dx) override {
    grads_.resize(nodes_.size());
    has_grad_.assign(nodes_.size(), false);
    input_grad_written_ = false;
    const std::size_t out = direct_output();
    if (out == none) {  // the packed output's gradient, unpacked to each output
      index_t offset = 0;
      for (std::size_t id : outputs_) {
        grads_[id].resize(values_[id].shape());
        read_part(dy, offset, grads_[id]);
        offset += per_sample(values_[id]);
        has_grad_[id] = true;
      }
    }
    index_t input_end = packed_width();  // packed inputs, met last to first
    if (dx && input_end) {
      dx->resize(x.shape());
      dx->set_zero();
      input_grad_written_ = true;
    }
    for (std::size_t k = nodes_.size(); k-- > 1;) {
      const Entry& e = nodes_[k];
      if (e.op == Op::input) {
        input_end -= e.sample.size();
        const Tensor<T>* grad = k == out ? &dy : has_grad_[k] ? &grads_[k] : nullptr;  // (an input may be the output)
        if (dx && grad) write_part(*grad, input_end, *dx, true);
        continue;
      }
      if (k != out && !has_grad_[k]) continue;  // unreachable: every node leads to the output
      const Tensor<T>& grad = k == out ? dy : grads_[k];
      if (e.op != Op::layer) {  // the other inputs' gradients, as wanted
        merge_wanted_.assign(1, false);
        for (std::size_t i = 1; i < e.inputs.size(); ++i)
          merge_wanted_.push_back(nodes_[e.inputs[i]].op != Op::input || dx);
        merge_of(e).want_input_grads(merge_wanted_);
      }
      const std::size_t from = e.inputs[0];
      Tensor<T>* target = grad_target(from, dx);
      this->run_child_backward(*layers_[e.layer], node_value(from, x, y), node_value(k, x, y), grad, target);
      if (target == &scratch_) accumulate(from, dx, scratch_);
      if (e.op == Op::layer) continue;
      for (std::size_t i = 1; i < e.inputs.size(); ++i)
        if (Tensor<T>* other = grad_target(e.inputs[i], dx)) {
          const Tensor<T>& part = merge_of(e).input_grad(i);
          if (other == &scratch_) {
            accumulate(e.inputs[i], dx, part);
          } else {
            other->resize(part.shape());
            std::copy(part.begin(), part.end(), other->begin());
          }
        }
    }
    if (dx && !input_grad_written_)
      throw Error(fmt::format("{}: the output does not depend on the input", this->name()));
  }

 private:
  using Base::direct_output;
  using Base::layers_;
  using Base::merge_of;
  using Base::nodes_;
  using Base::none;
  using Base::outputs_;
  using typename Base::Entry;

  const Tensor<T>& node_value(std::size_t k, const Tensor<T>& x, const Tensor<T>& y) const {
    return k == 0 ? x : k == direct_output() ? y : values_[k];
  }

  // Where the gradient wrt node `from` goes: straight into its buffer when it
  // is the first to arrive, else into scratch_ to be added; null when the
  // graph's input gradient is not wanted.
  Tensor<T>* grad_target(std::size_t from, Tensor<T>* dx) {
    if (nodes_[from].op == Op::input && !dx) return nullptr;
    if (from == 0) {
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

  std::vector<Tensor<T>> values_, grads_;  // per node
  std::vector<bool> has_grad_;
  bool input_grad_written_ = false;
  Tensor<T> scratch_;
  std::vector<const Tensor<T>*> merge_inputs_;
  std::vector<bool> merge_wanted_;
};

GLASSBOX_PRECOMPILED_INSTANCE(class Graph<float>)
}  // namespace glassbox
