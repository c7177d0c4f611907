#pragma once
// The seed CNN's run as the main job builds, watches and reports it, shared
// by mnist_cnn (one process) and mnist_cnn_dist (data-parallel on MPI), so
// that both write the same run directory:
//   Conv2D(32, 3x3, relu) -> MaxPool 2x2 -> Flatten -> Dense(10, softmax)
// ActivationStats and GradientFlow record every 50 steps, NanWatch checks
// every step, the conv layer's feature maps of 4 test digits and the gradient
// saliency of 8 (after each epoch) are kept, and a per-layer table is printed
// after each epoch. The penultimate layer's activations of 2,000 test digits
// are mapped (PCA, then t-SNE) before and after training. After training,
// check_integrated_gradients() checks
// Integrated Gradients' completeness on 100 test digits, analyze_errors()
// prints the confusion matrix and per-class metrics, and write_run() writes
// the records as CSV and JSON (schemas in the README), the pictures (PNG,
// DOT/SVG), report.html and TensorBoard images.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <glassbox/glassbox.hpp>
#include <glassbox/inspect/decision_path.hpp>
#include <glassbox/inspect/tsne.hpp>
#include <glassbox/viz/dot.hpp>
#include <glassbox/viz/html_report.hpp>
#include <glassbox/viz/png.hpp>
#include <glassbox/viz/projector.hpp>
#include <glassbox/viz/tensorboard.hpp>
#include <string>
#include <utility>
#include <vector>

namespace seed_cnn {
using namespace glassbox;

// Local time as 20261126-081500, for run directory names.
inline std::string timestamp(std::time_t now = std::time(nullptr)) {
  std::tm local{};
  localtime_r(&now, &local);
  char text[32];
  std::strftime(text, sizeof text, "%Y%m%d-%H%M%S", &local);
  return text;
}

inline Sequential<float> model() {
  Sequential<float> model(Shape{1, 28, 28}, /*seed=*/1);
  nn::Conv2D<float>::Options relu;  // Keras' Conv2D(32, (3, 3), activation="relu")
  relu.activation = nn::Activation::relu;
  model.add<nn::Conv2D<float>>(1, 32, nn::Size2{3, 3}, relu);
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(32 * 13 * 13, 10);
  return model;
}

// Every record of a run of up to 100 epochs is kept (1,875 steps an epoch;
// about 0.5 KB a record); report.html subsamples what it shows.
constexpr std::size_t records_kept = 4000;
inline inspect::ActivationStatsOptions every_50_steps() {
  inspect::ActivationStatsOptions o;
  o.schedule.every = 50;
  o.capacity = records_kept;
  return o;
}
inline inspect::GradientFlowOptions flow_every_50_steps() {
  inspect::GradientFlowOptions o;
  o.schedule.every = 50;
  o.capacity = records_kept;
  return o;
}
inline inspect::ActivationCaptureOptions four_feature_maps() {
  inspect::ActivationCaptureOptions o;
  o.layers = {"conv2d_1"};
  o.samples = {0, 1, 2, 3};
  return o;
}
inline Tensor<float> first_rows(const Tensor<float>& x, index_t count) {
  Tensor<float> rows;
  copy_rows(x, 0, std::min(count, x.dim(0)), rows);
  return rows;
}

// What watches the model while it trains. The saliency recorder, the
// parameter histograms and the table are callbacks (in data-parallel training
// they run on rank 0 only): callbacks() lists them for FitOptions.
struct Watch {
  Watch(Sequential<float>& model, const Tensor<float>& test_images, const Tensor<float>& test_labels)
      : stats(model, every_50_steps()),
        flow(model, flow_every_50_steps()),
        nan_watch(model),
        feature_maps(model, four_feature_maps()),
        parameters(model),
        probe(first_rows(test_images, 8)),
        probe_labels(first_rows(test_labels, 8)),
        saliency(model, probe) {  // each digit's predicted class
    table.epoch_end = [this](const train::EpochLogs& e) {
      std::printf("after epoch %d (newest records, step %lld):\n%s", e.epoch + 1,
                  stats.all().front().records.back().context.step, inspect::layer_table(stats, flow).c_str());
      for (const inspect::GradientAlert& a : flow.alerts()) std::printf("  alert: %s\n", a.message.c_str());
      std::fflush(stdout);
    };
  }
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;

  std::vector<train::Callback*> callbacks() { return {&table, &saliency, &parameters}; }

  inspect::ActivationStats<float> stats;
  inspect::GradientFlow<float> flow;
  inspect::NanWatch<float> nan_watch;
  inspect::ActivationCapture<float> feature_maps;
  inspect::ParameterHistograms<float> parameters;
  Tensor<float> probe;  // the test digits whose saliency is recorded
  Tensor<float> probe_labels;
  inspect::SaliencyRecorder<float> saliency;
  train::LambdaCallback table;
};

// The softmax probability of class k for row n of logits, in percent.
inline double percent_of(const Tensor<float>& logits, index_t n, index_t k) {
  double denominator = 0;
  for (index_t c = 0; c < logits.dim(1); ++c)
    denominator += std::exp(static_cast<double>(logits.matrix()(n, c) - logits.matrix()(n, k)));
  return 100 / denominator;
}

// The pictures of the run, each as a file and as captioned figures for the
// report: the conv filters, the feature maps of the captured digits and the
// newest saliency maps (see viz/). The model diagram goes to model.dot (and
// model.svg with Graphviz).
struct Pictures {
  std::vector<std::pair<std::string, viz::Image>> filters, feature_maps, saliency;
};

inline Pictures write_pictures(const std::string& dir, Sequential<float>& model, const Watch& w) {
  Pictures pictures;
  viz::write_dot(dir + "/model.dot", model, Shape{}, &w.stats, &w.flow);
  viz::render_svg(dir + "/model.dot", dir + "/model.svg");  // when Graphviz is installed

  // 32 filters of 3x3, one shared signed scale: red excites, blue inhibits.
  const Tensor<float>& weight = model.layer("conv2d_1").parameters()[0]->value;
  viz::Range range{0, 0};
  for (index_t f = 0; f < weight.dim(0); ++f) {
    const viz::Range r = viz::range_of(viz::plane(weight, f), /*symmetric=*/true);
    range = {std::min(range.low, r.low), std::max(range.high, r.high)};
  }
  std::vector<viz::Image> filters;
  for (index_t f = 0; f < weight.dim(0); ++f)
    filters.push_back(viz::enlarge(viz::heatmap(viz::plane(weight, f), viz::Colormap::diverging, range), 12));
  const viz::Image filter_grid = viz::with_colour_bar(viz::tile(filters, 8, 4), viz::Colormap::diverging, range, 2);
  viz::write_png(dir + "/filters.png", filter_grid);
  pictures.filters.emplace_back(
      fmt::format("The {} learned 3x3 filters of conv2d_1, 8 per row; one shared scale, red excites, blue inhibits",
                  weight.dim(0)),
      filter_grid);

  // Per captured digit: the digit, then its 32 feature maps (viridis, one scale per digit).
  std::vector<viz::Image> rows;
  for (const inspect::Capture<float>& c : w.feature_maps.captures()) {
    std::vector<viz::Image> cells{viz::enlarge(viz::grayscale(viz::plane(w.probe, c.sample)), 2)};
    viz::Range r{0, 0};
    for (index_t m = 0; m < c.value.dim(1); ++m)
      r.high = std::max(r.high, viz::range_of(viz::plane(c.value, 0, m), false).high);
    for (index_t m = 0; m < c.value.dim(1); ++m)
      cells.push_back(viz::enlarge(viz::heatmap(viz::plane(c.value, 0, m), viz::Colormap::viridis, r), 2));
    rows.push_back(viz::tile(cells, 11, 2));  // the digit and 32 maps: 3 rows of 11
    pictures.feature_maps.emplace_back(
        fmt::format("Test digit #{} (a {}), then its {} feature maps (viridis, 0 to {:.3g})", c.sample,
                    static_cast<int>(w.probe_labels[c.sample]), c.value.dim(1), r.high),
        rows.back());
  }
  if (!rows.empty()) viz::write_png(dir + "/feature_maps.png", viz::tile(rows, 1, 8));

  // The newest saliency of each probe digit, signed, over the digit.
  if (!w.saliency.records().empty()) {
    const inspect::SaliencyRecord<float>& newest = w.saliency.records().back();
    const Tensor<float> logits = model.forward(w.probe);
    std::vector<viz::Image> cells;
    for (index_t d = 0; d < newest.saliency.dim(0); ++d) {
      const viz::Image digit = viz::grayscale(viz::plane(w.probe, d));
      const viz::Image pair =
          viz::tile({viz::enlarge(digit, 4),
                     viz::enlarge(viz::overlay(digit, viz::heatmap(viz::plane(newest.saliency, d), true), 0.7), 4)},
                    2, 2);
      cells.push_back(pair);
      const index_t predicted = newest.targets[static_cast<std::size_t>(d)];
      pictures.saliency.emplace_back(
          fmt::format("#{}: a {}, predicted {} ({:.1f}%)", d, static_cast<int>(w.probe_labels[d]), predicted,
                      percent_of(logits, d, predicted)),
          pair);
    }
    viz::write_png(dir + "/saliency.png", viz::tile(cells, 4, 4));
  }
  return pictures;
}

// How faithful is Integrated Gradients here? Completeness says the
// attributions sum to F(x) - F(baseline); the delta is what is missing.
inline void check_integrated_gradients(Sequential<float>& model, const Tensor<float>& test_images) {
  const Tensor<float> digits = first_rows(test_images, 100);
  inspect::IntegratedGradients<float> ig(model);  // 50 Gauss-Legendre steps, zero baseline
  ig.attribute(digits);                           // for each digit's predicted class
  const Tensor<float> at_digits = model.forward(digits);
  const std::vector<index_t> classes = inspect::predicted_classes(at_digits);
  const Tensor<float> at_zero = model.forward(Tensor<float>(Shape{1, 1, 28, 28}, 0.0f));
  double sum = 0, worst = 0;
  for (index_t n = 0; n < digits.dim(0); ++n) {
    const double gap = static_cast<double>(at_digits.matrix()(n, classes[static_cast<std::size_t>(n)]) -
                                           at_zero.matrix()(0, classes[static_cast<std::size_t>(n)]));
    const double relative = std::abs(ig.convergence_delta()[static_cast<std::size_t>(n)]) / std::abs(gap);
    sum += relative;
    worst = std::max(worst, relative);
  }
  std::printf(
      "Integrated gradients (50 steps) on %td test digits: mean |delta| / |F(x) - F(0)| = %.3f%%, worst %.3f%%\n",
      digits.dim(0), 100 * sum / static_cast<double>(digits.dim(0)), 100 * worst);
}

// Where the trained model goes wrong on the test set: the confusion matrix
// and per-class metrics (printed), and a gallery of the first misclassified
// digits, each with the saliency of the class it was taken for and of its
// true class.
struct Errors {
  inspect::ErrorAnalysis analysis;
  std::vector<std::pair<std::string, viz::Image>> gallery;
};

inline Errors analyze_errors(Sequential<float>& model, const Tensor<float>& test_images,
                             const Tensor<float>& test_labels, std::size_t gallery_size = 12) {
  Errors errors;
  const Tensor<float> logits = model.predict(test_images);
  errors.analysis = inspect::analyze_errors(logits, test_labels);
  std::printf("%s", errors.analysis.to_text().c_str());
  const std::vector<index_t>& wrong = errors.analysis.misclassified;
  const std::vector<index_t> shown(wrong.begin(), wrong.begin() + std::min(gallery_size, wrong.size()));
  if (shown.empty()) return errors;
  Tensor<float> digits;
  gather_rows(test_images, shown.begin(), shown.end(), digits);
  const std::vector<index_t> predicted = inspect::predicted_classes(logits);
  std::vector<index_t> taken_for, truth;
  for (const index_t n : shown) {
    truth.push_back(static_cast<index_t>(test_labels[n]));
    taken_for.push_back(predicted[static_cast<std::size_t>(n)]);
  }
  const Tensor<float> toward_wrong = inspect::gradient_saliency(model, digits, taken_for);
  const Tensor<float> toward_truth = inspect::gradient_saliency(model, digits, truth);
  for (index_t i = 0; i < digits.dim(0); ++i) {
    const viz::Image digit = viz::grayscale(viz::plane(digits, i));
    auto over = [&](const Tensor<float>& maps) {
      return viz::enlarge(viz::overlay(digit, viz::heatmap(viz::plane(maps, i), true), 0.7), 3);
    };
    const index_t n = shown[static_cast<std::size_t>(i)], wrong_class = taken_for[static_cast<std::size_t>(i)];
    errors.gallery.emplace_back(fmt::format("#{}: a {} taken for a {} ({:.0f}%)", n, truth[static_cast<std::size_t>(i)],
                                            wrong_class, percent_of(logits, n, wrong_class)),
                                viz::tile({viz::enlarge(digit, 3), over(toward_wrong), over(toward_truth)}, 3, 2));
  }
  return errors;
}

// What the penultimate layer (flatten_1, 5,408 features) makes of the first
// 2,000 test digits at one stage of training: capture_embedding() keeps the
// activations (one forward pass, so that it can run before training) and
// map_embedding() reduces them to their first 50 principal components
// (randomized PCA) and maps those with t-SNE, once the training set is gone.
struct Embedding {
  std::string stage;          // "before training", "after training"
  Tensor<float> activations;  // (N, 32, 13, 13) until mapped
  std::vector<index_t> predicted;
  Eigen::MatrixXd principal;  // (N, 50)
  double explained = 0;       // the share of the variance those 50 hold
  inspect::TsneResult map;
};

constexpr index_t embedded_digits = 2000;
// Batches of 32, as in training, so that the model's buffers stay small
// before training; the predictions only when asked (those of the trained
// model mark its errors on every map).
inline Embedding capture_embedding(Sequential<float>& model, const Tensor<float>& test_images, std::string stage,
                                   bool with_predictions) {
  Embedding e;
  e.stage = std::move(stage);
  const Tensor<float> digits = first_rows(test_images, embedded_digits);
  e.activations = inspect::layer_activations(model, "flatten_1", digits, 32);
  if (with_predictions) e.predicted = inspect::predicted_classes(model.predict(digits));
  return e;
}

inline void map_embedding(Embedding& e) {
  const auto start = std::chrono::steady_clock::now();
  const inspect::Pca pca = inspect::pca(e.activations, 50);
  e.principal = pca.project(e.activations);
  e.explained = pca.explained_variance.sum() / pca.total_variance;
  e.activations = Tensor<float>();
  e.map = inspect::tsne(e.principal);
  std::printf(
      "flatten_1 %s: %td digits, 50 principal components holding %.1f%% of the variance, t-SNE KL %.3f (%.1f s)\n",
      e.stage.c_str(), e.principal.rows(), 100 * e.explained, e.map.kl_divergence.back().second,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

// The maps in report.html, as CSV, and for TensorBoard's projector (the 50
// components, each digit's label and prediction, and a sprite of the digits).
inline void write_embeddings(const std::string& dir, const std::vector<Embedding>& maps,
                             const Tensor<float>& test_images, const Tensor<float>& test_labels,
                             viz::HtmlReport& page) {
  if (maps.empty()) return;
  const index_t n = maps.front().principal.rows();
  const Tensor<float> digits = first_rows(test_images, n);
  std::vector<index_t> labels, ids;
  for (index_t i = 0; i < n; ++i) {
    labels.push_back(static_cast<index_t>(test_labels[i]));
    ids.push_back(i);
  }
  const std::vector<index_t>& predicted = maps.back().predicted;  // by the trained model, on every map
  std::vector<viz::HtmlReport::EmbeddingView> tsne_views, pca_views;
  viz::ProjectorWriter projector(dir + "/tensorboard");
  std::string csv = "stage,sample,label,predicted_after_training,pc1,pc2,tsne_x,tsne_y\n";
  for (const Embedding& e : maps) {
    tsne_views.emplace_back(fmt::format("t-SNE, {} (KL {:.3f})", e.stage, e.map.kl_divergence.back().second),
                            e.map.embedding);
    pca_views.emplace_back(fmt::format("The first two principal components, {} ({:.1f}% of the variance)", e.stage,
                                       100 * (e.principal.col(0).squaredNorm() + e.principal.col(1).squaredNorm()) /
                                           e.principal.squaredNorm() * e.explained),
                           e.principal);
    std::vector<std::vector<std::string>> rows;
    for (index_t i = 0; i < n; ++i) {
      const auto at = static_cast<std::size_t>(i);
      const std::string taken_for = predicted.empty() ? "" : std::to_string(predicted[at]);
      rows.push_back({std::to_string(labels[at]), taken_for});
      csv += fmt::format("{},{},{},{},{:.6g},{:.6g},{:.6g},{:.6g}\n", e.stage, i, labels[at], taken_for,
                         e.principal(i, 0), e.principal(i, 1), e.map.embedding(i, 0), e.map.embedding(i, 1));
    }
    std::string name = "flatten_1_" + e.stage;
    std::replace(name.begin(), name.end(), ' ', '_');
    projector.add(name, e.principal, {"label", "predicted_after_training"}, rows, &digits);
  }
  write_text_file(dir + "/embedding.csv", csv);
  tsne_views.insert(tsne_views.end(), pca_views.begin(), pca_views.end());
  index_t wrong = 0;
  for (std::size_t i = 0; i < predicted.size(); ++i) wrong += predicted[i] != labels[i];
  page.add_embedding(fmt::format("flatten_1: {} test digits", n), tsne_views, labels, {}, predicted, ids,
                     fmt::format("Each dot is a test digit, coloured by its label, placed by what flatten_1 (the "
                                 "input of the last layer) makes of it; ringed dots are the {} digits the trained "
                                 "model gets wrong. t-SNE keeps near neighbours near (distances between clusters "
                                 "mean little); PCA keeps the largest variance. Hover for a digit, or over a colour "
                                 "in the legend.",
                                 wrong));
}

// Which conv channels, pooled channels and output carried the first 4 test
// digits to their predicted class (gradient x activation, top 5 a layer),
// and which channels are most often on the paths of each class over the
// first 1,000 test digits.
struct Paths {
  std::vector<std::pair<std::string, inspect::DecisionPath>> digits;
  std::vector<inspect::ClassPath> classes;
  std::string to_json() const {
    std::string s = "{\"paths\":[";
    for (std::size_t i = 0; i < digits.size(); ++i) s += (i ? "," : "") + digits[i].second.to_json();
    s += "],\"classes\":[";
    for (std::size_t k = 0; k < classes.size(); ++k) {
      s += fmt::format("{}{{\"class\":{},\"samples\":{},\"layers\":[", k ? "," : "", classes[k].target,
                       classes[k].samples);
      for (std::size_t l = 0; l < classes[k].layers.size(); ++l) {
        s += fmt::format("{}{{\"layer\":{},\"on_path\":[", l ? "," : "", json_string(classes[k].layers[l].name));
        for (std::size_t u = 0; u < classes[k].layers[l].top.size(); ++u)
          s += fmt::format("{}{{\"unit\":{},\"share\":{}}}", u ? "," : "", classes[k].layers[l].top[u].unit,
                           json_number(classes[k].layers[l].top[u].score));
        s += "]}";
      }
      s += "]}";
    }
    return s + "]}\n";
  }
};

inline Paths decision_paths(Sequential<float>& model, const Tensor<float>& test_images,
                            const Tensor<float>& test_labels) {
  Paths paths;
  inspect::DecisionPaths<float> finder(model, {"conv2d_1", "max_pool2d_1", "dense_1"});
  const Tensor<float> digits = first_rows(test_images, 4);
  const Tensor<float> logits = model.predict(digits);
  for (index_t d = 0; d < digits.dim(0); ++d) {
    Tensor<float> digit;
    copy_rows(digits, d, 1, digit);
    inspect::DecisionPath path = finder.explain(digit);
    paths.digits.emplace_back(fmt::format("#{}: a {}, predicted {} ({:.1f}%)", d, static_cast<int>(test_labels[d]),
                                          path.target, percent_of(logits, d, path.target)),
                              std::move(path));
  }
  paths.classes = finder.frequencies(first_rows(test_images, 1000));
  std::printf("Conv channels most often on the decision paths of 1,000 test digits, by predicted class:\n");
  for (const inspect::ClassPath& c : paths.classes) {
    if (c.samples == 0) continue;  // no digit taken for this class
    std::printf("  %td (%td digits):", c.target, c.samples);
    for (const inspect::PathUnit& u : c.layers.front().top) std::printf(" ch %td (%.0f%%)", u.unit, 100 * u.score);
    std::printf("\n");
  }
  return paths;
}

// The run directory: pictures, report.html, the records as CSV and JSON, and
// the pictures in TensorBoard too.
inline void write_run(const std::string& dir, const std::string& title, Sequential<float>& model, const Watch& w,
                      const train::History& history, const Errors& errors, const std::vector<Embedding>& maps,
                      const Paths& paths, const Tensor<float>& test_images, const Tensor<float>& test_labels,
                      viz::TensorBoardWriter& tensorboard) {
  std::filesystem::create_directories(dir);
  const Pictures pictures = write_pictures(dir, model, w);
  for (const char* picture : {"filters", "saliency"})
    tensorboard.add_image(picture, viz::read_png(dir + "/" + picture + ".png"), model.training_steps());
  tensorboard.flush();

  viz::HtmlReport page(title);
  page.add_model(model, &w.stats, &w.flow);
  page.add_history(history);
  page.add_activation_stats(w.stats);
  page.add_gradient_flow(w.flow);
  page.add_parameter_histograms(w.parameters);
  write_embeddings(dir, maps, test_images, test_labels, page);
  page.add_decision_paths(
      "Test digits", paths.digits, paths.classes, {},
      "For each digit, the 5 conv channels and the 5 pooled channels that carried most of its predicted class's "
      "score (gradient x activation summed over the channel; red for, blue against), and how much of each pooled "
      "channel's share came through each conv channel. The table: the channels most often among a class's top 5 "
      "over the first 1,000 test digits.");
  page.add_error_analysis(errors.analysis, {}, errors.gallery,
                          "The first misclassified test digits: the digit, then where a small change would most "
                          "raise (red) or lower (blue) the score of the class it was taken for, then of its true "
                          "class.");
  page.add_pictures("Filters", pictures.filters);
  page.add_pictures("Gradient saliency", pictures.saliency,
                    "Each test digit, then where a small change would most raise (red) or lower (blue) the score of "
                    "its predicted class, after the last epoch.");
  page.add_pictures("Feature maps", pictures.feature_maps,
                    "What conv2d_1 computes from a digit: each map is one filter's ReLU output.");
  page.write(dir + "/report.html");
  w.stats.write_csv(dir + "/activation_stats.csv");
  w.stats.write_json(dir + "/activation_stats.json");
  w.flow.write_csv(dir + "/gradient_flow.csv");
  w.flow.write_json(dir + "/gradient_flow.json");
  w.saliency.write_json(dir + "/saliency.json");
  w.feature_maps.write_json(dir + "/feature_maps.json");
  w.parameters.write_json(dir + "/parameter_histograms.json");
  errors.analysis.write_json(dir + "/errors.json");
  write_text_file(dir + "/decision_paths.json", paths.to_json());
  std::printf(
      "Report: %s/report.html; data: {activation_stats,gradient_flow}.{csv,json}, saliency.json, feature_maps.json, "
      "parameter_histograms.json, errors.json, embedding.csv, decision_paths.json; pictures: model.dot%s, filters.png, "
      "feature_maps.png, "
      "saliency.png; TensorBoard: tensorboard/ (with the projector's files)\n",
      dir.c_str(), std::filesystem::exists(dir + "/model.svg") ? ", model.svg" : "");
}

}  // namespace seed_cnn
