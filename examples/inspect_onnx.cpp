// Looks inside a model trained elsewhere: imports an ONNX file (PyTorch's
// torch.onnx.export, or glassbox's own export) and runs it on MNIST test
// digits with the tools the main job uses on the seed CNN.
//   - the model's summary, its accuracy, the confusion matrix and per-class
//     metrics, and the gradient saliency of the first misclassified digits;
//   - ActivationStats and GradientFlow on every batch: each batch's forward
//     pass, then the backward pass of the cross-entropy of the true labels
//     (whether the model ends in logits, a softmax or a log-softmax), as if
//     it were trained on these digits, without a step; the per-layer table;
//   - gradient saliency and Integrated Gradients of 8 digits, with IG's
//     completeness check;
//   - RUN_DIR/report.html (the model diagram with its recorders, activations,
//     gradients, attributions, errors), the records as CSV/JSON, model.dot.
// The model must take MNIST samples, (1, 28, 28) or (784), pixels in [0, 1].
// tests/data/onnx/small_cnn_mnist.onnx is a small CNN PyTorch trained and
// exported (tests/data/onnx/make_small_cnn.py), so this runs offline.
//
//   inspect_onnx MODEL.onnx [MNIST_DIR] [RUN_DIR] [DIGITS]
//                (data/mnist, runs/inspect_onnx-<date>-<time>, 2000 test digits)

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <glassbox/glassbox.hpp>
#include <glassbox/io/onnx.hpp>
#include <glassbox/io/onnx_import.hpp>
#include <glassbox/viz/dot.hpp>
#include <glassbox/viz/html_report.hpp>
#include <glassbox/viz/png.hpp>
#include <string>
#include <vector>

namespace {
using namespace glassbox;

std::string timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char text[32];
  std::strftime(text, sizeof text, "%Y%m%d-%H%M%S", &local);
  return text;
}

// What the model's last layer gives, so that its scores can be read as logits.
enum class Output { logits, probabilities, log_probabilities };

Output output_of(Sequential<float>& model) {
  const std::string kind = model.layer(model.size() - 1).kind();
  return kind == "softmax" ? Output::probabilities : kind == "log_softmax" ? Output::log_probabilities : Output::logits;
}

// Scores whose softmax is the model's class probabilities (log p for a softmax output).
Tensor<float> as_logits(const Tensor<float>& y, Output output) {
  Tensor<float> logits = y;
  if (output == Output::probabilities)
    for (float& v : logits) v = std::log(std::max(v, 1e-30f));
  return logits;
}

// d(cross-entropy of the labels)/d(output), for each kind of output, averaged over the batch.
Tensor<float> cross_entropy_grad(const Tensor<float>& y, const Tensor<float>& labels, index_t first, Output output) {
  const index_t n = y.dim(0), classes = y.dim(1);
  Tensor<float> grad(y.shape(), 0.0f);
  for (index_t i = 0; i < n; ++i) {
    const auto label = static_cast<index_t>(labels[first + i]);
    const float* row = y.data() + i * classes;
    float* g = grad.data() + i * classes;
    if (output == Output::probabilities) {
      g[label] = -1.0f / std::max(row[label], 1e-30f);
    } else if (output == Output::log_probabilities) {
      g[label] = -1.0f;
    } else {
      const float top = *std::max_element(row, row + classes);
      float total = 0;
      for (index_t c = 0; c < classes; ++c) total += std::exp(row[c] - top);
      for (index_t c = 0; c < classes; ++c) g[c] = std::exp(row[c] - top) / total;
      g[label] -= 1.0f;
    }
    for (index_t c = 0; c < classes; ++c) g[c] /= static_cast<float>(n);
  }
  return grad;
}

// One digit as a 28x28 plane, whatever the model's sample layout.
viz::Image digit_image(const Tensor<float>& images, index_t i) { return viz::grayscale(viz::plane(images, i)); }

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 2) {
    std::fprintf(stderr, "usage: inspect_onnx MODEL.onnx [MNIST_DIR] [RUN_DIR] [DIGITS]\n");
    return 2;
  }
  const std::string path = argv[1];
  const std::string mnist_dir = argc > 2 ? argv[2] : "data/mnist";
  const std::string dir = argc > 3 ? argv[3] : "runs/inspect_onnx-" + timestamp();
  const index_t wanted = argc > 4 ? std::atol(argv[4]) : 2000;

  Sequential<float> model = io::import_onnx<float>(path);
  std::printf("%s: %zu layers\n%s", path.c_str(), model.size(), model.summary().c_str());
  const Shape sample = *model.sample_shape();
  if (sample != Shape{1, 28, 28} && sample != Shape{784})
    throw Error(
        fmt::format("{}: the model takes samples of {}; MNIST digits are (1, 28, 28) or (784)", path, sample.str()));
  const Shape per_digit = model.predict(Tensor<float>(sample.batched(1))).shape().sample();
  if (per_digit != Shape{10})
    throw Error(fmt::format("{}: the model gives {} per digit, not 10 class scores", path, per_digit.str()));

  const io::Mnist<float> mnist = io::load_mnist<float>(mnist_dir);
  const index_t count = std::min(wanted, mnist.test_images.dim(0));
  Tensor<float> images, labels;
  copy_rows(mnist.test_images, 0, count, images);  // (count, 1, 28, 28), for the pictures
  copy_rows(mnist.test_labels, 0, count, labels);
  Tensor<float> x = images;
  x.reshape(sample.batched(count));
  const Output output = output_of(model);
  std::printf("%td MNIST test digits from %s; the model outputs %s\n", count, mnist_dir.c_str(),
              output == Output::probabilities       ? "probabilities (softmax)"
              : output == Output::log_probabilities ? "log-probabilities (log-softmax)"
                                                    : "logits");

  // Every batch's forward and cross-entropy backward, recorded.
  inspect::ActivationStatsOptions stats_options;
  stats_options.schedule.train = false;
  stats_options.schedule.eval = true;
  inspect::ActivationStats<float> stats(model, stats_options);
  inspect::GradientFlowOptions flow_options;
  flow_options.schedule = stats_options.schedule;
  inspect::GradientFlow<float> flow(model, flow_options);
  constexpr index_t batch = 100;
  Tensor<float> logits(Shape{count, 10}), chunk;
  for (index_t first = 0; first < count; first += batch) {
    const index_t rows = std::min(batch, count - first);
    copy_rows(x, first, rows, chunk);
    const Tensor<float>& y = model.forward(chunk, Mode::eval);
    const Tensor<float> scores = as_logits(y, output);
    std::copy(scores.begin(), scores.end(), logits.begin() + first * 10);
    model.backward(cross_entropy_grad(y, labels, first, output));
  }
  std::printf("after %td batches of %td:\n%s", (count + batch - 1) / batch, batch,
              inspect::layer_table(stats, flow).c_str());
  for (const inspect::GradientAlert& a : flow.alerts()) std::printf("  alert: %s\n", a.message.c_str());

  const inspect::ErrorAnalysis errors = inspect::analyze_errors(logits, labels);
  std::printf("%s", errors.to_text().c_str());

  // Attributions of the first 8 digits, for the class the model predicts.
  Tensor<float> probe, probe_images;
  copy_rows(x, 0, std::min<index_t>(8, count), probe);
  copy_rows(images, 0, probe.dim(0), probe_images);
  const Tensor<float> saliency = inspect::gradient_saliency(model, probe);
  inspect::IntegratedGradients<float> ig(model);
  const Tensor<float> integrated = ig.attribute(probe);
  double worst = 0;
  for (const double d : ig.convergence_delta()) worst = std::max(worst, std::abs(d));
  std::printf("Integrated Gradients (50 steps, zero baseline) on %td digits: completeness delta at most %.2e\n",
              probe.dim(0), worst);

  std::filesystem::create_directories(dir);
  std::vector<std::pair<std::string, viz::Image>> attributions, gallery;
  const std::vector<index_t> predicted = inspect::predicted_classes(logits);
  for (index_t d = 0; d < probe.dim(0); ++d) {
    const viz::Image digit = digit_image(probe_images, d);
    auto over = [&](const Tensor<float>& maps) {
      Tensor<float> map;
      copy_rows(maps, d, 1, map);
      map.reshape(Shape{1, 1, 28, 28});
      return viz::enlarge(viz::overlay(digit, viz::heatmap(viz::plane(map, 0), true), 0.7), 3);
    };
    attributions.emplace_back(fmt::format("#{}: a {}, predicted {}; gradient, then Integrated Gradients", d,
                                          static_cast<int>(labels[d]), predicted[static_cast<std::size_t>(d)]),
                              viz::tile({viz::enlarge(digit, 3), over(saliency), over(integrated)}, 3, 2));
  }
  const std::vector<index_t>& wrong = errors.misclassified;
  std::vector<index_t> shown(wrong.begin(),
                             wrong.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(8, wrong.size())));
  if (!shown.empty()) {
    Tensor<float> digits, digit_planes;
    gather_rows(x, shown.begin(), shown.end(), digits);
    gather_rows(images, shown.begin(), shown.end(), digit_planes);
    std::vector<index_t> taken_for;
    for (const index_t n : shown) taken_for.push_back(predicted[static_cast<std::size_t>(n)]);
    Tensor<float> toward_wrong = inspect::gradient_saliency(model, digits, taken_for);
    toward_wrong.reshape(digit_planes.shape());
    for (std::size_t i = 0; i < shown.size(); ++i) {
      const auto row = static_cast<index_t>(i);
      const viz::Image digit = digit_image(digit_planes, row);
      gallery.emplace_back(
          fmt::format("#{}: a {} taken for a {}", shown[i], static_cast<int>(labels[shown[i]]), taken_for[i]),
          viz::tile({viz::enlarge(digit, 3),
                     viz::enlarge(viz::overlay(digit, viz::heatmap(viz::plane(toward_wrong, row), true), 0.7), 3)},
                    2, 2));
    }
  }

  viz::write_dot(dir + "/model.dot", model, Shape{}, &stats, &flow);
  viz::HtmlReport page(fmt::format("glassbox: {} on MNIST", std::filesystem::path(path).filename().string()));
  page.add_model(model, &stats, &flow);
  page.add_activation_stats(stats);
  page.add_gradient_flow(flow);
  page.add_error_analysis(errors, {}, gallery,
                          "The first misclassified test digits, then where a small change would most raise (red) or "
                          "lower (blue) the score of the class it was taken for.");
  page.add_pictures("Attributions", attributions,
                    "Each digit, its gradient saliency and its Integrated Gradients for the predicted class "
                    "(red raises the score, blue lowers it).");
  page.write(dir + "/report.html");
  stats.write_csv(dir + "/activation_stats.csv");
  stats.write_json(dir + "/activation_stats.json");
  flow.write_csv(dir + "/gradient_flow.csv");
  flow.write_json(dir + "/gradient_flow.json");
  errors.write_json(dir + "/errors.json");
  std::printf("Report: %s/report.html; data: {activation_stats,gradient_flow}.{csv,json}, errors.json; model.dot\n",
              dir.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "inspect_onnx: %s\n", e.what());
  return 1;
}
