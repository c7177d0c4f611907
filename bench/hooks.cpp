// Benchmark: what watching a model costs. Trains the seed CNN for one epoch
// (batch 32, Adam 1e-3, shuffled batches, the step train::fit takes) three
// ways: no hooks attached; ActivationStats + GradientFlow recording every
// step; the same every 50 steps. Each way trains its own model; the ways take
// turns of 150 steps through the epoch, so that all of them see the same
// machine (on a shared VM the speed drifts by 30% within minutes, which whole
// epochs one after the other turn into false ratios). A turn begins with the
// way's buffers out of cache (the other models ran since): turns are long
// enough for that to cost under 1%, and the order rotates so that no way
// always follows the same one. Each way's time is the sum of its turns, after
// 25 untimed warm-up steps. Prints the median samples/s of each over the
// rounds and the median of the per-round ratios to "no hooks". Built with
// -DGLASSBOX_DISABLE_HOOKS (bench/hooks.sh does both) it trains three models
// without hooks in the same turns and reports the first, for the "hooks
// compiled out" column.
//
//   bench_hooks [MNIST_DIR] [ROUNDS]   (synthetic MNIST-shaped data when MNIST_DIR has none)

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <string>

#include "bench_util.hpp"

using namespace glassbox;

namespace {

struct Way {
  std::string name;
  long long every = 0;  // 0: no recorders
  Sequential<float> model = bench::seed_cnn();
  optim::Adam<float> adam{model.parameters(), 1e-3f};
#ifndef GLASSBOX_DISABLE_HOOKS
  std::unique_ptr<inspect::ActivationStats<float>> stats;
  std::unique_ptr<inspect::GradientFlow<float>> flow;
#endif
  double seconds = 0;

  Way(std::string way_name, long long record_every) : name(std::move(way_name)), every(record_every) {
#ifndef GLASSBOX_DISABLE_HOOKS
    if (every > 0) {
      inspect::ActivationStatsOptions s;
      s.schedule.every = every;
      inspect::GradientFlowOptions g;
      g.schedule.every = every;
      stats = std::make_unique<inspect::ActivationStats<float>>(model, s);
      flow = std::make_unique<inspect::GradientFlow<float>>(model, g);
    }
#endif
  }
};

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
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
  // Two unreported partners, so that the turns evict caches as in the other build.
  const std::vector<std::pair<std::string, long long>> ways{
      {"hooks_compiled_out", 0}, {"_partner_1", 0}, {"_partner_2", 0}};
#else
  const std::vector<std::pair<std::string, long long>> ways{
      {"no_hooks", 0}, {"stats_flow_every_step", 1}, {"stats_flow_every_50", 50}};
#endif
  constexpr index_t batch = 32, turn = 150, warmup = 25;
  const index_t n = x.dim(0), steps = n / batch;
  std::map<std::string, std::vector<double>> rate, ratio;
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::unique_ptr<Way>> running;
    for (const auto& [name, every] : ways) running.push_back(std::make_unique<Way>(name, every));
    std::vector<index_t> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), index_t{0});
    Rng(static_cast<std::uint64_t>(round)).shuffle(order.begin(), order.end());
    nn::SoftmaxCrossEntropy<float> loss;
    Tensor<float> bx, by, grad;
    auto train = [&](Way& way, index_t first, index_t last) {
      for (index_t step = first; step < last; ++step) {
        const auto rows = order.begin() + step * batch;
        gather_rows(x, rows, rows + batch, bx);
        gather_rows(y, rows, rows + batch, by);
        loss.forward(way.model.forward(bx, Mode::train), by, &grad);
        way.model.backward(grad);
        way.adam.step();
      }
    };
    // Untimed: the first steps of a model allocate and touch its buffers.
    for (auto& way : running) train(*way, 0, warmup);
    for (index_t first = 0; first < steps; first += turn)
      for (std::size_t k = 0; k < running.size(); ++k) {
        Way& way = *running[(k + static_cast<std::size_t>(first / turn)) % running.size()];
        const auto start = std::chrono::steady_clock::now();
        train(way, first, std::min(steps, first + turn));
        way.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      }
    for (const auto& way : running) {
      rate[way->name].push_back(static_cast<double>(steps * batch) / way->seconds);
      ratio[way->name].push_back(running.front()->seconds / way->seconds);
    }
  }
  for (const auto& [name, r] : rate)
    if (name[0] != '_') std::printf("glassbox hooks %s %.0f samples/s\n", name.c_str(), median(r));
  if (rate.count("no_hooks"))
    for (const auto& [name, r] : ratio)
      if (name != "no_hooks") std::printf("ratio %s / no_hooks: %.3f\n", name.c_str(), median(r));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_hooks: %s\n", e.what());
  return 1;
}
