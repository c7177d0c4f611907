// Checkpoints: exact round trips, bit-identical resumed training, every
// corruption a clear error, and no torn file when the writer is killed.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <glassbox/io/checkpoint.hpp>
#include <thread>

#include "checkpoint_models.hpp"
#include "support.hpp"

using namespace glassbox;

namespace {

// A fresh scratch directory per test.
std::string scratch(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("glassbox_checkpoint_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

Tensor<float> random_images(index_t n, std::uint64_t seed) {
  Rng rng(seed);
  Tensor<float> x(Shape{n, 1, 8, 8});
  for (float& v : x) v = static_cast<float>(rng.normal());
  return x;
}

Tensor<float> random_labels(index_t n, int classes, std::uint64_t seed) {
  Rng rng(seed);
  Tensor<float> y(Shape{n});
  for (float& v : y) v = static_cast<float>(rng.below(static_cast<std::uint64_t>(classes)));
  return y;
}

void check_same_parameters(Sequential<float>& a, Sequential<float>& b) {
  const auto pa = a.parameters(), pb = b.parameters();
  REQUIRE(pa.size() == pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i]->name);
    CHECK(pa[i]->name == pb[i]->name);
    REQUIRE(pa[i]->value.shape() == pb[i]->value.shape());
    CHECK(std::equal(pa[i]->value.begin(), pa[i]->value.end(), pb[i]->value.begin()));
    CHECK(pa[i]->has_mask() == pb[i]->has_mask());
    if (pa[i]->has_mask()) CHECK(std::equal(pa[i]->mask.begin(), pa[i]->mask.end(), pb[i]->mask.begin()));
  }
}

// The sections of a checkpoint, to rewrite one with a valid checksum.
struct Sections {
  std::string header;
  std::vector<std::pair<std::string, std::string>> parts;  // tag, payload

  explicit Sections(const std::string& file) : header(file.substr(0, 24)) {
    for (std::size_t pos = 24; pos < file.size();) {
      std::uint64_t size;
      std::memcpy(&size, file.data() + pos + 4, 8);
      parts.emplace_back(file.substr(pos, 4), file.substr(pos + 12, size));
      pos += 12 + size + 4;
    }
  }
  std::string bytes() const {
    std::string out = header;
    for (const auto& [tag, payload] : parts) {
      out += tag;
      glassbox::put<std::uint64_t>(out, payload.size());
      out += payload;
      glassbox::put<std::uint32_t>(out, glassbox::crc32c(payload.data(), payload.size()));
    }
    return out;
  }
};

std::string error_of(const std::string& bytes) {
  try {
    io::checkpoint_from_bytes<float>(bytes, "ckpt.gbck");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("checkpoint: a round trip keeps architecture, parameters, masks, buffers and generators", "[checkpoint]") {
  Sequential<float> model = test::every_kind_model();
  // Train a little so that the batch-norm statistics and Adam's moments are
  // not their initial values; prune a little so that masks exist.
  const Tensor<float> x = random_images(64, 1), y = random_labels(64, 3, 2);
  optim::Adam<float> adam(model.parameters(), 1e-2f);
  nn::SoftmaxCrossEntropy<float> loss;
  train::FitOptions<float> fit;
  fit.verbosity = train::Verbosity::silent;
  fit.batch_size = 16;
  train::fit(model, adam, loss, x, y, fit);
  Parameter<float>& w = *model.layer("dense_1").parameters()[0];
  Tensor<float> mask(w.value.shape(), 1.0f);
  for (index_t i = 0; i < mask.size(); i += 3) mask[i] = 0;
  w.set_mask(mask);

  const std::string path = scratch("round_trip") + "/model.gbck";
  io::save_checkpoint(model, path, &adam, 1);
  io::Checkpoint<float> c = io::load_checkpoint<float>(path);

  CHECK(c.model.summary() == model.summary());
  CHECK(c.epochs_completed == 1);
  CHECK(c.model.training_steps() == model.training_steps());
  check_same_parameters(model, c.model);
  auto& bn = dynamic_cast<nn::BatchNorm<float>&>(c.model.layer("batch_norm_1"));
  auto& bn0 = dynamic_cast<nn::BatchNorm<float>&>(model.layer("batch_norm_1"));
  CHECK(std::equal(bn.running_var().begin(), bn.running_var().end(), bn0.running_var().begin()));
  CHECK(bn.running_var()[0] != 1.0f);  // trained, so not vacuous

  // The same outputs, in eval mode and in train mode (the same dropout masks,
  // the dropout generator having been restored).
  const Tensor<float> probe = random_images(5, 9);
  const Tensor<float> eval_out = model.forward(probe, Mode::eval);
  CHECK(std::equal(eval_out.begin(), eval_out.end(), c.model.forward(probe, Mode::eval).begin()));
  const Tensor<float> train_out = model.forward(probe, Mode::train);
  const Tensor<float>& resumed = c.model.forward(probe, Mode::train);
  CHECK(std::equal(train_out.begin(), train_out.end(), resumed.begin()));

  // The optimizer: same kind, settings, step count and moments.
  REQUIRE(c.optimizer);
  auto& adam2 = dynamic_cast<optim::Adam<float>&>(*c.optimizer);
  CHECK(adam2.steps() == adam.steps());
  CHECK(adam2.learning_rate() == adam.learning_rate());
  REQUIRE(adam2.exp_avg_sq().size() == adam.exp_avg_sq().size());
  for (std::size_t i = 0; i < adam.exp_avg_sq().size(); ++i)
    CHECK(std::equal(adam.exp_avg_sq()[i].begin(), adam.exp_avg_sq()[i].end(), adam2.exp_avg_sq()[i].begin()));

  SECTION("global pooling, softmax, a model without a sample shape, no optimizer, double") {
    Sequential<double> m(5);
    m.add<nn::Conv2D<double>>(2, 3, nn::Size2{1, 1});
    m.add<nn::GlobalAvgPool2D<double>>();
    m.add<nn::Softmax<double>>();
    const std::string p2 = scratch("round_trip_double") + "/m.gbck";
    io::save_checkpoint(m, p2);
    io::Checkpoint<double> d = io::load_checkpoint<double>(p2);
    CHECK_FALSE(d.optimizer);
    CHECK_FALSE(d.model.sample_shape().has_value());
    Tensor<double> in(Shape{2, 2, 3, 3});
    for (index_t i = 0; i < in.size(); ++i) in[i] = 0.1 * static_cast<double>(i);
    const Tensor<double> a = m.forward(in);
    CHECK(std::equal(a.begin(), a.end(), d.model.forward(in).begin()));
    CHECK_THROWS_WITH(io::load_checkpoint<float>(p2),
                      Catch::Contains("scalar size") && Catch::Contains("8-byte values") && Catch::Contains(p2));
  }
}

TEST_CASE("checkpoint: the run's shape (ranks, global batch) round-trips; version 1 files load as one process",
          "[checkpoint]") {
  Sequential<float> model = test::every_kind_model();
  const std::string path = scratch("run_shape") + "/model.gbck";
  optim::Optimizer<float>* none = nullptr;
  io::save_checkpoint(model, path, none, 0, io::RunShape{4, 64});
  const io::Checkpoint<float> c = io::load_checkpoint<float>(path);
  CHECK(c.run.world_size == 4);
  CHECK(c.run.global_batch == 64);
  io::save_checkpoint(model, path);
  CHECK(io::load_checkpoint<float>(path).run.world_size == 1);
  CHECK(io::load_checkpoint<float>(path).run.global_batch == 0);
  CHECK_THROWS_WITH(io::save_checkpoint(model, path, none, 0, io::RunShape{0, 64}),
                    Catch::Contains("run shape 0 ranks"));
  // Written by version 1, before the run shape existed.
  const io::Checkpoint<float> old =
      io::load_checkpoint<float>(test::data_path("fuzz/seeds/checkpoint/every_kind_sgd.gbck"));
  CHECK(old.run.world_size == 1);
  CHECK(old.run.global_batch == 0);
}

TEST_CASE("checkpoint: training resumed from a checkpoint is bit-identical to unbroken training", "[checkpoint]") {
  const int threads = num_threads();
  set_num_threads(1);
  const Tensor<float> x = random_images(96, 3), y = random_labels(96, 3, 4);
  nn::SoftmaxCrossEntropy<float> loss;
  train::FitOptions<float> fit;
  fit.verbosity = train::Verbosity::silent;
  fit.batch_size = 16;
  fit.seed = 11;

  auto run = [&](auto make_optimizer) {
    Sequential<float> straight = test::every_kind_model();
    auto opt = make_optimizer(straight);
    fit.epochs = 2;
    fit.initial_epoch = 0;
    train::fit(straight, *opt, loss, x, y, fit);

    Sequential<float> first = test::every_kind_model();
    auto opt1 = make_optimizer(first);
    fit.epochs = 1;
    train::fit(first, *opt1, loss, x, y, fit);
    const std::string path = scratch("resume") + "/epoch1.gbck";
    io::save_checkpoint(first, path, opt1.get(), 1);

    io::Checkpoint<float> c = io::load_checkpoint<float>(path);
    fit.epochs = 2;
    fit.initial_epoch = static_cast<int>(c.epochs_completed);
    const train::History h = train::fit(c.model, *c.optimizer, loss, x, y, fit);
    CHECK(h.epochs.size() == 1);
    CHECK(h.last().epoch == 1);
    check_same_parameters(straight, c.model);
    CHECK(c.model.training_steps() == straight.training_steps());
    // Not vacuous: the second epoch changed the weights.
    CHECK_FALSE(std::equal(first.parameters()[0]->value.begin(), first.parameters()[0]->value.end(),
                           straight.parameters()[0]->value.begin()));
  };
  SECTION("Adam") {
    run([](Sequential<float>& m) { return std::make_unique<optim::Adam<float>>(m.parameters(), 1e-2f); });
  }
  SECTION("SGD with Nesterov momentum and weight decay") {
    run([](Sequential<float>& m) {
      optim::SGD<float>::Options o;
      o.momentum = 0.9f;
      o.nesterov = true;
      o.weight_decay = 1e-3f;
      return std::make_unique<optim::SGD<float>>(m.parameters(), 0.05f, o);
    });
  }
  set_num_threads(threads);
}

TEST_CASE("checkpoint: every corruption is an error naming the file, the section and the field", "[checkpoint]") {
  Sequential<float> model = test::every_kind_model();
  optim::SGD<float>::Options o;
  o.momentum = 0.5f;
  optim::SGD<float> sgd(model.parameters(), 0.1f, o);
  const std::string good = io::checkpoint_bytes(model, &sgd, 2);
  REQUIRE(error_of(good).empty());

  SECTION("magic, version, header checksum") {
    std::string bad = good;
    bad[1] = 'X';
    CHECK_THAT(error_of(bad), Catch::Contains("ckpt.gbck: header, field 'magic'"));
    bad = good;
    glassbox::put<std::uint32_t>(bad, 0);  // keeps the header intact, appends garbage
    CHECK_THAT(error_of(bad), Catch::Contains("bytes after the last section"));
    bad = good;
    const std::uint32_t newer = io::checkpoint_format::version + 1;
    std::memcpy(bad.data() + 8, &newer, 4);
    const std::uint32_t crc = glassbox::crc32c(bad.data(), 20);
    std::memcpy(bad.data() + 20, &crc, 4);
    CHECK_THAT(error_of(bad), Catch::Contains("field 'version'") && Catch::Contains("newer"));
    bad = good;
    bad[12] = 8;  // scalar size, without fixing the header checksum
    CHECK_THAT(error_of(bad), Catch::Contains("field 'header checksum'"));
  }
  SECTION("every truncation") {
    for (std::size_t n = 0; n < good.size(); ++n) {
      const std::string e = error_of(good.substr(0, n));
      INFO(n << " bytes: " << e);
      CHECK_THAT(e, Catch::StartsWith("ckpt.gbck: ") && Catch::Contains("field '"));
    }
  }
  SECTION("a flipped byte in any section fails its checksum") {
    for (std::size_t pos = 24; pos < good.size(); pos += 7) {
      std::string bad = good;
      bad[pos] = static_cast<char>(bad[pos] ^ 0x5a);
      const std::string e = error_of(bad);
      INFO(pos << ": " << e);
      CHECK_THAT(e, Catch::StartsWith("ckpt.gbck: ") && Catch::Contains("field '"));
    }
  }
  SECTION("a size field larger than the file") {
    std::string bad = good;
    const std::uint64_t huge = std::uint64_t(1) << 60;
    std::memcpy(bad.data() + 24 + 4, &huge, 8);
    CHECK_THAT(error_of(bad),
               Catch::Contains("ARCH") && Catch::Contains("field 'size'") && Catch::Contains("truncated or corrupt"));
  }
  SECTION("well-framed sections with wrong contents") {
    Sections s(good);
    REQUIRE(s.parts.size() == 4);
    // An unknown layer kind: the first layer's kind string "conv2d" renamed.
    Sections kind = s;
    const std::size_t at = kind.parts[0].second.find("conv2d");
    REQUIRE(at != std::string::npos);
    kind.parts[0].second.replace(at, 6, "conv9d");
    CHECK_THAT(error_of(kind.bytes()), Catch::Contains("ckpt.gbck: ARCH") && Catch::Contains("conv2d_1") &&
                                           Catch::Contains("unknown layer kind 'conv9d'"));
    // A layer field out of range: the dense layer's 16 inputs made 2^40, so
    // its weight would be 2^43 values; the loader refuses before allocating.
    Sections wide = s;
    const std::size_t in = wide.parts[0].second.find("in", wide.parts[0].second.find("dense_1"));
    REQUIRE(in != std::string::npos);
    const double big = std::ldexp(1.0, 40);
    std::memcpy(wide.parts[0].second.data() + in + 2, &big, 8);
    CHECK_THAT(error_of(wide.bytes()), Catch::Contains("dense_1") && Catch::Contains("field 'in'"));
    // A parameter's shape that differs from its layer's.
    Sections shape = s;
    const std::size_t name = shape.parts[1].second.find("conv2d_1.weight");
    REQUIRE(name != std::string::npos);
    const std::int64_t five = 5;
    std::memcpy(shape.parts[1].second.data() + name + 15 + 4, &five, 8);  // after the rank: out channels
    CHECK_THAT(error_of(shape.bytes()),
               Catch::Contains("PARM") && Catch::Contains("field 'shape'") && Catch::Contains("conv2d_1.weight"));
    // An optimizer kind this build does not know.
    Sections opt = s;
    opt.parts[3].second[4] = 'x';  // "sgd" -> "xgd"
    CHECK_THAT(error_of(opt.bytes()), Catch::Contains("OPTM") && Catch::Contains("unknown optimizer 'xgd'"));
    // Sections out of order.
    Sections order = s;
    std::swap(order.parts[1], order.parts[2]);
    CHECK_THAT(error_of(order.bytes()), Catch::Contains("field 'tag'") && Catch::Contains("'STAT' where 'PARM'"));
  }
  SECTION("files") {
    CHECK_THROWS_WITH(io::load_checkpoint<float>("/nonexistent/x.gbck"), Catch::Contains("/nonexistent/x.gbck"));
    CHECK_THROWS_WITH(io::save_checkpoint(model, "/nonexistent/x.gbck"), Catch::Contains("/nonexistent/x.gbck"));
  }
}

TEST_CASE("checkpoint: a writer killed at random moments never leaves a torn file", "[checkpoint]") {
  const std::string dir = scratch("killed");
  const std::string path = dir + "/model.gbck";
  Sequential<float> a = test::every_kind_model();
  test::fill_parameters(a, 1.0f);
  io::save_checkpoint(a, path);
  Rng rng(5);
  int saw_a = 0, saw_b = 0;
  for (int round = 0; round < 40; ++round) {
    int ready[2];
    REQUIRE(pipe(ready) == 0);
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      dup2(ready[1], STDOUT_FILENO);
      close(ready[0]);
      execl(GLASSBOX_CHECKPOINT_WRITER, GLASSBOX_CHECKPOINT_WRITER, path.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(ready[1]);
    // Wait until the writer has saved both versions, then kill it at a random
    // moment of the saves that follow.
    char line[8] = {};
    const ssize_t got = read(ready[0], line, sizeof line - 1);
    close(ready[0]);
    REQUIRE(got > 0);
    std::this_thread::sleep_for(std::chrono::microseconds(rng.below(5000)));
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    REQUIRE(WIFSIGNALED(status));
    io::Checkpoint<float> c = io::load_checkpoint<float>(path);  // must not throw
    const float v = c.model.parameters()[0]->value[0];
    REQUIRE((v == 1.0f || v == 2.0f));
    for (Parameter<float>* p : c.model.parameters())
      REQUIRE(std::all_of(p->value.begin(), p->value.end(), [&](float e) { return e == v; }));
    (v == 1.0f ? saw_a : saw_b)++;
  }
  // Both versions were seen, so the kills did land mid-stream.
  CHECK(saw_a > 0);
  CHECK(saw_b > 0);
  std::filesystem::remove_all(dir);
}
