// Benchmark: the MLP 784-256-128-10 (ReLU, softmax cross-entropy, Adam 1e-3)
// on synthetic MNIST-shaped data. Prints training samples/s at batch 32 and
// 128 and inference samples/s at batch 256, each the median of 5 runs.
// bench/compare.sh runs it beside bench/torch_mlp.py and prints the ratios.
//
//   bench_mlp [SAMPLES]      (default 8192)

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <glassbox/glassbox.hpp>
#include <vector>

using namespace glassbox;

namespace {

Sequential<float> make_mlp() {
  Sequential<float> model(Shape{784}, 1);
  model.add<nn::Dense<float>>(784, 256);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dense<float>>(256, 128);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dense<float>>(128, 10);
  return model;
}

template <class F>
double median_seconds(F&& run, int repeats = 5) {
  run();  // warm-up: first-touch allocations, caches
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    run();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(times.begin(), times.begin() + repeats / 2, times.end());
  return times[static_cast<std::size_t>(repeats / 2)];
}

}  // namespace

int main(int argc, char** argv) {
  const index_t n = argc > 1 ? std::atol(argv[1]) : 8192;
  Rng rng(0);
  Tensor<float> x(Shape{n, 784}), y(Shape{n});
  for (float& v : x) v = static_cast<float>(rng.uniform());
  for (float& v : y) v = static_cast<float>(rng.below(10));
  std::printf("threads %d, samples %td\n", num_threads(), n);

  for (index_t batch : {32, 128}) {
    Sequential<float> model = make_mlp();
    optim::Adam<float> adam(model.parameters(), 1e-3f);
    nn::SoftmaxCrossEntropy<float> loss;
    Tensor<float> bx, by, grad;
    std::vector<index_t> rows;
    const double s = median_seconds([&] {
      for (index_t start = 0; start + batch <= n; start += batch) {
        rows.resize(static_cast<std::size_t>(batch));
        for (index_t i = 0; i < batch; ++i) rows[static_cast<std::size_t>(i)] = start + i;
        gather_rows(x, rows.begin(), rows.end(), bx);
        gather_rows(y, rows.begin(), rows.end(), by);
        loss.forward(model.forward(bx, Mode::train), by, &grad);
        model.backward(grad);
        adam.step();
      }
    });
    std::printf("glassbox mlp train_b%td %.0f samples/s\n", batch, static_cast<double>(n / batch * batch) / s);
  }
  Sequential<float> model = make_mlp();
  const double s = median_seconds([&] { model.predict(x, 256); });
  std::printf("glassbox mlp infer_b256 %.0f samples/s\n", static_cast<double>(n) / s);
  return 0;
}
