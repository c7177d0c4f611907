#pragma once
// fit() and evaluate(): the training loop over mini-batches.
//
// fit requires x of shape (N, ...) and y with N rows (labels (N) for
// SoftmaxCrossEntropy, targets shaped like the output for MSE/BCE). It
// shuffles with options.seed each epoch, steps the optimizer once per batch,
// reports through callbacks and a progress bar, evaluates the validation data
// after every epoch, and returns the History. A non-finite loss stops training
// with a glassbox::Error naming the epoch and batch.
//
// Data-parallel training is the same loop with FitOptions::replicas set (see
// train/replicas.hpp; dist::DataParallel runs it over MPI): batch_size is then
// the batch of each replica, and the global batch replicas x batch_size.

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
#include "glassbox/train/replicas.hpp"

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
  // When resuming: the global batch of the run that saved the checkpoint
  // (io::Checkpoint::run.global_batch). fit refuses another, whose batches
  // would not be that run's. 0: no check.
  index_t resumed_global_batch = 0;
  index_t batch_size = 32;  // per replica when `replicas` is set
  bool shuffle = true;
  std::uint64_t seed = 0;                   // drives the shuffling
  const Tensor<T>* validation_x = nullptr;  // both or neither
  const Tensor<T>* validation_y = nullptr;
  Verbosity verbosity = Verbosity::progress;
  std::FILE* log_stream = stderr;
  std::vector<Callback*> callbacks;  // with replicas: run on rank 0 only
  // Data-parallel training: this process's replica of the job (every replica
  // calls fit with the same data and options). Null: one process.
  Replicas<T>* replicas = nullptr;
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

// Mean loss and accuracy over (x, y) in eval mode. With replicas, each
// replica evaluates its contiguous share of (x, y) and the sums are combined.
template <class T>
Evaluation evaluate(Sequential<T>& model, const nn::Loss<T>& loss, const Tensor<T>& x, const Tensor<T>& y,
                    index_t batch_size = 256, Replicas<T>* replicas = nullptr) {
  detail::check_dataset("evaluate", x, y);
  if (batch_size <= 0) throw Error(fmt::format("evaluate: batch_size must be positive, got {}", batch_size));
  const index_t n = x.dim(0);
  if (n == 0) throw Error("evaluate: empty dataset");
  const index_t ranks = replicas ? replicas->size() : 1;
  const index_t rank = replicas ? replicas->rank() : 0;
  const index_t first = rank * n / ranks, last = (rank + 1) * n / ranks;
  Tensor<T> bx, by;
  double sums[3] = {0, 0, 0};  // loss x samples, correct, total
  for (index_t start = first; start < last; start += batch_size) {
    const index_t count = std::min(batch_size, last - start);
    copy_rows(x, start, count, bx);
    copy_rows(y, start, count, by);
    model.set_batch((start - first) / batch_size);
    const Tensor<T>& out = model.forward(bx, Mode::eval);
    sums[0] += static_cast<double>(loss.forward(out, by, nullptr)) * static_cast<double>(count);
    const nn::Tally t = loss.tally(out, by);
    sums[1] += static_cast<double>(t.correct);
    sums[2] += static_cast<double>(t.total);
  }
  if (replicas) replicas->sum(sums, 3);
  Evaluation e;
  e.loss = sums[0] / static_cast<double>(n);
  if (sums[2] > 0) e.accuracy = sums[1] / sums[2];
  return e;
}

namespace detail {
// Samples per step over all replicas; min() also keeps the index arithmetic
// from overflowing.
inline index_t global_batch_size(index_t batch_size, index_t samples, index_t replicas) {
  return std::min(std::min(batch_size, samples) * replicas, samples);
}

// The training loop of one process, or of one replica of a data-parallel job.
template <class T>
History fit_loop(Sequential<T>& model, optim::Optimizer<T>& optimizer, const nn::Loss<T>& loss, const Tensor<T>& x,
                 const Tensor<T>& y, const FitOptions<T>& options) {
  Replicas<T>* const replicas = options.replicas;
  const index_t ranks = replicas ? replicas->size() : 1;
  const index_t rank = replicas ? replicas->rank() : 0;
  const index_t n = x.dim(0);
  const index_t global_batch = detail::global_batch_size(options.batch_size, n, ranks);
  const long long steps = (n + global_batch - 1) / global_batch;
  std::vector<index_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), index_t{0});
  Rng shuffle_rng(options.seed);
  Tensor<T> bx, by, grad;
  History history;
  static const std::vector<Callback*> none;
  const auto& callbacks = rank == 0 ? options.callbacks : none;
  const bool verbose = rank == 0 && options.verbosity != Verbosity::silent;
  BatchShard shard;
  if (replicas) {
    shard.replicas = replicas->batch_statistics();
    model.set_batch_shard(&shard);
  }
  for (Callback* c : callbacks) c->on_train_begin();
  bool stop = false;

  if (options.shuffle)
    for (int epoch = 0; epoch < options.initial_epoch; ++epoch) shuffle_rng.shuffle(order.begin(), order.end());
  for (int epoch = options.initial_epoch; epoch < options.epochs && !stop; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    for (Callback* c : callbacks) c->on_epoch_begin(epoch);
    if (options.shuffle) shuffle_rng.shuffle(order.begin(), order.end());
    ProgressBar bar(epoch, options.epochs, steps, verbose ? options.log_stream : nullptr);
    double loss_sum = 0;
    index_t seen = 0;
    double correct = 0, total = 0;
    long long step = 0;
    for (; step < steps && !stop; ++step) {
      for (Callback* c : callbacks) c->on_batch_begin(step);
      // This replica's share of the global batch (all of it in one process).
      const index_t batch_first = step * global_batch;
      const index_t batch_count = std::min(global_batch, n - batch_first);
      shard.first = rank * batch_count / ranks;
      shard.count = (rank + 1) * batch_count / ranks - shard.first;
      shard.global = batch_count;
      if (replicas) replicas->begin_batch(shard);
      double batch_sums[3] = {0, 0, 0};  // loss x samples, correct, total
      if (shard.count > 0) {
        const auto first = order.begin() + batch_first + shard.first;
        gather_rows(x, first, first + shard.count, bx);
        gather_rows(y, first, first + shard.count, by);
        model.set_epoch(epoch);
        model.set_batch(step);
        const Tensor<T>& out = model.forward(bx, Mode::train);
        const T batch_loss = loss.forward(out, by, &grad);
        if (!std::isfinite(static_cast<double>(batch_loss)))
          throw Error(fmt::format("fit: loss became {} at epoch {}, batch {}", batch_loss, epoch + 1, step + 1));
        const nn::Tally t = loss.tally(out, by);
        model.backward(grad);
        batch_sums[0] = static_cast<double>(batch_loss) * static_cast<double>(shard.count);
        batch_sums[1] = static_cast<double>(t.correct);
        batch_sums[2] = static_cast<double>(t.total);
      } else {
        model.set_training_steps(model.training_steps() + 1);  // a step all the same, as on the other replicas
      }
      if (replicas) replicas->finish_batch(batch_sums, 3);
      optimizer.step();

      loss_sum += batch_sums[0];
      seen += batch_count;
      correct += batch_sums[1];
      total += batch_sums[2];
      BatchLogs logs{step, batch_sums[0] / static_cast<double>(batch_count),
                     total > 0 ? correct / total : not_measured};
      for (Callback* c : callbacks) {
        c->on_batch_end(logs);
        stop = stop || c->stop_training();
      }
      if (replicas) stop = replicas->agree(stop);
      bar.update(step + 1, format_metrics(loss_sum / static_cast<double>(seen), logs.accuracy));
    }
    if (replicas) replicas->end_epoch(model);

    EpochLogs logs;
    logs.epoch = epoch;
    logs.loss = loss_sum / static_cast<double>(seen);
    if (total > 0) logs.accuracy = correct / total;
    std::string metrics = format_metrics(logs.loss, logs.accuracy);
    if (options.validation_x) {
      const Evaluation v = evaluate(model, loss, *options.validation_x, *options.validation_y, 256, replicas);
      logs.val_loss = v.loss;
      logs.val_accuracy = v.accuracy;
      metrics += format_metrics(v.loss, v.accuracy, "val_");
    }
    logs.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    bar.finish(metrics);
    history.epochs.push_back(logs);
    for (Callback* c : callbacks) c->on_epoch_end(logs);
  }
  for (Callback* c : callbacks) c->on_train_end(history);
  return history;
}
}  // namespace detail

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
  if (x.dim(0) == 0) throw Error("fit: empty dataset");
  Replicas<T>* const replicas = options.replicas;
  const index_t ranks = replicas ? replicas->size() : 1;
  const index_t global_batch = detail::global_batch_size(options.batch_size, x.dim(0), ranks);
  if (options.resumed_global_batch > 0 && options.resumed_global_batch != global_batch)
    throw Error(fmt::format(
        "fit: the run being resumed trained with a global batch of {}; {} replica(s) x batch_size {} make {}, whose "
        "batches would not continue it (set batch_size to {} / replicas, or resumed_global_batch to 0 to train on "
        "regardless)",
        options.resumed_global_batch, ranks, options.batch_size, global_batch, options.resumed_global_batch));
  if (!replicas) return detail::fit_loop(model, optimizer, loss, x, y, options);
  struct ShardScope {
    Sequential<T>& model;
    ~ShardScope() { model.set_batch_shard(nullptr); }
  } scope{model};
  replicas->begin(model, optimizer, x.dim(0), global_batch);  // fails on every replica alike, or on none
  // A replica that fails tells the others, which would otherwise wait for it.
  try {
    return detail::fit_loop(model, optimizer, loss, x, y, options);
  } catch (const std::exception& e) {
    replicas->fail(e.what());
    throw;
  }
}

GLASSBOX_PRECOMPILED_INSTANCE(Evaluation evaluate<float>(Sequential<float>&, const nn::Loss<float>&,
                                                         const Tensor<float>&, const Tensor<float>&, index_t,
                                                         Replicas<float>*))
GLASSBOX_PRECOMPILED_INSTANCE(History fit<float>(Sequential<float>&, optim::Optimizer<float>&, const nn::Loss<float>&,
                                                 const Tensor<float>&, const Tensor<float>&, const FitOptions<float>&))
}  // namespace glassbox::train
