#pragma once
// fit() and evaluate(): the training loop over mini-batches.
//
// fit requires x of shape (N, ...) and y with N rows (labels (N) for
// SoftmaxCrossEntropy, targets shaped like the output for MSE/BCE). It
// shuffles with options.seed each epoch, steps the optimizer once per batch,
// reports through callbacks and a progress bar, evaluates the validation data
// after every epoch, and returns the History. A non-finite loss stops training
// with a glassbox::Error naming the epoch and batch.

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/model/sequential.hpp"
#include "glassbox/nn/loss.hpp"
#include "glassbox/optim/optimizer.hpp"
#include "glassbox/train/callback.hpp"
#include "glassbox/train/history.hpp"
#include "glassbox/train/progress_bar.hpp"

namespace glassbox::train {

enum class Verbosity {
  silent,
  progress,  // progress bar on a terminal, one line per epoch otherwise
};

template <class T>
struct FitOptions {
  int epochs = 1;  // the epoch to stop after, counted from 0 (as Keras' fit)
  // The epoch to start at, when resuming from a checkpoint: the shuffles of
  // the epochs before it are replayed, so the batches are those an unbroken
  // run would have seen.
  int initial_epoch = 0;
  index_t batch_size = 32;
  bool shuffle = true;
  std::uint64_t seed = 0;                   // drives the shuffling
  const Tensor<T>* validation_x = nullptr;  // both or neither
  const Tensor<T>* validation_y = nullptr;
  Verbosity verbosity = Verbosity::progress;
  std::FILE* log_stream = stderr;
  std::vector<Callback*> callbacks;
};

struct Evaluation {
  double loss = not_measured;
  double accuracy = not_measured;
};

namespace detail {
template <class T>
void check_dataset(const char* who, const Tensor<T>& x, const Tensor<T>& y) {
  if (x.rank() < 2) throw Error(fmt::format("{}: x must be batch-first (N, ...), got shape {}", who, x.shape().str()));
  if (y.rank() < 1 || y.dim(0) != x.dim(0))
    throw Error(fmt::format("{}: x has {} samples but y has shape {} ({} expected in its first dimension)", who,
                            x.dim(0), y.shape().str(), x.dim(0)));
}

inline std::string format_metrics(double loss, double accuracy, const char* prefix = "") {
  std::string s = fmt::format(" - {}loss: {:.4f}", prefix, loss);
  if (!std::isnan(accuracy)) s += fmt::format(" - {}accuracy: {:.4f}", prefix, accuracy);
  return s;
}
}  // namespace detail

// Mean loss and accuracy over (x, y) in eval mode.
template <class T>
Evaluation evaluate(Sequential<T>& model, const nn::Loss<T>& loss, const Tensor<T>& x, const Tensor<T>& y,
                    index_t batch_size = 256) {
  detail::check_dataset("evaluate", x, y);
  if (batch_size <= 0) throw Error(fmt::format("evaluate: batch_size must be positive, got {}", batch_size));
  const index_t n = x.dim(0);
  if (n == 0) throw Error("evaluate: empty dataset");
  Tensor<T> bx, by;
  double loss_sum = 0;
  nn::Tally tally;
  for (index_t start = 0; start < n; start += batch_size) {
    const index_t count = std::min(batch_size, n - start);
    copy_rows(x, start, count, bx);
    copy_rows(y, start, count, by);
    model.set_batch(start / batch_size);
    const Tensor<T>& out = model.forward(bx, Mode::eval);
    loss_sum += static_cast<double>(loss.forward(out, by, nullptr)) * static_cast<double>(count);
    const nn::Tally t = loss.tally(out, by);
    tally.correct += t.correct;
    tally.total += t.total;
  }
  Evaluation e;
  e.loss = loss_sum / static_cast<double>(n);
  if (tally.total > 0) e.accuracy = static_cast<double>(tally.correct) / static_cast<double>(tally.total);
  return e;
}

template <class T>
History fit(Sequential<T>& model, optim::Optimizer<T>& optimizer, const nn::Loss<T>& loss, const Tensor<T>& x,
            const Tensor<T>& y, const FitOptions<T>& options = {}) {
  detail::check_dataset("fit", x, y);
  if (options.epochs < 0) throw Error(fmt::format("fit: epochs must be >= 0, got {}", options.epochs));
  if (options.initial_epoch < 0 || options.initial_epoch > options.epochs)
    throw Error(
        fmt::format("fit: initial_epoch must lie in [0, epochs = {}], got {}", options.epochs, options.initial_epoch));
  if (options.batch_size <= 0) throw Error(fmt::format("fit: batch_size must be positive, got {}", options.batch_size));
  if ((options.validation_x == nullptr) != (options.validation_y == nullptr))
    throw Error("fit: give both validation_x and validation_y, or neither");
  if (options.validation_x) detail::check_dataset("fit (validation)", *options.validation_x, *options.validation_y);
  const index_t n = x.dim(0);
  if (n == 0) throw Error("fit: empty dataset");

  const index_t batch_size = std::min(options.batch_size, n);  // also keeps the index arithmetic from overflowing
  const long long steps = (n + batch_size - 1) / batch_size;
  std::vector<index_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), index_t{0});
  Rng shuffle_rng(options.seed);
  Tensor<T> bx, by, grad;
  History history;
  const auto& callbacks = options.callbacks;
  for (Callback* c : callbacks) c->on_train_begin();
  bool stop = false;

  if (options.shuffle)
    for (int epoch = 0; epoch < options.initial_epoch; ++epoch) shuffle_rng.shuffle(order.begin(), order.end());
  for (int epoch = options.initial_epoch; epoch < options.epochs && !stop; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    for (Callback* c : callbacks) c->on_epoch_begin(epoch);
    if (options.shuffle) shuffle_rng.shuffle(order.begin(), order.end());
    ProgressBar bar(epoch, options.epochs, steps,
                    options.verbosity == Verbosity::silent ? nullptr : options.log_stream);
    double loss_sum = 0;
    index_t seen = 0;
    nn::Tally tally;
    long long step = 0;
    for (; step < steps && !stop; ++step) {
      for (Callback* c : callbacks) c->on_batch_begin(step);
      const auto first = order.begin() + step * batch_size;
      const auto last = order.begin() + std::min<index_t>((step + 1) * batch_size, n);
      gather_rows(x, first, last, bx);
      gather_rows(y, first, last, by);
      model.set_epoch(epoch);
      model.set_batch(step);
      const Tensor<T>& out = model.forward(bx, Mode::train);
      const T batch_loss = loss.forward(out, by, &grad);
      if (!std::isfinite(static_cast<double>(batch_loss)))
        throw Error(fmt::format("fit: loss became {} at epoch {}, batch {}", batch_loss, epoch + 1, step + 1));
      const nn::Tally t = loss.tally(out, by);
      model.backward(grad);
      optimizer.step();

      loss_sum += static_cast<double>(batch_loss) * static_cast<double>(bx.dim(0));
      seen += bx.dim(0);
      tally.correct += t.correct;
      tally.total += t.total;
      BatchLogs logs{
          step, static_cast<double>(batch_loss),
          tally.total ? static_cast<double>(tally.correct) / static_cast<double>(tally.total) : not_measured};
      for (Callback* c : callbacks) {
        c->on_batch_end(logs);
        stop = stop || c->stop_training();
      }
      bar.update(step + 1, detail::format_metrics(loss_sum / static_cast<double>(seen), logs.accuracy));
    }

    EpochLogs logs;
    logs.epoch = epoch;
    logs.loss = loss_sum / static_cast<double>(seen);
    if (tally.total) logs.accuracy = static_cast<double>(tally.correct) / static_cast<double>(tally.total);
    std::string metrics = detail::format_metrics(logs.loss, logs.accuracy);
    if (options.validation_x) {
      const Evaluation v = evaluate(model, loss, *options.validation_x, *options.validation_y);
      logs.val_loss = v.loss;
      logs.val_accuracy = v.accuracy;
      metrics += detail::format_metrics(v.loss, v.accuracy, "val_");
    }
    logs.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    bar.finish(metrics);
    history.epochs.push_back(logs);
    for (Callback* c : callbacks) c->on_epoch_end(logs);
  }
  for (Callback* c : callbacks) c->on_train_end(history);
  return history;
}

GLASSBOX_PRECOMPILED_INSTANCE(Evaluation evaluate<float>(Sequential<float>&, const nn::Loss<float>&,
                                                         const Tensor<float>&, const Tensor<float>&, index_t))
GLASSBOX_PRECOMPILED_INSTANCE(History fit<float>(Sequential<float>&, optim::Optimizer<float>&, const nn::Loss<float>&,
                                                 const Tensor<float>&, const Tensor<float>&, const FitOptions<float>&))
}  // namespace glassbox::train
