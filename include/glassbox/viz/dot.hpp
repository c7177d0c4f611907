#pragma once
// The model as a Graphviz DOT graph: one box per layer with its name, kind,
// output shape and parameter count, and, when recorders are given, the newest
// statistics they hold (mean activation, share of zeros, gradient norm).
// render_svg() runs Graphviz's `dot` when it is installed.

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/text_output.hpp"
#include "glassbox/inspect/activation_stats.hpp"
#include "glassbox/inspect/gradient_flow.hpp"
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

// batch_shape: an input batch shape, e.g. {1, 1, 28, 28}; empty: the model's
// sample shape (given at construction) with a batch of 1.
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
    shape = layer.output_shape(shape);
    std::string label = fmt::format("{} ({})\\n{}", detail::dot_escape(layer.name()), detail::dot_escape(layer.kind()),
                                    detail::shape_text(shape));
    if (const index_t params = layer.parameter_count()) label += fmt::format("\\n{} parameters", params);
    if (stats)
      for (const auto& series : stats->all())
        if (series.layer_index == i && !series.records.empty()) {
          const inspect::ActivationRecord& r = series.records.back();
          label += fmt::format("\\nmean {:.3g}, zeros {:.1f}%", r.mean, 100 * r.zero_fraction);
        }
    std::string fill;
    if (flow)
      for (const auto& series : flow->layers())
        if (series.layer_index == i && !series.records.empty()) {
          const inspect::LayerGradientRecord& r = series.records.back();
          label += fmt::format("\\n|dL/dy| {:.3g}", r.norm);
          if (r.health != inspect::GradientHealth::ok) fill = ", fillcolor=\"#fddbc7\"";  // flagged layers stand out
        }
    const std::string node = fmt::format("layer{}", i);
    dot += fmt::format("  {} [label=\"{}\"{}];\n  {} -> {};\n", node, label, fill, previous, node);
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
