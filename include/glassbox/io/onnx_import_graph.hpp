#pragma once
// ONNX import, walking the graph: it is cut into pieces where one tensor
// alone is live; a piece that branches and is neither GELU nor a residual
// block becomes a Graph layer, and the nodes of a Graph that glassbox
// exported become one again. Out-of-class definitions of
// io/onnx_import.hpp's Importer, which includes this file; include that one.
//
// How a piece (nodes computing `out` from `in`, branching in between)
// becomes graph nodes: a tensor t is built from the largest single-entry,
// single-exit region that ends in t (nodes between a tensor d that every
// path from `in` to t passes through, and t, whose other tensors nothing
// outside reads). Such a region is a chain again, converted as one (so
// Conv + Relu fuse, GELU and residual blocks are found, deeper branches
// nest); where there is none, t is a merge (Add, Sum, Mul, Concat) of the
// tensors it reads, each built the same way.

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "glassbox/io/onnx_import.hpp"

namespace glassbox::io::onnx_detail {

// Cuts where one tensor alone is live; a piece of one node is one layer (or
// is absorbed by the op before it), a piece of several is GELU, a residual
// block or a Graph; a run of pieces that glassbox exported as one Graph is
// one Graph again.
template <class T>
void Importer<T>::chain(const std::vector<const OnnxNode*>& nodes, const std::string& input, const std::string& output,
                        Sink& sink) {
  std::map<std::string, int> uses{{output, 1}};
  for (const OnnxNode* n : nodes)
    for (const std::string& in : n->inputs)
      if (dynamic(in)) ++uses[in];
  std::vector<Segment> segments;
  std::set<std::string> live{input};
  Segment current{{}, input, {}};
  for (const OnnxNode* n : nodes) {
    bool reads_live = false;
    for (const std::string& in : n->inputs)
      if (dynamic(in)) {
        reads_live = true;
        if (--uses[in] == 0) live.erase(in);
      }
    if (!reads_live) fail(*n, "computes from constants only; glassbox does not fold constant subgraphs");
    for (const std::string& out : n->outputs)
      if (!out.empty() && uses[out] > 0) live.insert(out);
    current.nodes.push_back(n);
    if (live.size() == 1) {
      current.out = *live.begin();
      segments.push_back(current);
      current = Segment{{}, current.out, {}};
    }
  }
  if (!current.nodes.empty() || (segments.empty() ? input : segments.back().out) != output)
    throw Error(fmt::format("{}: the graph does not end in '{}' as one chain", where_, output));
  const std::vector<std::size_t> group_end = graph_groups(segments, sink.prefix);
  for (std::size_t i = 0; i < segments.size(); ++i) {
    // The one-node pieces that follow, which some ops absorb.
    std::vector<const OnnxNode*> following;
    for (std::size_t k = i + 1;
         k < segments.size() && segments[k].nodes.size() == 1 && following.size() < 6 && group_end[k] == no_group; ++k)
      following.push_back(segments[k].nodes[0]);
    try {
      if (group_end[i] != no_group) {
        // A Graph exported by glassbox: its nodes, branching or not, are one layer again.
        std::vector<const OnnxNode*> nodes;
        for (std::size_t k = i; k <= group_end[i]; ++k)
          nodes.insert(nodes.end(), segments[k].nodes.begin(), segments[k].nodes.end());
        const std::string& block = graph_block_of(*segments[i].nodes[0], sink.prefix);
        graph(nodes, segments[i].in, segments[group_end[i]].out, block.substr(sink.prefix.size()), block + ".", true,
              sink);
        i = group_end[i];
      } else if (const std::size_t merged = gelu(segments, i, sink)) {
        i += merged - 1;
      } else if (segments[i].nodes.size() == 1) {
        i += single(*segments[i].nodes[0], segments[i].in, following, sink);
      } else if (!residual(segments[i], sink)) {
        std::string name = segments[i].nodes.back()->name;
        if (!sink.prefix.empty() && name.compare(0, sink.prefix.size(), sink.prefix) == 0)
          name.erase(0, sink.prefix.size());
        graph(segments[i].nodes, segments[i].in, segments[i].out, layer_name(name, "graph"), sink.prefix, false, sink);
      }
    } catch (const Error& e) {
      // A layer's own checks (sizes, rates, shapes) do not know the file or the node: say them.
      if (std::string_view(e.what()).substr(0, where_.size()) == where_) throw;
      throw Error(fmt::format("{}: {}: {}", where_, segments[i].nodes.back()->label(), e.what()));
    }
  }
}

template <class T>
std::vector<std::size_t> Importer<T>::graph_groups(const std::vector<Segment>& segments,
                                                   const std::string& prefix) const {
  std::vector<std::size_t> end(segments.size(), no_group);
  for (std::size_t i = 0; i < segments.size();) {
    const std::string& block = graph_block_of(*segments[i].nodes[0], prefix);
    std::size_t k = i;
    while (!block.empty() && k < segments.size() && in_block(segments[k], block)) ++k;
    if (k == i) {
      ++i;
      continue;
    }
    end[i] = k - 1;
    i = k;
  }
  return end;
}

template <class T>
bool Importer<T>::in_block(const Segment& s, const std::string& block) const {
  for (const OnnxNode* n : s.nodes)
    if (n->name.compare(0, block.size() + 1, block + ".") != 0) return false;
  return true;
}

template <class T>
const std::string& Importer<T>::graph_block_of(const OnnxNode& n, const std::string& prefix) const {
  static const std::string none;
  for (const std::string& block : graph_layers_)
    if (block.size() > prefix.size() && block.compare(0, prefix.size(), prefix) == 0 &&
        block.find('.', prefix.size()) == std::string::npos && n.name.compare(0, block.size() + 1, block + ".") == 0)
      return block;
  return none;
}

template <class T>
struct Importer<T>::GraphPiece {
  using Node = typename Graph<T>::Node;
  std::string in, out;
  std::vector<const OnnxNode*> nodes;
  std::map<const OnnxNode*, std::size_t> position;
  std::map<std::string, std::size_t> index;  // tensor -> 0 for `in`, then in the order nodes write them
  std::vector<std::string> tensors;
  std::vector<std::size_t> dominator;  // the immediate one, by index
  std::map<std::string, const OnnxNode*> producer;
  std::map<std::string, std::vector<const OnnxNode*>> readers;
  // What builds each tensor, planned first and then run in the file's
  // order, so that a graph glassbox exported comes back with its nodes in
  // their order. Step 0 is the graph's input.
  struct Step {
    const OnnxNode* last = nullptr;       // the step's final node
    std::vector<const OnnxNode*> region;  // a chain; empty for a merge
    std::string from, to;                 // the chain's ends
    std::vector<std::size_t> inputs;      // steps read
  };
  std::vector<Step> steps{Step{}};
  std::map<std::string, std::size_t> planned;  // tensor -> step
  std::map<std::size_t, Shape> shapes;         // of graph nodes, batch 1
  std::set<std::string> names;                 // of graph nodes
  std::string prefix;
  // A Graph glassbox exported: only one child layer's nodes ("<prefix><child>",
  // "<prefix><child>/..." or "<prefix><child>.<...>") make a chain, so that
  // every merge comes back as a merge of this graph.
  bool exported = false;
  std::string owner(const OnnxNode& n) const {
    const std::size_t end = n.name.find_first_of("./", prefix.size());
    return n.name.substr(prefix.size(), end == std::string::npos ? std::string::npos : end - prefix.size());
  }
  Graph<T>* graph = nullptr;
  std::size_t work = 0;  // region steps walked, bounded against hostile files
};

template <class T>
void Importer<T>::graph(const std::vector<const OnnxNode*>& nodes, const std::string& in, const std::string& out,
                        std::string name, const std::string& prefix, bool exported, Sink& sink) {
  const OnnxNode& last = *nodes.back();
  if (nodes.size() > max_graph_nodes)
    fail(last,
         fmt::format("ends a branching part of {} nodes; glassbox imports at most {}", nodes.size(), max_graph_nodes));
  const Nesting nesting(*this, last);

  auto owned = std::make_unique<Graph<T>>();
  GraphPiece p;
  p.in = in;
  p.out = out;
  p.nodes = nodes;
  p.prefix = prefix;
  p.exported = exported;
  p.graph = owned.get();
  p.index[in] = 0;
  p.tensors.push_back(in);
  p.dominator.push_back(0);
  p.shapes[0] = sink.shape;
  p.names.insert("input");
  for (const OnnxNode* n : nodes) {
    p.position[n] = p.position.size();
    std::size_t common = 0;
    bool first = true;
    for (const std::string& t : n->inputs) {
      if (!dynamic(t)) continue;
      const auto at = p.index.find(t);
      if (at == p.index.end())
        fail(*n, fmt::format("reads '{}', which the branching part around it does not compute", t));
      p.readers[t].push_back(n);
      // The nearest tensor on every path to all the inputs so far.
      std::size_t a = at->second, b = first ? a : common;
      while (a != b) {
        while (a > b) a = p.dominator[a];
        while (b > a) b = p.dominator[b];
      }
      common = a;
      first = false;
    }
    for (const std::string& t : n->outputs) {
      if (t.empty()) continue;
      p.index[t] = p.tensors.size();
      p.tensors.push_back(t);
      p.dominator.push_back(common);
      p.producer[t] = n;
    }
  }
  if (!p.index.count(out)) fail(last, fmt::format("the branching part does not compute '{}'", out));
  const std::size_t final_step = plan(p, out);
  std::vector<std::size_t> order;
  for (std::size_t k = 1; k < p.steps.size(); ++k) order.push_back(k);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return p.position.at(p.steps[a].last) < p.position.at(p.steps[b].last);
  });
  std::vector<typename GraphPiece::Node> built(p.steps.size());
  built[0] = owned->input();
  for (const std::size_t k : order) built[k] = run_step(p, p.steps[k], built);
  const typename GraphPiece::Node result = built[final_step];
  if (p.steps[final_step].last->op != graph_outputs_op) owned->set_output(result);  // else set by the step
  if (name.empty() || name == "input") name = "graph";
  Layer<T>* raw = owned.get();
  sink.add(std::move(owned), name);
  sink.shape = raw->output_shape(sink.shape);
  ++sink.layers;
}

template <class T>
bool Importer<T>::closed_region(GraphPiece& p, std::size_t from, std::size_t to,
                                std::vector<const OnnxNode*>& region) const {
  std::set<const OnnxNode*> inside;
  std::vector<std::size_t> pending{to};
  while (!pending.empty()) {
    const std::size_t t = pending.back();
    pending.pop_back();
    if (t == from) continue;
    const OnnxNode* n = p.producer.at(p.tensors[t]);
    if (++p.work > max_graph_work) fail(*n, "the branching part is too intricate to import (too many paths)");
    if (!inside.insert(n).second) continue;
    for (const std::string& in : n->inputs)
      if (dynamic(in)) pending.push_back(p.index.at(in));
  }
  for (const OnnxNode* n : inside)
    for (const std::string& t : n->outputs) {
      if (t.empty() || t == p.tensors[to]) continue;
      if (t == p.out) return false;
      for (const OnnxNode* reader : p.readers[t])
        if (!inside.count(reader)) return false;
    }
  region.assign(inside.begin(), inside.end());
  std::sort(region.begin(), region.end(),
            [&](const OnnxNode* a, const OnnxNode* b) { return p.position.at(a) < p.position.at(b); });
  return true;
}

template <class T>
bool Importer<T>::one_layer(const GraphPiece& p, const std::vector<const OnnxNode*>& region) const {
  bool merges_only = true;
  for (const OnnxNode* n : region) {
    if (p.owner(*n) != p.owner(*region.back())) return false;
    int computed = 0;
    for (const std::string& in : n->inputs) computed += dynamic(in);
    merges_only = merges_only && computed > 1;
  }
  return !merges_only;
}

template <class T>
std::size_t Importer<T>::plan(GraphPiece& p, const std::string& tensor) {
  if (tensor == p.in) return 0;
  if (const auto done = p.planned.find(tensor); done != p.planned.end()) return done->second;
  const std::size_t t = p.index.at(tensor);
  std::vector<std::size_t> dominators;  // nearest first
  for (std::size_t d = p.dominator[t];; d = p.dominator[d]) {
    dominators.push_back(d);
    if (d == 0) break;
  }
  typename GraphPiece::Step step;
  if (const OnnxNode* unpack = p.producer.at(tensor); unpack->op == graph_input_op) {  // one of several inputs
    step.last = unpack;
    p.steps.push_back(std::move(step));
    return p.planned[tensor] = p.steps.size() - 1;
  }
  for (auto d = dominators.rbegin(); d != dominators.rend(); ++d) {
    if (*d == 0 && tensor == p.out) continue;  // the whole piece: it branches, so it is not a chain
    if (!closed_region(p, *d, t, step.region)) continue;
    if (std::any_of(step.region.begin(), step.region.end(), [&](const OnnxNode* n) { return is_virtual(*n); }))
      continue;  // (un)packing is the graph's own
    if (p.exported && !one_layer(p, step.region)) continue;
    step.from = p.tensors[*d];
    step.to = tensor;
    step.last = step.region.back();
    step.inputs.push_back(plan(p, step.from));
    p.steps.push_back(std::move(step));
    return p.planned[tensor] = p.steps.size() - 1;
  }
  // A merge of the tensors it reads.
  step.region.clear();
  const OnnxNode& n = *p.producer.at(tensor);
  // glassbox writes a product of k inputs as k - 1 Mul nodes, "<merge>/1" ...
  // "<merge>": they are one multiply again.
  std::vector<std::string> operands;
  const std::function<void(const OnnxNode&)> collect = [&](const OnnxNode& m) {
    for (const std::string& in : m.inputs) {
      const auto from = p.producer.find(in);
      if (p.exported && n.op == "Mul" && from != p.producer.end() && from->second->op == "Mul" &&
          from->second->name.compare(0, n.name.size() + 1, n.name + "/") == 0 && p.readers[in].size() == 1)
        collect(*from->second);
      else
        operands.push_back(in);
    }
  };
  collect(n);
  for (const std::string& in : operands) {
    if (!dynamic(in))
      fail(n, fmt::format("merges the constant '{}' with computed tensors; glassbox merges computed tensors only", in));
    step.inputs.push_back(plan(p, in));
  }
  if (step.inputs.size() < 2)
    fail(n, "has outputs that separate branches read; glassbox imports a node's outputs only on one branch");
  step.last = &n;
  p.steps.push_back(std::move(step));
  return p.planned[tensor] = p.steps.size() - 1;
}

// A merge's name from its node's, as a layer's (empty: kind_N).
template <class T>
std::string Importer<T>::merge_name(const GraphPiece& p, const OnnxNode& n, const char* kind) const {
  std::string name = n.name;
  if (!p.prefix.empty() && name.compare(0, p.prefix.size(), p.prefix) == 0) name.erase(0, p.prefix.size());
  name = layer_name(name, kind);
  return p.names.count(name) ? std::string() : name;
}

template <class T>
typename Graph<T>::Node Importer<T>::run_step(GraphPiece& p, const typename GraphPiece::Step& step,
                                              const std::vector<typename Graph<T>::Node>& built) {
  using Node = typename Graph<T>::Node;
  Graph<T>& g = *p.graph;
  if (!step.region.empty()) {  // a chain, converted as one
    Node current = built[step.inputs[0]];
    Sink chain_sink;
    chain_sink.shape = p.shapes.at(current.id);
    chain_sink.prefix = p.prefix;
    chain_sink.add = [&](std::unique_ptr<Layer<T>> layer, const std::string& name) {
      current = g.add(current, std::move(layer), p.names.count(name) ? std::string() : name);
      p.names.insert(g.node_name(current));
    };
    chain(step.region, step.from, step.to, chain_sink);
    p.shapes[current.id] = chain_sink.shape;
    return current;
  }
  const OnnxNode& n = *step.last;
  if (n.op == graph_input_op) {
    const Node input = g.input(declared_inputs_.at(n.outputs[0]), merge_name(p, n, "input"));
    p.names.insert(g.node_name(input));
    p.shapes[input.id] = declared_inputs_.at(n.outputs[0]).batched(1);
    return input;
  }
  std::vector<Node> inputs;
  for (const std::size_t k : step.inputs) inputs.push_back(built[k]);
  if (n.op == graph_outputs_op) {
    g.set_outputs(inputs);
    return inputs[0];
  }
  const Shape& first = p.shapes.at(inputs[0].id);
  Shape shape = first;
  // The merged shape by GraphMerge's own rules, input by input, so that the
  // error names the two shapes that do not fit.
  const auto merge_shapes = [&](MergeOp op, int axis, const char* why) {
    for (std::size_t i = 1; i < inputs.size(); ++i) {
      const Shape& other = p.shapes.at(inputs[i].id);
      try {
        shape = GraphMerge<T>::merged_shape(n.name, op, axis, {shape, other}, {"", ""});
      } catch (const Error&) {
        fail(n, fmt::format(fmt::runtime(why), first.str(), other.str(), axis));
      }
    }
  };
  Node merged;
  if (n.op == "Concat") {
    allow(n, {"axis"});
    const OnnxAttribute* a = typed(n, "axis", OnnxAttribute::int_);
    if (!a) fail(n, "has no 'axis'");
    const std::int64_t axis = a->i < 0 ? a->i + first.rank() : a->i;
    if (axis < 1 || axis >= first.rank())
      fail(n, fmt::format("attribute 'axis' = {} is not supported (glassbox concatenates along a non-batch axis of "
                          "its rank-{} inputs)",
                          a->i, first.rank()));
    merge_shapes(MergeOp::concat, static_cast<int>(axis), "concatenates {} and {} along axis {}");
    merged = g.concat(inputs, static_cast<int>(a->i), merge_name(p, n, "concat"));
  } else if (n.op == "Add" || n.op == "Sum" || n.op == "Mul") {
    allow(n, {});
    merge_shapes(n.op == "Mul" ? MergeOp::multiply : MergeOp::sum, 1,
                 "merges {} with {}; glassbox broadcasts only dimensions of 1, within one rank");
    merged = n.op == "Mul" ? g.multiply(inputs, merge_name(p, n, "multiply")) : g.sum(inputs, merge_name(p, n, "sum"));
  } else {
    fail(n, fmt::format("combines {} computed tensors; glassbox merges branches with Add, Sum, Mul or Concat",
                        inputs.size()));
  }
  p.names.insert(g.node_name(merged));
  p.shapes[merged.id] = shape;
  return merged;
}

// The nodes that unpack several inputs and pack several outputs (see the class).
template <class T>
const OnnxNode& Importer<T>::virtual_node(const char* op, std::vector<std::string> inputs,
                                          std::vector<std::string> outputs, const OnnxNode* neighbour) {
  OnnxNode n;
  n.op = op;
  const std::string block = neighbour ? graph_block_of(*neighbour, "") : std::string();
  n.name = (block.empty() ? "" : block + ".") + (n.op == graph_input_op ? outputs[0] : std::string("outputs"));
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  virtual_nodes_.push_back(std::move(n));
  return virtual_nodes_.back();
}

}  // namespace glassbox::io::onnx_detail
