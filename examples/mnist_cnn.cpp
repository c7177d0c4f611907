// The seed CNN: the worked example of the article glassbox grew from.
//   Conv2D(32, 3x3, relu) -> MaxPool 2x2 -> Flatten -> Dense(10, softmax)
// Adam 1e-3, batch 32, 5 epochs, shuffled with a fixed seed. The softmax is
// fused into the loss (SoftmaxCrossEntropy on the Dense layer's logits), which
// is the same function as Keras' softmax + sparse categorical cross-entropy,
// computed stably.
//
//   mnist_cnn [MNIST_DIR] [EPOCHS]     (MNIST_DIR defaults to data/mnist)

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <glassbox/glassbox.hpp>
#include <string>

int main(int argc, char** argv) try {
  using namespace glassbox;
  const std::string dir = argc > 1 ? argv[1] : "data/mnist";
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 5;

  const io::Mnist<float> data = io::load_mnist<float>(dir);
  std::printf("MNIST from %s: %td training and %td test images, %d thread(s)\n", dir.c_str(), data.train_images.dim(0),
              data.test_images.dim(0), num_threads());

  Sequential<float> model(Shape{1, 28, 28}, /*seed=*/1);
  nn::Conv2D<float>::Options relu;  // Keras' Conv2D(32, (3, 3), activation="relu")
  relu.activation = nn::Activation::relu;
  model.add<nn::Conv2D<float>>(1, 32, nn::Size2{3, 3}, relu);
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(32 * 13 * 13, 10);
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
  const train::History history = train::fit(model, adam, loss, data.train_images, data.train_labels, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  for (const train::EpochLogs& e : history.epochs)
    std::printf("epoch %d: validation accuracy %.2f%% (%.1f s)\n", e.epoch + 1, 100.0 * e.val_accuracy, e.seconds);
  const train::Evaluation test = train::evaluate(model, loss, data.test_images, data.test_labels);
  std::printf("Training took %.1f s in all\nTest loss %.4f, test accuracy %.2f%%\n", seconds, test.loss,
              100.0 * test.accuracy);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "mnist_cnn: %s\n", e.what());
  return 1;
}
