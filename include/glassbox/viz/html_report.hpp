#pragma once
// One self-contained report.html per run: no network needed to view it (the
// data is inline JSON, the pictures inline PNG, the charts inline SVG drawn by
// the inline script of viz/report_page.hpp). Sections, each added when you
// have it:
//
//   model          the network diagram, laid out by glassbox (viz/diagram.hpp;
//                  Graphviz's layout too, folded, when `dot` is installed), and
//                  the summary table
//   training       loss and accuracy per epoch (train and validation)
//   activations    per layer, the activation histogram of any recorded step
//                  (a step slider; log count scale and "exclude exact zeros"
//                  toggles), and mean and share of zeros over steps
//   gradients      the gradient-flow plot across layers at any recorded step,
//                  and each layer's (or every layer's) gradient norm over steps
//   parameters     per parameter, histograms of its values or gradients
//                  before training and after each epoch (ParameterHistograms)
//   embeddings     samples on a plane (PCA, t-SNE), coloured by class, the
//                  nearest one named on hover
//   paths          decision paths: per layer the units that carried a sample
//                  to its class, and those most often on each class's paths
//   errors         the confusion matrix (cells shaded, counts on hover),
//                  per-class precision, recall and F1, the most-confused pairs
//                  and a captioned gallery (misclassified samples, say)
//   pictures       captioned images in a grid (filters, feature maps, saliency),
//                  and picture series with a slider (a boundary per epoch)
//   tables         text tables
//
// Every chart shows values on hover. Charts over steps show at most
// Options::max_steps steps: beyond that the records are subsampled evenly and
// the page says so (the recorders' CSV/JSON keep every record).

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/text_output.hpp"
#include "glassbox/inspect/activation_stats.hpp"
#include "glassbox/inspect/error_analysis.hpp"
#include "glassbox/inspect/gradient_flow.hpp"
#include "glassbox/inspect/parameter_histograms.hpp"
#include "glassbox/train/history.hpp"
#include "glassbox/viz/diagram.hpp"
#include "glassbox/viz/dot.hpp"
#include "glassbox/viz/path_diagram.hpp"
#include "glassbox/viz/png.hpp"
#include "glassbox/viz/report_page.hpp"
#include "glassbox/viz/report_parts.hpp"

namespace glassbox::viz {

struct HtmlReportOptions {
  // Steps shown in the charts over steps (>= 2); more records are subsampled.
  std::size_t max_steps = 200;
  // Also embed Graphviz's layout of the model (folded) when `dot` is installed.
  bool graphviz = true;
};

class HtmlReport {
 public:
  using Options = HtmlReportOptions;

  explicit HtmlReport(std::string title, Options options = {}) : title_(std::move(title)), options_(options) {
    if (options_.max_steps < 2)
      throw Error(fmt::format("HtmlReport: max_steps must be at least 2, got {}", options_.max_steps));
  }

  // The diagram (glassbox's SVG, plus Graphviz's when installed) and the summary table.
  template <class T>
  void add_model(Sequential<T>& model, const inspect::ActivationStats<T>* stats = nullptr,
                 const inspect::GradientFlow<T>* flow = nullptr, Shape batch_shape = Shape{}) {
    model_html_ = "<div class=\"model\"><div class=\"diagram\">" + to_svg_diagram(model, batch_shape, stats, flow) +
                  "</div><pre class=\"summary\">" + markup_escape(model.summary()) + "</pre></div>";
    if (options_.graphviz) {
      const std::string svg = svg_of(to_dot(model, batch_shape, stats, flow));
      if (!svg.empty())
        model_html_ += "<details><summary>The same model laid out by Graphviz</summary><div class=\"diagram\">" + svg +
                       "</div></details>";
    }
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
    std::size_t recorded = 0, shown = 0;
    std::uint64_t dropped = 0;
    for (const auto& series : stats.all()) {
      if (series.records.empty()) continue;
      activations_json_ += fmt::format("{}{{\"layer\":{},\"records\":[", shown ? "," : "", json_string(series.name));
      const std::vector<std::size_t> kept = detail::evenly_spaced(series.records.size(), options_.max_steps);
      for (std::size_t k = 0; k < kept.size(); ++k) {
        const inspect::ActivationRecord& r = series.records[kept[k]];
        activations_json_ += fmt::format(
            "{}{{\"step\":{},\"mean\":{},\"zero_fraction\":{},\"low\":{},\"high\":{},\"zeros\":{},\"counts\":[{}]}}",
            k ? "," : "", r.context.step, json_number(r.mean), json_number(r.zero_fraction),
            json_number(r.histogram.low), json_number(r.histogram.high), r.histogram.zeros,
            fmt::join(r.histogram.counts, ","));
      }
      activations_json_ += "]}";
      recorded = std::max(recorded, series.records.size());
      shown = std::max(shown, kept.size());
      dropped = std::max(dropped, series.dropped);
    }
    activations_json_ += "]";
    activations_note_ = detail::subsampled_note(shown, recorded, dropped, "activation_stats.json");
    if (shown == 0) activations_json_.clear();  // nothing recorded
  }

  // Layers' gradient norms at the steps the first layer has a record for.
  template <class T>
  void add_gradient_flow(const inspect::GradientFlow<T>& flow) {
    std::vector<const inspect::Series<inspect::LayerGradientRecord>*> layers;  // in model order
    for (const auto& series : flow.layers()) layers.push_back(&series);
    std::stable_sort(layers.begin(), layers.end(), [](auto* a, auto* b) { return a->layer_index < b->layer_index; });
    if (layers.empty() || layers.front()->records.empty()) return;
    const auto& first = layers.front()->records;
    const std::vector<std::size_t> kept = detail::evenly_spaced(first.size(), options_.max_steps);
    std::vector<long long> steps;
    for (const std::size_t k : kept) steps.push_back(first[k].context.step);
    std::string json = fmt::format("{{\"steps\":[{}],\"layers\":[", fmt::join(steps, ","));
    for (std::size_t i = 0; i < layers.size(); ++i) {
      std::vector<double> norms;
      auto r = layers[i]->records.begin();  // records are in step order
      for (const long long step : steps) {
        while (r != layers[i]->records.end() && r->context.step < step) ++r;
        norms.push_back(r != layers[i]->records.end() && r->context.step == step
                            ? r->norm
                            : std::numeric_limits<double>::quiet_NaN());
      }
      json += fmt::format("{}{{\"layer\":{},\"norms\":{}}}", i ? "," : "", json_string(layers[i]->name),
                          detail::numbers_json(norms));
    }
    gradients_json_ = json + "]}";
    gradients_note_ = detail::subsampled_note(kept.size(), first.size(), layers.front()->dropped, "gradient_flow.json");
  }

  template <class T>
  void add_parameter_histograms(const inspect::ParameterHistograms<T>& params) {
    auto summary = [](const inspect::ValueSummary& v) {
      return fmt::format("{{\"mean\":{},\"std\":{},\"low\":{},\"high\":{},\"counts\":[{}]}}", json_number(v.mean),
                         json_number(v.std), json_number(v.histogram.low), json_number(v.histogram.high),
                         fmt::join(v.histogram.counts, ","));
    };
    std::string json = "[";
    bool any = false;
    for (const auto& series : params.all()) {
      if (series.records.empty()) continue;
      json += fmt::format("{}{{\"parameter\":{},\"records\":[", any ? "," : "", json_string(series.name));
      // Epochs are few next to steps; a long run keeps the same budget.
      const std::vector<std::size_t> kept = detail::evenly_spaced(series.records.size(), options_.max_steps);
      for (std::size_t k = 0; k < kept.size(); ++k) {
        const inspect::ParameterHistogramRecord& r = series.records[kept[k]];
        json += fmt::format("{}{{\"steps_taken\":{},\"epochs_done\":{},\"value\":{},\"grad\":{}}}", k ? "," : "",
                            r.steps_taken, r.epochs_done, summary(r.value), summary(r.grad));
      }
      json += "]}";
      any = true;
    }
    parameters_json_ = any ? json + "]" : std::string();
  }

  // A grid of captioned pictures under a heading, with an optional line
  // saying what they show.
  void add_pictures(const std::string& heading, const std::vector<std::pair<std::string, Image>>& pictures,
                    const std::string& description = {}) {
    pictures_html_ += "<h3>" + markup_escape(heading) + "</h3>" + detail::picture_grid(pictures, description);
  }

  // Pictures of one thing over time (a decision boundary per epoch, say), in
  // the Pictures section: one shown at a time, a slider picks which; each
  // frame's caption shows with it.
  void add_picture_series(const std::string& heading, const std::vector<std::pair<std::string, Image>>& frames,
                          const std::string& description = {}) {
    if (frames.empty()) throw Error(fmt::format("HtmlReport::add_picture_series: '{}' has no frames", heading));
    std::string html = "<h3>" + markup_escape(heading) + "</h3>";
    if (!description.empty()) html += "<p class=\"note\">" + markup_escape(description) + "</p>";
    html += "<figure class=\"series\"><div class=\"frames\">";
    for (std::size_t i = 0; i < frames.size(); ++i) {
      const Image& frame = frames[i].second;
      const index_t scale = frame.width < 320 ? 2 : 1;  // small frames are shown at twice their size
      html += fmt::format("<img alt=\"{}\" width=\"{}\" height=\"{}\"{} src=\"data:image/png;base64,{}\">",
                          markup_escape(frames[i].first), frame.width * scale, frame.height * scale,
                          i + 1 == frames.size() ? "" : " hidden", base64(encode_png(frame)));
    }
    html += fmt::format(
        "</div><figcaption>{}</figcaption><label>frame <input type=\"range\" class=\"frame-slider\" min=\"0\" "
        "max=\"{}\" value=\"{}\"></label></figure>",
        markup_escape(frames.back().first), frames.size() - 1, frames.size() - 1);
    pictures_html_ += html;
  }

  // Where the classifier goes wrong: the confusion matrix, the per-class
  // table and the most-confused pairs; `gallery`: captioned pictures of some
  // errors (the main job shows misclassified digits with their saliency).
  void add_error_analysis(const inspect::ErrorAnalysis& errors, const std::vector<std::string>& class_names = {},
                          const std::vector<std::pair<std::string, Image>>& gallery = {},
                          const std::string& gallery_description = {}) {
    const std::vector<std::string> names = errors.names_or_numbers(class_names);
    std::string html = fmt::format(
        "<p class=\"note\">{} of {} samples right ({:.2f}%). Rows are the true classes, columns the predicted "
        "ones; a cell's shade is its share of the row (hover for the numbers).</p>",
        errors.samples - static_cast<index_t>(errors.misclassified.size()), errors.samples, 100 * errors.accuracy);
    html += "<div class=\"model\"><div class=\"scroll\"><table class=\"confusion\"><tr><th>true \\ predicted</th>";
    for (const std::string& n : names) html += "<th>" + markup_escape(n) + "</th>";
    html += "</tr>";
    for (index_t t = 0; t < errors.classes; ++t) {
      const inspect::ClassMetrics& row = errors.per_class[static_cast<std::size_t>(t)];
      html += "<tr><th>" + markup_escape(names[static_cast<std::size_t>(t)]) + "</th>";
      for (index_t p = 0; p < errors.classes; ++p) {
        const index_t count = errors.count(t, p);
        const double share = row.support ? static_cast<double>(count) / static_cast<double>(row.support) : 0.0;
        // Right answers in blue, errors in red; a light share still shows.
        const char* rgb = t == p ? "33,102,172" : "178,24,43";
        const double alpha = count ? 0.08 + 0.92 * (t == p ? share : std::min(1.0, 5 * share)) : 0.0;
        html += fmt::format(
            "<td style=\"background: rgba({}, {:.3f})\" data-tip=\"true {}, predicted {}: {} ({:.2f}% of the "
            "row)\">{}</td>",
            rgb, alpha, markup_escape(names[static_cast<std::size_t>(t)]),
            markup_escape(names[static_cast<std::size_t>(p)]), count, 100 * share, count);
      }
      html += "</tr>";
    }
    html +=
        "</table></div><div class=\"scroll\"><table class=\"results\"><tr><th>class</th><th>precision</th>"
        "<th>recall</th><th>F1</th><th>support</th></tr>";
    auto metrics_row = [&](const std::string& name, const inspect::ClassMetrics& m) {
      html += fmt::format("<tr><td>{}</td><td>{:.4f}</td><td>{:.4f}</td><td>{:.4f}</td><td>{}</td></tr>",
                          markup_escape(name), m.precision, m.recall, m.f1, m.support);
    };
    for (index_t c = 0; c < errors.classes; ++c)
      metrics_row(names[static_cast<std::size_t>(c)], errors.per_class[static_cast<std::size_t>(c)]);
    metrics_row("macro avg", errors.macro);
    metrics_row("weighted avg", errors.weighted);
    html += "</table></div></div>";
    if (!errors.confused_pairs.empty()) {
      html += "<p class=\"note\">Most confused (true &#8594; predicted):";
      for (std::size_t i = 0; i < std::min<std::size_t>(8, errors.confused_pairs.size()); ++i) {
        const inspect::ConfusedPair& pair = errors.confused_pairs[i];
        html += fmt::format("{} {} &#8594; {} ({})", i ? "," : "",
                            markup_escape(names[static_cast<std::size_t>(pair.truth)]),
                            markup_escape(names[static_cast<std::size_t>(pair.predicted)]), pair.count);
      }
      html += ".</p>";
    }
    if (!gallery.empty()) html += "<h3>Misclassified</h3>" + detail::picture_grid(gallery, gallery_description);
    errors_html_ = html;
  }

  // Samples on a plane, one chart per view (PCA and t-SNE of a layer's
  // activations before and after training, say), coloured by class; hovering
  // names the nearest sample ("#ids[i]: a labels[i], predicted predicted[i]").
  // `predicted` and `ids` may be empty; each view's points are (N, 2), any
  // type with rows() and (i, j), such as inspect::tsne's embedding.
  struct EmbeddingView {
    std::string caption;
    std::vector<double> x, y;
    template <class Points>
    EmbeddingView(std::string caption_, const Points& points) : caption(std::move(caption_)) {
      for (index_t i = 0; i < static_cast<index_t>(points.rows()); ++i) {
        x.push_back(static_cast<double>(points(i, 0)));
        y.push_back(static_cast<double>(points(i, 1)));
      }
    }
  };
  void add_embedding(const std::string& heading, const std::vector<EmbeddingView>& views,
                     const std::vector<index_t>& labels, const std::vector<std::string>& class_names = {},
                     const std::vector<index_t>& predicted = {}, const std::vector<index_t>& ids = {},
                     const std::string& description = {}) {
    const std::size_t n = labels.size();
    if (views.empty() || n == 0 || (!predicted.empty() && predicted.size() != n) || (!ids.empty() && ids.size() != n))
      throw Error(
          fmt::format("HtmlReport::add_embedding: '{}' needs views and per-sample labels ({}), predicted "
                      "classes ({}) and ids ({}) of one length",
                      heading, n, predicted.size(), ids.size()));
    index_t classes = static_cast<index_t>(class_names.size());
    for (const index_t l : labels) classes = std::max(classes, l + 1);
    std::vector<std::string> names = class_names;
    for (auto c = static_cast<index_t>(names.size()); c < classes; ++c) names.push_back(std::to_string(c));
    std::string json =
        fmt::format(R"({{"heading":{},"description":{},"classes":[)", json_string(heading), json_string(description));
    for (std::size_t c = 0; c < names.size(); ++c) json += (c ? "," : "") + json_string(names[c]);
    json += fmt::format(R"(],"labels":[{}],"predicted":[{}],"ids":[{}],"views":[)", fmt::join(labels, ","),
                        fmt::join(predicted, ","), fmt::join(ids, ","));
    for (std::size_t v = 0; v < views.size(); ++v) {
      const EmbeddingView& view = views[v];
      if (view.x.size() != n)
        throw Error(fmt::format("HtmlReport::add_embedding: '{}': view '{}' has {} points for {} labels", heading,
                                view.caption, view.x.size(), n));
      // Both axes on one scale (distances on a map mean the same either way),
      // as integers in [0, 4000] to keep the page small.
      const auto [x0, x1] = std::minmax_element(view.x.begin(), view.x.end());
      const auto [y0, y1] = std::minmax_element(view.y.begin(), view.y.end());
      const double span = std::max({*x1 - *x0, *y1 - *y0, 1e-300});
      if (!std::isfinite(span))
        throw Error(fmt::format("HtmlReport::add_embedding: view '{}' holds non-finite points", view.caption));
      std::vector<long> xs, ys;
      for (std::size_t i = 0; i < n; ++i) {
        xs.push_back(std::lround((view.x[i] - *x0) / span * 4000));
        ys.push_back(std::lround((view.y[i] - *y0) / span * 4000));
      }
      json += fmt::format(R"({}{{"caption":{},"x":[{}],"y":[{}]}})", v ? "," : "", json_string(view.caption),
                          fmt::join(xs, ","), fmt::join(ys, ","));
    }
    embeddings_json_ += (embeddings_json_.empty() ? "[" : ",") + json + "]}";
  }

  // Decision paths (inspect::DecisionPaths), each captioned, and the units
  // most often on each class's paths as a table.
  void add_decision_paths(const std::string& heading,
                          const std::vector<std::pair<std::string, inspect::DecisionPath>>& paths,
                          const std::vector<inspect::ClassPath>& classes = {},
                          const std::vector<std::string>& class_names = {}, const std::string& description = {}) {
    paths_html_ += detail::decision_paths_html(heading, paths, classes, class_names, description);
  }

  // A table of text cells (compression results, for example), in the
  // Tables section; cells are escaped.
  void add_table(const std::string& heading, const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
    std::string html = "<h3>" + markup_escape(heading) + "</h3><div class=\"scroll\"><table class=\"results\"><tr>";
    for (const std::string& h : header) html += "<th>" + markup_escape(h) + "</th>";
    html += "</tr>";
    for (const auto& row : rows) {
      if (row.size() != header.size())
        throw Error(fmt::format("HtmlReport::add_table: '{}': a row of {} cells under {} headings", heading, row.size(),
                                header.size()));
      html += "<tr>";
      for (const std::string& cell : row) html += "<td>" + markup_escape(cell) + "</td>";
      html += "</tr>";
    }
    tables_html_ += html + "</table></div>";
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
    field("parameters", parameters_json_);
    if (!embeddings_json_.empty()) field("embeddings", embeddings_json_ + "]");
    data += "}";
    std::string page = fmt::format(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{0}</title>\n"
        "<style>{1}</style>\n<script>{2}</script>\n</head><body>\n<h1>{0}</h1>\n",
        markup_escape(title_), detail::report_style(), detail::report_error_catcher());
    auto section = [&](const char* id, const char* heading, const std::string& inner) {
      if (!inner.empty()) page += fmt::format("<section id=\"{}\"><h2>{}</h2>{}</section>\n", id, heading, inner);
    };
    section("model", "Model", model_html_);
    if (!history_json_.empty()) section("training", "Training", "<div id=\"training-charts\" class=\"charts\"></div>");
    if (!activations_json_.empty())
      section("activations", "Activations",
              "<p class=\"note\">What each layer outputs: pick the layer and the training step. After a ReLU most "
              "outputs are exactly zero; leave them out, or use the log count scale, to see the rest.</p>" +
                  activations_note_ + "<div id=\"activation-charts\"></div>");
    if (!gradients_json_.empty())
      section("gradients", "Gradient flow",
              "<p class=\"note\">How much gradient reaches each layer: the norm of the loss gradient with respect to "
              "the layer's output, at one step across the layers, and over the steps.</p>" +
                  gradients_note_ + "<div id=\"gradient-charts\"></div>");
    if (!parameters_json_.empty())
      section("parameters", "Parameters",
              "<p class=\"note\">How each weight and bias is distributed before training and after every epoch, "
              "and the gradient of the epoch's last step (TensorBoard's histograms).</p>"
              "<div id=\"parameter-charts\"></div>");
    if (!embeddings_json_.empty()) section("embeddings", "Embeddings", "<div id=\"embedding-charts\"></div>");
    section("paths", "Decision paths", paths_html_);
    section("errors", "Errors", errors_html_);
    section("pictures", "Pictures", pictures_html_);
    section("tables", "Tables", tables_html_);
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
  Options options_;
  std::string model_html_, history_json_, activations_json_, gradients_json_, parameters_json_, embeddings_json_,
      paths_html_, errors_html_, pictures_html_, tables_html_;
  std::string activations_note_, gradients_note_;  // the subsampling, when there was one
};

GLASSBOX_PRECOMPILED_INSTANCE(void HtmlReport::add_model<float>(Sequential<float>&,
                                                                const inspect::ActivationStats<float>*,
                                                                const inspect::GradientFlow<float>*, Shape))
GLASSBOX_PRECOMPILED_INSTANCE(void HtmlReport::add_activation_stats<float>(const inspect::ActivationStats<float>&))
GLASSBOX_PRECOMPILED_INSTANCE(void HtmlReport::add_gradient_flow<float>(const inspect::GradientFlow<float>&))
GLASSBOX_PRECOMPILED_INSTANCE(
    void HtmlReport::add_parameter_histograms<float>(const inspect::ParameterHistograms<float>&))
}  // namespace glassbox::viz
