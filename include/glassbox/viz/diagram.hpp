#pragma once
// The model as an SVG diagram laid out by glassbox itself, so that a report
// has its picture without Graphviz: one box per layer, top to bottom, with
// its name, kind, output shape, parameter count and, when recorders are
// given, their newest statistics; a residual block is drawn as its body
// beside a shortcut (a line, or the projection's box) that meet at a "+",
// and a Graph layer as its nodes in a frame, each saying what it reads.
//
//   write_text_file("model_diagram.svg", viz::to_svg_diagram(model));
//
// Box outlines tell the kind apart: rounded for layers with weights,
// narrowing trapezoids for pooling, dashed for layers that only reshape.
// Layers that GradientFlow flags are outlined in red with the reason. Every
// box carries a <title> (a hover tooltip) with all its lines, and a
// data-layer attribute with the layer's name.

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/text_output.hpp"
#include "glassbox/inspect/activation_stats.hpp"
#include "glassbox/inspect/gradient_flow.hpp"
#include "glassbox/model/graph.hpp"
#include "glassbox/model/sequential.hpp"
#include "glassbox/nn/residual.hpp"
#include "glassbox/viz/dot.hpp"

namespace glassbox::viz {

namespace detail {

// What one box shows.
struct DiagramBox {
  std::string layer;  // data-layer; empty for the input
  std::string kind;
  std::vector<std::string> lines;
  std::string alert;           // GradientFlow's reason, when flagged
  bool reshapes_only = false;  // Layer::reshapes_only(): drawn dashed
};

// Geometry shared by the layout: the main column's centre and box width,
// the shortcut column's, and the text metrics of 11 px sans-serif.
struct DiagramGeometry {
  static constexpr double main_x = 170, main_width = 300;
  static constexpr double side_x = 440, side_width = 180;
  static constexpr double width = 540, line_height = 14, padding = 8, gap = 26;
  static constexpr double char_width = 6.2;  // about, in 11 px sans-serif (see fitted)
};

inline const char* box_fill(const std::string& kind) {
  if (kind == "input") return "#deebf7";
  if (kind == "conv2d") return "#c6dbef";
  if (kind == "dense") return "#fdd0a2";
  if (kind == "lstm" || kind == "gru" || kind == "simple_rnn") return "#e5d8bd";
  if (kind == "batch_norm") return "#fff7bc";
  if (kind.find("pool") != std::string::npos) return "#c7e9c0";
  if (kind == "flatten" || kind == "reshape" || kind == "identity" || kind == "dropout") return "#f0f0f0";
  return "#efedf5";  // activations, softmax and layers users write
}

// The lines as they fit `chars` characters: a long line breaks after a
// comma, and what still does not fit is cut with "~" (the title has it all).
inline std::vector<std::string> fitted(const std::vector<std::string>& lines, std::size_t chars) {
  std::vector<std::string> out;
  for (std::string line : lines) {
    for (std::size_t at; line.size() > chars && (at = line.rfind(", ", chars - 1)) != std::string::npos && at > 0;) {
      out.push_back(line.substr(0, at + 1));
      line = line.substr(at + 2);
    }
    out.push_back(line.size() <= chars ? line : line.substr(0, chars - 1) + "~");
  }
  return out;
}

// Draws one box centred at x with its top at y; returns its height.
inline double draw_box(std::string& svg, const DiagramBox& box, double x, double y, double width) {
  using G = DiagramGeometry;
  const std::vector<std::string> lines = fitted(box.lines, static_cast<std::size_t>((width - 4) / G::char_width));
  const std::string alert = fitted({box.alert}, static_cast<std::size_t>((width - 4) / G::char_width)).front();
  const double height = 2 * G::padding + G::line_height * static_cast<double>(lines.size() + !box.alert.empty());
  const double left = x - width / 2;
  std::string title;
  for (const std::string& line : box.lines) title += (title.empty() ? "" : "\n") + line;
  if (!box.alert.empty()) title += "\n" + box.alert;
  svg += fmt::format("<g class=\"node\"{}><title>{}</title>",
                     box.layer.empty() ? "" : " data-layer=\"" + markup_escape(box.layer) + "\"", markup_escape(title));
  const std::string stroke = box.alert.empty() ? "#555" : "#b2182b";
  const std::string style =
      fmt::format("fill=\"{}\" stroke=\"{}\" stroke-width=\"{}\"{}", box_fill(box.kind), stroke,
                  box.alert.empty() ? 1 : 2.5, box.reshapes_only ? " stroke-dasharray=\"5 3\"" : "");
  if (box.kind.find("pool") != std::string::npos) {
    const double inset = 18;  // pooling shrinks the tensor: the box narrows
    svg += fmt::format("<polygon points=\"{},{} {},{} {},{} {},{}\" {}/>", left, y, left + width, y,
                       left + width - inset, y + height, left + inset, y + height, style);
  } else {
    svg +=
        fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"7\" {}/>", left, y, width, height, style);
  }
  double baseline = y + G::padding + G::line_height - 3;
  for (std::size_t i = 0; i < lines.size(); ++i, baseline += G::line_height)
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\"{}>{}</text>", x, baseline,
                       i == 0 ? " font-weight=\"bold\"" : "", markup_escape(lines[i]));
  if (!box.alert.empty())
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#b2182b\">{}</text>", x, baseline,
                       markup_escape(alert));
  svg += "</g>";
  return height;
}

inline void draw_arrow(std::string& svg, double x1, double y1, double x2, double y2) {
  svg += fmt::format(
      "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" class=\"edge\" stroke=\"#555\" "
      "marker-end=\"url(#arrow)\"/>",
      x1, y1, x2, y2);
}

template <class T>
DiagramBox box_of(Layer<T>& layer, const Shape& out, const inspect::ActivationStats<T>* stats,
                  const inspect::GradientFlow<T>* flow) {
  DiagramBox box{layer.name(),
                 layer.kind(),
                 {fmt::format("{} ({})", layer.name(), layer.kind()), shape_text(out)},
                 {},
                 layer.reshapes_only()};
  if (const index_t params = layer.parameter_count()) box.lines.back() += fmt::format(", {} parameters", params);
  if (stats)
    for (const auto& series : stats->all())
      if (series.name == layer.name() && !series.records.empty()) {
        const inspect::ActivationRecord& r = series.records.back();
        box.lines.push_back(fmt::format("mean {:.3g}, zeros {:.1f}%, dead {:.1f}%", r.mean, 100 * r.zero_fraction,
                                        100 * r.dead_fraction));
      }
  if (flow)
    for (const auto& series : flow->layers())
      if (series.name == layer.name() && !series.records.empty()) {
        const inspect::LayerGradientRecord& r = series.records.back();
        box.lines.push_back(fmt::format("|dL/dy| {:.3g} (step {})", r.norm, r.context.step));
        if (r.health != inspect::GradientHealth::ok)
          box.alert = std::string(inspect::health_name(r.health)) + " gradient";
      }
  return box;
}

// A Graph layer in a frame: its nodes in the order they run, down the main
// column; an arrow joins a node to the one before it when it reads it, and
// a node that reads others says "from ..."; a merge is a box as a layer is.
// Returns the bottom of the frame.
template <class T>
double draw_graph(std::string& svg, Graph<T>& graph, const Shape& in, double y,
                  const inspect::ActivationStats<T>* stats, const inspect::GradientFlow<T>* flow) {
  using G = DiagramGeometry;
  using Node = typename Graph<T>::Node;
  const std::vector<Shape> shapes = graph.node_shapes(in);
  const double label_room = 14, top = y + G::gap / 2 + label_room;
  std::string inner;
  double bottom = y;
  for (std::size_t j = 1; j < graph.node_count(); ++j) {
    const Node node{j};
    const std::vector<Node> inputs = graph.inputs(node);
    DiagramBox box =
        graph.op(node) == Graph<T>::Op::input  // a declared input
            ? DiagramBox{{}, "input", {graph.node_name(node) + " (input)", shape_text(shapes[j])}, {}, false}
            : box_of(graph.layer(node), shapes[j], stats, flow);
    const bool reads_previous = inputs.size() == 1 && inputs[0].id == j - 1;
    if (!reads_previous) {
      std::string from;
      for (Node input : inputs) from += (from.empty() ? "from " : ", ") + graph.node_name(input);
      box.lines.push_back(from);
    }
    const double box_top = (j == 1 ? top : bottom) + G::gap;
    if (reads_previous) draw_arrow(inner, G::main_x, j == 1 ? y : bottom, G::main_x, box_top);
    bottom = box_top + draw_box(inner, box, G::main_x, box_top, G::main_width);
  }
  const double frame_bottom = bottom + 10;
  svg += fmt::format(
      "<g class=\"block\" data-layer=\"{0}\"><title>{0} (graph): output {1}, {2} parameters</title>"
      "<rect x=\"8\" y=\"{3}\" width=\"{4}\" height=\"{5}\" rx=\"10\" fill=\"none\" stroke=\"#999\" "
      "stroke-dasharray=\"6 4\"/><text x=\"{6}\" y=\"{7}\" text-anchor=\"end\" fill=\"#666\" "
      "font-style=\"italic\">{0} (graph) {1}</text></g>",
      markup_escape(graph.name()), shape_text(shapes[graph.output().id]), graph.parameter_count(), top - label_room - 6,
      G::width - 16, frame_bottom - top + label_room + 6, G::width - 18, top - 6);
  svg += inner;
  return frame_bottom;
}

}  // namespace detail

// batch_shape: an input batch shape, e.g. {1, 1, 28, 28}; empty: the model's
// sample shape with a batch of 1 (as to_dot).
template <class T>
std::string to_svg_diagram(Sequential<T>& model, Shape batch_shape = Shape{},
                           const inspect::ActivationStats<T>* stats = nullptr,
                           const inspect::GradientFlow<T>* flow = nullptr) {
  using G = detail::DiagramGeometry;
  if (batch_shape.rank() == 0) {
    if (!model.sample_shape()) throw Error("to_svg_diagram: the model has no sample shape; pass the input batch shape");
    batch_shape = model.sample_shape()->batched(1);
  }
  std::string body;
  double y = 12;
  y += detail::draw_box(body, {{}, "input", {"input", detail::shape_text(batch_shape)}, {}, false}, G::main_x, y,
                        G::main_width);
  Shape shape = batch_shape;
  for (std::size_t i = 0; i < model.size(); ++i) {
    Layer<T>& layer = model.layer(i);
    if (auto* graph = dynamic_cast<Graph<T>*>(&layer)) {
      y = detail::draw_graph(body, *graph, shape, y, stats, flow);
      shape = layer.output_shape(shape);
      continue;
    }
    auto* block = dynamic_cast<nn::Residual<T>*>(&layer);
    if (!block) {
      shape = layer.output_shape(shape);
      detail::draw_arrow(body, G::main_x, y, G::main_x, y + G::gap);
      y += G::gap +
           detail::draw_box(body, detail::box_of(layer, shape, stats, flow), G::main_x, y + G::gap, G::main_width);
      continue;
    }
    // The block: a frame with its name at the top right (clear of the
    // lines); the body down the main column, the shortcut down the side
    // column, joined at "+".
    const double label_room = 14, fork = y + G::gap / 2 + label_room, top = y + G::gap + label_room;
    std::string inner;
    detail::draw_arrow(inner, G::main_x, y, G::main_x, top + G::gap);
    Shape body_shape = shape;
    double bottom = top + G::gap;
    for (std::size_t k = 0; k < block->size(); ++k) {
      body_shape = block->body(k).output_shape(body_shape);
      if (k > 0) {
        detail::draw_arrow(inner, G::main_x, bottom, G::main_x, bottom + G::gap);
        bottom += G::gap;
      }
      bottom += detail::draw_box(inner, detail::box_of(block->body(k), body_shape, stats, flow), G::main_x, bottom,
                                 G::main_width);
    }
    const double plus_y = bottom + G::gap + 10;  // the "+" circle's centre (radius 10)
    detail::draw_arrow(inner, G::main_x, bottom, G::main_x, plus_y - 10);
    if (block->has_projection()) {
      const double side_top = top + G::gap;
      inner += fmt::format(
          "<polyline points=\"{},{} {},{} {},{}\" fill=\"none\" stroke=\"#555\" "
          "marker-end=\"url(#arrow)\"/>",
          G::main_x, fork, G::side_x, fork, G::side_x, side_top);
      const double h = detail::draw_box(inner, detail::box_of(block->shortcut(), body_shape, stats, flow), G::side_x,
                                        side_top, G::side_width);
      inner += fmt::format(
          "<polyline points=\"{},{} {},{} {},{}\" fill=\"none\" stroke=\"#555\" "
          "marker-end=\"url(#arrow)\"/>",
          G::side_x, side_top + h, G::side_x, plus_y, G::main_x + 10, plus_y);
    } else {
      inner += fmt::format(
          "<polyline points=\"{},{} {},{} {},{} {},{}\" fill=\"none\" stroke=\"#555\" "
          "marker-end=\"url(#arrow)\"/>",
          G::main_x, fork, G::side_x, fork, G::side_x, plus_y, G::main_x + 10, plus_y);
      inner += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"#666\" font-style=\"italic\">identity</text>", G::side_x + 6,
                           (fork + plus_y) / 2);
    }
    inner += fmt::format(
        "<circle cx=\"{}\" cy=\"{}\" r=\"10\" fill=\"#fff\" stroke=\"#555\"/><text x=\"{}\" "
        "y=\"{}\" text-anchor=\"middle\" font-size=\"14\">+</text>",
        G::main_x, plus_y, G::main_x, plus_y + 5);
    shape = layer.output_shape(shape);
    const double frame_bottom = plus_y + 16;
    body += fmt::format(
        "<g class=\"block\" data-layer=\"{0}\"><title>{0} (residual): output {1}, {2} parameters</title>"
        "<rect x=\"8\" y=\"{3}\" width=\"{4}\" height=\"{5}\" rx=\"10\" fill=\"none\" stroke=\"#999\" "
        "stroke-dasharray=\"6 4\"/><text x=\"{6}\" y=\"{7}\" text-anchor=\"end\" fill=\"#666\" "
        "font-style=\"italic\">{0} (residual) {1}</text></g>",
        markup_escape(layer.name()), detail::shape_text(shape), layer.parameter_count(), fork - label_room - 6,
        G::width - 16, frame_bottom - fork + label_room + 6, G::width - 18, fork - 6);
    body += inner;
    y = plus_y + 10;
  }
  const double height = y + 12;
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"diagram\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} "
      "{1}\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\" aria-label=\"model diagram\"><defs><marker "
      "id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" "
      "orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>{2}</svg>",
      G::width, height, body);
}

GLASSBOX_PRECOMPILED_INSTANCE(std::string to_svg_diagram<float>(Sequential<float>&, Shape,
                                                                const inspect::ActivationStats<float>*,
                                                                const inspect::GradientFlow<float>*))
}  // namespace glassbox::viz
