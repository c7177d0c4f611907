// Benchmark: what watching a model costs. Trains the seed CNN for one epoch
// (batch 32, Adam 1e-3, through train::fit) three ways, interleaved over
// several rounds: no hooks attached; ActivationStats + GradientFlow recording
// every step; the same every 50 steps. Prints the median samples/s of each and
// the ratios to "no hooks". Built with -DGLASSBOX_DISABLE_HOOKS (bench/hooks.sh
// does both) it runs only the first way, for the "hooks compiled out" column.
//
//   bench_hooks [MNIST_DIR] [ROUNDS]   (synthetic MNIST-shaped data when MNIST_DIR has none)

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

#include "bench_util.hpp"

using namespace glassbox;

namespace {

double train_epoch_seconds(const Tensor<float>& x, const Tensor<float>& y, long long every) {
  Sequential<float> model = bench::seed_cnn();
  optim::Adam<float> adam(model.parameters(), 1e-3f);
  nn::SoftmaxCrossEntropy<float> loss;
  train::FitOptions<float> options;
  options.batch_size = 32;
  options.verbosity = train::Verbosity::silent;
#ifndef GLASSBOX_DISABLE_HOOKS
  std::unique_ptr<inspect::ActivationStats<float>> stats;
  std::unique_ptr<inspect::GradientFlow<float>> flow;
  if (every > 0) {
    inspect::ActivationStatsOptions s;
    s.schedule.every = every;
    inspect::GradientFlowOptions g;
    g.schedule.every = every;
    stats = std::make_unique<inspect::ActivationStats<float>>(model, s);
    flow = std::make_unique<inspect::GradientFlow<float>>(model, g);
  }
#else
  (void)every;
#endif
  return train::fit(model, adam, loss, x, y, options).last().seconds;
}

}  // namespace

int main(int argc, char** argv) try {
  const std::string dir = argc > 1 ? argv[1] : "data/mnist";
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  Tensor<float> x, y;
  if (std::ifstream(dir + "/train-images-idx3-ubyte")) {
    io::Mnist<float> data = io::load_mnist<float>(dir);
    x = std::move(data.train_images);
    y = std::move(data.train_labels);
  } else {
    const index_t n = 60000;
    Rng rng(0);
    x.resize(Shape{n, 1, 28, 28});
    y.resize(Shape{n});
    for (float& v : x) v = static_cast<float>(rng.uniform());
    for (float& v : y) v = static_cast<float>(rng.below(10));
    std::printf("(no MNIST in %s: synthetic data)\n", dir.c_str());
  }
#ifdef GLASSBOX_DISABLE_HOOKS
  const std::map<std::string, long long> ways{{"hooks_compiled_out", 0}};
#else
  const std::map<std::string, long long> ways{
      {"no_hooks", 0}, {"stats_flow_every_step", 1}, {"stats_flow_every_50", 50}};
#endif
  std::map<std::string, std::vector<double>> seconds;
  for (int r = 0; r < rounds; ++r)
    for (const auto& [name, every] : ways) seconds[name].push_back(train_epoch_seconds(x, y, every));
  const double n = static_cast<double>(x.dim(0));
  std::map<std::string, double> rate;
  for (auto& [name, s] : seconds) {
    std::nth_element(s.begin(), s.begin() + s.size() / 2, s.end());
    rate[name] = n / s[s.size() / 2];
    std::printf("glassbox hooks %s %.0f samples/s\n", name.c_str(), rate[name]);
  }
  if (rate.count("no_hooks"))
    for (const auto& [name, r] : rate)
      if (name != "no_hooks") std::printf("ratio %s / no_hooks: %.3f\n", name.c_str(), r / rate["no_hooks"]);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_hooks: %s\n", e.what());
  return 1;
}
