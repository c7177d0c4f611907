// The seed CNN: the worked example of the article glassbox grew from.
//   Conv2D(32, 3x3, relu) -> MaxPool 2x2 -> Flatten -> Dense(10, softmax)
// Adam 1e-3, batch 32, 5 epochs, shuffled with a fixed seed. The softmax is
// fused into the loss (SoftmaxCrossEntropy on the Dense layer's logits), which
// is the same function as Keras' softmax + sparse categorical cross-entropy,
// computed stably.
//
// Introspection while it trains (seed_cnn_run.hpp, shared with
// mnist_cnn_dist): ActivationStats and GradientFlow record every 50 steps,
// NanWatch checks every step, and a per-layer table is printed after each
// epoch. Saliency maps of 8 test digits (after each epoch), the conv layer's
// feature maps of 4 test digits and histograms of every parameter (before
// training and after each epoch) are kept too. At the end it checks
// Integrated Gradients' completeness on 100 test digits, maps the penultimate
// layer's activations of 2,000 test digits (PCA, t-SNE) as they were before
// training and after, and the records go
// to RUN_DIR as CSV and JSON (schemas in the README), with pictures (PNG,
// DOT/SVG), report.html and TensorBoard event files in RUN_DIR/tensorboard.
//
//   mnist_cnn [MNIST_DIR] [EPOCHS] [RUN_DIR]   (data/mnist, 5, runs/seed_cnn-<date>-<time>)

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "seed_cnn_run.hpp"

int main(int argc, char** argv) try {
  using namespace glassbox;
  const std::string dir = argc > 1 ? argv[1] : "data/mnist";
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 5;
  const std::string report = argc > 3 ? argv[3] : "runs/seed_cnn-" + seed_cnn::timestamp();

  io::Mnist<float> data = io::load_mnist<float>(dir);
  const double data_megabytes = static_cast<double>(data.train_images.size() + data.train_labels.size() +
                                                    data.test_images.size() + data.test_labels.size()) *
                                sizeof(float) / (1024.0 * 1024.0);
  std::printf("MNIST from %s: %td training and %td test images, %d thread(s)\n", dir.c_str(), data.train_images.dim(0),
              data.test_images.dim(0), num_threads());

  Sequential<float> model = seed_cnn::model();
  std::printf("%s", model.summary().c_str());
  std::fflush(stdout);  // before the progress bar starts on stderr
  seed_cnn::Watch watch(model, data.test_images, data.test_labels);

  optim::Adam<float> adam(model.parameters(), 1e-3f);
  nn::SoftmaxCrossEntropy<float> loss;
  train::FitOptions<float> options;
  options.epochs = epochs;
  options.batch_size = 32;
  options.seed = 7;
  options.validation_x = &data.test_images;
  options.validation_y = &data.test_labels;
  viz::TensorBoardWriter tensorboard(report + "/tensorboard");  // tensorboard --logdir report/tensorboard
  viz::TensorBoardLogger<float> tensorboard_logger(tensorboard, model, &watch.stats, &watch.flow, &adam);
  options.callbacks = watch.callbacks();
  options.callbacks.push_back(&tensorboard_logger);

  std::vector<seed_cnn::Embedding> maps{seed_cnn::capture_embedding(model, data.test_images, "before training", false)};
  const auto start = std::chrono::steady_clock::now();
  const train::History history = train::fit(model, adam, loss, data.train_images, data.train_labels, options);
  data.train_images = Tensor<float>();  // 188 MB no longer needed: the checks below use test digits
  data.train_labels = Tensor<float>();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  for (const train::EpochLogs& e : history.epochs)
    std::printf("epoch %d: validation accuracy %.2f%% (%.1f s)\n", e.epoch + 1, 100.0 * e.val_accuracy, e.seconds);
  const train::Evaluation test = train::evaluate(model, loss, data.test_images, data.test_labels);
  std::printf("Training took %.1f s in all\nTest loss %.4f, test accuracy %.2f%%\n", seconds, test.loss,
              100.0 * test.accuracy);
  seed_cnn::check_integrated_gradients(model, data.test_images);
  const seed_cnn::Errors errors = seed_cnn::analyze_errors(model, data.test_images, data.test_labels);
  maps.push_back(seed_cnn::capture_embedding(model, data.test_images, "after training", true));
  for (seed_cnn::Embedding& map : maps) seed_cnn::map_embedding(map);
  const seed_cnn::Paths paths = seed_cnn::decision_paths(model, data.test_images, data.test_labels);
  seed_cnn::write_run(report, "glassbox: the seed CNN on MNIST", model, watch, history, errors, maps, paths,
                      data.test_images, data.test_labels, tensorboard);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);  // ru_maxrss: KiB on Linux
  std::printf("Peak memory: %.0f MB resident (the MNIST tensors: %.0f MB while training)\n",
              static_cast<double>(usage.ru_maxrss) / 1024.0, data_megabytes);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "mnist_cnn: %s\n", e.what());
  return 1;
}
