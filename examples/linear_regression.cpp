// The seed article's gradient-descent linear regression, done right.
//
// Part 1: y = x w + b + noise with known w and b; a Dense(4 -> 1) layer is fit
// by full-batch gradient descent on the mean squared error, printing the loss
// per epoch, and must recover the weights to within 0.01.
// Part 2 (when MNIST is there): a linear model on raw pixels (softmax
// regression, Dense(784 -> 10)) trained by full-batch gradient descent, printing
// its loss going down.
//
//   linear_regression [MNIST_DIR]      (MNIST_DIR defaults to data/mnist)

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <glassbox/glassbox.hpp>
#include <string>

using namespace glassbox;

static int fit_known_line() {
  const index_t n = 1000, features = 4;
  const double true_w[features] = {2.0, -3.5, 0.5, 1.25};
  const double true_b = 0.75;
  Rng rng(3);
  Tensor<double> x(Shape{n, features}), y(Shape{n, 1});
  for (index_t i = 0; i < n; ++i) {
    double target = true_b;
    for (index_t j = 0; j < features; ++j) {
      x[i * features + j] = rng.normal();
      target += true_w[j] * x[i * features + j];
    }
    y[i] = target + 0.01 * rng.normal();
  }

  Sequential<double> model(Shape{features});
  auto& dense = model.add<nn::Dense<double>>(features, 1);
  optim::SGD<double> sgd(model.parameters(), 0.1);
  nn::MSELoss<double> mse;
  Tensor<double> grad;
  std::printf("Linear regression, %td samples, full-batch gradient descent (lr 0.1)\n", n);
  for (int epoch = 1; epoch <= 100; ++epoch) {
    const double loss = mse.forward(model.forward(x, Mode::train), y, &grad);
    model.backward(grad);
    sgd.step();
    if (epoch <= 5 || epoch % 10 == 0) std::printf("  epoch %3d  loss %.6f\n", epoch, loss);
  }
  double max_error = std::abs(dense.bias().value[0] - true_b);
  std::printf("  learned w = [");
  for (index_t j = 0; j < features; ++j) {
    std::printf("%s%.4f", j ? ", " : "", dense.weight().value[j]);
    max_error = std::max(max_error, std::abs(dense.weight().value[j] - true_w[j]));
  }
  std::printf("], b = %.4f (true w = [2, -3.5, 0.5, 1.25], b = 0.75)\n", dense.bias().value[0]);
  std::printf("  max abs error %.5f: %s\n", max_error, max_error < 0.01 ? "recovered" : "NOT recovered");
  return max_error < 0.01 ? 0 : 1;
}

static void fit_pixels(const std::string& dir) {
  io::Mnist<float> data = io::load_mnist<float>(dir);
  Tensor<float>& x = data.train_images;
  x.reshape({x.dim(0), 28 * 28});
  Sequential<float> model(Shape{28 * 28});
  model.add<nn::Dense<float>>(28 * 28, 10);
  optim::SGD<float> sgd(model.parameters(), 0.5f);
  nn::SoftmaxCrossEntropy<float> loss;
  Tensor<float> grad;
  std::printf("\nLinear model on MNIST pixels (%td images), full-batch gradient descent (lr 0.5)\n", x.dim(0));
  for (int epoch = 1; epoch <= 20; ++epoch) {
    const Tensor<float>& out = model.forward(x, Mode::train);
    const float value = loss.forward(out, data.train_labels, &grad);
    const nn::Tally tally = loss.tally(out, data.train_labels);
    model.backward(grad);
    sgd.step();
    std::printf("  epoch %2d  loss %.4f  accuracy %.4f\n", epoch, value,
                static_cast<double>(tally.correct) / static_cast<double>(tally.total));
  }
}

int main(int argc, char** argv) try {
  const int status = fit_known_line();
  const std::string dir = argc > 1 ? argv[1] : "data/mnist";
  if (std::filesystem::exists(dir))
    fit_pixels(dir);
  else
    std::printf("\n(no MNIST in %s: skipping the pixel model; run scripts/fetch_mnist.sh)\n", dir.c_str());
  return status;
} catch (const std::exception& e) {
  std::fprintf(stderr, "linear_regression: %s\n", e.what());
  return 1;
}
