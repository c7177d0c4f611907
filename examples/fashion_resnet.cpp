// Skip connections on Fashion-MNIST, two ways.
//
// 1. A small residual CNN against the seed CNN, same optimizer (Adam 1e-3,
//    batch 32), same epochs:
//      conv 3x3 (16) -> [conv 3x3, BN, ReLU, conv 3x3, BN] + x -> ReLU -> max pool
//      -> [conv 3x3 (32), BN, ReLU, conv 3x3, BN] + 1x1 conv (x) -> ReLU -> max pool
//      -> flatten -> dense 10
// 2. Why skip connections help, in gradients: two MLPs of the same depth (an
//    input layer, 16 hidden Dense(64) + sigmoid layers, an output layer), one
//    plain and one whose hidden layers are grouped in 8 residual blocks, are
//    trained for 300 steps while GradientFlow records every 10 steps. The
//    table gives each hidden layer's mean weight-gradient norm: in the plain
//    stack it shrinks layer by layer towards the input (vanishing gradient);
//    with shortcuts it stays alive.
//
// RUN_DIR gets the recorders' CSV/JSON and report.html.
//   fashion_resnet [FASHION_DIR] [EPOCHS] [RUN_DIR]   (data/fashion-mnist, 2, runs/fashion_resnet)

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <glassbox/glassbox.hpp>
#include <glassbox/viz/html_report.hpp>
#include <string>

namespace {
using namespace glassbox;

Sequential<float> seed_cnn() {
  Sequential<float> m(Shape{1, 28, 28}, 1);
  nn::Conv2D<float>::Options relu;
  relu.activation = nn::Activation::relu;
  m.add<nn::Conv2D<float>>(1, 32, nn::Size2{3, 3}, relu);
  m.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  m.add<nn::Flatten<float>>();
  m.add<nn::Dense<float>>(5408, 10);
  return m;
}

// [conv 3x3, BN, ReLU, conv 3x3, BN] + shortcut, then ReLU.
void add_residual_stage(Sequential<float>& m, index_t in, index_t out) {
  nn::Conv2D<float>::Options same;
  same.padding = nn::Padding::same;
  same.bias = false;  // batch norm follows
  auto block = std::make_unique<nn::Residual<float>>();
  block->add<nn::Conv2D<float>>(in, out, nn::Size2{3, 3}, same);
  block->add<nn::BatchNorm<float>>(out);
  block->add<nn::ReLU<float>>();
  block->add<nn::Conv2D<float>>(out, out, nn::Size2{3, 3}, same);
  block->add<nn::BatchNorm<float>>(out);
  if (in != out) block->set_shortcut<nn::Conv2D<float>>(in, out, nn::Size2{1, 1});
  m.add(std::move(block));
  m.add<nn::ReLU<float>>();
}

Sequential<float> residual_cnn() {
  Sequential<float> m(Shape{1, 28, 28}, 1);
  nn::Conv2D<float>::Options same_relu;
  same_relu.padding = nn::Padding::same;
  same_relu.activation = nn::Activation::relu;
  m.add<nn::Conv2D<float>>(1, 16, nn::Size2{3, 3}, same_relu);
  add_residual_stage(m, 16, 16);
  m.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  add_residual_stage(m, 16, 32);
  m.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  m.add<nn::Flatten<float>>();
  m.add<nn::Dense<float>>(32 * 7 * 7, 10);
  return m;
}

// 784 -> 64, 16 hidden Dense(64) + sigmoid, -> 10; with shortcuts, the hidden
// layers go in pairs into 8 residual blocks.
Sequential<float> deep_mlp(bool shortcuts) {
  Sequential<float> m(Shape{784}, 3);
  m.add<nn::Dense<float>>(784, 64);
  m.add<nn::Sigmoid<float>>();
  for (int pair = 0; pair < 8; ++pair) {
    if (shortcuts) {
      auto block = std::make_unique<nn::Residual<float>>();
      for (int k = 0; k < 2; ++k) {
        block->add<nn::Dense<float>>(64, 64);
        block->add<nn::Sigmoid<float>>();
      }
      m.add(std::move(block));
    } else {
      for (int k = 0; k < 2; ++k) {
        m.add<nn::Dense<float>>(64, 64);
        m.add<nn::Sigmoid<float>>();
      }
    }
  }
  m.add<nn::Dense<float>>(64, 10);
  return m;
}

// Stops fit() after a number of steps.
class StopAfter : public train::Callback {
 public:
  explicit StopAfter(long long steps) : steps_(steps) {}
  void on_batch_end(const train::BatchLogs&) override { ++done_; }
  bool stop_training() const override { return done_ >= steps_; }

 private:
  long long steps_, done_ = 0;
};

double train_and_test(Sequential<float>& model, io::Mnist<float>& data, int epochs, train::History* history) {
  optim::Adam<float> adam(model.parameters(), 1e-3f);
  nn::SoftmaxCrossEntropy<float> loss;
  train::FitOptions<float> options;
  options.epochs = epochs;
  options.batch_size = 32;
  options.seed = 7;
  options.validation_x = &data.test_images;
  options.validation_y = &data.test_labels;
  *history = train::fit(model, adam, loss, data.train_images, data.train_labels, options);
  return train::evaluate(model, loss, data.test_images, data.test_labels).accuracy;
}

}  // namespace

int main(int argc, char** argv) try {
  const std::string dir = argc > 1 ? argv[1] : "data/fashion-mnist";
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 2;
  const std::string run_dir = argc > 3 ? argv[3] : "runs/fashion_resnet";
  std::filesystem::create_directories(run_dir);
  io::Mnist<float> data = io::load_mnist<float>(dir);
  std::printf("Fashion-MNIST from %s: %td training and %td test images, %d thread(s)\n\n", dir.c_str(),
              data.train_images.dim(0), data.test_images.dim(0), num_threads());
  viz::HtmlReport report("Skip connections on Fashion-MNIST");

  // 1. Residual CNN against the seed CNN.
  Sequential<float> seed = seed_cnn(), resnet = residual_cnn();
  std::printf("Seed CNN:\n%s", seed.summary().c_str());
  std::fflush(stdout);
  train::History seed_history, resnet_history;
  const double seed_accuracy = train_and_test(seed, data, epochs, &seed_history);
  std::printf("\nResidual CNN:\n%s", resnet.summary().c_str());
  std::fflush(stdout);
  inspect::GradientFlowOptions every_100;
  every_100.schedule.every = 100;
  inspect::GradientFlow<float> resnet_flow(resnet, every_100);
  const auto start = std::chrono::steady_clock::now();
  const double resnet_accuracy = train_and_test(resnet, data, epochs, &resnet_history);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\nAfter %d epochs: seed CNN %.2f%%, residual CNN %.2f%% (%.0f s)\n", epochs, 100 * seed_accuracy,
              100 * resnet_accuracy, seconds);
  std::printf("The residual CNN beats the seed CNN: %.2f%% vs %.2f%% -> %s\n", 100 * resnet_accuracy,
              100 * seed_accuracy, resnet_accuracy > seed_accuracy ? "met" : "not met");
  resnet_flow.write_csv(run_dir + "/resnet_gradient_flow.csv");
  report.add_model<float>(resnet, nullptr, &resnet_flow);  // the diagram draws each block beside its shortcut
  report.add_history(resnet_history);
  report.add_gradient_flow(resnet_flow);

  // 2. The same depth with and without shortcuts: gradient flow.
  for (Tensor<float>* images : {&data.train_images, &data.test_images}) images->reshape({images->dim(0), 784});
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<double>> norms(2);
  double accuracy[2] = {0, 0};
  for (int shortcuts = 0; shortcuts < 2; ++shortcuts) {
    Sequential<float> mlp = deep_mlp(shortcuts == 1);
    inspect::GradientFlowOptions every_10;
    every_10.schedule.every = 10;
    inspect::GradientFlow<float> flow(mlp, every_10);
    optim::Adam<float> adam(mlp.parameters(), 1e-3f);
    nn::SoftmaxCrossEntropy<float> loss;
    train::FitOptions<float> options;
    options.batch_size = 64;
    options.verbosity = train::Verbosity::silent;
    StopAfter stop(300);
    options.callbacks.push_back(&stop);
    train::fit(mlp, adam, loss, data.train_images, data.train_labels, options);
    accuracy[shortcuts] = train::evaluate(mlp, loss, data.test_images, data.test_labels).accuracy;
    for (Parameter<float>* p : mlp.parameters()) {
      if (p->local_name() != "weight") continue;
      double sum = 0;
      const auto& records = flow.parameter(p->name).records;
      for (const auto& r : records) sum += r.grad_norm;
      norms[static_cast<std::size_t>(shortcuts)].push_back(sum / static_cast<double>(records.size()));
    }
    flow.write_csv(run_dir + (shortcuts ? "/deep_residual_gradient_flow.csv" : "/deep_plain_gradient_flow.csv"));
  }
  std::printf("\n18 Dense layers (16 hidden, sigmoid), 300 steps of Adam: mean weight-gradient norm per layer\n");
  std::printf("%6s %14s %14s\n", "layer", "plain", "residual");
  for (std::size_t k = 0; k < norms[0].size(); ++k) {
    std::printf("%6zu %14.3e %14.3e\n", k + 1, norms[0][k], norms[1][k]);
    rows.push_back({std::to_string(k + 1), fmt::format("{:.3e}", norms[0][k]), fmt::format("{:.3e}", norms[1][k])});
  }
  const double plain_ratio = norms[0].front() / norms[0].back(), residual_ratio = norms[1].front() / norms[1].back();
  std::printf("First layer / last layer gradient norm: plain %.2e, residual %.2e\n", plain_ratio, residual_ratio);
  std::printf("Test accuracy after 300 steps: plain %.2f%%, residual %.2f%%\n", 100 * accuracy[0], 100 * accuracy[1]);
  std::printf("Shortcuts keep the early layers' gradients alive: %s\n",
              residual_ratio > 10 * plain_ratio ? "yes" : "no");
  report.add_table("Mean weight-gradient norm per layer, 18 Dense layers, 300 steps",
                   {"layer", "plain", "with shortcuts"}, rows);
  report.write(run_dir + "/report.html");
  std::printf("Written: %s/{resnet_gradient_flow.csv,deep_*_gradient_flow.csv,report.html}\n", run_dir.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "fashion_resnet: %s\n", e.what());
  return 1;
}
