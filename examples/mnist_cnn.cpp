// The seed CNN: the worked example of the article glassbox grew from.
//   Conv2D(32, 3x3, relu) -> MaxPool 2x2 -> Flatten -> Dense(10, softmax)
// Adam 1e-3, batch 32, 5 epochs, shuffled with a fixed seed. The softmax is
// fused into the loss (SoftmaxCrossEntropy on the Dense layer's logits), which
// is the same function as Keras' softmax + sparse categorical cross-entropy,
// computed stably.
//
// Introspection while it trains: ActivationStats and GradientFlow record
// every 50 steps, NanWatch checks every step, and a per-layer table is
// printed after each epoch. Saliency maps of 8 test digits (after each epoch)
// and the conv layer's feature maps of 4 test digits are kept too. At the end
// it checks Integrated Gradients' completeness on 100 test digits, and the
// records go to RUN_DIR as CSV and JSON (schemas in the README), with
// pictures (PNG, DOT/SVG), report.html and TensorBoard event files in
// RUN_DIR/tensorboard.
//
//   mnist_cnn [MNIST_DIR] [EPOCHS] [RUN_DIR]   (data/mnist, 5, runs/seed_cnn-<date>-<time>)

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <glassbox/glassbox.hpp>
#include <glassbox/viz/dot.hpp>
#include <glassbox/viz/html_report.hpp>
#include <glassbox/viz/png.hpp>
#include <glassbox/viz/tensorboard.hpp>
#include <string>

namespace {
using namespace glassbox;

// Local time as 20261126-081500, for run directory names.
std::string timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char text[32];
  std::strftime(text, sizeof text, "%Y%m%d-%H%M%S", &local);
  return text;
}

// The pictures of the report: the model diagram with the newest statistics,
// the conv filters, the feature maps of the captured digits and the newest
// saliency maps (see viz/).
void write_pictures(const std::string& dir, Sequential<float>& model, const inspect::ActivationStats<float>& stats,
                    const inspect::GradientFlow<float>& flow, const inspect::ActivationCapture<float>& feature_maps,
                    const inspect::SaliencyRecorder<float>& saliency, const Tensor<float>& probe) {
  viz::write_dot(dir + "/model.dot", model, Shape{}, &stats, &flow);
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
    filters.push_back(viz::enlarge(viz::heatmap(viz::plane(weight, f), viz::Colormap::diverging, range), 8));
  viz::write_png(dir + "/filters.png",
                 viz::with_colour_bar(viz::tile(filters, 8, 4), viz::Colormap::diverging, range, 2));

  // One row per captured digit: the digit, then its 32 feature maps (viridis, one scale per digit).
  std::vector<viz::Image> rows;
  for (const inspect::Capture<float>& c : feature_maps.captures()) {
    std::vector<viz::Image> row{viz::enlarge(viz::grayscale(viz::plane(probe, c.sample)), 2)};
    viz::Range r{0, 0};
    for (index_t m = 0; m < c.value.dim(1); ++m)
      r.high = std::max(r.high, viz::range_of(viz::plane(c.value, 0, m), false).high);
    for (index_t m = 0; m < c.value.dim(1); ++m)
      row.push_back(viz::enlarge(viz::heatmap(viz::plane(c.value, 0, m), viz::Colormap::viridis, r), 2));
    rows.push_back(
        viz::with_colour_bar(viz::tile(row, static_cast<index_t>(row.size()), 2), viz::Colormap::viridis, r));
  }
  if (!rows.empty()) viz::write_png(dir + "/feature_maps.png", viz::tile(rows, 1, 6));

  // The newest saliency of each probe digit, signed, over the digit.
  if (!saliency.records().empty()) {
    const Tensor<float>& maps = saliency.records().back().saliency;
    std::vector<viz::Image> cells;
    for (index_t d = 0; d < maps.dim(0); ++d) {
      const viz::Image digit = viz::grayscale(viz::plane(probe, d));
      cells.push_back(viz::enlarge(digit, 4));
      cells.push_back(viz::enlarge(viz::overlay(digit, viz::heatmap(viz::plane(maps, d), true), 0.7), 4));
    }
    viz::write_png(dir + "/saliency.png", viz::tile(cells, 4, 4));
  }
}
}  // namespace

int main(int argc, char** argv) try {
  using namespace glassbox;
  const std::string dir = argc > 1 ? argv[1] : "data/mnist";
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 5;
  const std::string report = argc > 3 ? argv[3] : "runs/seed_cnn-" + timestamp();

  io::Mnist<float> data = io::load_mnist<float>(dir);
  std::printf("MNIST from %s: %td training and %td test images, %d thread(s)\n", dir.c_str(), data.train_images.dim(0),
              data.test_images.dim(0), num_threads());

  Sequential<float> model(Shape{1, 28, 28}, /*seed=*/1);
  nn::Conv2D<float>::Options relu;  // Keras' Conv2D(32, (3, 3), activation="relu")
  relu.activation = nn::Activation::relu;
  model.add<nn::Conv2D<float>>(1, 32, nn::Size2{3, 3}, relu);
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(32 * 13 * 13, 10);
  std::printf("%s", model.summary().c_str());
  std::fflush(stdout);  // before the progress bar starts on stderr

  inspect::ActivationStatsOptions stats_options;
  stats_options.schedule.every = 50;
  inspect::ActivationStats<float> stats(model, stats_options);
  inspect::GradientFlowOptions flow_options;
  flow_options.schedule.every = 50;
  inspect::GradientFlow<float> flow(model, flow_options);
  inspect::NanWatch<float> nan_watch(model);
  inspect::ActivationCaptureOptions capture_options;
  capture_options.layers = {"conv2d_1"};
  capture_options.samples = {0, 1, 2, 3};
  inspect::ActivationCapture<float> feature_maps(model, capture_options);
  Tensor<float> probe;
  copy_rows(data.test_images, 0, std::min<index_t>(8, data.test_images.dim(0)), probe);
  inspect::SaliencyRecorder<float> saliency(model, probe);  // each digit's predicted class
  train::LambdaCallback table;
  table.epoch_end = [&](const train::EpochLogs& e) {
    std::printf("after epoch %d (newest records, step %lld):\n%s", e.epoch + 1,
                stats.all().front().records.back().context.step, inspect::layer_table(stats, flow).c_str());
    for (const inspect::GradientAlert& a : flow.alerts()) std::printf("  alert: %s\n", a.message.c_str());
    std::fflush(stdout);
  };

  optim::Adam<float> adam(model.parameters(), 1e-3f);
  nn::SoftmaxCrossEntropy<float> loss;
  train::FitOptions<float> options;
  options.epochs = epochs;
  options.batch_size = 32;
  options.seed = 7;
  options.validation_x = &data.test_images;
  options.validation_y = &data.test_labels;
  viz::TensorBoardWriter tensorboard(report + "/tensorboard");  // tensorboard --logdir report/tensorboard
  viz::TensorBoardLogger<float> tensorboard_logger(tensorboard, model, &stats, &flow, &adam);
  options.callbacks = {&table, &saliency, &tensorboard_logger};

  const auto start = std::chrono::steady_clock::now();
  const train::History history = train::fit(model, adam, loss, data.train_images, data.train_labels, options);
  data.train_images = Tensor<float>();  // 188 MB no longer needed: the checks below use test digits
  data.train_labels = Tensor<float>();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  for (const train::EpochLogs& e : history.epochs)
    std::printf("epoch %d: validation accuracy %.2f%% (%.1f s)\n", e.epoch + 1, 100.0 * e.val_accuracy, e.seconds);
  const train::Evaluation test = train::evaluate(model, loss, data.test_images, data.test_labels);
  std::printf("Training took %.1f s in all\nTest loss %.4f, test accuracy %.2f%%\n", seconds, test.loss,
              100.0 * test.accuracy);

  // How faithful is Integrated Gradients here? Completeness says the
  // attributions sum to F(x) - F(baseline); the delta is what is missing.
  Tensor<float> digits;
  copy_rows(data.test_images, 0, std::min<index_t>(100, data.test_images.dim(0)), digits);
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

  std::filesystem::create_directories(report);
  write_pictures(report, model, stats, flow, feature_maps, saliency, probe);
  for (const char* picture : {"filters", "saliency"})
    tensorboard.add_image(picture, viz::read_png(report + "/" + picture + ".png"), model.training_steps());
  tensorboard.flush();

  viz::HtmlReport page("glassbox: the seed CNN on MNIST");
  page.add_model(model, &stats, &flow);
  page.add_history(history);
  page.add_activation_stats(stats);
  page.add_gradient_flow(flow);
  page.add_pictures("What the network learned",
                    {{"conv2d_1 filters (red excites, blue inhibits)", viz::read_png(report + "/filters.png")},
                     {"gradient saliency over test digits", viz::read_png(report + "/saliency.png")}});
  page.add_pictures("Feature maps of conv2d_1",
                    {{"4 test digits, 32 maps each", viz::read_png(report + "/feature_maps.png")}});
  page.write(report + "/report.html");
  stats.write_csv(report + "/activation_stats.csv");
  stats.write_json(report + "/activation_stats.json");
  flow.write_csv(report + "/gradient_flow.csv");
  flow.write_json(report + "/gradient_flow.json");
  saliency.write_json(report + "/saliency.json");
  feature_maps.write_json(report + "/feature_maps.json");
  std::printf(
      "Report: %s/report.html; data: {activation_stats,gradient_flow}.{csv,json}, saliency.json, feature_maps.json; "
      "pictures: "
      "model.dot%s, filters.png, feature_maps.png, saliency.png; TensorBoard: tensorboard/\n",
      report.c_str(), std::filesystem::exists(report + "/model.svg") ? ", model.svg" : "");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "mnist_cnn: %s\n", e.what());
  return 1;
}
