// inspect/: recorders built on the hook API record the right numbers, stay
// within their memory bounds, flag real problems and export valid CSV/JSON.
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>

#include "support.hpp"

using namespace glassbox;
using namespace glassbox::inspect;

using Catch::Matchers::Contains;
using test::gradient_error;
using test::JsonChecker;
using test::numerical_gradient;
using test::quiet_fit;
using test::random_tensor;

namespace {

Sequential<double> mlp(std::uint64_t seed = 1) {
  Sequential<double> model(Shape{6}, seed);
  model.add<nn::Dense<double>>(6, 8);
  model.add<nn::ReLU<double>>();
  model.add<nn::Dense<double>>(8, 3);
  return model;
}

std::size_t line_count(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

}  // namespace

TEST_CASE("ActivationStats records the statistics of each layer's output", "[inspect][summary]") {
  Sequential<double> model = mlp();
  ActivationStatsOptions options;
  options.schedule.eval = true;
  options.bins = 4;
  options.range = std::make_pair(-1.0, 1.0);
  ActivationStats<double> stats(model, options);
  Rng rng(3);
  const Tensor<double> x = random_tensor(Shape{5, 6}, rng);
  model.forward(x);
  REQUIRE(stats.all().size() == 3);
  for (std::size_t i = 0; i < model.size(); ++i) {
    const Tensor<double>& y = model.output(i);
    const ActivationRecord& r = stats.series(model.layer(i).name()).records.back();
    INFO(r.layer);
    CHECK(r.layer_index == i);
    CHECK(r.context.mode == Mode::eval);
    CHECK(r.count == y.size());
    const double mean = y.flat().mean();
    CHECK(r.mean == Approx(mean).epsilon(1e-12));
    CHECK(r.std == Approx(std::sqrt((y.flat().array() - mean).square().mean())).epsilon(1e-12));
    CHECK(r.min == y.flat().minCoeff());
    CHECK(r.max == y.flat().maxCoeff());
    const double zeros = static_cast<double>((y.flat().array() == 0.0).count());
    CHECK(r.zero_fraction == Approx(zeros / static_cast<double>(y.size())));
    index_t dead = 0;
    for (index_t u = 0; u < y.dim(1); ++u) dead += (y.matrix().col(u).array() == 0.0).all();
    CHECK(r.dead_fraction == Approx(static_cast<double>(dead) / static_cast<double>(y.dim(1))));
    CHECK(r.nonfinite_fraction == 0.0);
    // Fixed range [-1, 1] in 4 bins of width 0.5.
    std::vector<std::uint64_t> counts(4, 0);
    std::uint64_t below = 0, above = 0;
    for (index_t k = 0; k < y.size(); ++k) {
      const double v = y.data()[k];
      if (v < -1)
        ++below;
      else if (v > 1)
        ++above;
      else
        ++counts[std::min<std::size_t>(3, static_cast<std::size_t>((v + 1) / 0.5))];
    }
    CHECK(r.histogram.counts == counts);
    CHECK(r.histogram.below == below);
    CHECK(r.histogram.above == above);
    CHECK(r.histogram.zeros == static_cast<std::uint64_t>(zeros));  // every value is binned here
  }
  // The ReLU of this model really has zeros, so the check above is not vacuous.
  CHECK(stats.series("relu_1").records.back().zero_fraction > 0.1);
}

TEST_CASE("ActivationStats: non-finite values, large means, adaptive bins", "[inspect][summary]") {
  Sequential<float> model(Shape{4}, 1);
  model.add<nn::Flatten<float>>();
  model.add<nn::ReLU<float>>();
  ActivationStatsOptions options;
  options.schedule.eval = true;
  options.bins = 10;
  ActivationStats<float> stats(model, options);

  SECTION("NaN and inf are counted, the other statistics use the finite values") {
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    model.forward(Tensor<float>(Shape{2, 4}, {1, nan, 3, 0, inf, 5, 0, 0}));
    const ActivationRecord& r = stats.series("flatten_1").records.back();
    CHECK(r.nonfinite_fraction == 0.25);
    CHECK(r.mean == Approx(1.5));  // of {1, 3, 0, 5, 0, 0}
    CHECK(r.min == 0.0);
    CHECK(r.max == 5.0);
    CHECK(r.zero_fraction == 3.0 / 8.0);
    CHECK(r.dead_fraction == 0.25);  // unit 3 is zero in both samples; unit 1 is NaN, alive
    std::uint64_t binned = 0;
    for (auto c : r.histogram.counts) binned += c;
    CHECK(binned == 6);
    CHECK(r.histogram.zeros == 3);  // all of the first bin, [0, 0.5)
    CHECK(r.histogram.counts.front() == 3);
    CHECK(r.histogram.low == 0.0);
    CHECK(r.histogram.high == 5.0);
    CHECK(r.histogram.counts.back() == 1);  // the max falls in the last bin
  }
  SECTION("-0 counts as zero for dead units, the smallest denormal as alive") {
    const float denormal = std::numeric_limits<float>::denorm_min();
    model.forward(Tensor<float>(Shape{2, 4}, {-0.0f, 0.0f, denormal, 1, 0.0f, -0.0f, 0, 2}));
    const ActivationRecord& r = stats.series("flatten_1").records.back();
    CHECK(r.dead_fraction == 0.5);  // units 0 and 1; unit 2 holds a denormal once
    CHECK(r.zero_fraction == 5.0 / 8.0);
    CHECK(r.min == 0.0);
  }
  SECTION("finite values whose squares overflow are not counted as non-finite") {
    // 1e30^2 overflows float: the chunk's sum of squares is inf, and the
    // value-by-value pass must still find every value finite.
    model.forward(Tensor<float>(Shape{2, 4}, {1e30f, -1e30f, 0, 2, 1e30f, 0, 0, 2}));
    const ActivationRecord& r = stats.series("flatten_1").records.back();
    CHECK(r.nonfinite_fraction == 0.0);
    CHECK(r.mean == Approx(1e30 / 8 + 0.5).epsilon(1e-6));
    CHECK(r.max == Approx(1e30).epsilon(1e-6));
    CHECK(r.min == Approx(-1e30).epsilon(1e-6));
    CHECK(std::isfinite(r.std));
    CHECK(r.zero_fraction == 3.0 / 8.0);
  }
  SECTION("histograms of large outputs bin a strided sample; the statistics use every value") {
    Tensor<float> x(Shape{1024, 4});
    for (index_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i % 10);
    model.forward(x);
    const ActivationRecord& all = stats.series("flatten_1").records.back();
    CHECK(all.mean == Approx(4.5).epsilon(1e-3));
    std::uint64_t binned = 0;
    for (auto c : all.histogram.counts) binned += c;
    CHECK(binned == 4096);  // under the default 16384: every value

    ActivationStatsOptions sampled = options;
    sampled.histogram_values = 64;  // 4 runs of 16 consecutive values: 0, 64, 128 and 192 of 256
    ActivationStats<float> few(model, sampled);
    model.forward(x);
    const ActivationRecord& r = few.series("flatten_1").records.back();
    CHECK(r.count == 4096);
    CHECK(r.mean == all.mean);
    std::vector<std::uint64_t> expected(10, 0);
    std::uint64_t sampled_zeros = 0;
    for (index_t run : {0, 64, 128, 192})
      for (index_t i = run * 16; i < run * 16 + 16; ++i) {
        ++expected[std::min<std::size_t>(9, static_cast<std::size_t>(x.data()[i] * 10 / 9))];
        sampled_zeros += x.data()[i] == 0;
      }
    CHECK(r.histogram.counts == expected);
    CHECK(r.histogram.zeros == sampled_zeros);  // the sampled runs' zeros, not the 410 of all values
    CHECK(sampled_zeros == 6);
    CHECK(all.histogram.zeros == 410);
  }
  SECTION("the sampled runs cross rows and threads, and the last one may be short") {
    // Runs are counted from the start of the tensor, whatever the row width;
    // 69,649 values are summarized by two threads where the machine has them.
    for (const Shape& shape : {Shape{3, 13}, Shape{4097, 17}}) {
      Rng rng(3);
      Tensor<float> x(shape);
      for (float& v : x) v = static_cast<float>(rng.uniform());
      const index_t n = x.size(), runs = (n + 15) / 16;
      ActivationStatsOptions sampled = options;
      sampled.histogram_values = 32;  // 2 runs at most
      const index_t every = (runs + 1) / 2;
      Sequential<float> one(shape.sample(), 1);
      one.add<nn::Flatten<float>>();
      ActivationStats<float> stats_of(one, sampled);
      one.forward(x);
      const ActivationRecord& r = stats_of.series("flatten_1").records.back();
      // The bin arithmetic of fill_histogram, so that values on a bin edge agree.
      const float low = static_cast<float>(r.histogram.low);
      const float scale = static_cast<float>(10 / (r.histogram.high - r.histogram.low));
      std::vector<std::uint64_t> expected(10, 0);
      std::uint64_t sample_size = 0;
      for (index_t run = 0; run < runs; run += every)
        for (index_t i = run * 16; i < std::min(n, run * 16 + 16); ++i, ++sample_size)
          ++expected[std::min<std::size_t>(9, static_cast<std::size_t>((x.data()[i] - low) * scale))];
      CHECK(sample_size == (shape == Shape{3, 13} ? 16 + 7 : 32));
      CHECK(r.histogram.counts == expected);

      // Every value (69,649 are binned by two threads where the machine has them).
      sampled.histogram_values = 0;
      ActivationStats<float> all_of(one, sampled);
      one.forward(x);
      const ActivationRecord& a = all_of.series("flatten_1").records.back();
      std::fill(expected.begin(), expected.end(), 0);
      for (float v : x) ++expected[std::min<std::size_t>(9, static_cast<std::size_t>((v - low) * scale))];
      CHECK(a.histogram.counts == expected);
      CHECK(a.histogram.zeros == 0);
    }
  }
  SECTION("a large mean does not swamp the std (float data, 10,000 values)") {
    Tensor<float> x(Shape{2500, 4});
    for (index_t i = 0; i < x.size(); ++i) x.data()[i] = 10000.0f + (i % 2 ? 0.5f : -0.5f);
    model.forward(x);
    const ActivationRecord& r = stats.series("flatten_1").records.back();
    CHECK(r.mean == Approx(10000.0).epsilon(1e-9));
    CHECK(r.std == Approx(0.5).epsilon(1e-6));
  }
  SECTION("means up to 4 std (unshifted sums) and beyond (shifted) against a double-precision reference") {
    // std 1/sqrt(3): a mean of 2.2 is 3.8 std (unshifted sums), 2.4 is 4.2 std (summed again, shifted);
    // around 10,000 an unshifted float sum would be off by about 1e-3 in the mean.
    for (const double offset : {0.0, 1.0, 2.2, 2.4, 50.0, 10000.0}) {
      Rng rng(7);
      Tensor<float> x(Shape{4096, 4});
      for (float& v : x) v = static_cast<float>(offset + 2 * rng.uniform() - 1);
      double sum = 0, squares = 0;
      for (float v : x) sum += v;
      const double mean = sum / static_cast<double>(x.size());
      for (float v : x) squares += (v - mean) * (v - mean);
      model.forward(x);
      const ActivationRecord& r = stats.series("flatten_1").records.back();
      CAPTURE(offset);
      CHECK(r.mean == Approx(mean).epsilon(1e-12).margin(1e-6));
      CHECK(r.std == Approx(std::sqrt(squares / static_cast<double>(x.size()))).epsilon(1e-5));
    }
  }
}

TEST_CASE("ActivationStats: every k steps, train mode only by default, bounded memory", "[inspect]") {
  Sequential<double> model = mlp();
  ActivationStatsOptions options;
  options.schedule.every = 3;
  options.capacity = 2;
  options.layers = {"relu_1"};
  ActivationStats<double> stats(model, options);
  Rng rng(5);
  const Tensor<double> x = random_tensor(Shape{20, 6}, rng), y = random_tensor(Shape{20, 3}, rng);
  optim::SGD<double> sgd(model.parameters(), 0.01);
  nn::MSELoss<double> loss;
  train::FitOptions<double> o = quiet_fit<double>(2, 4);  // 10 steps: 0, 3, 6, 9 recorded
  o.validation_x = &x;
  o.validation_y = &y;
  train::fit(model, sgd, loss, x, y, o);
  REQUIRE(stats.all().size() == 1);
  const auto& series = stats.series("relu_1");
  REQUIRE(series.records.size() == 2);
  CHECK(series.dropped == 2);
  CHECK(series.records[0].context.step == 6);
  CHECK(series.records[1].context.step == 9);
  CHECK(series.records[1].context.epoch == 1);
  CHECK(series.records[1].context.mode == Mode::train);
  CHECK_THROWS_WITH(stats.series("dense_1"), Contains("nothing recorded for 'dense_1'"));
  ActivationStatsOptions bad;
  bad.schedule.every = 0;
  CHECK_THROWS_WITH(ActivationStats<double>(model, bad), Contains("every must be positive"));
  ActivationStatsOptions too_many_bins;
  too_many_bins.bins = max_histogram_bins + 1;
  CHECK_THROWS_WITH(ActivationStats<double>(model, too_many_bins), Contains("bins must be in [0, 4096], got 4097"));
  too_many_bins.bins = -1;
  CHECK_THROWS_WITH(ActivationStats<double>(model, too_many_bins), Contains("got -1"));
}

TEST_CASE("GradientFlow's kernels agree with plain double loops, one thread or both", "[inspect][summary]") {
  Rng rng(31);
  // Sizes around the 64-value streams, the 4,096-value chunks and the thread splits.
  for (const index_t size : {index_t{1}, index_t{63}, index_t{4096}, index_t{5000}, index_t{20000}, index_t{300000}}) {
    INFO("size " << size);
    Tensor<float> grad(Shape{size}), value(Shape{size});
    for (index_t i = 0; i < size; ++i) {
      grad[i] = static_cast<float>(rng.normal() * 1e-3);
      value[i] = static_cast<float>(rng.uniform(-2, 2));
    }
    grad[size / 2] = -0.5f;  // the largest |.|, negative
    double g2 = 0, w2 = 0, gmax = 0;
    for (index_t i = 0; i < size; ++i) {
      g2 += static_cast<double>(grad[i]) * grad[i];
      w2 += static_cast<double>(value[i]) * value[i];
      gmax = std::max(gmax, std::abs(static_cast<double>(grad[i])));
    }
    const inspect::detail::GradientMagnitude m = inspect::detail::magnitude(grad);
    CHECK(m.norm == Approx(std::sqrt(g2)).epsilon(1e-5));
    CHECK(m.max_abs == gmax);
    std::vector<float> kept(static_cast<std::size_t>(size), 0.0f);
    const inspect::detail::ParameterScan scan = inspect::detail::scan_parameter(grad, value, kept.data());
    CHECK(scan.grad.norm == Approx(std::sqrt(g2)).epsilon(1e-5));
    CHECK(scan.grad.max_abs == gmax);
    CHECK(scan.weight_norm == Approx(std::sqrt(w2)).epsilon(1e-5));
    CHECK(std::equal(kept.begin(), kept.end(), value.begin()));
    CHECK(inspect::detail::scan_parameter(grad, value, static_cast<float*>(nullptr)).weight_norm == scan.weight_norm);
  }
}

TEST_CASE("GradientFlow records gradient norms and the update-to-weight ratio", "[inspect]") {
  Sequential<double> model = mlp();
  GradientFlow<double> flow(model);
  Rng rng(7);
  const Tensor<double> x = random_tensor(Shape{8, 6}, rng), target = random_tensor(Shape{8, 3}, rng);
  optim::SGD<double> sgd(model.parameters(), 0.1);
  nn::MSELoss<double> loss;
  Tensor<double> grad;
  loss.forward(model.forward(x, Mode::train), target, &grad);
  model.backward(grad);
  Parameter<double>& w = *model.layer("dense_1").parameters()[0];
  const Tensor<double> before = w.value;
  const ParameterGradientRecord r = flow.parameter("dense_1.weight").records.back();
  CHECK(r.grad_norm == Approx(w.grad.flat().matrix().norm()).epsilon(1e-12));
  CHECK(r.grad_max_abs == w.grad.flat().cwiseAbs().maxCoeff());
  CHECK(r.weight_norm == Approx(w.value.flat().matrix().norm()).epsilon(1e-12));
  CHECK(std::isnan(r.update_ratio));  // not stepped yet
  CHECK(flow.layer("dense_2").records.back().norm == Approx(grad.flat().matrix().norm()).epsilon(1e-12));
  sgd.step();
  model.forward(x);  // the next pass fills in the ratio
  const double expected = (w.value.flat() - before.flat()).matrix().norm() / before.flat().matrix().norm();
  CHECK(flow.parameter("dense_1.weight").records.back().update_ratio == Approx(expected).epsilon(1e-12));
  CHECK(flow.parameters().size() == 4);
  CHECK(flow.alert_count() == 0);
}

TEST_CASE("GradientFlow records backward passes in eval mode only when its schedule asks", "[inspect]") {
  Sequential<double> model = mlp();
  Rng rng(3);
  const Tensor<double> x = random_tensor(Shape{4, 6}, rng), seed = random_tensor(Shape{4, 3}, rng);
  GradientFlow<double> training_only(model);
  GradientFlowOptions both;
  both.schedule.eval = true;
  GradientFlow<double> with_eval(model, both);
  model.forward(x, Mode::eval);
  model.backward(seed);                                    // a diagnostic backward of a model that is not training
  CHECK_THROWS_AS(training_only.layer("dense_2"), Error);  // nothing recorded
  REQUIRE(with_eval.layer("dense_2").records.size() == 1);
  CHECK(with_eval.layer("dense_2").records.back().norm == Approx(seed.flat().matrix().norm()).epsilon(1e-12));
  CHECK(with_eval.layer("dense_2").records.back().context.mode == Mode::eval);
  CHECK(with_eval.parameter("dense_1.weight").records.back().grad_norm ==
        Approx(model.layer("dense_1").parameters()[0]->grad.flat().matrix().norm()).epsilon(1e-12));
}

TEST_CASE("GradientFlow flags a vanishing gradient in a deep sigmoid stack, not in a healthy net", "[inspect]") {
  Rng rng(9);
  const Tensor<double> x = random_tensor(Shape{16, 8}, rng), y = random_tensor(Shape{16, 1}, rng);
  nn::MSELoss<double> loss;

  Sequential<double> deep(Shape{8}, 2);
  for (int i = 0; i < 14; ++i) {
    deep.add<nn::Dense<double>>(8, 8);
    deep.add<nn::Sigmoid<double>>();
  }
  deep.add<nn::Dense<double>>(8, 1);
  GradientFlow<double> deep_flow(deep);
  optim::SGD<double> deep_sgd(deep.parameters(), 0.1);
  train::fit(deep, deep_sgd, loss, x, y, quiet_fit<double>(1, 16));
  REQUIRE(deep_flow.alert_count() > 0);
  std::set<std::string> flagged;
  for (const GradientAlert& a : deep_flow.alerts()) {
    CHECK(a.health == GradientHealth::vanishing);
    flagged.insert(a.name);
  }
  CHECK(flagged.count("dense_1.weight") == 1);
  CHECK_THAT(deep_flow.alerts().front().message, Contains("vanishing gradient") && Contains("< 1e-07"));
  CHECK(deep_flow.parameter("dense_1.weight").records.back().health == GradientHealth::vanishing);
  CHECK(deep_flow.parameter("dense_15.weight").records.back().health == GradientHealth::ok);

  Sequential<double> healthy(Shape{8}, 2);
  healthy.add<nn::Dense<double>>(8, 16);
  healthy.add<nn::ReLU<double>>();
  healthy.add<nn::Dense<double>>(16, 1);
  GradientFlow<double> healthy_flow(healthy);
  optim::SGD<double> healthy_sgd(healthy.parameters(), 0.1);
  train::fit(healthy, healthy_sgd, loss, x, y, quiet_fit<double>(3, 4));
  CHECK(healthy_flow.alert_count() == 0);
  CHECK(healthy_flow.parameter("dense_1.weight").records.size() == 12);
}

TEST_CASE("GradientFlow flags an exploding gradient", "[inspect]") {
  Sequential<double> model(Shape{2}, 1);
  model.add<nn::Dense<double>>(2, 1);
  GradientFlow<double> flow(model);
  const Tensor<double> x(Shape{1, 2}, {1e4, 1e4});
  model.forward(x, Mode::train);
  model.backward(Tensor<double>(Shape{1, 1}, {1.0}));
  REQUIRE(flow.alert_count() == 1);
  CHECK(flow.alerts()[0].name == "dense_1.weight");
  CHECK(flow.alerts()[0].health == GradientHealth::exploding);
}

TEST_CASE("ActivationCapture keeps chosen samples' feature maps within a byte budget", "[inspect]") {
  Sequential<double> model(Shape{1, 5, 5}, 4);
  model.add<nn::Conv2D<double>>(1, 2, nn::Size2{3, 3});
  model.add<nn::Flatten<double>>();
  Rng rng(11);
  const Tensor<double> x = random_tensor(Shape{4, 1, 5, 5}, rng);

  ActivationCaptureOptions options;
  options.layers = {"conv2d_1"};
  options.samples = {1, 3, 7};  // 7 is beyond the batch: skipped
  ActivationCapture<double> capture(model, options);
  model.forward(x, Mode::train);  // eval passes only by default
  CHECK(capture.captures().empty());
  model.forward(x);
  REQUIRE(capture.captures().size() == 2);
  for (index_t s : {1, 3}) {
    const Capture<double>* c = capture.find("conv2d_1", s);
    REQUIRE(c != nullptr);
    CHECK(c->value.shape() == Shape{1, 2, 3, 3});
    Tensor<double> expected;
    copy_rows(model.output(0), s, 1, expected);
    CHECK((c->value.flat() - expected.flat()).cwiseAbs().maxCoeff() == 0.0);
  }
  CHECK(capture.bytes() == 2 * 18 * sizeof(double));
  model.forward(x);  // latest replaces
  CHECK(capture.captures().size() == 2);

  ActivationCaptureOptions small = options;
  small.max_bytes = 18 * sizeof(double) * 3;
  small.keep_history = true;
  ActivationCapture<double> history(model, small);
  for (int i = 0; i < 3; ++i) model.forward(x);
  CHECK(history.captures().size() == 3);
  CHECK(history.skipped() == 3);
  CHECK(history.bytes() <= small.max_bytes);
}

TEST_CASE("gradient_saliency equals a central-difference gradient of the target logit", "[inspect]") {
  Sequential<double> model(Shape{1, 5, 5}, 6);
  model.add<nn::Conv2D<double>>(1, 2, nn::Size2{3, 3});
  model.add<nn::Tanh<double>>();
  model.add<nn::Flatten<double>>();
  model.add<nn::Dense<double>>(18, 4);
  Rng rng(13);
  Tensor<double> x = random_tensor(Shape{3, 1, 5, 5}, rng);
  const std::vector<index_t> targets{2, 0, 3};
  const Tensor<double> saliency = gradient_saliency(model, x, targets);
  const Tensor<double> numeric = numerical_gradient(
      [&] {
        const Tensor<double>& out = model.forward(x);
        double sum = 0;
        for (index_t n = 0; n < 3; ++n) sum += out.matrix()(n, targets[static_cast<std::size_t>(n)]);
        return sum;
      },
      x);
  CHECK(gradient_error(saliency, numeric) < 1e-6);

  std::vector<index_t> predicted;
  gradient_saliency(model, x, predicted);
  CHECK(predicted == predicted_classes(model.forward(x)));
  CHECK_THROWS_WITH(gradient_saliency(model, x, std::vector<index_t>{0, 1, 4}), Contains("target 4 of sample 2"));
}

TEST_CASE("SaliencyRecorder records every k steps and after each epoch, without changing training", "[inspect]") {
  Rng rng(17);
  const Tensor<double> x = random_tensor(Shape{12, 6}, rng), y = random_tensor(Shape{12, 3}, rng);
  Tensor<double> probe;
  copy_rows(x, 0, 2, probe);
  nn::MSELoss<double> loss;

  Sequential<double> plain = mlp(), watched = mlp();
  optim::Adam<double> plain_adam(plain.parameters(), 1e-2), watched_adam(watched.parameters(), 1e-2);
  SaliencyRecorderOptions options;
  options.every = 2;
  SaliencyRecorder<double> recorder(watched, probe, {1, 2}, options);
  train::FitOptions<double> o = quiet_fit<double>(2, 4);  // 3 steps per epoch
  train::fit(plain, plain_adam, loss, x, y, o);
  o.callbacks = {&recorder};
  train::fit(watched, watched_adam, loss, x, y, o);

  // Steps 2, 4, 6 and the two epoch ends (after steps 3 and 6).
  REQUIRE(recorder.records().size() == 5);
  std::vector<long long> steps;
  for (const auto& r : recorder.records()) steps.push_back(r.context.step);
  CHECK(steps == std::vector<long long>{2, 3, 4, 6, 6});
  const Tensor<double> now = gradient_saliency(watched, probe, {1, 2});
  CHECK((recorder.records().back().saliency.flat() - now.flat()).cwiseAbs().maxCoeff() == 0.0);
  // Recording between optimizer steps leaves training exactly as it was.
  for (std::size_t i = 0; i < plain.parameters().size(); ++i)
    CHECK((plain.parameters()[i]->value.flat() - watched.parameters()[i]->value.flat()).cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("ParameterHistograms records each parameter's values and last gradients before training and per epoch",
          "[inspect]") {
  Rng rng(19);
  const Tensor<double> x = random_tensor(Shape{12, 6}, rng), y = random_tensor(Shape{12, 3}, rng);
  nn::MSELoss<double> loss;
  Sequential<double> model = mlp();
  optim::SGD<double> sgd(model.parameters(), 0.1);
  ParameterHistogramsOptions options;
  options.bins = 7;
  ParameterHistograms<double> params(model, options);
  train::FitOptions<double> o = quiet_fit<double>(2, 4);  // 3 steps per epoch
  o.callbacks = {&params};
  const Tensor<double> initial = model.parameters()[0]->value;
  train::fit(model, sgd, loss, x, y, o);

  REQUIRE(params.all().size() == model.parameters().size());
  const auto& weight = params.series(model.parameters()[0]->name);
  REQUIRE(weight.records.size() == 3);  // before training, after epochs 1 and 2
  std::vector<long long> steps;
  std::vector<int> epochs;
  for (const auto& r : weight.records) {
    steps.push_back(r.steps_taken);
    epochs.push_back(r.epochs_done);
  }
  CHECK(steps == std::vector<long long>{0, 3, 6});
  CHECK(epochs == std::vector<int>{0, 1, 2});
  CHECK(weight.records.front().grad.count == 0);  // no gradient before the first step

  // The histogram of the initial weights, binned by hand.
  const ValueSummary& first = weight.records.front().value;
  CHECK(first.count == initial.size());
  CHECK(first.min == initial.flat().minCoeff());
  CHECK(first.max == initial.flat().maxCoeff());
  CHECK(first.mean == Approx(initial.flat().mean()).epsilon(1e-12));
  std::vector<std::uint64_t> counts(7, 0);
  for (const double v : initial)
    ++counts[std::min<std::size_t>(6, static_cast<std::size_t>((v - first.min) * 7 / (first.max - first.min)))];
  CHECK(first.histogram.counts == counts);

  // After training: the values now, and the last step's gradient.
  const Parameter<double>& p = *model.parameters()[0];
  const ParameterHistogramRecord& last = weight.records.back();
  CHECK(last.value.max == p.value.flat().maxCoeff());
  CHECK(last.grad.count == p.grad.size());
  CHECK(last.grad.min == p.grad.flat().minCoeff());
  CHECK(last.grad.std == Approx(std::sqrt((p.grad.flat().array() - p.grad.flat().mean()).square().mean())));
  CHECK(last.value.max != first.max);  // training moved the weights

  CHECK(JsonChecker(params.to_json()).valid());
  const std::string csv = params.to_csv();
  CHECK(csv.rfind("layer,layer_index,mode,step,epoch,batch,steps_taken,epochs_done,value_count,value_mean,", 0) == 0);
  CHECK(line_count(csv) == 1 + 3 * model.parameters().size());
  CHECK_THAT(csv, Contains(fmt::format(",0,0,{},{},", initial.size(), number_text(first.mean))));
  CHECK_THROWS_WITH(params.series("nope"), Contains("ParameterHistograms") && Contains("nope"));
  ParameterHistogramsOptions bad;
  bad.bins = 0;
  CHECK_THROWS_WITH(ParameterHistograms<double>(model, bad), Contains("bins"));
}

TEST_CASE("NanWatch names the layer, the tensor and the step of the first non-finite value", "[inspect]") {
  Sequential<double> model = mlp();
  NanWatch<double> watch(model);
  Rng rng(19);
  Tensor<double> x = random_tensor(Shape{4, 6}, rng);
  const double nan = std::numeric_limits<double>::quiet_NaN();

  SECTION("a NaN weight in a middle layer") {
    model.layer("dense_2").parameters()[0]->value.data()[5] = nan;
    CHECK_THROWS_WITH(model.forward(x), Contains("output of layer 'dense_2'") && Contains("NanWatch"));
  }
  SECTION("a NaN input is blamed on the input, at the first layer") {
    x.data()[3] = nan;
    CHECK_THROWS_WITH(model.forward(x), Contains("output of layer 'dense_1'") && Contains("model's input"));
  }
  SECTION("a non-finite loss gradient, and a non-finite parameter gradient, during fit") {
    model.forward(x, Mode::train);
    Tensor<double> grad(Shape{4, 3});
    grad.flat().setZero();
    grad.data()[7] = std::numeric_limits<double>::infinity();
    CHECK_THROWS_WITH(model.backward(grad), Contains("loss gradient arriving at layer 'dense_2'") &&
                                                Contains("element 7") && Contains("train step 0"));
    Tensor<double> y = random_tensor(Shape{4, 3}, rng);
    y.data()[0] = nan;
    optim::SGD<double> sgd(model.parameters(), 0.1);
    nn::MSELoss<double> loss;
    CHECK_THROWS_WITH(train::fit(model, sgd, loss, x, y, quiet_fit<double>(1, 4)), Contains("loss became nan"));
  }
  SECTION("quiet on a healthy model") {
    Tensor<double> y = random_tensor(Shape{4, 3}, rng);
    optim::SGD<double> sgd(model.parameters(), 0.1);
    nn::MSELoss<double> loss;
    CHECK_NOTHROW(train::fit(model, sgd, loss, x, y, quiet_fit<double>(2, 2)));
  }
}

TEST_CASE("recorders export CSV with one row per record and valid JSON", "[inspect]") {
  Sequential<double> model = mlp();
  ActivationStats<double> stats(model);
  GradientFlow<double> flow(model);
  ActivationCaptureOptions capture_options;
  capture_options.schedule = Schedule{1, true, true};
  ActivationCapture<double> capture(model, capture_options);
  Rng rng(23);
  const Tensor<double> x = random_tensor(Shape{8, 6}, rng), y = random_tensor(Shape{8, 3}, rng);
  Tensor<double> probe;
  copy_rows(x, 0, 2, probe);
  SaliencyRecorder<double> saliency(model, probe);
  optim::SGD<double> sgd(model.parameters(), 0.1);
  nn::MSELoss<double> loss;
  train::FitOptions<double> o = quiet_fit<double>(1, 4);
  o.callbacks = {&saliency};
  train::fit(model, sgd, loss, x, y, o);

  const std::string csv = stats.to_csv();
  CHECK(csv.rfind("layer,layer_index,mode,step,epoch,batch,count,mean", 0) == 0);
  CHECK(line_count(csv) == 1 + 3 * 2);  // header + 3 layers x 2 steps
  CHECK(line_count(flow.to_csv()) == 1 + 3 * 2 + 4 * 2);
  CHECK(line_count(capture.to_csv()) == 1 + 3);
  CHECK(line_count(saliency.to_csv()) == 1 + 2);
  for (const std::string& json : {stats.to_json(), flow.to_json(), capture.to_json(), saliency.to_json()}) {
    INFO(json.substr(0, 200));
    CHECK(JsonChecker(json).valid());
  }
  CHECK(JsonChecker(R"({"a":[1,2,{"b":null}],"c":"x\"y"})").valid());
  CHECK_FALSE(JsonChecker(R"({"a":[1,2,}])").valid());
  CHECK_FALSE(JsonChecker(R"({"a":nan})").valid());

  const std::string path = "inspect_stats_test.csv";
  stats.write_csv(path);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  REQUIRE(f != nullptr);
  std::string read(csv.size(), '\0');
  CHECK(std::fread(read.data(), 1, read.size(), f) == csv.size());
  std::fclose(f);
  CHECK(read == csv);
  std::remove(path.c_str());
  CHECK_THROWS_WITH(stats.write_json("no/such/dir/stats.json"), Contains("no/such/dir/stats.json"));
}

TEST_CASE("layer_table shows each layer's newest statistics", "[inspect]") {
  Sequential<double> model = mlp();
  ActivationStats<double> stats(model);
  GradientFlow<double> flow(model);
  Rng rng(29);
  const Tensor<double> x = random_tensor(Shape{8, 6}, rng), y = random_tensor(Shape{8, 3}, rng);
  optim::SGD<double> sgd(model.parameters(), 0.1);
  nn::MSELoss<double> loss;
  train::fit(model, sgd, loss, x, y, quiet_fit<double>(1, 8));
  const std::string table = layer_table(stats, flow);
  CHECK(line_count(table) == 4);
  CHECK_THAT(table, Contains("relu_1") && Contains("dense_2") && Contains("update/W"));
  CHECK_THAT(table, Contains(fmt::format("{:.4f}", stats.series("dense_1").records.back().mean)));
}

TEST_CASE("Recorders reuse what they measured across a Flatten, with the same numbers", "[inspect]") {
  Sequential<double> model(Shape{1, 6, 6}, 4);
  model.add<nn::Conv2D<double>>(1, 2, nn::Size2{3, 3});
  model.add<nn::MaxPool2D<double>>(nn::Size2{2, 2});
  model.add<nn::Flatten<double>>();
  model.add<nn::Dense<double>>(8, 3);
  ActivationStats<double> stats(model);  // every layer: flatten_1 reuses max_pool2d_1
  ActivationStatsOptions alone;
  alone.layers = {"flatten_1"};
  ActivationStats<double> direct(model, alone);  // flatten_1 only: computed from its output
  GradientFlow<double> flow(model);              // max_pool2d_1 reuses flatten_1's gradient
  Tensor<double> pool_grad;
  HookHandle capture =
      model.add_backward_hook("max_pool2d_1", [&](const BackwardEvent<double>& e) { pool_grad = e.grad_output; });
  Rng rng(5);
  const Tensor<double> x = test::random_tensor(Shape{3, 1, 6, 6}, rng);
  const Tensor<double> y(Shape{3}, {0, 2, 1});
  nn::SoftmaxCrossEntropy<double> ce;
  Tensor<double> grad;
  ce.forward(model.forward(x, Mode::train), y, &grad);
  model.backward(grad);

  const ActivationRecord& reused = stats.series("flatten_1").records.back();
  const ActivationRecord& computed = direct.series("flatten_1").records.back();
  const ActivationRecord& pool = stats.series("max_pool2d_1").records.back();
  CHECK(reused.layer == "flatten_1");
  CHECK(reused.layer_index == 2);
  for (const ActivationRecord* other : {&computed, &pool}) {
    CHECK(reused.mean == Approx(other->mean).epsilon(1e-12));
    CHECK(reused.std == Approx(other->std).epsilon(1e-12));
    CHECK(reused.zero_fraction == other->zero_fraction);
    CHECK(reused.dead_fraction == other->dead_fraction);
    CHECK(reused.histogram.counts == other->histogram.counts);
  }
  const LayerGradientRecord& pool_flow = flow.layer("max_pool2d_1").records.back();
  CHECK(pool_flow.norm == Approx(std::sqrt(pool_grad.flat().square().sum())).epsilon(1e-12));
  CHECK(pool_flow.max_abs == Approx(pool_grad.flat().abs().maxCoeff()).epsilon(1e-12));
  CHECK(pool_flow.norm == flow.layer("flatten_1").records.back().norm);
  CHECK(pool_flow.norm > 0);
}

TEST_CASE("ActivationStats summarizes large outputs block by block, as a summary of the whole output would",
          "[inspect][summary]") {
  const int threads = num_threads();
  set_num_threads(2);  // blocks from two threads at once
  // Conv output 32 x 8 x 26 x 26 = 173,056 values: summarized from the
  // layer's blocks; the pooled one (43,264) after the layer.
  Sequential<float> model(Shape{1, 28, 28}, 3);
  nn::Conv2D<float>::Options relu;
  relu.activation = nn::Activation::relu;
  auto& conv = model.add<nn::Conv2D<float>>(1, 8, nn::Size2{3, 3}, relu);
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  // Channel 5 dead: zero weights, negative bias.
  for (index_t k = 0; k < 9; ++k) conv.weight().value.data()[5 * 9 + k] = 0;
  conv.bias().value.data()[5] = -1;
  ActivationStatsOptions options;
  options.histogram_values = 1000;  // a strided sample, whose runs cross rows (676 values each)
  ActivationStats<float> stats(model, options);
  Rng rng(11);
  Tensor<float> x(Shape{32, 1, 28, 28});
  for (float& v : x) v = static_cast<float>(rng.uniform());

  auto check_record = [&](std::size_t layer) {
    const Tensor<float>& y = model.output(layer);
    ActivationRecord expected;
    inspect::detail::SummaryScratch<float> scratch;
    const index_t every = inspect::detail::histogram_stride(y.size(), options.histogram_values);
    inspect::detail::summarize(y, expected, every, scratch);
    inspect::detail::fill_histogram(scratch.sample.data(), static_cast<index_t>(scratch.sample.size()), options,
                                    expected);
    const ActivationRecord& r = stats.series(model.layer(layer).name()).records.back();
    CAPTURE(layer);
    CHECK(r.count == y.size());
    CHECK(r.mean == Approx(expected.mean).epsilon(1e-12));
    CHECK(r.std == Approx(expected.std).epsilon(1e-12));
    CHECK(r.min == expected.min);
    CHECK(r.max == expected.max);
    CHECK(r.zero_fraction == expected.zero_fraction);
    CHECK(r.dead_fraction == expected.dead_fraction);
    CHECK(r.histogram.counts == expected.histogram.counts);
    CHECK(r.histogram.low == expected.histogram.low);
    CHECK(r.histogram.high == expected.histogram.high);
    return r;
  };
  model.forward(x, Mode::train);
  const ActivationRecord conv_record = check_record(0);
  check_record(1);
  CHECK(conv_record.dead_fraction >= 1.0 / 8);  // channel 5, and any unit the ReLU kept at 0 in all 32
  CHECK(conv_record.mean > 0);

  SECTION("with a modifying hook on the layer, each recorder sees the output as patched before it") {
    HookHandle zero = model.add_modifying_forward_hook(
        "conv2d_1", [](const ForwardEvent<float>&, Tensor<float>& y) { y.flat().setZero(); });
    ActivationStats<float> after_patch(model, options);
    model.forward(x, Mode::train);
    const ActivationRecord& r = after_patch.series("conv2d_1").records.back();
    CHECK(r.zero_fraction == 1.0);
    CHECK(r.dead_fraction == 1.0);
    // Registered before the patch: the layer's own output, now summarized after the layer.
    const ActivationRecord& before_patch = stats.series("conv2d_1").records.back();
    CHECK(before_patch.mean == Approx(conv_record.mean).epsilon(1e-12));
    CHECK(before_patch.dead_fraction == conv_record.dead_fraction);
    CHECK(before_patch.histogram.counts == conv_record.histogram.counts);
  }
  set_num_threads(threads);
}

TEST_CASE("ActivationStats' summary in blocks: any order of rows over threads, runs split across rows",
          "[inspect][summary]") {
  // 7 rows of 105 values: sampled runs of 16 cross row boundaries.
  Rng rng(2);
  Tensor<float> y(Shape{7, 3, 5, 7});
  for (float& v : y) v = rng.uniform() < 0.3 ? 0.0f : static_cast<float>(rng.uniform() - 0.2);
  for (index_t row = 0; row < 7; ++row) y.data()[row * 105 + 17] = 0;  // a dead unit
  const index_t every = 2;
  ActivationRecord whole, blocks;
  inspect::detail::SummaryScratch<float> a, b;
  inspect::detail::summarize(y, whole, every, a);
  b.begin(y.shape(), 2, every);
  const int order[] = {3, 0, 6, 1, 5, 2, 4};
  for (int k = 0; k < 7; ++k) b.add_rows(y.data(), order[k], order[k] + 1, k % 2);
  CHECK(b.rows_done() == 7);
  b.finish(true, blocks);
  CHECK(b.sample == a.sample);
  CHECK(static_cast<index_t>(a.sample.size()) == inspect::detail::histogram_sample_size(y.size(), every));
  std::vector<float> expected_sample;
  for (index_t run = 0; run * 16 < y.size(); run += every)
    for (index_t i = run * 16; i < std::min(y.size(), run * 16 + 16); ++i) expected_sample.push_back(y.data()[i]);
  CHECK(a.sample == expected_sample);
  CHECK(blocks.mean == Approx(whole.mean).epsilon(1e-12));
  CHECK(blocks.std == Approx(whole.std).epsilon(1e-12));
  CHECK(blocks.min == whole.min);
  CHECK(blocks.max == whole.max);
  CHECK(blocks.zero_fraction == whole.zero_fraction);
  CHECK(blocks.dead_fraction == whole.dead_fraction);
  CHECK(blocks.dead_fraction >= 1.0 / 105);
}

TEST_CASE("ActivationStats: dead units and zeros across chunks and partial words, as counted value by value",
          "[inspect][summary]") {
  // Widths around the summary pass's words of 16 units and chunks of 4096.
  for (const index_t units : {index_t{5}, index_t{16}, index_t{33}, index_t{4096 + 16 + 7}, index_t{9001}}) {
    const index_t rows = 3;
    Rng rng(static_cast<std::uint64_t>(units));
    Tensor<float> y(Shape{rows, units});
    for (float& v : y) v = rng.uniform() < 0.5 ? 0.0f : static_cast<float>(rng.uniform() - 0.5);
    for (index_t u = 0; u < units; u += 7)
      for (index_t row = 0; row < rows; ++row) y.data()[row * units + u] = row == 1 ? -0.0f : 0.0f;
    // Zero in the other rows: alive through one denormal, one NaN.
    for (index_t row = 0; row < rows; ++row) y.data()[row * units + 1] = y.data()[row * units + units - 1] = 0;
    y.data()[units + 1] = std::numeric_limits<float>::denorm_min();
    y.data()[2 * units + units - 1] = std::numeric_limits<float>::quiet_NaN();
    index_t dead = 0, zeros = 0;
    for (index_t u = 0; u < units; ++u) {
      bool all_zero = true;
      for (index_t row = 0; row < rows; ++row) all_zero = all_zero && y.data()[row * units + u] == 0;
      dead += all_zero;
    }
    for (float v : y) zeros += v == 0;
    CAPTURE(units);
    REQUIRE(dead >= (units + 6) / 7 - 1);

    ActivationRecord whole, blocks;
    inspect::detail::SummaryScratch<float> a, b;
    inspect::detail::summarize(y, whole, 1, a);
    b.begin(y.shape(), 2, 1);
    for (index_t row = rows; row-- > 0;) b.add_rows(y.data(), row, row + 1, static_cast<int>(row % 2));
    b.finish(true, blocks);
    for (const ActivationRecord* r : {&whole, &blocks}) {
      CHECK(r->dead_fraction == static_cast<double>(dead) / static_cast<double>(units));
      CHECK(r->zero_fraction == static_cast<double>(zeros) / static_cast<double>(y.size()));
      CHECK(r->nonfinite_fraction == 1.0 / static_cast<double>(y.size()));
    }
  }
}

TEST_CASE("GradientFlow measures large gradients block by block, as a measure of the whole gradient would",
          "[inspect]") {
  const int threads = num_threads();
  set_num_threads(2);
  // conv2d_1's output gradient (32 x 8 x 26 x 26) comes from MaxPool2D's backward in blocks.
  Sequential<float> model(Shape{1, 28, 28}, 5);
  model.add<nn::Conv2D<float>>(1, 8, nn::Size2{3, 3});
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(8 * 13 * 13, 10);
  GradientFlow<float> flow(model);
  Tensor<float> conv_grad;
  HookHandle capture =
      model.add_backward_hook("conv2d_1", [&](const BackwardEvent<float>& e) { conv_grad = e.grad_output; });
  Rng rng(4);
  Tensor<float> x(Shape{32, 1, 28, 28});
  for (float& v : x) v = static_cast<float>(rng.uniform());
  Tensor<float> y(Shape{32});
  for (float& v : y) v = static_cast<float>(rng.below(10));
  nn::SoftmaxCrossEntropy<float> ce;
  Tensor<float> grad;
  ce.forward(model.forward(x, Mode::train), y, &grad);
  auto check_conv = [&] {
    double squares = 0, largest = 0;
    for (float v : conv_grad) {
      squares += static_cast<double>(v) * v;
      largest = std::max(largest, std::abs(static_cast<double>(v)));
    }
    const LayerGradientRecord& r = flow.layer("conv2d_1").records.back();
    CHECK(r.norm == Approx(std::sqrt(squares)).epsilon(1e-6));
    CHECK(r.max_abs == largest);
    CHECK(r.norm > 0);
  };
  model.backward(grad);
  check_conv();
  // A second backward of the same forward (twice the gradient) is measured afresh.
  grad.flat() *= 2.0f;
  model.backward(grad);
  check_conv();
  CHECK(flow.layer("conv2d_1").records.size() == 2);
  set_num_threads(threads);
}
