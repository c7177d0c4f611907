#pragma once
// Shared timing loop of the benchmarks: training samples/s at batch 32 and 128
// (forward, softmax cross-entropy, backward, Adam step over contiguous
// batches) and inference samples/s at batch 256, each the median of 5 runs
// after a warm-up, on uniform random inputs and labels.

#include <sys/resource.h>

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

// Multiply-adds of one sample's forward pass through each Dense and Conv2D
// layer of a model (the GEMM work; elementwise layers are not counted).
inline std::vector<double> gemm_macs_per_layer(glassbox::Sequential<float>& model, const glassbox::Shape& sample) {
  using namespace glassbox;
  std::vector<double> macs;
  Shape shape = sample.batched(1);
  for (std::size_t i = 0; i < model.size(); ++i) {
    Layer<float>& layer = model.layer(i);
    const Shape out = layer.output_shape(shape);
    if (auto* dense = dynamic_cast<nn::Dense<float>*>(&layer))
      macs.push_back(static_cast<double>(dense->in_features() * dense->out_features()));
    else if (auto* conv = dynamic_cast<nn::Conv2D<float>*>(&layer))
      macs.push_back(
          static_cast<double>(out.size() * conv->in_channels() * conv->window().kernel.h * conv->window().kernel.w));
    shape = out;
  }
  return macs;
}

// Prints "flops <name> <what> <GEMM FLOPs per sample>" for the rows of
// bench/compare.sh: a forward pass (infer); forward, weight gradients and
// input gradients but the first layer's (train); forward and every input
// gradient (gradient saliency; Integrated Gradients: that for each of its
// 50 steps).
inline void print_flops(const char* name, glassbox::Sequential<float>& model, const glassbox::Shape& sample) {
  const std::vector<double> macs = gemm_macs_per_layer(model, sample);
  double forward = 0;
  for (double m : macs) forward += 2 * m;
  const double first = macs.empty() ? 0 : 2 * macs.front();
  std::printf("flops %s infer %.0f\nflops %s train %.0f\nflops %s saliency %.0f\nflops %s ig50 %.0f\n", name, forward,
              name, 3 * forward - first, name, 2 * forward, name, 50 * 2 * forward);
}

// The process's peak resident memory so far, in MB (Linux: ru_maxrss is in KiB).
inline double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
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
  print_flops(name, model, sample);
  std::printf("memory %s %.0f MB peak resident, of which the %td samples %.0f MB\n", name, peak_rss_mb(), n,
              static_cast<double>(x.size() + y.size()) * sizeof(float) / (1024.0 * 1024.0));
}

}  // namespace bench
