#pragma once
// The model as a Graphviz DOT graph: one box per layer with its name, kind,
// output shape and parameter count, and, when recorders are given, the newest
// statistics they hold (mean activation, share of zeros, gradient norm).
// Graph layers become clusters with their edges. render_svg() runs
// Graphviz's `dot` when it is installed.

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/text_output.hpp"
#include "glassbox/inspect/activation_stats.hpp"
#include "glassbox/inspect/gradient_flow.hpp"
#include "glassbox/model/graph.hpp"
#include "glassbox/model/sequential.hpp"

namespace glassbox::viz {

namespace detail {
inline std::string dot_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

inline std::string shape_text(const Shape& s) {  // batch-free, as summary() prints it
  std::string r = "(N";
  for (int i = 1; i < s.rank(); ++i) r += fmt::format(", {}", s[i]);
  return r + ")";
}
}  // namespace detail

namespace detail {
// One layer's label: name, kind, output shape, parameters, newest statistics;
// `fill` gets the colour of a layer GradientFlow flags.
template <class T>
std::string dot_label(Layer<T>& layer, const Shape& shape, const inspect::ActivationStats<T>* stats,
                      const inspect::GradientFlow<T>* flow, std::string& fill) {
  std::string label =
      fmt::format("{} ({})\\n{}", dot_escape(layer.name()), dot_escape(layer.kind()), shape_text(shape));
  if (const index_t params = layer.parameter_count()) label += fmt::format("\\n{} parameters", params);
  if (stats)
    for (const auto& series : stats->all())
      if (series.name == layer.name() && !series.records.empty()) {
        const inspect::ActivationRecord& r = series.records.back();
        label += fmt::format("\\nmean {:.3g}, zeros {:.1f}%", r.mean, 100 * r.zero_fraction);
      }
  if (flow)
    for (const auto& series : flow->layers())
      if (series.name == layer.name() && !series.records.empty()) {
        const inspect::LayerGradientRecord& r = series.records.back();
        label += fmt::format("\\n|dL/dy| {:.3g}", r.norm);
        if (r.health != inspect::GradientHealth::ok) fill = ", fillcolor=\"#fddbc7\"";  // flagged layers stand out
      }
  return label;
}

// A Graph layer as a cluster of its nodes, edges as wired; returns the DOT
// name of its output node.
template <class T>
std::string dot_graph(std::string& dot, Graph<T>& graph, const std::string& id, const std::string& from,
                      const Shape& in, const inspect::ActivationStats<T>* stats, const inspect::GradientFlow<T>* flow) {
  using Node = typename Graph<T>::Node;
  const std::vector<Shape> shapes = graph.node_shapes(in);
  dot += fmt::format("  subgraph cluster_{} {{\n    label=\"{} (graph)\"; style=dashed; color=\"#999999\";\n", id,
                     dot_escape(graph.name()));
  std::vector<std::string> names{from};
  for (std::size_t j = 1; j < graph.node_count(); ++j) {
    const Node node{j};
    const std::string name = fmt::format("{}_{}", id, j);
    std::string fill;
    if (graph.op(node) == Graph<T>::Op::input) {  // a declared input, as the model's input is drawn
      dot += fmt::format(
          "    {} [shape=box, style=\"rounded,filled\", fillcolor=\"#deebf7\", label=\"{} (input)\\n{}\"];\n", name,
          dot_escape(graph.node_name(node)), shape_text(shapes[j]));
      names.push_back(name);
      continue;
    }
    const bool merge = graph.op(node) != Graph<T>::Op::layer;  // an ellipse
    dot += fmt::format("    {} [{}label=\"{}\"{}];\n", name, merge ? "shape=ellipse, style=filled, " : "",
                       dot_label(graph.layer(node), shapes[j], stats, flow, fill), fill);
    names.push_back(name);
  }
  dot += "  }\n";
  for (std::size_t j = 1; j < graph.node_count(); ++j)
    for (Node input : graph.inputs(Node{j})) dot += fmt::format("  {} -> {};\n", names[input.id], names[j]);
  return names[graph.output().id];  // several outputs: the first goes on
}
}  // namespace detail

// batch_shape: an input batch shape, e.g. {1, 1, 28, 28}; empty: the model's
// sample shape (given at construction) with a batch of 1. A Graph layer is
// drawn as a cluster of its nodes with their edges.
template <class T>
std::string to_dot(Sequential<T>& model, Shape batch_shape = Shape{},
                   const inspect::ActivationStats<T>* stats = nullptr, const inspect::GradientFlow<T>* flow = nullptr) {
  if (batch_shape.rank() == 0) {
    if (!model.sample_shape()) throw Error("to_dot: the model has no sample shape; pass the input batch shape");
    batch_shape = model.sample_shape()->batched(1);
  }
  std::string dot =
      "digraph model {\n  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#f7f7f7\", "
      "fontname=\"Helvetica\", fontsize=10];\n";
  dot += fmt::format("  input [label=\"input\\n{}\", fillcolor=\"#d1e5f0\"];\n", detail::shape_text(batch_shape));
  Shape shape = batch_shape;
  std::string previous = "input";
  for (std::size_t i = 0; i < model.size(); ++i) {
    Layer<T>& layer = model.layer(i);
    const Shape in = shape;
    shape = layer.output_shape(shape);
    const std::string node = fmt::format("layer{}", i);
    if (auto* graph = dynamic_cast<Graph<T>*>(&layer)) {
      previous = detail::dot_graph(dot, *graph, node, previous, in, stats, flow);
      continue;
    }
    std::string fill;
    dot += fmt::format("  {} [label=\"{}\"{}];\n  {} -> {};\n", node,
                       detail::dot_label(layer, shape, stats, flow, fill), fill, previous, node);
    previous = node;
  }
  return dot + "}\n";
}

template <class T>
void write_dot(const std::string& path, Sequential<T>& model, Shape batch_shape = Shape{},
               const inspect::ActivationStats<T>* stats = nullptr, const inspect::GradientFlow<T>* flow = nullptr) {
  write_text_file(path, to_dot(model, batch_shape, stats, flow));
}

// True when Graphviz's dot is on the PATH.
inline bool have_graphviz() { return std::system("dot -V >/dev/null 2>&1") == 0; }

// dot -Tsvg dot_path -o svg_path; false (and no file) when dot is missing or fails.
inline bool render_svg(const std::string& dot_path, const std::string& svg_path) {
  if (dot_path.find('\'') != std::string::npos || svg_path.find('\'') != std::string::npos)
    throw Error(fmt::format("render_svg: paths with quotes are not supported: {}, {}", dot_path, svg_path));
  if (!have_graphviz()) return false;
  const std::string temporary = svg_path + ".tmp";
  if (std::system(fmt::format("dot -Tsvg '{}' -o '{}' 2>/dev/null", dot_path, temporary).c_str()) != 0) {
    std::remove(temporary.c_str());
    return false;
  }
  return std::rename(temporary.c_str(), svg_path.c_str()) == 0;
}

GLASSBOX_PRECOMPILED_INSTANCE(std::string to_dot<float>(Sequential<float>&, Shape,
                                                        const inspect::ActivationStats<float>*,
                                                        const inspect::GradientFlow<float>*))
}  // namespace glassbox::viz
