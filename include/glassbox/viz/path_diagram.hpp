#pragma once
// A decision path (inspect/decision_path.hpp) drawn in layers, input side on
// the left: each layer's chosen units, a circle whose area grows with the
// unit's score (red: towards the class, blue: against it), and the edges
// between consecutive layers, as wide as their weight. As SVG (report.html
// shows it; every unit has a hover text) or as DOT for Graphviz.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "glassbox/core/text_output.hpp"
#include "glassbox/inspect/decision_path.hpp"
#include "glassbox/viz/dot.hpp"

namespace glassbox::viz {

namespace detail {
inline std::string unit_label(const inspect::PathLayer& layer, index_t unit) {
  return fmt::format("{} {}", layer.channels ? "channel" : "unit", unit);
}
inline const char* sign_colour(double v) { return v >= 0 ? "#b2182b" : "#2166ac"; }
}  // namespace detail

inline std::string to_svg_path(const inspect::DecisionPath& path, const std::vector<std::string>& class_names = {}) {
  const double column = 190, row = 46, left = 70, top = 52;
  std::size_t most = 1;
  double strongest = 0, widest = 0;
  for (const inspect::PathLayer& l : path.layers) {
    most = std::max(most, l.top.size());
    for (const inspect::PathUnit& u : l.top) strongest = std::max(strongest, std::abs(u.score));
  }
  for (const inspect::PathEdge& e : path.edges) widest = std::max(widest, std::abs(e.weight));
  const double width = left + column * static_cast<double>(path.layers.size() - 1) + 130;
  const double height = top + row * static_cast<double>(most) + 10;
  auto x_of = [&](std::size_t l) { return left + column * static_cast<double>(l); };
  auto y_of = [&](std::size_t l, index_t unit) {
    const auto& top_units = path.layers[l].top;
    const auto at = std::find_if(top_units.begin(), top_units.end(), [&](const auto& u) { return u.unit == unit; });
    const double offset = (static_cast<double>(most) - static_cast<double>(top_units.size())) / 2;
    return top + row * (offset + static_cast<double>(at - top_units.begin()) + 0.5);
  };
  const std::string target = static_cast<std::size_t>(path.target) < class_names.size()
                                 ? class_names[static_cast<std::size_t>(path.target)]
                                 : std::to_string(path.target);
  std::string svg = fmt::format(
      "<svg class=\"diagram path\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {0:.0f} {1:.0f}\" "
      "width=\"{0:.0f}\" height=\"{1:.0f}\" role=\"img\" font-family=\"sans-serif\" font-size=\"11\">"
      "<title>{2}</title>",
      width, height, markup_escape(fmt::format("decision path to class {} (output {:.4g})", target, path.output)));
  for (const inspect::PathEdge& e : path.edges) {
    const double w = widest > 0 ? std::abs(e.weight) / widest : 0;
    svg += fmt::format(
        "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-opacity=\"{:.2f}\" "
        "stroke-width=\"{:.2f}\"><title>{}</title></line>",
        x_of(e.layer), y_of(e.layer, e.from), x_of(e.layer + 1), y_of(e.layer + 1, e.to), detail::sign_colour(e.weight),
        0.25 + 0.6 * w, 0.5 + 6 * w,
        markup_escape(fmt::format("{} {} to {} {}: {:.4g}", path.layers[e.layer].name,
                                  detail::unit_label(path.layers[e.layer], e.from), path.layers[e.layer + 1].name,
                                  detail::unit_label(path.layers[e.layer + 1], e.to), e.weight)));
  }
  for (std::size_t l = 0; l < path.layers.size(); ++l) {
    const inspect::PathLayer& layer = path.layers[l];
    svg += fmt::format("<text x=\"{:.1f}\" y=\"16\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>", x_of(l),
                       markup_escape(layer.name));
    svg += fmt::format("<text x=\"{:.1f}\" y=\"32\" text-anchor=\"middle\" fill=\"#555\">{}</text>", x_of(l),
                       layer.output ? std::string("the class's output")
                                    : fmt::format("top {} of {} {}", layer.top.size(), layer.units,
                                                  layer.channels ? "channels" : "units"));
    for (const inspect::PathUnit& u : layer.top) {
      const double r = 4 + 12 * std::sqrt(strongest > 0 ? std::abs(u.score) / strongest : 0);
      const double y = y_of(l, u.unit);
      svg += fmt::format(
          "<g class=\"node\"><title>{}</title><circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{:.1f}\" fill=\"{}\" "
          "fill-opacity=\"0.8\" stroke=\"#333\"/><text x=\"{:.1f}\" y=\"{:.1f}\">{}</text></g>",
          markup_escape(fmt::format("{} {}: gradient x activation {:.4g}", layer.name,
                                    detail::unit_label(layer, u.unit), u.score)),
          x_of(l), y, r, detail::sign_colour(u.score), x_of(l) + r + 4, y + 4,
          markup_escape(layer.output ? fmt::format("class {}", target)
                                     : fmt::format("{}{}", layer.channels ? "ch " : "#", u.unit)));
    }
  }
  return svg + "</svg>";
}

// The same path for Graphviz: one rank per layer, left to right.
inline std::string to_dot(const inspect::DecisionPath& path) {
  std::string dot = fmt::format("digraph decision_path {{\n  rankdir=LR;\n  label=\"class {}, output {:.4g}\";\n",
                                path.target, path.output);
  for (std::size_t l = 0; l < path.layers.size(); ++l) {
    const inspect::PathLayer& layer = path.layers[l];
    dot += fmt::format("  subgraph cluster_{} {{\n    label=\"{}\";\n", l, detail::dot_escape(layer.name));
    for (const inspect::PathUnit& u : layer.top)
      dot += fmt::format("    n{}_{} [label=\"{}\\n{:.3g}\", shape=circle, color=\"{}\"];\n", l, u.unit,
                         detail::unit_label(layer, u.unit), u.score, detail::sign_colour(u.score));
    dot += "  }\n";
  }
  for (const inspect::PathEdge& e : path.edges)
    dot += fmt::format("  n{}_{} -> n{}_{} [label=\"{:.3g}\", color=\"{}\"];\n", e.layer, e.from, e.layer + 1, e.to,
                       e.weight, detail::sign_colour(e.weight));
  return dot + "}\n";
}

namespace detail {
// report.html's part (HtmlReport::add_decision_paths): the diagrams, each
// captioned, and a table of the units most often on each class's paths.
inline std::string decision_paths_html(const std::string& heading,
                                       const std::vector<std::pair<std::string, inspect::DecisionPath>>& paths,
                                       const std::vector<inspect::ClassPath>& classes,
                                       const std::vector<std::string>& class_names, const std::string& description) {
  std::string html = "<h3>" + markup_escape(heading) + "</h3>";
  if (!description.empty()) html += "<p class=\"note\">" + markup_escape(description) + "</p>";
  html += "<div class=\"pictures\" style=\"--cell: 560px\">";
  for (const auto& [caption, path] : paths)
    html += "<figure>" + to_svg_path(path, class_names) + "<figcaption>" + markup_escape(caption) +
            "</figcaption></figure>";
  html += "</div>";
  // A class no sample was taken for has no layers; the first that has them names the columns.
  const auto named = std::find_if(classes.begin(), classes.end(), [](const auto& c) { return c.samples > 0; });
  if (named != classes.end()) {
    html += "<div class=\"scroll\"><table class=\"results paths\"><tr><th>class</th><th>samples</th>";
    for (const inspect::PathLayer& l : named->layers)  // the output layer's unit is the class itself
      if (!l.output) html += "<th>" + markup_escape(l.name) + ": most often on the path</th>";
    html += "</tr>";
    for (const inspect::ClassPath& c : classes) {
      if (c.samples == 0) continue;
      const auto k = static_cast<std::size_t>(c.target);
      html += fmt::format("<tr><td>{}</td><td>{}</td>",
                          markup_escape(k < class_names.size() ? class_names[k] : std::to_string(c.target)), c.samples);
      for (const inspect::PathLayer& l : c.layers) {
        if (l.output) continue;
        std::string cell;
        for (const inspect::PathUnit& u : l.top)
          cell += fmt::format("{}{}{} ({:.0f}%)", cell.empty() ? "" : ", ", l.channels ? "ch " : "#", u.unit,
                              100 * u.score);
        html += "<td>" + cell + "</td>";
      }
      html += "</tr>";
    }
    html += "</table></div>";
  }
  return html;
}
}  // namespace detail

}  // namespace glassbox::viz
