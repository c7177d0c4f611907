// compress/: pruning masks and schedules, structured pruning, int8
// quantization (formulas, calibration, the int8 path against fake
// quantization, the file format) and the distillation loss.
#include <cstring>
#include <glassbox/compress.hpp>

#include "support.hpp"

using namespace glassbox;
using Catch::Matchers::Contains;

namespace {

Parameter<float> parameter(const std::string& name, const Shape& shape, std::initializer_list<float> values) {
  Parameter<float> p(name, shape);
  p.value = Tensor<float>(shape, values);
  return p;
}

std::vector<float> values(const Tensor<float>& t) { return std::vector<float>(t.begin(), t.end()); }

// Largest |ours - reference| as a fraction of reference's largest magnitude.
double relative_max_error(const Tensor<float>& ours, const Tensor<float>& reference) {
  REQUIRE(ours.shape() == reference.shape());
  double error = 0, range = 0;
  for (index_t i = 0; i < ours.size(); ++i) {
    error = std::max(error, std::abs(double(ours[i]) - double(reference[i])));
    range = std::max(range, std::abs(double(reference[i])));
  }
  return error / range;
}

index_t zeros(const Tensor<float>& t) {
  index_t n = 0;
  for (const float v : t) n += v == 0.0f;
  return n;
}

io::Mnist<float>& mnist_subset() {
  static io::Mnist<float> data = io::load_mnist<float>(test::data_path("mnist-subset"));
  return data;
}

// A small CNN with every kind the int8 path runs: conv (fused relu, same
// padding), max pool, flatten, dense, a ReLU layer, dense. Trained briefly.
Sequential<float> trained_cnn() {
  Sequential<float> model(Shape{1, 28, 28}, 7);
  nn::Conv2D<float>::Options conv;
  conv.activation = nn::Activation::relu;
  conv.padding = nn::Padding::same;
  model.add<nn::Conv2D<float>>(1, 8, nn::Size2{3, 3}, conv);
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Conv2D<float>>(8, 8, nn::Size2{3, 3});  // no activation: signed int8 output
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(8 * 6 * 6, 32);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dense<float>>(32, 10);
  io::Mnist<float>& d = mnist_subset();
  optim::Adam<float> adam(model.parameters(), 2e-3f);
  nn::SoftmaxCrossEntropy<float> ce;
  train::fit(model, adam, ce, d.train_images, d.train_labels, test::quiet_fit<float>(3, 32));
  return model;
}

}  // namespace

TEST_CASE("magnitude pruning: exact masks, per parameter and global", "[prune]") {
  Parameter<float> a = parameter("a", Shape{2, 3}, {0.5f, -0.1f, 0.3f, -0.9f, 0.2f, 0.05f});
  Parameter<float> b = parameter("b", Shape{4}, {1.0f, -2.0f, 0.01f, 3.0f});
  prune::magnitude<float>({&a, &b}, 0.5);
  CHECK(values(a.mask) == std::vector<float>{1, 0, 1, 1, 0, 0});  // 3 of 6 lowest |w|: 0.1, 0.2, 0.05
  CHECK(values(b.mask) == std::vector<float>{0, 1, 0, 1});
  CHECK(values(a.value) == std::vector<float>{0.5f, 0, 0.3f, -0.9f, 0, 0});

  // Global: one threshold over all 10 entries; 70% = 7 pruned, keeping 1, -2 and 3.
  Parameter<float> c = parameter("c", Shape{2, 3}, {0.5f, -0.1f, 0.3f, -0.9f, 0.2f, 0.05f});
  Parameter<float> d = parameter("d", Shape{4}, {1.0f, -2.0f, 0.01f, 3.0f});
  prune::magnitude<float>({&c, &d}, 0.7, prune::Scope::global);
  CHECK(values(c.mask) == std::vector<float>{0, 0, 0, 0, 0, 0});
  CHECK(values(d.mask) == std::vector<float>{1, 1, 0, 1});

  // Already pruned entries stay pruned, even where their old value was large;
  // a lower sparsity prunes nothing more.
  Parameter<float> e = parameter("e", Shape{4}, {4, 3, 2, 1});
  e.set_mask(Tensor<float>(Shape{4}, {0, 1, 1, 1}));
  prune::magnitude<float>({&e}, 0.5);
  CHECK(values(e.mask) == std::vector<float>{0, 1, 1, 0});
  prune::magnitude<float>({&e}, 0.25);
  CHECK(zeros(e.mask) == 2);

  // Ties go to the lower index; rounding as torch (round(0.5 * 3) = 2).
  Parameter<float> f = parameter("f", Shape{3}, {1, 1, 1});
  prune::magnitude<float>({&f}, 0.5);
  CHECK(values(f.mask) == std::vector<float>{0, 0, 1});

  CHECK_THROWS_WITH(prune::magnitude<float>({&a}, 1.5), Contains("sparsity must lie in [0, 1], got 1.5"));
  Tensor<float> bad(Shape{2, 3}, {0, 0, 0, 0, 0, std::nanf("")});
  CHECK_THROWS_WITH(prune::by_score<float>({&a}, {bad}, 0.5), Contains("a: score 5 is NaN"));
  CHECK_THROWS_WITH(prune::by_score<float>({&a}, {Tensor<float>(Shape{6})}, 0.5),
                    Contains("a: scores of shape (6) for a parameter of shape (2, 3)"));
}

TEST_CASE("random and Taylor scores prune the requested count; remove() bakes masks in", "[prune]") {
  Rng rng(3);
  Parameter<float> p("w", Shape{10, 10});
  for (float& v : p.value) v = static_cast<float>(rng.normal());
  prune::random<float>({&p}, 0.37, rng);
  CHECK(zeros(p.mask) == 37);
  CHECK(zeros(p.value) == 37);

  Parameter<float> q = parameter("q", Shape{4}, {1, 2, 3, 4});
  q.grad = Tensor<float>(Shape{4}, {4, 1, 0.1f, 1});  // |w g| = 4, 2, 0.3, 4
  prune::by_score<float>({&q}, prune::taylor_scores<float>({&q}), 0.5);
  CHECK(values(q.mask) == std::vector<float>{1, 0, 0, 1});
  prune::remove<float>({&q});
  CHECK_FALSE(q.has_mask());
  CHECK(values(q.value) == std::vector<float>{1, 0, 0, 4});
}

TEST_CASE("pruned weights stay exactly zero through SGD with momentum and Adam", "[prune]") {
  for (int which = 0; which < 2; ++which) {
    Sequential<float> model(Shape{784}, 5);
    model.add<nn::Dense<float>>(784, 32);
    model.add<nn::ReLU<float>>();
    model.add<nn::Dense<float>>(32, 10);
    const std::vector<Parameter<float>*> weights = prune::weights(model);
    REQUIRE(weights.size() == 2);
    prune::magnitude(weights, 0.8);
    std::unique_ptr<optim::Optimizer<float>> opt;
    if (which == 0)
      opt = std::make_unique<optim::SGD<float>>(model.parameters(), 0.05f, optim::SGD<float>::Options{0.9f});
    else
      opt = std::make_unique<optim::Adam<float>>(model.parameters(), 1e-3f);
    io::Mnist<float>& d = mnist_subset();
    Tensor<float> x = d.train_images;
    x.reshape({1000, 784});
    const Tensor<float> before = weights[0]->value;
    nn::SoftmaxCrossEntropy<float> ce;
    train::fit(model, *opt, ce, x, d.train_labels, test::quiet_fit<float>(1, 50));
    for (Parameter<float>* w : weights) {
      INFO(w->name);
      CHECK(zeros(w->value) == std::llround(0.8 * double(w->value.size())));
      for (index_t i = 0; i < w->value.size(); ++i)
        if (w->mask[i] == 0) REQUIRE(w->value[i] == 0.0f);
    }
    CHECK(values(weights[0]->value) != values(before));  // the kept weights did train
  }
}

TEST_CASE("schedules: TF-MOT polynomial decay during fit, and iterative rounds", "[prune]") {
  prune::PolynomialDecay s;
  s.initial_sparsity = 0.0;
  s.final_sparsity = 0.8;
  s.begin_step = 10;
  s.end_step = 30;
  s.frequency = 5;
  CHECK(s.sparsity_at(0) == 0.0);
  CHECK(s.sparsity_at(20) == Approx(0.8 - 0.8 * 0.125));  // (1 - 1/2)^3
  CHECK(s.sparsity_at(30) == Approx(0.8));
  CHECK(s.sparsity_at(99) == Approx(0.8));
  CHECK(s.prunes_at(10));
  CHECK(s.prunes_at(15));
  CHECK_FALSE(s.prunes_at(16));
  CHECK(s.prunes_at(30));
  CHECK_FALSE(s.prunes_at(35));

  Sequential<float> model(Shape{784}, 5);
  model.add<nn::Dense<float>>(784, 16);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dense<float>>(16, 10);
  prune::PruningCallback<float> callback(prune::weights(model), s);
  optim::Adam<float> adam(model.parameters(), 1e-3f);
  io::Mnist<float>& d = mnist_subset();
  Tensor<float> x = d.train_images;
  x.reshape({1000, 784});
  nn::SoftmaxCrossEntropy<float> ce;
  auto options = test::quiet_fit<float>(2, 50);  // 40 steps
  options.callbacks = {&callback};
  train::fit(model, adam, ce, x, d.train_labels, options);
  CHECK(callback.step() == 40);
  CHECK(prune::report(model).parameters[0].sparsity() == Approx(0.8).margin(1e-4));

  std::vector<double> seen;
  Parameter<float> p("p", Shape{1000});
  Rng rng(1);
  for (float& v : p.value) v = static_cast<float>(rng.normal());
  prune::iterative<float>({&p}, 0.875, 3, [&] { seen.push_back(double(zeros(p.value)) / 1000.0); });
  REQUIRE(seen.size() == 3);
  CHECK(seen[0] == Approx(0.5).margin(1e-3));  // 1 - 0.125^(1/3)
  CHECK(seen[1] == Approx(0.75).margin(1e-3));
  CHECK(seen[2] == Approx(0.875));
}

TEST_CASE("prune::report counts zeros, entries and the sparse size", "[prune]") {
  Sequential<float> model(Shape{4}, 1);
  model.add<nn::Dense<float>>(4, 2);
  model.add<nn::Dense<float>>(2, 1);
  model.layer(0).parameters()[0]->value = Tensor<float>(Shape{2, 4}, {1, 0, 0, 2, 0, 0, 0, 3});
  const prune::Report r = prune::report(model);
  REQUIRE(r.parameters.size() == 4);
  CHECK(r.parameters[0].name == "dense_1.weight");
  CHECK(r.parameters[0].zeros == 5);
  CHECK(r.parameters[0].sparsity() == Approx(5.0 / 8));
  CHECK(r.parameters[1].zeros == 2);  // zero-initialised bias
  CHECK(r.count == 8 + 2 + 2 + 1);
  CHECK(r.dense_bytes == 13 * 4);
  // Non-zeros: 3 + dense_2's 2 glorot weights; one occupancy byte per parameter.
  CHECK(r.effective_bytes == std::size_t(13 - r.zeros) * 4 + 4);
  CHECK_THAT(r.str(), Contains("dense_1.weight") && Contains("62.50%"));
}

TEST_CASE("structured pruning shrinks conv filters and dense neurons, kept outputs unchanged", "[prune]") {
  Sequential<float> model(Shape{1, 8, 8}, 11);
  nn::Conv2D<float>::Options relu;
  relu.activation = nn::Activation::relu;
  model.add<nn::Conv2D<float>>(1, 6, nn::Size2{3, 3}, relu);
  model.add<nn::Conv2D<float>>(6, 4, nn::Size2{3, 3}, relu);
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(4 * 2 * 2, 5);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dense<float>>(5, 3);
  Rng rng(2);
  Tensor<float> x(Shape{3, 1, 8, 8});
  for (float& v : x) v = static_cast<float>(rng.uniform());
  // Filter 1 of conv2d_1 and filter 2 of conv2d_2 are dead (zero weights and
  // bias): removing them must leave the model's output exactly as it was.
  Parameter<float>& w1 = *model.layer(0).parameters()[0];
  for (index_t i = 9; i < 18; ++i) w1.value[i] = 0;
  Parameter<float>& w2 = *model.layer(1).parameters()[0];
  for (index_t i = 2 * 54; i < 3 * 54; ++i) w2.value[i] = 0;
  // Mask a kept weight of conv2d_2 to check that masks move with their weights.
  Tensor<float> mask(w2.value.shape(), 1.0f);
  mask[0] = 0;
  w2.set_mask(mask);
  const Tensor<float> expected = model.forward(x);
  const index_t before = model.parameter_count();

  const std::vector<index_t> kept1 = prune::structured(model, "conv2d_1", 1);
  CHECK(kept1 == std::vector<index_t>{0, 2, 3, 4, 5});
  const std::vector<index_t> kept2 = prune::structured(model, "conv2d_2", 1);
  CHECK(kept2 == std::vector<index_t>{0, 1, 3});
  CHECK(model.layer(0).parameters()[0]->value.shape() == Shape{5, 1, 3, 3});
  CHECK(model.layer(1).parameters()[0]->value.shape() == Shape{3, 5, 3, 3});
  CHECK(model.layer(4).parameters()[0]->value.shape() == Shape{5, 12});
  CHECK(model.layer(1).parameters()[0]->name == "conv2d_2.weight");
  CHECK(model.layer(1).parameters()[0]->mask[0] == 0.0f);
  CHECK(model.parameter_count() == before - (9 + 1) - 4 * 9 - (5 * 9 + 1) - 5 * 4);
  const Tensor<float>& after = model.forward(x);
  REQUIRE(after.shape() == expected.shape());
  for (index_t i = 0; i < after.size(); ++i) CHECK(after[i] == Approx(expected[i]).margin(1e-6));

  // Dense neurons: the kept neurons' outputs are the old ones, selected.
  model.forward(x);
  const Tensor<float> hidden = model.output(5);
  const std::vector<index_t> kept3 = prune::structured(model, "dense_1", 2, prune::Norm::l2);
  REQUIRE(kept3.size() == 3);
  model.forward(x);
  const Tensor<float> shrunk = model.output(5);
  REQUIRE(shrunk.shape() == Shape{3, 3});
  for (index_t s = 0; s < 3; ++s)
    for (index_t k = 0; k < 3; ++k)
      CHECK(shrunk[s * 3 + k] == Approx(hidden[s * 5 + kept3[std::size_t(k)]]).epsilon(1e-6));

  CHECK_THROWS_WITH(prune::structured(model, "dense_2", 1), Contains("dense_2 feeds the model's output"));
  CHECK_THROWS_WITH(prune::structured(model, "dense_1", 3), Contains("can remove 0 to 2 of its 3 units, not 3"));
  CHECK_THROWS_WITH(prune::structured(model, "relu_1", 1), Contains("relu_1 is a relu"));
  Sequential<float> bn(Shape{4}, 1);
  bn.add<nn::Dense<float>>(4, 4);
  bn.add<nn::BatchNorm<float>>(4);
  bn.add<nn::Dense<float>>(4, 2);
  CHECK_THROWS_WITH(prune::structured(bn, "dense_1", 1), Contains("batch_norm_1 (batch_norm) lies between dense_1"));
}

TEST_CASE("int8 quantizers follow TFLite's formulas; round trips err by at most scale/2", "[quant]") {
  const quant::QParams a = quant::activation_params(-1.0, 3.0);
  CHECK(a.scale == Approx(4.0 / 255));
  CHECK(a.zero_point == -128 + 64);              // -128 - round(-1 / (4/255)) = -128 + 64 (63.75 rounds up)
  CHECK(a.dequantize(a.quantize(0.0)) == 0.0f);  // zero is exact
  const quant::QParams r = quant::activation_params(0.5, 2.0);  // widened to [0, 2]
  CHECK(r.zero_point == -128);
  CHECK(r.scale == Approx(2.0 / 255));
  const quant::QParams w = quant::weight_params(0.635);
  CHECK(w.zero_point == 0);
  CHECK(w.quantize(0.635) == 127);
  CHECK(w.quantize(-0.635) == -127);
  CHECK(w.quantize(-5.0) == -127);  // symmetric: -128 is never used
  const quant::QParams eighth = quant::weight_params(127 * 0.125);
  CHECK(eighth.quantize(0.0625) == 0);  // 0.5 steps: ties to even
  CHECK(eighth.quantize(0.1875) == 2);  // 1.5 steps
  Rng rng(4);
  double worst = 0;
  for (int i = 0; i < 10000; ++i) {
    const double x = rng.uniform(-1.0, 3.0);
    worst = std::max(worst, std::abs(x - double(a.fake(x))));
  }
  CHECK(worst <= a.scale / 2 * (1 + 1e-5));
  CHECK(worst > a.scale / 2 * 0.9);  // and the bound is tight
  CHECK(a.quantize(1e9) == 127);
  CHECK(a.quantize(-1e9) == -128);
  CHECK(quant::sqnr_db(std::vector<double>{1, 2}, std::vector<double>{1, 2}) ==
        std::numeric_limits<double>::infinity());
  CHECK(quant::sqnr_db(std::vector<double>{3, 4}, std::vector<double>{3, 3}) == Approx(10 * std::log10(25.0)));
}

TEST_CASE("calibration: min/max, percentile and MSE ranges; plan structure and errors", "[quant]") {
  Sequential<float> model(Shape{2}, 1);
  model.add<nn::Dense<float>>(2, 2);
  model.add<nn::Dense<float>>(2, 2);
  model.layer(0).parameters()[0]->value = Tensor<float>(Shape{2, 2}, {1, 0, 0, -1});  // identity, then negated
  model.layer(1).parameters()[0]->value = Tensor<float>(Shape{2, 2}, {0.5f, 0, 0, 2});
  Tensor<float> x(Shape{1001, 2});
  for (index_t i = 0; i <= 1000; ++i) {
    x[2 * i] = float(i) / 1000;      // [0, 1]
    x[2 * i + 1] = float(i) / 1000;  // second output: [-1, 0]
  }
  x[2 * 1000] = 100;  // one outlier
  const quant::Plan p = quant::calibrate(model, x);
  REQUIRE(p.layers.size() == 2);
  CHECK(p.input.scale == Approx(100.0 / 255));
  CHECK(p.layers[0].output.scale == Approx(101.0 / 255));  // [-1, 100]
  CHECK(p.layers[0].weights[0].scale == Approx(1.0 / 127));
  CHECK(p.layers[1].weights[1].scale == Approx(2.0 / 127));
  CHECK(p.layers[1].float_output);
  CHECK_FALSE(p.layers[0].float_output);
  CHECK(p.layers[1].input.scale == p.layers[0].output.scale);

  quant::CalibrationOptions pct;
  pct.method = quant::Calibration::percentile;
  pct.percentile = 99.0;  // the outlier is clipped
  const quant::Plan q = quant::calibrate(model, x, pct);
  CHECK(q.input.scale == Approx(0.99 / 255).epsilon(0.02));
  // Heavy tails (Laplace): the MSE-optimal range clips them, narrower than min/max.
  Rng rng(5);
  Tensor<float> laplace(Shape{20000, 2});
  for (float& v : laplace) v = float((rng.uniform() < 0.5 ? -1 : 1) * -std::log(1 - rng.uniform()));
  quant::CalibrationOptions mse;
  mse.method = quant::Calibration::mse;
  const quant::Plan wide = quant::calibrate(model, laplace);
  const quant::Plan m = quant::calibrate(model, laplace, mse);
  CHECK(m.input.scale < wide.input.scale);  // measured 8% narrower, near Banner et al.'s 9.9 b for 8 bits
  std::vector<float> sample(laplace.begin(), laplace.end());
  CHECK(quant::detail::mse_of(sample, m.input) < quant::detail::mse_of(sample, wide.input));

  Sequential<float> tanh_model(Shape{2}, 1);
  tanh_model.add<nn::Dense<float>>(2, 2);
  tanh_model.add<nn::Tanh<float>>();
  CHECK_THROWS_WITH(quant::calibrate(tanh_model, x), Contains("tanh_1 (tanh) has no int8 kernel"));
  CHECK_THROWS_WITH(quant::calibrate(model, Tensor<float>(Shape{0, 2})), Contains("needs a non-empty batch"));
}

TEST_CASE("the int8 path equals fake quantization within one step, and keeps accuracy", "[quant]") {
  Sequential<float> model = trained_cnn();
  io::Mnist<float>& d = mnist_subset();
  Tensor<float> calibration;
  copy_rows(d.train_images, 0, 256, calibration);
  const quant::Plan plan = quant::calibrate(model, calibration);
  REQUIRE(plan.layers.size() == 4);
  CHECK(plan.layers[0].relu);
  CHECK_FALSE(plan.layers[1].relu);
  CHECK(plan.layers[2].relu);  // the ReLU layer folded in
  CHECK(plan.layers[2].last == 6);
  quant::QuantizedModel int8(model, plan, /*fuse_pooling=*/false);  // keeps every conv output to compare
  CHECK(int8.ops().size() == 7);                                    // conv, pool, conv, pool, flatten, dense, dense

  Tensor<float> probe;
  copy_rows(d.test_images, 0, 200, probe);
  const Tensor<float> int8_logits = int8.forward(probe);
  // Pooling the int32 sums inside the conv pass gives the very same numbers.
  quant::QuantizedModel fused(model, plan);
  const Tensor<float> fused_logits = fused.forward(probe);
  CHECK(values(fused_logits) == values(int8_logits));
  CHECK(values(fused.output(3)) == values(int8.output(3)));
  CHECK_THROWS_WITH(fused.output(0), Contains("conv2d_1's output is not kept: it is max-pooled in the same pass"));
  // Each requantized layer's int8 output against the fake-quantized float model's.
  std::vector<Tensor<float>> fake_outputs;
  Tensor<float> fake_logits;
  {
    quant::FakeQuantization<float> fq(model, plan);
    fake_logits = model.forward(probe);
    for (const quant::LayerQuant& q : plan.layers) fake_outputs.push_back(model.output(q.last));
  }
  const std::size_t op_of_layer[] = {0, 2, 5, 6};
  for (std::size_t l = 0; l + 1 < plan.layers.size(); ++l) {
    INFO(plan.layers[l].name);
    const Tensor<float> ours = int8.output(op_of_layer[l]);
    REQUIRE(ours.shape() == fake_outputs[l].shape());
    index_t exact = 0;
    double worst = 0;
    for (index_t i = 0; i < ours.size(); ++i) {
      const double steps = std::abs(double(ours[i]) - double(fake_outputs[l][i])) / plan.layers[l].output.scale;
      worst = std::max(worst, steps);
      exact += steps < 1e-3;
    }
    CHECK(worst <= 1.0 + 1e-3);
    CHECK(double(exact) / double(ours.size()) > 0.995);
  }
  CHECK(relative_max_error(int8_logits, fake_logits) < 0.01);

  // Accuracy on the 1,000 test digits: int8 within one point of float.
  nn::SoftmaxCrossEntropy<float> ce;
  const double float_accuracy = train::evaluate(model, ce, d.test_images, d.test_labels).accuracy;
  const double int8_accuracy = double(ce.tally(int8.predict(d.test_images), d.test_labels).correct) / 1000.0;
  CHECK(float_accuracy > 0.8);  // measured 0.829
  CHECK(int8_accuracy > float_accuracy - 0.01);

  // FakeQuantization restores the float weights.
  CHECK(train::evaluate(model, ce, d.test_images, d.test_labels).accuracy == float_accuracy);

  // Sensitivity and the error report.
  double reference = 0;
  const auto sens = quant::sensitivity(model, plan, ce, d.test_images, d.test_labels, &reference);
  REQUIRE(sens.size() == 5);
  CHECK(reference == float_accuracy);
  CHECK(sens.back().name == "all");
  for (const auto& s : sens) CHECK(std::abs(s.drop) < 0.02);
  const auto errors = quant::error_report(model, plan, probe);
  REQUIRE(errors.size() == 4);
  for (const auto& e : errors) {
    INFO(e.name);
    CHECK(e.weight_sqnr_db > 30);  // 8 bits of a bell-shaped tensor: about 35-40 dB
    CHECK(e.activation_sqnr_db > 15);
    CHECK(e.activation_sqnr_db < 60);
  }
}

TEST_CASE("every int8 conv path equals fake quantization: rows, patches, channels, strides", "[quant]") {
  io::Mnist<float>& d = mnist_subset();
  Tensor<float> x;
  copy_rows(d.test_images, 0, 64, x);
  struct Case {
    const char* what;
    nn::Padding padding;
    nn::Size2 kernel, stride, dilation;
  };
  for (const Case& c : {Case{"valid 3x3 (image rows)", nn::Padding::valid, {3, 3}, {1, 1}, {1, 1}},
                        Case{"valid 5x6 stride 2 (rows of 8)", nn::Padding::valid, {5, 6}, {2, 2}, {1, 1}},
                        Case{"same 3x3 (patches)", nn::Padding::same, {3, 3}, {1, 1}, {1, 1}},
                        Case{"valid 3x3 dilation 2 (patches)", nn::Padding::valid, {3, 3}, {1, 1}, {2, 2}}}) {
    INFO(c.what);
    Sequential<float> model(Shape{1, 28, 28}, 9);
    nn::Conv2D<float>::Options first;
    first.padding = c.padding;
    first.stride = c.stride;
    first.dilation = c.dilation;
    first.activation = nn::Activation::relu;
    model.add<nn::Conv2D<float>>(1, 20, c.kernel, first);  // 20 channels: a padded block of 16
    nn::Conv2D<float>::Options second;
    second.padding = nn::Padding::same;
    model.add<nn::Conv2D<float>>(20, 6, nn::Size2{3, 3}, second);  // 20 inputs: 5 quads of channels
    model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
    model.add<nn::Flatten<float>>();
    const index_t features = model.forward(x).dim(1);
    model.add<nn::Dense<float>>(features, 10);
    const quant::Plan plan = quant::calibrate(model, x);
    quant::QuantizedModel fused(model, plan), plain(model, plan, false);
    const Tensor<float> ours = fused.forward(x);
    CHECK(values(ours) == values(plain.forward(x)));
    Tensor<float> fake;
    {
      quant::FakeQuantization<float> fq(model, plan);
      fake = model.forward(x);
      // The first conv's int8 output, value by value.
      const Tensor<float> conv = plain.output(0);
      const Tensor<float>& reference = model.output(0);
      REQUIRE(conv.shape() == reference.shape());
      double worst = 0;
      for (index_t i = 0; i < conv.size(); ++i) worst = std::max(worst, double(std::abs(conv[i] - reference[i])));
      CHECK(worst <= plan.layers[0].output.scale * 1.001);
    }
    CHECK(relative_max_error(ours, fake) < 0.02);
  }
}

TEST_CASE("a 1-channel conv output feeds the next conv through the channel path", "[quant]") {
  io::Mnist<float>& d = mnist_subset();
  Tensor<float> x;
  copy_rows(d.test_images, 0, 32, x);
  Sequential<float> model(Shape{1, 28, 28}, 4);
  nn::Conv2D<float>::Options relu;
  relu.activation = nn::Activation::relu;
  model.add<nn::Conv2D<float>>(1, 1, nn::Size2{3, 3}, relu);  // one channel, stored 16 wide
  model.add<nn::Conv2D<float>>(1, 4, nn::Size2{3, 3}, relu);
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(4 * 24 * 24, 10);
  const quant::Plan plan = quant::calibrate(model, x);
  quant::QuantizedModel int8(model, plan, false);
  const Tensor<float> ours = int8.forward(x);
  quant::FakeQuantization<float> fq(model, plan);
  const Tensor<float>& fake = model.forward(x);
  const Tensor<float> first = int8.output(0);
  double worst_first = 0;
  for (index_t i = 0; i < first.size(); ++i)
    worst_first = std::max(worst_first, double(std::abs(first[i] - model.output(0)[i])));
  CHECK(worst_first <= plan.layers[0].output.scale * 1.001);
  const Tensor<float> second = int8.output(1);
  double worst = 0;
  for (index_t i = 0; i < second.size(); ++i) worst = std::max(worst, double(std::abs(second[i] - model.output(1)[i])));
  CHECK(worst <= plan.layers[1].output.scale * 1.001);
  CHECK(relative_max_error(ours, fake) < 0.02);
}

TEST_CASE("quantization-aware training: int8 forward, float weights trained, a plan for the int8 path", "[quant]") {
  Sequential<float> model = trained_cnn();
  io::Mnist<float>& d = mnist_subset();
  Tensor<float> calibration;
  copy_rows(d.train_images, 0, 256, calibration);
  const quant::Plan plan = quant::calibrate(model, calibration);
  nn::SoftmaxCrossEntropy<float> ce;
  const double float_accuracy = train::evaluate(model, ce, d.test_images, d.test_labels).accuracy;
  const Tensor<float> before = model.layer(0).parameters()[0]->value;
  quant::Plan trained;
  Tensor<float> probe, qat_logits;
  copy_rows(d.test_images, 0, 100, probe);
  {
    quant::QuantizationAwareTraining<float> qat(model, plan);
    optim::Adam<float> adam(model.parameters(), 5e-4f);
    train::fit(model, adam, ce, d.train_images, d.train_labels, test::quiet_fit<float>(1, 32));
    trained = qat.plan();
    qat_logits = model.forward(probe);  // eval: int8 weights and activations
    // Between passes the float weights are in place, not their int8 grid.
    const Tensor<float>& w = model.layer(0).parameters()[0]->value;
    index_t off_grid = 0;
    for (index_t i = 0; i < w.size(); ++i) {
      const float scale = trained.layers[0].weights[std::size_t(i / 9)].scale;
      off_grid += std::abs(w[i] / scale - std::nearbyint(w[i] / scale)) > 1e-3f;
    }
    CHECK(off_grid > w.size() / 2);
  }
  CHECK(values(model.layer(0).parameters()[0]->value) != values(before));  // the float weights trained
  {
    quant::FakeQuantization<float> fq(model, trained);  // the same forward as QAT's eval pass
    CHECK(values(model.forward(probe)) == values(qat_logits));
  }
  quant::QuantizedModel int8(model, trained);
  const double int8_accuracy = double(ce.tally(int8.predict(d.test_images), d.test_labels).correct) / 1000.0;
  CHECK(int8_accuracy > float_accuracy - 0.02);
}

TEST_CASE("int8 models save and load bit-exactly; corrupt files give clear errors", "[quant]") {
  Sequential<float> model(Shape{784}, 3);
  model.add<nn::Dense<float>>(784, 64);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dense<float>>(64, 10);
  model.add<nn::Softmax<float>>();
  io::Mnist<float>& d = mnist_subset();
  Tensor<float> x;
  copy_rows(d.test_images, 0, 100, x);
  x.reshape({100, 784});
  const quant::Plan plan = quant::calibrate(model, x);
  quant::QuantizedModel int8(model, plan);
  const Tensor<float> probabilities = int8.forward(x);
  for (index_t i = 0; i < 100; ++i) CHECK(probabilities.matrix().row(i).sum() == Approx(1.0f));

  const std::string bytes = int8.bytes();
  // int8 weights: about a quarter of the float model's bytes.
  CHECK(double(bytes.size()) < 0.27 * double(model.parameter_count() * 4));
  quant::QuantizedModel loaded = quant::QuantizedModel::from_bytes(bytes);
  CHECK(values(loaded.forward(x)) == values(probabilities));

  const std::string path = test::data_path("../../build-int8-test.gbq8");
  int8.save(path);
  CHECK(values(quant::QuantizedModel::load(path).forward(x)) == values(probabilities));
  std::remove(path.c_str());

  std::string bad = bytes;
  bad[0] = 'X';
  CHECK_THROWS_WITH(quant::QuantizedModel::from_bytes(bad, "m.gbq8"), Contains("m.gbq8: not a glassbox int8 model"));
  bad = bytes;
  bad[4] = 9;
  CHECK_THROWS_WITH(quant::QuantizedModel::from_bytes(bad, "m.gbq8"), Contains("format version 9"));
  CHECK_THROWS_WITH(quant::QuantizedModel::from_bytes(bytes.substr(0, bytes.size() - 10), "m.gbq8"),
                    Contains("truncated"));
  bad = bytes;
  bad[bytes.size() / 2] ^= 1;
  CHECK_THROWS_WITH(quant::QuantizedModel::from_bytes(bad, "m.gbq8"), Contains("checksum mismatch"));
  CHECK_THROWS_WITH(quant::QuantizedModel::load("/nonexistent/m.gbq8"), Contains("cannot open"));
  // A well-formed, checksummed file whose ops do not chain: dense_1 marked as
  // the float output, with layers after it.
  bad = bytes;
  const std::size_t float_flag = 20 + 12 + 8 + 4 + 4 + 4 + 7 + 8 + 8 + 1;
  REQUIRE(bad.compare(20 + 32, 7, "dense_1") == 0);
  bad[float_flag] = 1;
  const std::uint32_t crc = crc32c(bad.data() + 20, bad.size() - 20);
  std::memcpy(&bad[16], &crc, 4);
  CHECK_THROWS_WITH(quant::QuantizedModel::from_bytes(bad, "m.gbq8"),
                    Contains("m.gbq8: op 1: dense_2: follows a float output"));
  // Every truncation of the header and body fails cleanly.
  for (std::size_t cut = 0; cut < 64; ++cut)
    CHECK_THROWS_AS(quant::QuantizedModel::from_bytes(bytes.substr(0, cut)), Error);
}

TEST_CASE("distillation loss: gradient check, reduces to cross-entropy, zero at the teacher", "[distill]") {
  Rng rng(8);
  const Tensor<double> logits = test::random_tensor(Shape{4, 5}, rng, -3, 3);
  const Tensor<double> teacher = test::random_tensor(Shape{4, 5}, rng, -3, 3);
  const Tensor<double> labels(Shape{4}, {0, 3, 4, 1});
  const Tensor<double> y = distill::targets(labels, teacher);
  CHECK(y.shape() == Shape{4, 6});
  CHECK(y[6] == 3);
  CHECK(y[7] == teacher[5]);

  const distill::DistillationLoss<double> kd(0.7, 3.0);
  Tensor<double> grad;
  kd.forward(logits, y, &grad);
  Tensor<double> z = logits;
  const Tensor<double> numeric = test::numerical_gradient([&] { return kd.forward(z, y, nullptr); }, z);
  CHECK(test::gradient_error(grad, numeric) < 1e-7);

  // alpha = 0: exactly cross-entropy, value and gradient.
  nn::SoftmaxCrossEntropy<double> ce;
  Tensor<double> ce_grad, hard_grad;
  const distill::DistillationLoss<double> hard(0.0, 4.0);
  CHECK(hard.forward(logits, y, &hard_grad) == Approx(ce.forward(logits, labels, &ce_grad)));
  CHECK(test::max_abs_difference(hard_grad, ce_grad) < 1e-15);

  // alpha = 1 with the teacher's own logits: zero loss and zero gradient.
  const distill::DistillationLoss<double> soft(1.0, 2.0);
  CHECK(soft.forward(teacher, y, &grad) == Approx(0.0).margin(1e-12));
  CHECK(grad.flat().abs().maxCoeff() < 1e-12);

  // alpha = 1, T = 1: the batch-mean KL(p_t || p_s), computed by hand.
  double kl = 0;
  for (index_t i = 0; i < 4; ++i) {
    double zt = 0, zs = 0;
    for (index_t c = 0; c < 5; ++c) zt += std::exp(teacher[i * 5 + c]), zs += std::exp(logits[i * 5 + c]);
    for (index_t c = 0; c < 5; ++c) {
      const double pt = std::exp(teacher[i * 5 + c]) / zt, ps = std::exp(logits[i * 5 + c]) / zs;
      kl += pt * std::log(pt / ps);
    }
  }
  CHECK(distill::DistillationLoss<double>(1.0, 1.0).forward(logits, y, nullptr) == Approx(kl / 4));
  CHECK(kd.tally(logits, y).total == 4);

  CHECK_THROWS_WITH(kd.forward(logits, Tensor<double>(Shape{4, 5}), nullptr),
                    Contains("need targets of shape (N, 1 + classes) = (4, 6)"));
  CHECK_THROWS_WITH(distill::DistillationLoss<double>(1.5, 2.0), Contains("alpha must lie in [0, 1]"));
  CHECK_THROWS_WITH(distill::DistillationLoss<double>(0.5, 0.0), Contains("temperature must be positive"));
}
