// A visualizer of your own, written only against the public hook API (no
// built-in recorder): while an MLP learns MNIST it
//  - prints, per layer, an ASCII sparkline of the mean activation per epoch;
//  - writes every 10th step's per-layer gradient norm to a CSV file.
//
//   custom_visualizer [MNIST_DIR] [EPOCHS] [CSV]   (data/mnist, 5, grad_norms.csv)

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <glassbox/glassbox.hpp>
#include <map>
#include <string>
#include <vector>

using namespace glassbox;

// One character per value, from the lowest to the highest of the series.
std::string sparkline(const std::vector<double>& values) {
  static const char* const levels[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  double lo = values.front(), hi = values.front();
  for (double v : values) lo = std::min(lo, v), hi = std::max(hi, v);
  std::string line;
  for (double v : values) line += levels[hi > lo ? static_cast<int>(7.999 * (v - lo) / (hi - lo)) : 0];
  return line;
}

int main(int argc, char** argv) try {
  const std::string dir = argc > 1 ? argv[1] : "data/mnist";
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 5;
  const std::string csv_path = argc > 3 ? argv[3] : "grad_norms.csv";
  const io::Mnist<float> data = io::load_mnist<float>(dir);

  Sequential<float> model(Shape{1, 28, 28}, /*seed=*/1);
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(784, 128);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dense<float>>(128, 10);

  // Mean activation per layer: summed over this epoch's training batches.
  std::map<std::string, double> sum;
  std::map<std::string, long long> batches;
  std::map<std::string, std::vector<double>> per_epoch;  // the sparkline data
  HookHandle activations = model.add_forward_hook([&](const ForwardEvent<float>& e) {
    if (e.mode != Mode::train) return;  // skip validation passes
    sum[e.name] += static_cast<double>(e.output.flat().mean());
    ++batches[e.name];
  });

  // Gradient norm wrt each layer's output, every 10th step, as CSV rows.
  std::FILE* csv = std::fopen(csv_path.c_str(), "w");
  if (!csv) throw Error("cannot write " + csv_path);
  std::fprintf(csv, "step,layer,grad_norm\n");
  HookHandle gradients = model.add_backward_hook([&](const BackwardEvent<float>& e) {
    if (e.step % 10 == 0)
      std::fprintf(csv, "%lld,%s,%g\n", e.step, e.name.c_str(), std::sqrt(e.grad_output.flat().square().sum()));
  });

  train::LambdaCallback epoch_end;
  epoch_end.epoch_end = [&](const train::EpochLogs&) {
    for (auto& [name, total] : sum) per_epoch[name].push_back(total / static_cast<double>(batches[name]));
    sum.clear();
    batches.clear();
  };

  optim::Adam<float> adam(model.parameters(), 1e-3f);
  train::FitOptions<float> options;
  options.epochs = epochs;
  options.validation_x = &data.test_images;
  options.validation_y = &data.test_labels;
  options.callbacks = {&epoch_end};
  train::fit(model, adam, nn::SoftmaxCrossEntropy<float>(), data.train_images, data.train_labels, options);
  std::fclose(csv);

  std::printf("mean activation per epoch (low to high):\n");
  for (std::size_t i = 0; i < model.size(); ++i) {
    const std::vector<double>& v = per_epoch[model.layer(i).name()];
    std::printf("  %-10s %s  %.4f -> %.4f\n", model.layer(i).name().c_str(), sparkline(v).c_str(), v.front(), v.back());
  }
  std::printf("gradient norms every 10 steps: %s\n", csv_path.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "custom_visualizer: %s\n", e.what());
  return 1;
}
