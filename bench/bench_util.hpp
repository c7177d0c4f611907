#pragma once
// Shared timing loop of the benchmarks: training samples/s at batch 32 and 128
// (forward, softmax cross-entropy, backward, Adam step over contiguous
// batches) and inference samples/s at batch 256, each the median of 5 runs
// after a warm-up, on uniform random inputs and labels.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <glassbox/glassbox.hpp>
#include <vector>

namespace bench {

using glassbox::index_t;

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

// The seed CNN: Conv2D(32, 3x3, relu) -> MaxPool 2x2 -> Flatten -> Dense(10).
inline glassbox::Sequential<float> seed_cnn() {
  using namespace glassbox;
  Sequential<float> model(Shape{1, 28, 28}, 1);
  nn::Conv2D<float>::Options relu;
  relu.activation = nn::Activation::relu;
  model.add<nn::Conv2D<float>>(1, 32, nn::Size2{3, 3}, relu);
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(5408, 10);
  return model;
}

// Prints "glassbox <name> train_b32 <samples/s>" and the like.
template <class MakeModel>
void run_classifier(const char* name, MakeModel make_model, const glassbox::Shape& sample, index_t n) {
  using namespace glassbox;
  Rng rng(0);
  Tensor<float> x(sample.batched(n)), y(Shape{n});
  for (float& v : x) v = static_cast<float>(rng.uniform());
  for (float& v : y) v = static_cast<float>(rng.below(10));
  std::printf("threads %d, samples %td\n", num_threads(), n);

  for (index_t batch : {32, 128}) {
    Sequential<float> model = make_model();
    optim::Adam<float> adam(model.parameters(), 1e-3f);
    nn::SoftmaxCrossEntropy<float> loss;
    Tensor<float> bx, by, grad;
    const double s = median_seconds([&] {
      for (index_t start = 0; start + batch <= n; start += batch) {
        copy_rows(x, start, batch, bx);
        copy_rows(y, start, batch, by);
        loss.forward(model.forward(bx, Mode::train), by, &grad);
        model.backward(grad);
        adam.step();
      }
    });
    std::printf("glassbox %s train_b%td %.0f samples/s\n", name, batch, static_cast<double>(n / batch * batch) / s);
  }
  Sequential<float> model = make_model();
  const double s = median_seconds([&] { model.predict(x, 256); });
  std::printf("glassbox %s infer_b256 %.0f samples/s\n", name, static_cast<double>(n) / s);
}

}  // namespace bench
