#pragma once
// Callback: hooks into the training loop (Keras-style). Override what you
// need; every method defaults to doing nothing. LambdaCallback takes
// std::function members for one-off uses.

#include <functional>

#include "glassbox/train/history.hpp"

namespace glassbox::train {

class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin() {}
  virtual void on_epoch_begin(int /*epoch*/) {}
  virtual void on_batch_begin(long long /*batch*/) {}
  virtual void on_batch_end(const BatchLogs& /*logs*/) {}
  virtual void on_epoch_end(const EpochLogs& /*logs*/) {}
  virtual void on_train_end(const History& /*history*/) {}
  // Checked after every batch: return true to end training after this batch.
  virtual bool stop_training() const { return false; }
};

struct LambdaCallback : Callback {
  std::function<void(int)> epoch_begin;
  std::function<void(const BatchLogs&)> batch_end;
  std::function<void(const EpochLogs&)> epoch_end;

  void on_epoch_begin(int epoch) override {
    if (epoch_begin) epoch_begin(epoch);
  }
  void on_batch_end(const BatchLogs& logs) override {
    if (batch_end) batch_end(logs);
  }
  void on_epoch_end(const EpochLogs& logs) override {
    if (epoch_end) epoch_end(logs);
  }
};

}  // namespace glassbox::train
