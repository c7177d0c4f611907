// Data-parallel training on MPI (dist/). Run by ctest as
//   mpirun -np 2 test_dist
// Every rank runs every case, in the same order: the cases are collective.
// Each rank also trains the single-process reference itself, so no case
// needs a third process.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <glassbox/dist/data_parallel.hpp>
#include <glassbox/dist/environment.hpp>
#include <glassbox/glassbox.hpp>

#include "support.hpp"

using namespace glassbox;

namespace {

dist::Communicator& world() {
  static dist::Communicator comm;
  return comm;
}

// The seed CNN, or a model with Dropout, from a fixed seed.
Sequential<float> seed_cnn(index_t dense_out = 10) {
  Sequential<float> model(Shape{1, 28, 28}, 5);
  nn::Conv2D<float>::Options relu;
  relu.activation = nn::Activation::relu;
  model.add<nn::Conv2D<float>>(1, 32, nn::Size2{3, 3}, relu);
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(32 * 13 * 13, dense_out);
  return model;
}
Sequential<float> batch_norm_cnn() {
  Sequential<float> model(Shape{1, 28, 28}, 13);
  // No bias before BatchNorm, which cancels it: its gradient would be
  // rounding noise, which Adam scales up to full steps.
  nn::Conv2D<float>::Options no_bias;
  no_bias.bias = false;
  model.add<nn::Conv2D<float>>(1, 8, nn::Size2{3, 3}, no_bias);
  model.add<nn::BatchNorm<float>>(8);
  model.add<nn::ReLU<float>>();
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(8 * 13 * 13, 10);
  return model;
}
Sequential<float> dropout_mlp() {
  Sequential<float> model(Shape{1, 28, 28}, 9);
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(784, 64);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dropout<float>>(0.3f);
  model.add<nn::Dense<float>>(64, 10);
  return model;
}

// 999 images: 31 global batches of 32 and a last one of 7 (3 and 4 samples
// on two ranks).
const io::Mnist<float>& subset() {
  static const io::Mnist<float> data = [] {
    io::Mnist<float> d = io::load_mnist<float>(test::data_path("mnist-subset"));
    Tensor<float> x, y;
    copy_rows(d.train_images, 0, 999, x);
    copy_rows(d.train_labels, 0, 999, y);
    d.train_images = std::move(x);
    d.train_labels = std::move(y);
    return d;
  }();
  return data;
}

// The tensors a model's training changes: parameters, then buffers.
std::vector<const Tensor<float>*> state_of(Sequential<float>& model) {
  std::vector<const Tensor<float>*> all;
  for (const Parameter<float>* p : model.parameters()) all.push_back(&p->value);
  for (std::size_t i = 0; i < model.size(); ++i)
    for (const auto& [name, tensor] : model.layer(i).buffers()) all.push_back(tensor);
  return all;
}

// Largest |a - b| over all parameters and buffers, relative to the largest |a|.
double state_difference(Sequential<float>& a, Sequential<float>& b) {
  const auto sa = state_of(a), sb = state_of(b);
  REQUIRE(sa.size() == sb.size());
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < sa.size(); ++i) {
    REQUIRE(sa[i]->shape() == sb[i]->shape());
    for (index_t k = 0; k < sa[i]->size(); ++k) {
      diff = std::max(diff, std::abs(double((*sa[i])[k]) - double((*sb[i])[k])));
      scale = std::max(scale, std::abs(double((*sa[i])[k])));
    }
  }
  return diff / scale;
}

// Whether every rank holds bit for bit the same parameters and buffers.
bool same_on_every_rank(Sequential<float>& model) {
  std::uint64_t hash = 0;
  for (const Tensor<float>* t : state_of(model))
    hash ^= dist::detail::fnv1a(std::string(reinterpret_cast<const char*>(t->data()),
                                            static_cast<std::size_t>(t->size()) * sizeof(float))) +
            0x9e3779b97f4a7c15ULL + (hash << 6) + (hash >> 2);
  const auto all = world().gather_all(&hash, 1);
  return std::all_of(all.begin(), all.end(), [&](std::uint64_t h) { return h == all[0]; });
}

template <class MakeModel, class MakeOptimizer>
void check_equivalence(MakeModel make_model, MakeOptimizer make_optimizer, int epochs, double bound) {
  const io::Mnist<float>& d = subset();
  nn::SoftmaxCrossEntropy<float> loss;
  train::FitOptions<float> options = test::quiet_fit<float>(epochs, 32);
  options.seed = 11;

  Sequential<float> single = make_model();
  auto single_optimizer = make_optimizer(single);
  const train::History reference = train::fit(single, *single_optimizer, loss, d.train_images, d.train_labels, options);

  Sequential<float> replica = make_model();
  // A different start on rank 1: DataParallel must give it rank 0's.
  if (world().rank() == 1)
    for (Parameter<float>* p : replica.parameters()) p->value.flat().setConstant(0.5f);
  auto optimizer = make_optimizer(replica);
  dist::DataParallel<float> replicas(world());
  options.batch_size = 32 / world().size();
  options.replicas = &replicas;
  const train::History history = train::fit(replica, *optimizer, loss, d.train_images, d.train_labels, options);

  CHECK(single_optimizer->steps() == 32 * epochs);
  CHECK(optimizer->steps() == single_optimizer->steps());
  CHECK(same_on_every_rank(replica));
  const double difference = state_difference(single, replica);
  INFO("rank " << world().rank() << ": largest difference " << difference << " of the largest value");
  CHECK(difference < bound);
  // The History is the global batch's on every rank.
  REQUIRE(history.epochs.size() == reference.epochs.size());
  for (std::size_t e = 0; e < history.epochs.size(); ++e) {
    CHECK(history.epochs[e].loss == Approx(reference.epochs[e].loss).epsilon(1e-4));
    CHECK(history.epochs[e].accuracy == Approx(reference.epochs[e].accuracy).epsilon(1e-3));
  }
}

}  // namespace

// Rank r's gradient is the mean over its share; the average weighted by the
// shares is the global batch's mean, summed in another order. After 64 steps
// the parameters agree to float rounding carried through the updates.
TEST_CASE("two ranks at batch 16 train the seed CNN as one process at batch 32 (Adam)", "[dist][equivalence]") {
  check_equivalence([] { return seed_cnn(); },
                    [](Sequential<float>& m) { return std::make_unique<optim::Adam<float>>(m.parameters(), 1e-3f); }, 2,
                    1e-5);
}

TEST_CASE("two ranks at batch 16 train the seed CNN as one process at batch 32 (SGD, momentum)",
          "[dist][equivalence]") {
  check_equivalence([] { return seed_cnn(); },
                    [](Sequential<float>& m) {
                      optim::SGD<float>::Options o;
                      o.momentum = 0.9f;
                      return std::make_unique<optim::SGD<float>>(m.parameters(), 0.01f, o);
                    },
                    2, 1e-5);
}

// Each rank draws the dropout masks of its own samples of the global batch.
TEST_CASE("data-parallel training with Dropout equals one process", "[dist][equivalence]") {
  check_equivalence([] { return dropout_mlp(); },
                    [](Sequential<float>& m) { return std::make_unique<optim::Adam<float>>(m.parameters(), 1e-3f); }, 2,
                    1e-5);
}

// BatchNorm sums its statistics over the ranks (SyncBatchNorm): the same
// normalisation, gradients and running statistics as one process.
TEST_CASE("data-parallel training with BatchNorm equals one process", "[dist][equivalence]") {
  check_equivalence([] { return batch_norm_cnn(); },
                    [](Sequential<float>& m) { return std::make_unique<optim::Adam<float>>(m.parameters(), 1e-3f); }, 2,
                    1e-5);
}

TEST_CASE("without synchronised BatchNorm, running statistics are averaged over the ranks each epoch", "[dist]") {
  const io::Mnist<float>& d = subset();
  nn::SoftmaxCrossEntropy<float> loss;
  Sequential<float> model = batch_norm_cnn();
  optim::Adam<float> adam(model.parameters(), 1e-3f);
  dist::DataParallel<float>::Options o;
  o.sync_batch_norm = false;
  dist::DataParallel<float> replicas(world(), o);
  train::FitOptions<float> options = test::quiet_fit<float>(1, 16);
  options.replicas = &replicas;
  train::fit(model, adam, loss, d.train_images, d.train_labels, options);
  CHECK(same_on_every_rank(model));
  // Each rank normalised with its own half of each batch: the running mean
  // differs from one process's, but not by much.
  Sequential<float> single = batch_norm_cnn();
  optim::Adam<float> single_adam(single.parameters(), 1e-3f);
  train::FitOptions<float> single_options = test::quiet_fit<float>(1, 32);
  train::fit(single, single_adam, loss, d.train_images, d.train_labels, single_options);
  const auto& mine = dynamic_cast<nn::BatchNorm<float>&>(model.layer(1)).running_mean();
  const auto& theirs = dynamic_cast<nn::BatchNorm<float>&>(single.layer(1)).running_mean();
  const double difference = test::relative_error(mine, theirs);
  CHECK(difference > 1e-6);
  CHECK(difference < 0.2);
}

TEST_CASE("synchronised BatchNorm refuses a last batch that leaves a rank without samples", "[dist]") {
  const io::Mnist<float>& d = subset();
  Tensor<float> x, y;
  copy_rows(d.train_images, 0, 993, x);  // 31 batches of 32 and one of 1
  copy_rows(d.train_labels, 0, 993, y);
  nn::SoftmaxCrossEntropy<float> loss;
  Sequential<float> model = batch_norm_cnn();
  optim::Adam<float> adam(model.parameters(), 1e-3f);
  dist::DataParallel<float> replicas(world());
  train::FitOptions<float> options = test::quiet_fit<float>(1, 16);
  options.replicas = &replicas;
  CHECK_THROWS_WITH(train::fit(model, adam, loss, x, y, options),
                    Catch::Contains("1 of 993 samples, leaves some of the 2 ranks without samples") &&
                        Catch::Contains("batch_norm_1"));
}

// With a learning rate of 0 both runs see the same values, split otherwise.
TEST_CASE("ActivationStats merged over the ranks equal one process's records of the global batch",
          "[dist][recorders]") {
  const io::Mnist<float>& d = subset();
  nn::SoftmaxCrossEntropy<float> loss;
  inspect::ActivationStatsOptions o;
  o.schedule.every = 3;
  train::FitOptions<float> options = test::quiet_fit<float>(1, 32);

  Sequential<float> single = seed_cnn();
  inspect::ActivationStats<float> reference(single, o);
  optim::SGD<float> frozen(single.parameters(), 0.0f);
  train::fit(single, frozen, loss, d.train_images, d.train_labels, options);

  Sequential<float> replica = seed_cnn();
  inspect::ActivationStats<float> stats(replica, o);
  optim::SGD<float> replica_frozen(replica.parameters(), 0.0f);
  dist::DataParallel<float> replicas(world());
  replicas.merge_records(stats);
  options.batch_size = 16;
  options.replicas = &replicas;
  train::fit(replica, replica_frozen, loss, d.train_images, d.train_labels, options);

  REQUIRE(stats.all().size() == reference.all().size());
  std::size_t records = 0;
  for (std::size_t l = 0; l < reference.all().size(); ++l) {
    const auto& want = reference.all()[l];
    const auto& got = stats.all()[l];
    REQUIRE(got.name == want.name);
    REQUIRE(got.records.size() == want.records.size());
    for (std::size_t i = 0; i < want.records.size(); ++i, ++records) {
      const inspect::ActivationRecord& a = got.records[i];
      const inspect::ActivationRecord& b = want.records[i];
      INFO(want.name << ", step " << b.context.step);
      CHECK(a.context.step == b.context.step);
      CHECK(a.count == b.count);
      CHECK(a.mean == Approx(b.mean).epsilon(1e-9).margin(1e-12));
      CHECK(a.std == Approx(b.std).epsilon(1e-9));
      CHECK(a.min == b.min);
      CHECK(a.max == b.max);
      CHECK(a.zero_fraction == b.zero_fraction);
      CHECK(a.dead_fraction == b.dead_fraction);
      CHECK(a.nonfinite_fraction == b.nonfinite_fraction);
      CHECK(a.histogram.low == b.histogram.low);
      CHECK(a.histogram.high == b.histogram.high);
      REQUIRE(a.histogram.counts.size() == b.histogram.counts.size());
      // Outputs of up to histogram_values values are binned whole: the same
      // counts. Larger ones bin a strided sample of the same size, not the
      // same values: close in shape.
      double total_a = 0, total_b = 0, l1 = 0;
      for (std::size_t k = 0; k < a.histogram.counts.size(); ++k) {
        total_a += double(a.histogram.counts[k]);
        total_b += double(b.histogram.counts[k]);
      }
      for (std::size_t k = 0; k < a.histogram.counts.size(); ++k)
        l1 += std::abs(double(a.histogram.counts[k]) / total_a - double(b.histogram.counts[k]) / total_b);
      if (b.count <= o.histogram_values) {
        CHECK(a.histogram.counts == b.histogram.counts);
        CHECK(a.histogram.zeros == b.histogram.zeros);
      } else {
        CHECK(l1 < 0.05);
        CHECK(double(a.histogram.zeros) / total_a == Approx(b.zero_fraction).margin(0.05));
      }
      CHECK(total_a == Approx(total_b).epsilon(0.02));
    }
  }
  CHECK(records == 4 * 11);  // 4 layers, steps 0, 3, ..., 30
  // Some units are dead in one rank's half of a batch but not in the whole.
  CHECK(stats.series("conv2d_1").records.back().dead_fraction > 0);
}

// Without shuffling, global batch s is samples [32s, 32s + 32): rank r's
// share is the 16 samples one process at batch 16 takes at step 2s + r.
TEST_CASE("GradientFlow merged over the ranks equals one process's records, with each rank's own norms",
          "[dist][recorders]") {
  const io::Mnist<float>& d = subset();
  nn::SoftmaxCrossEntropy<float> loss;
  train::FitOptions<float> options = test::quiet_fit<float>(1, 32);
  options.shuffle = false;
  inspect::GradientFlowOptions every3;
  every3.schedule.every = 3;

  Sequential<float> single = seed_cnn();
  inspect::GradientFlow<float> reference(single, every3);
  optim::SGD<float> frozen(single.parameters(), 0.0f);
  train::fit(single, frozen, loss, d.train_images, d.train_labels, options);

  Sequential<float> halves = seed_cnn();
  inspect::GradientFlow<float> per_half(halves);
  optim::SGD<float> frozen_halves(halves.parameters(), 0.0f);
  options.batch_size = 16;
  train::fit(halves, frozen_halves, loss, d.train_images, d.train_labels, options);

  Sequential<float> replica = seed_cnn();
  inspect::GradientFlow<float> flow(replica, every3);
  optim::SGD<float> replica_frozen(replica.parameters(), 0.0f);
  dist::DataParallel<float> replicas(world());
  replicas.merge_records(flow);
  options.replicas = &replicas;
  train::fit(replica, replica_frozen, loss, d.train_images, d.train_labels, options);

  REQUIRE(flow.layers().size() == reference.layers().size());
  for (std::size_t l = 0; l < reference.layers().size(); ++l) {
    const auto& want = reference.layers()[l].records;
    const auto& got = flow.layers()[l].records;
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
      INFO(reference.layers()[l].name << ", step " << want[i].context.step);
      CHECK(got[i].norm == Approx(want[i].norm).epsilon(1e-5));
      CHECK(got[i].max_abs == Approx(want[i].max_abs).epsilon(1e-5));
    }
  }
  REQUIRE(flow.parameters().size() == reference.parameters().size());
  std::size_t checked = 0;
  for (std::size_t p = 0; p < reference.parameters().size(); ++p) {
    const auto& want = reference.parameters()[p].records;
    const auto& got = flow.parameters()[p].records;
    const auto& half = per_half.parameters()[p].records;
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i, ++checked) {
      const long long step = want[i].context.step;
      INFO(want[i].parameter << ", step " << step);
      CHECK(got[i].grad_norm == Approx(want[i].grad_norm).epsilon(1e-5));
      CHECK(got[i].grad_max_abs == Approx(want[i].grad_max_abs).epsilon(1e-5));
      CHECK(got[i].weight_norm == Approx(want[i].weight_norm).epsilon(1e-6));
      REQUIRE(got[i].rank_grad_norms.size() == 2);
      for (std::size_t r = 0; r < 2; ++r)
        CHECK(got[i].rank_grad_norms[r] ==
              Approx(half[static_cast<std::size_t>(2 * step) + r].grad_norm).epsilon(1e-5));
      // The halves' gradients differ, and their average is the global one.
      CHECK(got[i].rank_grad_norms[0] != got[i].rank_grad_norms[1]);
    }
  }
  CHECK(checked == 2 * 2 * 11);  // conv and dense weight and bias, steps 0, 3, ..., 30
  CHECK(flow.alert_count() == reference.alert_count());
}

// The global batch (32) decides the batches, whatever the ranks: a
// checkpoint of 2 ranks at 16 continues on one process at 32.
TEST_CASE("a checkpoint of 2 ranks resumes exactly on one process; another global batch is refused",
          "[dist][equivalence]") {
  const io::Mnist<float>& d = subset();
  nn::SoftmaxCrossEntropy<float> loss;
  train::FitOptions<float> options = test::quiet_fit<float>(2, 16);
  options.seed = 11;

  Sequential<float> straight = seed_cnn();
  optim::Adam<float> adam(straight.parameters(), 1e-3f);
  dist::DataParallel<float> replicas(world());
  options.replicas = &replicas;
  train::fit(straight, adam, loss, d.train_images, d.train_labels, options);

  Sequential<float> first = seed_cnn();
  optim::Adam<float> first_adam(first.parameters(), 1e-3f);
  options.epochs = 1;
  train::fit(first, first_adam, loss, d.train_images, d.train_labels, options);
  const std::string path = "dist_resume.gbck";  // in the test's directory, shared by the ranks
  if (world().rank() == 0) io::save_checkpoint(first, path, &first_adam, 1, io::RunShape{world().size(), 32});
  world().barrier();
  io::Checkpoint<float> c = io::load_checkpoint<float>(path);
  CHECK(c.run.world_size == 2);
  CHECK(c.run.global_batch == 32);

  train::FitOptions<float> resumed = test::quiet_fit<float>(2, 32);
  resumed.seed = 11;
  resumed.initial_epoch = static_cast<int>(c.epochs_completed);
  resumed.resumed_global_batch = c.run.global_batch;
  train::fit(c.model, *c.optimizer, loss, d.train_images, d.train_labels, resumed);
  CHECK(c.optimizer->steps() == adam.steps());
  const double difference = state_difference(straight, c.model);
  INFO("largest difference " << difference << " of the largest value");
  CHECK(difference < 1e-5);

  resumed.batch_size = 8;
  resumed.replicas = &replicas;
  CHECK_THROWS_WITH(train::fit(c.model, *c.optimizer, loss, d.train_images, d.train_labels, resumed),
                    Catch::Contains("global batch of 32; 2 replica(s) x batch_size 8 make 16"));
}

// Where the reduction order is that of one process (one rank: its own sums),
// data-parallel training is that process's, bit for bit.
TEST_CASE("data-parallel training on one rank is bit-identical to fit without replicas", "[dist][equivalence]") {
  MPI_Comm alone;
  MPI_Comm_split(MPI_COMM_WORLD, world().rank(), 0, &alone);
  {
    dist::Communicator one(alone);
    REQUIRE(one.size() == 1);
    const io::Mnist<float>& d = subset();
    nn::SoftmaxCrossEntropy<float> loss;
    train::FitOptions<float> options = test::quiet_fit<float>(1, 32);
    Sequential<float> single = batch_norm_cnn();
    optim::Adam<float> single_adam(single.parameters(), 1e-3f);
    train::fit(single, single_adam, loss, d.train_images, d.train_labels, options);

    Sequential<float> replica = batch_norm_cnn();
    optim::Adam<float> adam(replica.parameters(), 1e-3f);
    dist::DataParallel<float> replicas(one);
    options.replicas = &replicas;
    train::fit(replica, adam, loss, d.train_images, d.train_labels, options);
    CHECK(state_difference(single, replica) == 0);
  }
  MPI_Comm_free(&alone);
}

// 993 samples: the last global batch is 1 sample, which rank 1 takes alone.
TEST_CASE("a rank without samples in the last batch still steps with the others", "[dist][equivalence]") {
  const io::Mnist<float>& d = subset();
  Tensor<float> x, y;
  copy_rows(d.train_images, 0, 993, x);
  copy_rows(d.train_labels, 0, 993, y);
  nn::SoftmaxCrossEntropy<float> loss;
  train::FitOptions<float> options = test::quiet_fit<float>(1, 32);
  Sequential<float> single = seed_cnn();
  optim::Adam<float> single_adam(single.parameters(), 1e-3f);
  train::fit(single, single_adam, loss, x, y, options);

  Sequential<float> replica = seed_cnn();
  optim::Adam<float> adam(replica.parameters(), 1e-3f);
  dist::DataParallel<float> replicas(world());
  options.batch_size = 16;
  options.replicas = &replicas;
  train::fit(replica, adam, loss, x, y, options);
  const std::int64_t steps = replica.training_steps();
  const auto all = world().gather_all(&steps, 1);
  CHECK(all == std::vector<std::int64_t>{32, 32});
  CHECK(same_on_every_rank(replica));
  CHECK(state_difference(single, replica) < 1e-5);
}

TEST_CASE("sharded evaluation equals evaluation of the whole set", "[dist]") {
  const io::Mnist<float>& d = subset();
  nn::SoftmaxCrossEntropy<float> loss;
  Sequential<float> model = seed_cnn();
  dist::DataParallel<float> replicas(world());
  const train::Evaluation whole = train::evaluate(model, loss, d.test_images, d.test_labels, 64);
  const train::Evaluation sharded = train::evaluate(model, loss, d.test_images, d.test_labels, 64, &replicas);
  CHECK(sharded.loss == Approx(whole.loss).epsilon(1e-6));
  CHECK(sharded.accuracy == whole.accuracy);
}

TEST_CASE("ranks that built different models are refused, naming the rank and the layer", "[dist]") {
  const io::Mnist<float>& d = subset();
  nn::SoftmaxCrossEntropy<float> loss;
  Sequential<float> model = seed_cnn(world().rank() == 1 ? 12 : 10);
  optim::Adam<float> adam(model.parameters(), 1e-3f);
  dist::DataParallel<float> replicas(world());
  train::FitOptions<float> options = test::quiet_fit<float>(1, 16);
  options.replicas = &replicas;
  CHECK_THROWS_WITH(train::fit(model, adam, loss, d.train_images, d.train_labels, options),
                    Catch::Contains("model on rank 1 differs from rank 0's from layer 3"));
  CHECK(adam.steps() == 0);
}

TEST_CASE("rank 0's early stop ends training on every rank", "[dist]") {
  const io::Mnist<float>& d = subset();
  nn::SoftmaxCrossEntropy<float> loss;
  Sequential<float> model = seed_cnn();
  optim::Adam<float> adam(model.parameters(), 1e-3f);
  dist::DataParallel<float> replicas(world());
  train::FitOptions<float> options = test::quiet_fit<float>(1, 16);
  options.replicas = &replicas;
  struct StopAfter5 : train::Callback {
    long long batches = 0;
    void on_batch_end(const train::BatchLogs&) override { ++batches; }
    bool stop_training() const override { return batches >= 5; }
  } stop;
  if (world().rank() == 0) options.callbacks.push_back(&stop);
  train::fit(model, adam, loss, d.train_images, d.train_labels, options);
  CHECK(adam.steps() == 5);
  CHECK(stop.batches == (world().rank() == 0 ? 5 : 0));  // callbacks run on rank 0 only
}

int main(int argc, char** argv) {
  dist::Environment mpi(argc, argv);
  world();
  Catch::Session session;
  if (const int rc = session.applyCommandLine(argc, argv)) return rc;
  const int failures = session.run();
  // Every rank's verdict decides the exit code of each.
  int failed = failures > 0 ? 1 : 0;
  world().max(&failed, 1);
  return failed;
}
