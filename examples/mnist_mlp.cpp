// MNIST multilayer perceptron: 784-256-128-10 with ReLU, Adam 1e-3, batch 32,
// 5 epochs. Reaches about 97.8% test accuracy.
//
//   mnist_mlp [MNIST_DIR] [EPOCHS]     (MNIST_DIR defaults to data/mnist)

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <glassbox/glassbox.hpp>
#include <string>

int main(int argc, char** argv) try {
  using namespace glassbox;
  const std::string dir = argc > 1 ? argv[1] : "data/mnist";
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 5;

  io::Mnist<float> data = io::load_mnist<float>(dir);
  const index_t pixels = 28 * 28;
  data.train_images.reshape({data.train_images.dim(0), pixels});
  data.test_images.reshape({data.test_images.dim(0), pixels});
  std::printf("MNIST from %s: %td training and %td test images, %d thread(s)\n", dir.c_str(), data.train_images.dim(0),
              data.test_images.dim(0), num_threads());

  Sequential<float> model(Shape{pixels}, /*seed=*/1);
  model.add<nn::Dense<float>>(pixels, 256);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dense<float>>(256, 128);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dense<float>>(128, 10);
  std::printf("%s", model.summary().c_str());
  std::fflush(stdout);  // before the progress bar starts on stderr

  optim::Adam<float> adam(model.parameters(), 1e-3f);
  nn::SoftmaxCrossEntropy<float> loss;
  train::FitOptions<float> options;
  options.epochs = epochs;
  options.batch_size = 32;
  options.seed = 7;
  options.validation_x = &data.test_images;
  options.validation_y = &data.test_labels;

  const auto start = std::chrono::steady_clock::now();
  train::fit(model, adam, loss, data.train_images, data.train_labels, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const train::Evaluation test = train::evaluate(model, loss, data.test_images, data.test_labels);
  std::printf("Training took %.1f s\nTest loss %.4f, test accuracy %.2f%%\n", seconds, test.loss,
              100.0 * test.accuracy);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "mnist_mlp: %s\n", e.what());
  return 1;
}
