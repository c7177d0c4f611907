// train/: models learn real things (XOR, a linear fit, MNIST digits), and
// fit() reports through History, callbacks and the progress bar.
#include <cstdio>
#include <regex>

#include "support.hpp"

using namespace glassbox;
using Catch::Matchers::Contains;

namespace {

Tensor<float> xor_inputs() { return Tensor<float>(Shape{4, 2}, {0, 0, 0, 1, 1, 0, 1, 1}); }
Tensor<float> xor_targets() { return Tensor<float>(Shape{4, 1}, {0, 1, 1, 0}); }

Sequential<float> xor_model(std::uint64_t seed) {
  Sequential<float> model(Shape{2}, seed);
  model.add<nn::Dense<float>>(2, 8);
  model.add<nn::Tanh<float>>();
  model.add<nn::Dense<float>>(8, 1);
  return model;
}

}  // namespace

TEST_CASE("XOR is learned by a 2-8-1 tanh network") {
  Sequential<float> model = xor_model(3);
  optim::Adam<float> adam(model.parameters(), 0.05f);
  nn::BCEWithLogitsLoss<float> bce;
  const Tensor<float> x = xor_inputs(), y = xor_targets();
  const train::History history = train::fit(model, adam, bce, x, y, test::quiet_fit<float>(300, 4));
  CHECK(history.last().accuracy == 1.0);
  CHECK(history.last().loss < 0.05);
  const Tensor<float> logits = model.predict(x);
  CHECK(logits[0] < 0);
  CHECK(logits[1] > 0);
  CHECK(logits[2] > 0);
  CHECK(logits[3] < 0);
}

TEST_CASE("Linear regression recovers known weights by gradient descent") {
  Rng rng(8);
  const index_t n = 500;
  Tensor<double> x(Shape{n, 3}), y(Shape{n, 1});
  for (index_t i = 0; i < n; ++i) {
    for (index_t j = 0; j < 3; ++j) x[i * 3 + j] = rng.normal();
    y[i] = 1.5 * x[i * 3] - 2.0 * x[i * 3 + 1] + 0.25 * x[i * 3 + 2] - 0.5 + 0.01 * rng.normal();
  }
  Sequential<double> model(Shape{3});
  auto& dense = model.add<nn::Dense<double>>(3, 1);
  optim::SGD<double> sgd(model.parameters(), 0.1);
  const train::FitOptions<double> o = test::quiet_fit<double>(150, n);  // full batch
  const train::History h = train::fit(model, sgd, nn::MSELoss<double>(), x, y, o);
  CHECK(std::isnan(h.last().accuracy));  // regression: no accuracy
  CHECK(dense.weight().value[0] == Approx(1.5).margin(0.01));
  CHECK(dense.weight().value[1] == Approx(-2.0).margin(0.01));
  CHECK(dense.weight().value[2] == Approx(0.25).margin(0.01));
  CHECK(dense.bias().value[0] == Approx(-0.5).margin(0.01));
}

TEST_CASE("MNIST subset: an MLP trained on 1,000 images reaches 85% on 1,000 test images") {
  io::Mnist<float> data = io::load_mnist<float>(test::data_path("mnist-subset"));
  data.train_images.reshape({1000, 784});
  data.test_images.reshape({1000, 784});
  Sequential<float> model(Shape{784}, 1);
  model.add<nn::Dense<float>>(784, 128);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dense<float>>(128, 10);
  optim::Adam<float> adam(model.parameters(), 1e-3f);
  nn::SoftmaxCrossEntropy<float> ce;
  train::FitOptions<float> o = test::quiet_fit<float>(10, 32);
  o.validation_x = &data.test_images;
  o.validation_y = &data.test_labels;
  const train::History h = train::fit(model, adam, ce, data.train_images, data.train_labels, o);
  REQUIRE(h.epochs.size() == 10);
  CHECK(h.epochs.front().loss > h.last().loss);
  CHECK(h.last().accuracy > 0.98);      // training set nearly memorised
  CHECK(h.last().val_accuracy > 0.85);  // measured: 0.88-0.89 over seeds
  const train::Evaluation e = train::evaluate(model, ce, data.test_images, data.test_labels, 100);
  CHECK(e.accuracy == Approx(h.last().val_accuracy));
  CHECK(e.loss == Approx(h.last().val_loss).epsilon(1e-5));
}

TEST_CASE("fit is reproducible: same seeds, same weights") {
  auto train_once = [](std::uint64_t shuffle_seed) {
    set_num_threads(1);
    Sequential<float> model = xor_model(5);
    optim::SGD<float> sgd(model.parameters(), 0.1f);
    train::FitOptions<float> o = test::quiet_fit<float>(20, 2);
    o.seed = shuffle_seed;
    train::fit(model, sgd, nn::BCEWithLogitsLoss<float>(), xor_inputs(), xor_targets(), o);
    const Tensor<float> w = model.parameters()[0]->value;
    return std::vector<float>(w.begin(), w.end());
  };
  CHECK(train_once(1) == train_once(1));
  CHECK(train_once(1) != train_once(2));
}

TEST_CASE("Callbacks see every batch and epoch, and can stop training") {
  struct Counter : train::Callback {
    int epochs_begun = 0, epochs_ended = 0, trained = 0;
    long long batches = 0;
    std::vector<double> losses;
    long long stop_after = -1;
    void on_train_begin() override { ++trained; }
    void on_epoch_begin(int) override { ++epochs_begun; }
    void on_batch_end(const train::BatchLogs& logs) override {
      ++batches;
      CHECK(std::isfinite(logs.loss));
    }
    void on_epoch_end(const train::EpochLogs& logs) override {
      ++epochs_ended;
      losses.push_back(logs.loss);
    }
    bool stop_training() const override { return stop_after >= 0 && batches >= stop_after; }
  };
  Sequential<float> model = xor_model(1);
  optim::SGD<float> sgd(model.parameters(), 0.1f);
  Counter counter;
  train::FitOptions<float> o = test::quiet_fit<float>(3, 3);  // 4 samples: batches of 3 and 1
  o.callbacks = {&counter};
  const train::History h = train::fit(model, sgd, nn::BCEWithLogitsLoss<float>(), xor_inputs(), xor_targets(), o);
  CHECK(counter.trained == 1);
  CHECK(counter.epochs_begun == 3);
  CHECK(counter.epochs_ended == 3);
  CHECK(counter.batches == 6);
  CHECK(counter.losses.size() == h.epochs.size());

  Counter stopper;
  stopper.stop_after = 4;
  o.callbacks = {&stopper};
  const train::History stopped = train::fit(model, sgd, nn::BCEWithLogitsLoss<float>(), xor_inputs(), xor_targets(), o);
  CHECK(stopper.batches == 4);
  CHECK(stopped.epochs.size() == 2);
}

TEST_CASE("Progress: one Keras-style line per epoch when the stream is not a terminal") {
  std::FILE* log = std::tmpfile();
  REQUIRE(log);
  Sequential<float> model = xor_model(2);
  optim::SGD<float> sgd(model.parameters(), 0.1f);
  train::FitOptions<float> o;
  o.epochs = 2;
  o.batch_size = 1;
  o.log_stream = log;
  const Tensor<float> x = xor_inputs(), y = xor_targets();
  o.validation_x = &x;
  o.validation_y = &y;
  train::fit(model, sgd, nn::BCEWithLogitsLoss<float>(), x, y, o);
  std::rewind(log);
  std::string text;
  for (int c; (c = std::fgetc(log)) != EOF;) text += static_cast<char>(c);
  std::fclose(log);
  const std::regex line(
      R"(Epoch 1/2  4/4 \[=+\] - \d+s \d+(us|ms|s)/step - loss: \d\.\d{4} - accuracy: \d\.\d{4} - val_loss: \d\.\d{4} - val_accuracy: \d\.\d{4}\nEpoch 2/2 .*\n)");
  CHECK(std::regex_match(text, line));

  train::ProgressBar bar(0, 5, 1875, nullptr, true);
  CHECK_THAT(bar.line(1875, " - loss: 0.2100"), Contains("Epoch 1/5  1875/1875 [==============================] - "));
  CHECK_THAT(bar.line(937, ""), Contains("937/1875 [=============>................] - ETA:"));
}

TEST_CASE("History::last explains an empty history; a batch larger than the data is one batch") {
  CHECK_THROWS_WITH(train::History().last(), Contains("no epoch was trained"));
  Sequential<float> model = xor_model(1);
  optim::SGD<float> sgd(model.parameters(), 0.1f);
  struct CountBatches : train::Callback {
    int batches = 0;
    void on_batch_end(const train::BatchLogs&) override { ++batches; }
  } counter;
  train::FitOptions<float> o = test::quiet_fit<float>(2, std::numeric_limits<index_t>::max());
  o.callbacks = {&counter};
  train::fit(model, sgd, nn::BCEWithLogitsLoss<float>(), xor_inputs(), xor_targets(), o);
  CHECK(counter.batches == 2);
}

TEST_CASE("fit rejects inconsistent data and stops on a non-finite loss") {
  Sequential<float> model = xor_model(1);
  optim::SGD<float> sgd(model.parameters(), 0.1f);
  nn::BCEWithLogitsLoss<float> bce;
  CHECK_THROWS_WITH(train::fit(model, sgd, bce, Tensor<float>(Shape{100, 2}), Tensor<float>(Shape{99, 1}),
                               test::quiet_fit<float>(1, 8)),
                    Contains("fit: x has 100 samples but y has shape (99, 1)"));
  CHECK_THROWS_WITH(train::fit(model, sgd, bce, xor_inputs(), xor_targets(), test::quiet_fit<float>(1, 0)),
                    Contains("batch_size must be positive"));
  train::FitOptions<float> half = test::quiet_fit<float>(1, 4);
  const Tensor<float> x = xor_inputs();
  half.validation_x = &x;
  CHECK_THROWS_WITH(train::fit(model, sgd, bce, xor_inputs(), xor_targets(), half),
                    Contains("both validation_x and validation_y"));
  train::FitOptions<float> resumed = test::quiet_fit<float>(1, 2);
  resumed.resumed_global_batch = 4;  // the run being resumed took the 4 samples at once
  CHECK_THROWS_WITH(train::fit(model, sgd, bce, xor_inputs(), xor_targets(), resumed),
                    Contains("trained with a global batch of 4; 1 replica(s) x batch_size 2 make 2"));
  CHECK(sgd.steps() == 0);
  resumed.batch_size = 4;
  train::fit(model, sgd, bce, xor_inputs(), xor_targets(), resumed);
  CHECK(sgd.steps() == 1);
  Tensor<float> bad = xor_inputs();
  bad[0] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(train::fit(model, sgd, bce, bad, xor_targets(), test::quiet_fit<float>(1, 4)),
                    Contains("loss became nan at epoch 1, batch 1"));
}
