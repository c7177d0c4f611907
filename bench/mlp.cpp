// Benchmark: the MLP 784-256-128-10 (ReLU, softmax cross-entropy, Adam 1e-3)
// on synthetic MNIST-shaped data; see bench_util.hpp for what is timed.
// bench/compare.sh runs it beside bench/torch_mlp.py and prints the ratios.
//
//   bench_mlp [SAMPLES]      (default 8192)

#include <cstdlib>

#include "bench_util.hpp"

using namespace glassbox;

static Sequential<float> make_mlp() {
  Sequential<float> model(Shape{784}, 1);
  model.add<nn::Dense<float>>(784, 256);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dense<float>>(256, 128);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dense<float>>(128, 10);
  return model;
}

int main(int argc, char** argv) {
  const index_t n = argc > 1 ? std::atol(argv[1]) : 8192;
  bench::run_classifier("mlp", make_mlp, Shape{784}, n);
  return 0;
}
