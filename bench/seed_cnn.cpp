// Benchmark: the seed CNN (Conv2D(32, 3x3, relu) -> MaxPool 2x2 -> Flatten ->
// Dense(10), softmax cross-entropy, Adam 1e-3) on synthetic MNIST-shaped data.
// Prints training samples/s at batch 32 and 128 and inference samples/s at
// batch 256, each the median of 5 runs; bench/compare.sh puts them beside
// bench/torch_seed_cnn.py's figures. Then what running the Conv2D and its
// MaxPool2D as one pass gains: the same epoch (batch 32) and inference with
// the pair fused and with it run apart (a hook on the Conv2D keeps it so),
// the two taking turns, medians of 5 each.
//
//   bench_seed_cnn [SAMPLES]      (default 4096)

#include <cstdlib>

#include "bench_util.hpp"

using namespace glassbox;

int main(int argc, char** argv) {
  const index_t n = argc > 1 ? std::atol(argv[1]) : 4096;
  bench::run_classifier("seed_cnn", bench::seed_cnn, Shape{1, 28, 28}, n);

  Rng rng(1);
  Tensor<float> x(Shape{n, 1, 28, 28}), y(Shape{n});
  for (float& v : x) v = static_cast<float>(rng.uniform());
  for (float& v : y) v = static_cast<float>(rng.below(10));
  struct Way {
    Sequential<float> model = bench::seed_cnn();
    optim::Adam<float> adam{model.parameters(), 1e-3f};
    std::vector<double> train, infer;
  };
  Way fused, apart;
  HookHandle watch = apart.model.add_forward_hook(0, [](const ForwardEvent<float>&) {});
  nn::SoftmaxCrossEntropy<float> loss;
  Tensor<float> bx, by, grad;
  auto seconds = [](auto&& run) {
    const auto start = std::chrono::steady_clock::now();
    run();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  for (int round = 0; round < 6; ++round)
    for (Way* way : {&fused, &apart}) {
      const double train = seconds([&] {
        for (index_t start = 0; start + 32 <= n; start += 32) {
          copy_rows(x, start, 32, bx);
          copy_rows(y, start, 32, by);
          loss.forward(way->model.forward(bx, Mode::train), by, &grad);
          way->model.backward(grad);
          way->adam.step();
        }
      });
      const double infer = seconds([&] { way->model.predict(x, 256); });
      if (round == 0) continue;  // warm-up
      way->train.push_back(static_cast<double>(n / 32 * 32) / train);
      way->infer.push_back(static_cast<double>(n) / infer);
    }
  auto median = [](std::vector<double> v) {
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  std::printf("glassbox seed_cnn train_b32_apart %.0f samples/s\nglassbox seed_cnn infer_b256_apart %.0f samples/s\n",
              median(apart.train), median(apart.infer));
  std::printf(
      "fusion seed_cnn (conv + pool in one pass, taking turns with the pair apart): train_b32 %.0f vs %.0f "
      "samples/s (%.2fx), infer_b256 %.0f vs %.0f (%.2fx)\n",
      median(fused.train), median(apart.train), median(fused.train) / median(apart.train), median(fused.infer),
      median(apart.infer), median(fused.infer) / median(apart.infer));
  return 0;
}
