#pragma once
// dist::DataParallel<T>: data-parallel training over MPI, in the manner of
// PyTorch's DistributedDataParallel, as the train::Replicas that fit takes.
//
//   dist::Environment mpi(argc, argv);
//   dist::Communicator world;
//   dist::DataParallel<float> replicas(world);
//   options.replicas = &replicas;                 // batch_size: per rank
//   train::fit(model, adam, loss, x, y, options);  // same call on every rank
//
// - At the start of fit, every rank's model is compared with rank 0's (a hash
//   of each layer's checkpoint ARCH record, io/checkpoint.hpp, or of its kind,
//   settings and tensor shapes for a layer checkpoints do not know); a
//   difference is an error naming the rank and the first layer that differs.
//   Then rank 0's parameters, masks, buffers and random generators (model,
//   layers), its step counts, are broadcast.
// - Gradients are averaged in buckets of about Options::bucket_bytes, in the
//   order backward finishes the layers: a bucket's non-blocking allreduce
//   starts from the backward hook of the last layer it waits for, so
//   communication overlaps the rest of backward. Each rank weights its
//   gradient by its share of the global batch, so a short last batch split
//   unevenly still gives the global batch's mean.
// - BatchNorm normalises with the global batch's statistics, summed over the
//   ranks inside its forward and backward (as torch.nn.SyncBatchNorm;
//   nn/batch_norm.hpp), so that training equals one process's. With
//   Options::sync_batch_norm off, each rank normalises with its own share's
//   statistics (as DistributedDataParallel without SyncBatchNorm), and the
//   running statistics (every layer buffer) are averaged at each epoch's end.
// - Recorders given to merge_records() (ActivationStats, GradientFlow) report the global
//   batch: after each step's gradients, before callbacks run, their records
//   of the step are merged over the ranks (inspect/record.hpp).
// - A rank that fails makes the others fail with an error naming it
//   (dist::Communicator).

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "glassbox/dist/communicator.hpp"
#include "glassbox/inspect/record.hpp"
#include "glassbox/io/checkpoint.hpp"
#include "glassbox/model/sequential.hpp"
#include "glassbox/train/replicas.hpp"

namespace glassbox::dist {

namespace detail {
inline std::uint64_t fnv1a(const std::string& bytes) {
  std::uint64_t h = 14695981039346656037ULL;
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

// A layer's architecture as bytes: its checkpoint ARCH record when
// checkpoints know the layer, else its kind, name and settings; then the
// names and shapes of its tensors, which decide what is broadcast.
template <class T>
std::string layer_fingerprint(Layer<T>& layer) {
  std::string bytes;
  try {
    io::detail::put_spec(bytes, io::describe(layer));
  } catch (const Error&) {  // not a built-in layer
    bytes = layer.kind() + '\0' + layer.name() + '\0' + layer.config();
  }
  for (const Parameter<T>* p : layer.parameters()) {
    put_string(bytes, p->name);
    io::detail::put_shape(bytes, p->value.shape());
    put<std::uint8_t>(bytes, p->has_mask());
  }
  for (const auto& [name, tensor] : layer.buffers()) {
    put_string(bytes, name);
    io::detail::put_shape(bytes, tensor->shape());
  }
  return bytes;
}
}  // namespace detail

template <class T>
class DataParallel final : public train::Replicas<T>, public inspect::RecordReducer {
 public:
  struct Options {
    // Gradients are sent in buckets of about this many bytes. The first (the
    // last layers', whose backward finishes first) is small, so that sending
    // starts while the earlier layers still compute: for the seed CNN, the
    // Dense layer's 216 KB go while MaxPool and Conv2D run backward (bench/dist.sh:
    // 5.5% of step time waiting with one bucket, 2.9% with two).
    std::size_t bucket_bytes = std::size_t(4) << 20;
    std::size_t first_bucket_bytes = std::size_t(64) << 10;
    // BatchNorm with the global batch's statistics (see the top).
    bool sync_batch_norm = true;
  };

  explicit DataParallel(Communicator& comm) : DataParallel(comm, Options{}) {}
  DataParallel(Communicator& comm, Options options) : comm_(comm), options_(options) {
    if (options_.bucket_bytes < sizeof(T) || options_.first_bucket_bytes < sizeof(T))
      throw Error("dist::DataParallel: bucket sizes must hold at least one value");
  }

  // Merges the recorder's records of each training step over the ranks
  // (for as long as this object lives; the recorder must outlive it).
  void merge_records(inspect::MergeableRecorder& recorder) {
    recorder.set_merging(true);
    recorders_.push_back(&recorder);
  }

  ~DataParallel() override {
    for (inspect::MergeableRecorder* r : recorders_) r->set_merging(false);
  }
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int rank() const override { return comm_.rank(); }
  int size() const override { return comm_.size(); }

  void begin(Sequential<T>& model, optim::Optimizer<T>& optimizer, index_t samples, index_t global_batch) override {
    check_architecture(model);
    // A rank without samples runs no forward, so it could not take part in
    // the sums a synchronised BatchNorm makes there.
    std::string synced;
    for (std::size_t i = 0; i < model.size() && options_.sync_batch_norm && synced.empty(); ++i)
      synced = first_batch_norm(model.layer(i));
    const index_t last = samples % global_batch;
    if (!synced.empty() && last != 0 && last < comm_.size())
      throw Error(fmt::format(
          "dist::DataParallel: the last batch of each epoch, {} of {} samples, leaves some of the {} ranks without "
          "samples, and {} sums its batch statistics over every rank; choose a batch size that leaves at least one "
          "sample per rank in the last batch, or set Options::sync_batch_norm to false",
          last, samples, comm_.size(), synced));
    broadcast_state(model, optimizer);
    build_buckets(model, optimizer);
    wait_seconds_ = 0;
  }

  ReplicaSum* batch_statistics() override { return options_.sync_batch_norm ? this : nullptr; }

  void begin_batch(const BatchShard& shard) override {
    weight_ = static_cast<T>(static_cast<double>(shard.count) / static_cast<double>(shard.global));
    for (Bucket& b : buckets_) {
      b.pending = b.slots.size();
      b.request = MPI_REQUEST_NULL;
      b.started = false;
    }
    armed_ = true;
  }

  void finish_batch(double* metrics, std::size_t count) override {
    armed_ = false;
    for (Bucket& b : buckets_)
      if (!b.started) start(b);  // parameters no backward hook reported (or no samples here)
    // The metrics, then each recorder's count of records to merge.
    sums_.assign(metrics, metrics + count);
    for (const inspect::MergeableRecorder* r : recorders_) sums_.push_back(static_cast<double>(r->pending()));
    MPI_Request metrics_request = comm_.start_sum(sums_.data(), sums_.size());
    const auto start = std::chrono::steady_clock::now();
    for (Bucket& b : buckets_) {
      comm_.wait(b.request, "gradient allreduce");
      for (const Slot& s : b.slots)
        std::copy(b.values.begin() + s.offset, b.values.begin() + s.offset + s.param->grad.size(),
                  s.param->grad.begin());
    }
    comm_.wait(metrics_request, "metrics allreduce");
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::copy(sums_.begin(), sums_.begin() + static_cast<std::ptrdiff_t>(count), metrics);
    for (std::size_t i = 0; i < recorders_.size(); ++i) {
      const double total = sums_[count + i], mine = static_cast<double>(recorders_[i]->pending());
      if (total == 0) continue;
      if (total != mine * comm_.size())
        throw Error(
            fmt::format("dist::DataParallel: this rank has {} records of the step to merge, the ranks {} "
                        "in all (a rank without samples records nothing)",
                        mine, total));
      recorders_[i]->merge_pending(*this);
    }
  }

  bool agree(bool flag_on_rank_0) override {
    int flag = flag_on_rank_0 ? 1 : 0;
    comm_.broadcast(&flag, 1);
    return flag != 0;
  }

  void sum(double* values, std::size_t count) override { comm_.sum(values, count); }
  void max(double* values, std::size_t count) override { comm_.max(values, count); }
  void bit_or(std::uint64_t* values, std::size_t count) override { comm_.bit_or(values, count); }
  std::vector<double> gather(const double* values, std::size_t count) override {
    return comm_.gather_all(values, count);
  }

  void end_epoch(Sequential<T>& model) override {
    if (options_.sync_batch_norm) return;  // the running statistics are already the global batches'
    const T scale = T(1) / static_cast<T>(comm_.size());
    for (std::size_t i = 0; i < model.size(); ++i)
      for (auto& [name, tensor] : model.layer(i).buffers()) {
        comm_.sum(tensor->data(), static_cast<std::size_t>(tensor->size()));
        tensor->flat() *= scale;
      }
  }

  void fail(const std::string& what) noexcept override { comm_.fail(what); }

  // Seconds this rank spent waiting for gradient averaging after its
  // backward finished, since fit began.
  double wait_seconds() const { return wait_seconds_; }
  // Bytes of gradients each rank sends per step, and how they are bucketed.
  std::size_t gradient_bytes() const {
    std::size_t bytes = 0;
    for (const Bucket& b : buckets_) bytes += b.values.size() * sizeof(T);
    return bytes;
  }
  std::size_t bucket_count() const { return buckets_.size(); }

 private:
  struct Slot {
    Parameter<T>* param;
    std::size_t offset;
  };
  struct Bucket {
    std::vector<T> values;
    std::vector<Slot> slots;
    std::size_t pending = 0;
    bool started = false;
    MPI_Request request = MPI_REQUEST_NULL;
  };

  // The name of the first BatchNorm in `layer` (itself or inside), or "".
  static std::string first_batch_norm(Layer<T>& layer) {
    if (dynamic_cast<nn::BatchNorm<T>*>(&layer)) return layer.name();
    for (Layer<T>* child : layer.children())
      if (std::string name = first_batch_norm(*child); !name.empty()) return name;
    return {};
  }

  void check_architecture(Sequential<T>& model) {
    std::vector<std::uint64_t> mine{model.size(), 0};
    std::string shape;
    io::detail::put_shape(shape, model.sample_shape().value_or(Shape{}));
    mine[1] = detail::fnv1a(shape);
    for (std::size_t i = 0; i < model.size(); ++i)
      mine.push_back(detail::fnv1a(detail::layer_fingerprint(model.layer(i))));
    std::uint64_t count = mine[0];
    comm_.broadcast(&count, 1);
    std::vector<std::uint64_t> reference(static_cast<std::size_t>(std::min<std::uint64_t>(count, 1u << 20)) + 2);
    if (comm_.rank() == 0) reference = mine;
    comm_.broadcast(reference.data(), reference.size());
    // The first layer where this rank differs: -2 none, -1 the input shape.
    std::int64_t differs = -2;
    if (reference[1] != mine[1]) {
      differs = -1;
    } else {
      const std::size_t common = std::min<std::size_t>(model.size(), count);
      for (std::size_t i = 0; i < common && differs == -2; ++i)
        if (reference[i + 2] != mine[i + 2]) differs = static_cast<std::int64_t>(i);
      if (differs == -2 && model.size() != count) differs = static_cast<std::int64_t>(common);
    }
    const std::vector<std::int64_t> all = comm_.gather_all(&differs, 1);
    for (int r = 0; r < comm_.size(); ++r) {
      const std::int64_t at = all[static_cast<std::size_t>(r)];
      if (at == -2) continue;
      if (at == -1)
        throw Error(fmt::format("dist::DataParallel: the model on rank {} takes other input than rank 0's", r));
      const std::size_t index = static_cast<std::size_t>(at);
      const std::string here = index < model.size()
                                   ? fmt::format("'{}' on rank {}", model.layer(index).name(), comm_.rank())
                                   : fmt::format("none on rank {}", comm_.rank());
      throw Error(fmt::format(
          "dist::DataParallel: the model on rank {} differs from rank 0's from layer {} on ({}); every rank must "
          "build the same model",
          r, index, here));
    }
  }

  template <class V>
  void broadcast_tensor(Tensor<V>& t) {
    comm_.broadcast(t.data(), static_cast<std::size_t>(t.size()));
  }
  void broadcast_rng(Rng& rng) {
    Rng::State s = rng.state();
    std::uint64_t words[5] = {s.words[0], s.words[1], s.words[2], s.words[3], s.has_spare_normal};
    comm_.broadcast(words, 5);
    comm_.broadcast(&s.spare_normal, 1);
    rng.set_state({{words[0], words[1], words[2], words[3]}, words[4] != 0, s.spare_normal});
  }

  // Rank 0's state on every rank. The architectures agree, so every tensor
  // has the same shape everywhere.
  void broadcast_state(Sequential<T>& model, optim::Optimizer<T>& optimizer) {
    for (Parameter<T>* p : model.parameters()) {
      broadcast_tensor(p->value);
      if (p->has_mask()) broadcast_tensor(p->mask);
    }
    for (std::size_t i = 0; i < model.size(); ++i) {
      for (auto& [name, tensor] : model.layer(i).buffers()) broadcast_tensor(*tensor);
      std::vector<Rng*> rngs;
      io::detail::generators(model.layer(i), rngs);
      for (Rng* rng : rngs) broadcast_rng(*rng);
    }
    broadcast_rng(model.rng());
    std::int64_t steps[2] = {model.training_steps(), optimizer.steps()};
    comm_.broadcast(steps, 2);
    model.set_training_steps(steps[0]);
    optimizer.set_steps(steps[1]);
  }

  // Buckets in the order backward finishes the parameters: last layer first.
  void build_buckets(Sequential<T>& model, optim::Optimizer<T>& optimizer) {
    handles_.clear();
    buckets_.clear();
    layer_slots_.assign(model.size(), {});
    std::map<const Parameter<T>*, std::size_t> layer_of;
    for (std::size_t i = 0; i < model.size(); ++i)
      for (const Parameter<T>* p : model.layer(i).parameters()) layer_of.emplace(p, i);
    std::vector<std::vector<Parameter<T>*>> by_layer(model.size() + 1);  // last: parameters of no layer
    for (Parameter<T>* p : optimizer.parameters()) {
      const auto it = layer_of.find(p);
      by_layer[it == layer_of.end() ? model.size() : it->second].push_back(p);
    }
    std::size_t cap = options_.first_bucket_bytes / sizeof(T);
    auto add = [&](Parameter<T>* p, std::size_t layer) {
      if (buckets_.empty() || (buckets_.back().values.size() >= cap && !buckets_.back().slots.empty())) {
        if (!buckets_.empty()) cap = options_.bucket_bytes / sizeof(T);
        buckets_.emplace_back();
      }
      Bucket& b = buckets_.back();
      b.slots.push_back({p, b.values.size()});
      b.values.resize(b.values.size() + static_cast<std::size_t>(p->grad.size()));
      if (layer < model.size()) layer_slots_[layer].push_back({buckets_.size() - 1, b.slots.size() - 1});
    };
    for (Parameter<T>* p : by_layer[model.size()]) add(p, model.size());
    for (std::size_t i = model.size(); i-- > 0;)
      for (Parameter<T>* p : by_layer[i]) add(p, i);
    // One hook for every layer: a hook aimed at the first layer would make
    // backward compute the input gradient too.
    handles_.push_back(model.add_backward_hook([this](const BackwardEvent<T>& event) {
      if (!armed_ || event.depth != 0) return;
      for (const auto& [bucket, slot] : layer_slots_[event.index]) {
        Bucket& b = buckets_[bucket];
        if (--b.pending == 0) start(b);
      }
      for (Bucket& b : buckets_)
        if (b.started) comm_.progress(b.request);
    }));
  }

  // Copies the bucket's gradients, weighted by this rank's share of the
  // global batch, and starts summing them over the ranks.
  void start(Bucket& b) {
    for (const Slot& s : b.slots) {
      T* out = b.values.data() + s.offset;
      const T* grad = s.param->grad.data();
      const auto n = static_cast<std::size_t>(s.param->grad.size());
      if (weight_ == T(0))
        std::fill(out, out + n, T(0));  // no samples here: the gradient is another batch's
      else
        for (std::size_t k = 0; k < n; ++k) out[k] = grad[k] * weight_;
    }
    b.request = comm_.start_sum(b.values.data(), b.values.size());
    b.started = true;
  }

  Communicator& comm_;
  Options options_;
  std::vector<Bucket> buckets_;
  std::vector<std::vector<std::pair<std::size_t, std::size_t>>> layer_slots_;  // per layer: (bucket, slot)
  std::vector<HookHandle> handles_;
  T weight_ = T(1);
  bool armed_ = false;
  double wait_seconds_ = 0;
  std::vector<inspect::MergeableRecorder*> recorders_;
  std::vector<double> sums_;  // metrics and counts of records to merge
};

}  // namespace glassbox::dist
