// Benchmark: the seed CNN (Conv2D(32, 3x3, relu) -> MaxPool 2x2 -> Flatten ->
// Dense(10), softmax cross-entropy, Adam 1e-3) on synthetic MNIST-shaped data.
// Prints training samples/s at batch 32 and 128 and inference samples/s at
// batch 256, each the median of 5 runs; bench/compare.sh puts them beside
// bench/torch_seed_cnn.py's figures.
//
//   bench_seed_cnn [SAMPLES]      (default 4096)

#include <cstdlib>

#include "bench_util.hpp"

using namespace glassbox;

static Sequential<float> make_seed_cnn() {
  Sequential<float> model(Shape{1, 28, 28}, 1);
  nn::Conv2D<float>::Options relu;
  relu.activation = nn::Activation::relu;
  model.add<nn::Conv2D<float>>(1, 32, nn::Size2{3, 3}, relu);
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(5408, 10);
  return model;
}

int main(int argc, char** argv) {
  const index_t n = argc > 1 ? std::atol(argv[1]) : 4096;
  bench::run_classifier("seed_cnn", make_seed_cnn, Shape{1, 28, 28}, n);
  return 0;
}
