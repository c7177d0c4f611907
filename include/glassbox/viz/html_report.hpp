#pragma once
// One self-contained report.html per run: no network needed to view it (the
// data is inline JSON, the pictures inline PNG, the charts inline SVG drawn by
// a little inline script). Sections, each added when you have it:
//
//   model          the network diagram (Graphviz SVG when `dot` is installed,
//                  otherwise a column of boxes) and the summary table
//   training       loss and accuracy per epoch (train and validation)
//   activations    per layer, the activation histogram of any recorded step
//                  (pick the layer and the step), and mean/zeros over steps
//   gradients      the classic gradient-flow plot: per layer, the gradient
//                  norm wrt the output at any recorded step (log scale)
//   pictures       any images (filters, feature maps, saliency)
//
// Hovering a point or bar shows its value. When the script has drawn every
// section it sets <body data-rendered="ok">; an error anywhere sets
// data-errors, which the tests check in headless Chromium.

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/text_output.hpp"
#include "glassbox/inspect/activation_stats.hpp"
#include "glassbox/inspect/gradient_flow.hpp"
#include "glassbox/train/history.hpp"
#include "glassbox/viz/dot.hpp"
#include "glassbox/viz/png.hpp"

namespace glassbox::viz {

inline std::string base64(const std::string& bytes) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::uint32_t b0 = static_cast<unsigned char>(bytes[i]);
    const std::uint32_t b1 = i + 1 < bytes.size() ? static_cast<unsigned char>(bytes[i + 1]) : 0;
    const std::uint32_t b2 = i + 2 < bytes.size() ? static_cast<unsigned char>(bytes[i + 2]) : 0;
    const std::uint32_t n = b0 << 16 | b1 << 8 | b2;
    out += alphabet[n >> 18 & 63];
    out += alphabet[n >> 12 & 63];
    out += i + 1 < bytes.size() ? alphabet[n >> 6 & 63] : '=';
    out += i + 2 < bytes.size() ? alphabet[n & 63] : '=';
  }
  return out;
}

namespace detail {
inline std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  return out;
}

// JSON inside <script>: every '<' as \u003c (JSON reads it back as '<'),
// so no "</script>" or "<!--" can change how the page parses.
inline std::string script_safe(const std::string& json) {
  std::string out;
  for (char c : json) out += c == '<' ? std::string("\\u003c") : std::string(1, c);
  return out;
}

inline std::string numbers_json(const std::vector<double>& values) {
  std::string s = "[";
  for (std::size_t i = 0; i < values.size(); ++i) s += (i ? "," : "") + json_number(values[i]);
  return s + "]";
}

inline const char* report_script() {
  return R"JS(
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function tip(e, text) { el("title", {}, e).textContent = text; }
  function fmt(v) { return v === null ? "n/a" : Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : (+v.toPrecision(4)).toString(); }
  // A chart frame: maps data coordinates to pixels, draws axes and labels.
  function frame(host, xs, ys, opts) {
    const W = 560, H = 260, L = 64, R = 16, T = 14, B = 40;
    const svg = el("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, class: "chart"}, host);
    const finite = ys.filter(v => v !== null && isFinite(v));
    if (!finite.length) finite.push(0);  // e.g. accuracy of a regression: an empty chart, not NaN coordinates
    let y0 = opts.y0 !== undefined ? opts.y0 : Math.min(...finite), y1 = Math.max(...finite);
    if (!(y1 > y0)) { y1 = y0 + 1; }
    let x0 = Math.min(...xs), x1 = Math.max(...xs);
    if (!(x1 > x0)) { x1 = x0 + 1; }
    const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R), sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
    el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis"}, svg);
    el("line", {x1: L, y1: T, x2: L, y2: H - B, class: "axis"}, svg);
    for (let i = 0; i <= 4; ++i) {
      const y = y0 + (y1 - y0) * i / 4;
      el("text", {x: L - 6, y: sy(y) + 4, "text-anchor": "end", class: "tick"}, svg).textContent = opts.ylabels ? opts.ylabels(y) : fmt(y);
      el("line", {x1: L, y1: sy(y), x2: W - R, y2: sy(y), class: "grid"}, svg);
    }
    el("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "label"}, svg).textContent = opts.xlabel || "";
    if (opts.xticks)
      for (let i = 0; i <= 4; ++i) {
        const x = x0 + (x1 - x0) * i / 4;
        el("text", {x: sx(x), y: H - B + 14, "text-anchor": "middle", class: "tick"}, svg).textContent = fmt(x);
      }
    return {svg, sx, sy, x0, x1};
  }
  function lineChart(host, series, xlabel) {
    const xs = [], ys = [];
    series.forEach(s => s.points.forEach(p => { xs.push(p[0]); ys.push(p[1]); }));
    if (!xs.length) { host.textContent = "no data"; return; }
    const f = frame(host, xs, ys, {xlabel, xticks: true});
    series.forEach((s, k) => {
      const pts = s.points.filter(p => p[1] !== null);
      el("polyline", {points: pts.map(p => f.sx(p[0]) + "," + f.sy(p[1])).join(" "), class: "line c" + k}, f.svg);
      pts.forEach(p => tip(el("circle", {cx: f.sx(p[0]), cy: f.sy(p[1]), r: 4, class: "dot c" + k}, f.svg), s.name + " at " + xlabel + " " + p[0] + ": " + fmt(p[1])));
      el("text", {x: 72 + 150 * k, y: 12, class: "legend c" + k}, f.svg).textContent = s.name;
    });
  }
  function bars(host, labels, values, opts) {
    const f = frame(host, [0, labels.length], values.concat(opts.y0 !== undefined ? [opts.y0] : []), opts);
    const w = (f.sx(1) - f.sx(0)) * 0.8;
    labels.forEach((label, i) => {
      const v = values[i];
      if (v === null || !isFinite(v)) return;
      const x = f.sx(i) + w * 0.125, y = f.sy(v), base = f.sy(opts.y0 !== undefined ? opts.y0 : Math.min(...values));
      tip(el("rect", {x, y: Math.min(y, base), width: w, height: Math.max(1, Math.abs(base - y)), class: "bar"}, f.svg), label + ": " + (opts.tip ? opts.tip(v) : fmt(v)));
      if (opts.names) el("text", {x: x + w / 2, y: 234, "text-anchor": "middle", class: "tick"}, f.svg).textContent = label;
    });
  }
  function picker(host, name, options, onchange) {
    const label = document.createElement("label");
    label.textContent = name + " ";
    const select = document.createElement("select");
    select.name = name;
    options.forEach((o, i) => { const opt = document.createElement("option"); opt.value = i; opt.textContent = o; select.appendChild(opt); });
    select.onchange = () => onchange(+select.value);
    label.appendChild(select);
    host.appendChild(label);
    return select;
  }
  // ---- sections
  if (data.history) {
    const h = data.history, host = document.getElementById("training-charts");
    const epochs = h.map(e => e.epoch + 1), pts = k => h.map((e, i) => [epochs[i], e[k]]);
    lineChart(host.appendChild(document.createElement("div")), [{name: "loss", points: pts("loss")}, {name: "validation loss", points: pts("val_loss")}], "epoch");
    lineChart(host.appendChild(document.createElement("div")), [{name: "accuracy", points: pts("accuracy")}, {name: "validation accuracy", points: pts("val_accuracy")}], "epoch");
  }
  if (data.activations) {
    const layers = data.activations, host = document.getElementById("activation-charts");
    const controls = host.appendChild(document.createElement("div")), histogram = host.appendChild(document.createElement("div"));
    const trend = host.appendChild(document.createElement("div"));
    let layer = 0, record = 0, stepSelect = null;
    function draw() {
      histogram.textContent = ""; trend.textContent = "";
      const r = layers[layer].records[record];
      const n = r.counts.length, w = (r.high - r.low) / Math.max(1, n);
      const labels = r.counts.map((c, i) => "[" + fmt(r.low + i * w) + ", " + fmt(r.low + (i + 1) * w) + ")");
      bars(histogram, labels, r.counts, {y0: 0, xlabel: layers[layer].layer + " output values, step " + r.step + " (" + fmt(r.low) + " to " + fmt(r.high) + ")", tip: c => c + " values"});
      lineChart(trend, [{name: "mean", points: layers[layer].records.map(q => [q.step, q.mean])}, {name: "share of zeros", points: layers[layer].records.map(q => [q.step, q.zero_fraction])}], "step");
    }
    picker(controls, "layer", layers.map(l => l.layer), i => { layer = i; record = layers[i].records.length - 1; fillSteps(); draw(); });
    function fillSteps() {
      if (stepSelect) stepSelect.parentNode.remove();
      stepSelect = picker(controls, "step", layers[layer].records.map(r => r.step), i => { record = i; draw(); });
      stepSelect.value = record;
    }
    record = layers[0].records.length - 1;
    fillSteps();
    draw();
  }
  if (data.gradients) {
    const g = data.gradients, host = document.getElementById("gradient-charts");
    const controls = host.appendChild(document.createElement("div")), chart = host.appendChild(document.createElement("div"));
    const steps = g.steps;
    let index = steps.length - 1;
    function draw() {
      chart.textContent = "";
      const values = g.layers.map(l => { const v = l.norms[index]; return v > 0 ? Math.log10(v) : null; });
      const finite = values.filter(v => v !== null);
      bars(chart, g.layers.map(l => l.layer), values, {y0: finite.length ? Math.min(...finite) - 1 : 0, names: true, xlabel: "layer (|dL/dy|, log10), step " + steps[index], ylabels: y => "1e" + y.toFixed(1), tip: v => "|dL/dy| = " + fmt(Math.pow(10, v))});
    }
    const select = picker(controls, "step", steps, i => { index = i; draw(); });
    select.value = index;
    draw();
  }
  document.body.dataset.rendered = "ok";
})();
)JS";
}
}  // namespace detail

class HtmlReport {
 public:
  explicit HtmlReport(std::string title) : title_(std::move(title)) {}

  // The diagram (SVG through Graphviz when installed) and the summary table.
  template <class T>
  void add_model(Sequential<T>& model, const inspect::ActivationStats<T>* stats = nullptr,
                 const inspect::GradientFlow<T>* flow = nullptr, Shape batch_shape = Shape{}) {
    const std::string dot = to_dot(model, batch_shape, stats, flow);
    model_html_ = "<pre class=\"summary\">" + detail::html_escape(model.summary()) + "</pre>";
    const std::string svg = svg_of(dot);
    model_html_ =
        (svg.empty() ? "<p>(Install Graphviz for the diagram.)</p>" : "<div class=\"diagram\">" + svg + "</div>") +
        model_html_;
  }

  void add_history(const train::History& history) {
    history_json_ = "[";
    for (std::size_t i = 0; i < history.epochs.size(); ++i) {
      const train::EpochLogs& e = history.epochs[i];
      history_json_ += fmt::format("{}{{\"epoch\":{},\"loss\":{},\"accuracy\":{},\"val_loss\":{},\"val_accuracy\":{}}}",
                                   i ? "," : "", e.epoch, json_number(e.loss), json_number(e.accuracy),
                                   json_number(e.val_loss), json_number(e.val_accuracy));
    }
    history_json_ += "]";
  }

  template <class T>
  void add_activation_stats(const inspect::ActivationStats<T>& stats) {
    activations_json_ = "[";
    bool first_layer = true;
    for (const auto& series : stats.all()) {
      if (series.records.empty()) continue;
      activations_json_ +=
          fmt::format("{}{{\"layer\":{},\"records\":[", first_layer ? "" : ",", json_string(series.name));
      bool first = true;
      for (const inspect::ActivationRecord& r : series.records) {
        std::vector<double> counts(r.histogram.counts.begin(), r.histogram.counts.end());
        activations_json_ +=
            fmt::format("{}{{\"step\":{},\"mean\":{},\"zero_fraction\":{},\"low\":{},\"high\":{},\"counts\":{}}}",
                        first ? "" : ",", r.context.step, json_number(r.mean), json_number(r.zero_fraction),
                        json_number(r.histogram.low), json_number(r.histogram.high), detail::numbers_json(counts));
        first = false;
      }
      activations_json_ += "]}";
      first_layer = false;
    }
    activations_json_ += "]";
    if (first_layer) activations_json_.clear();  // nothing recorded
  }

  // Layers' gradient norms at the steps every layer has a record for.
  template <class T>
  void add_gradient_flow(const inspect::GradientFlow<T>& flow) {
    std::vector<const inspect::Series<inspect::LayerGradientRecord>*> layers;  // in model order
    for (const auto& series : flow.layers()) layers.push_back(&series);
    std::sort(layers.begin(), layers.end(), [](auto* a, auto* b) { return a->layer_index < b->layer_index; });
    if (layers.empty() || layers.front()->records.empty()) return;
    std::vector<long long> steps;
    for (const auto& r : layers.front()->records) steps.push_back(r.context.step);
    std::string json = fmt::format("{{\"steps\":[{}],\"layers\":[", fmt::join(steps, ","));
    for (std::size_t i = 0; i < layers.size(); ++i) {
      std::vector<double> norms;
      for (long long step : steps) {
        double norm = std::numeric_limits<double>::quiet_NaN();
        for (const auto& r : layers[i]->records)
          if (r.context.step == step) norm = r.norm;
        norms.push_back(norm);
      }
      json += fmt::format("{}{{\"layer\":{},\"norms\":{}}}", i ? "," : "", json_string(layers[i]->name),
                          detail::numbers_json(norms));
    }
    gradients_json_ = json + "]}";
  }

  // A row of captioned pictures under a heading.
  void add_pictures(const std::string& heading, const std::vector<std::pair<std::string, Image>>& pictures) {
    std::string html = "<h3>" + detail::html_escape(heading) + "</h3><div class=\"pictures\">";
    for (const auto& [caption, image] : pictures)
      html += "<figure><img alt=\"" + detail::html_escape(caption) + "\" src=\"data:image/png;base64," +
              base64(encode_png(image)) + "\"><figcaption>" + detail::html_escape(caption) + "</figcaption></figure>";
    pictures_html_ += html + "</div>";
  }

  // A table of text cells (compression results, for example), in the
  // Tables section; cells are escaped.
  void add_table(const std::string& heading, const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
    std::string html = "<h3>" + detail::html_escape(heading) + "</h3><table class=\"results\"><tr>";
    for (const std::string& h : header) html += "<th>" + detail::html_escape(h) + "</th>";
    html += "</tr>";
    for (const auto& row : rows) {
      if (row.size() != header.size())
        throw Error(fmt::format("HtmlReport::add_table: '{}': a row of {} cells under {} headings", heading, row.size(),
                                header.size()));
      html += "<tr>";
      for (const std::string& cell : row) html += "<td>" + detail::html_escape(cell) + "</td>";
      html += "</tr>";
    }
    tables_html_ += html + "</table>";
  }

  std::string html() const {
    std::string data = "{";
    auto field = [&](const char* name, const std::string& json) {
      if (json.empty()) return;
      data += fmt::format("{}\"{}\":{}", data.size() > 1 ? "," : "", name, json);
    };
    field("history", history_json_);
    field("activations", activations_json_);
    field("gradients", gradients_json_);
    data += "}";
    std::string page = fmt::format(R"(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{0}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; max-width: 1240px; }}
section {{ margin-bottom: 32px; }} h2 {{ border-bottom: 1px solid #ccc; }}
.chart {{ background: #fff; margin: 4px 12px 12px 0; }} .axis {{ stroke: #444; }} .grid {{ stroke: #eee; }}
.tick, .label, .legend {{ font-size: 11px; fill: #333; }} .line {{ fill: none; stroke-width: 2; }}
table.results {{ border-collapse: collapse; margin-bottom: 12px; }}
.results th, .results td {{ border: 1px solid #ccc; padding: 2px 10px; text-align: right; }}
.c0 {{ stroke: #2166ac; fill: #2166ac; }} .c1 {{ stroke: #b2182b; fill: #b2182b; }} .bar {{ fill: #35b779; }}
.bar:hover, .dot:hover {{ fill: #fde725; }} .line.c0, .line.c1 {{ fill: none; }}
#training-charts div, #activation-charts div {{ display: inline-block; vertical-align: top; }}
.pictures figure {{ display: inline-block; margin: 6px 16px 6px 0; }} .pictures img {{ image-rendering: pixelated; max-width: 100%; }}
pre.summary {{ background: #f7f7f7; padding: 8px; display: inline-block; }} .diagram svg {{ max-width: 100%; height: auto; }}
label {{ margin-right: 16px; }}
</style>
<script>window.onerror = function (m) {{ document.body.dataset.errors = (document.body.dataset.errors || "") + m + ";"; }};
console.error = (function (original) {{ return function () {{ document.body.dataset.errors = (document.body.dataset.errors || "") + Array.from(arguments).join(" ") + ";"; original.apply(console, arguments); }}; }})(console.error);</script>
</head><body>
<h1>{0}</h1>
)",
                                   detail::html_escape(title_));
    if (!model_html_.empty()) page += "<section id=\"model\"><h2>Model</h2>" + model_html_ + "</section>\n";
    if (!history_json_.empty())
      page += "<section id=\"training\"><h2>Training</h2><div id=\"training-charts\"></div></section>\n";
    if (!activations_json_.empty())
      page +=
          "<section id=\"activations\"><h2>Activations</h2><p>Histogram of a layer's outputs at a recorded "
          "step; below, their mean and share of zeros over the steps.</p><div id=\"activation-charts\"></div>"
          "</section>\n";
    if (!gradients_json_.empty())
      page +=
          "<section id=\"gradients\"><h2>Gradient flow</h2><p>Norm of the loss gradient with respect to each "
          "layer's output.</p><div id=\"gradient-charts\"></div></section>\n";
    if (!pictures_html_.empty()) page += "<section id=\"pictures\"><h2>Pictures</h2>" + pictures_html_ + "</section>\n";
    if (!tables_html_.empty()) page += "<section id=\"tables\"><h2>Tables</h2>" + tables_html_ + "</section>\n";
    page += "<script type=\"application/json\" id=\"report-data\">" + detail::script_safe(data) + "</script>\n";
    page += std::string("<script>") + detail::report_script() + "</script>\n</body></html>\n";
    return page;
  }

  void write(const std::string& path) const { write_text_file(path, html()); }

 private:
  // Graphviz's SVG for the DOT text, without its XML prologue; empty without Graphviz.
  static std::string svg_of(const std::string& dot) {
    if (!have_graphviz()) return {};
    static int calls = 0;
    const std::string base =
        (std::filesystem::temp_directory_path() / fmt::format("glassbox_report_{}_{}", getpid(), ++calls)).string();
    write_text_file(base + ".dot", dot);
    std::string svg;
    if (render_svg(base + ".dot", base + ".svg")) {
      std::FILE* f = std::fopen((base + ".svg").c_str(), "rb");
      if (f) {
        char buffer[65536];
        for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, f)) > 0;) svg.append(buffer, n);
        std::fclose(f);
      }
    }
    std::remove((base + ".dot").c_str());
    std::remove((base + ".svg").c_str());
    const std::size_t start = svg.find("<svg");
    return start == std::string::npos ? std::string() : svg.substr(start);
  }

  std::string title_;
  std::string model_html_, history_json_, activations_json_, gradients_json_, pictures_html_, tables_html_;
};

GLASSBOX_PRECOMPILED_INSTANCE(void HtmlReport::add_model<float>(Sequential<float>&,
                                                                const inspect::ActivationStats<float>*,
                                                                const inspect::GradientFlow<float>*, Shape))
GLASSBOX_PRECOMPILED_INSTANCE(void HtmlReport::add_activation_stats<float>(const inspect::ActivationStats<float>&))
GLASSBOX_PRECOMPILED_INSTANCE(void HtmlReport::add_gradient_flow<float>(const inspect::GradientFlow<float>&))
}  // namespace glassbox::viz
