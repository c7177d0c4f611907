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

int main(int argc, char** argv) {
  const index_t n = argc > 1 ? std::atol(argv[1]) : 4096;
  bench::run_classifier("seed_cnn", bench::seed_cnn, Shape{1, 28, 28}, n);
  return 0;
}
