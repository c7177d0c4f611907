#pragma once
// Replicas<T>: what train::fit needs from a data-parallel engine, so that fit
// stays the one training loop and needs no MPI. dist::DataParallel
// (dist/data_parallel.hpp) implements it over MPI; a test can implement it
// in-process.
//
// With FitOptions::replicas set, every replica runs fit with the same data,
// options and seed. Each epoch's shuffled order is then the same everywhere;
// a global batch is size() x batch_size samples of it, and replica r trains
// on its r-th share (a last, shorter batch is split as evenly as it goes, so
// a replica may get none). fit calls, in this order:
//   begin(model, optimizer, samples, global batch), batch_statistics()
//                                      once, before the first epoch
//   per global batch: begin_batch(share) before the forward (also when the
//     share is empty), then, after the backward (or none for an empty share),
//     finish_batch(metrics), which leaves every parameter's grad the mean
//     over the global batch and the metrics summed over replicas
//   agree(flag)                        after rank 0's callbacks
//   end_epoch(model)                   after the last batch of an epoch
// Only rank 0 runs callbacks and prints progress; all ranks return the same
// History.

#include <cstddef>
#include <string>

#include "glassbox/core/tensor.hpp"
#include "glassbox/model/sequential.hpp"
#include "glassbox/optim/optimizer.hpp"

namespace glassbox::train {

template <class T>
class Replicas : public virtual ReplicaSum {
 public:
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Makes every replica start from rank 0's parameters, buffers and random
  // generators, after checking that all replicas built the same model and
  // can train it on `samples` per epoch in global batches of `global_batch`.
  // An error here is thrown on every replica alike.
  virtual void begin(Sequential<T>& model, optim::Optimizer<T>& optimizer, index_t samples, index_t global_batch) = 0;
  // What layers that need the global batch's statistics sum through
  // (BatchShard::replicas), or null for each replica's own statistics.
  virtual ReplicaSum* batch_statistics() = 0;
  // This replica's share of the next global batch (shard.count may be 0).
  virtual void begin_batch(const BatchShard& shard) = 0;
  // Averages the gradients of the batch begun last over the global batch, and
  // sums `count` metric values in place over the replicas.
  virtual void finish_batch(double* metrics, std::size_t count) = 0;
  // Rank 0's flag, on every replica.
  virtual bool agree(bool flag_on_rank_0) = 0;
  // Sums values in place over the replicas (sharded evaluation).
  void sum(double* values, std::size_t count) override = 0;
  virtual void end_epoch(Sequential<T>& model) = 0;
  // This replica is leaving fit with an error: tell the others, which then
  // stop with an error naming this rank instead of waiting for it.
  virtual void fail(const std::string& what) noexcept = 0;
};

}  // namespace glassbox::train
