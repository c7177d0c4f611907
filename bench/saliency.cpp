// Attribution speed on the seed CNN trained for one epoch on the shipped
// 1,000-image MNIST subset: gradient saliency of its 1,000 test images in one
// batch, and Integrated Gradients (50 Gauss-Legendre steps, zero baseline) of
// 100 of them; images/s, the median of 5 runs after a warm-up. The same in
// PyTorch: bench/torch_saliency.py (bench/compare.sh runs both).
//   bench_saliency [MNIST_DIR]   (default: the subset in tests/data)

#include <cstdio>

#include "bench_util.hpp"

int main(int argc, char** argv) try {
  using namespace glassbox;
  const std::string dir = argc > 1 ? argv[1] : GLASSBOX_SOURCE_DIR "/tests/data/mnist-subset";
  const io::Mnist<float> data = io::load_mnist<float>(dir);
  Sequential<float> model = bench::seed_cnn();
  optim::Adam<float> adam(model.parameters(), 1e-3f);
  nn::SoftmaxCrossEntropy<float> loss;
  train::FitOptions<float> options;
  options.batch_size = 32;
  options.verbosity = train::Verbosity::silent;
  train::fit(model, adam, loss, data.train_images, data.train_labels, options);

  Tensor<float> images, hundred;
  copy_rows(data.test_images, 0, 1000, images);
  copy_rows(data.test_images, 0, 100, hundred);
  std::printf("threads %d, trained on %td images\n", num_threads(), data.train_images.dim(0));
  inspect::Saliency<float> saliency(model);
  const double s = bench::median_seconds([&] { saliency.attribute(images); });
  std::printf("glassbox seed_cnn saliency_1000 %.0f images/s\n", 1000 / s);
  inspect::IntegratedGradients<float> ig(model);
  const double t = bench::median_seconds([&] { ig.attribute(hundred); });
  std::printf("glassbox seed_cnn ig50_100 %.0f images/s\n", 100 / t);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_saliency: %s\n", e.what());
  return 1;
}
