// model/hooks.hpp: hooks see exactly what the model computes, modifying hooks
// patch it, handles remove hooks safely in every order, and a throwing hook
// leaves the model usable.
#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"

using namespace glassbox;
using namespace ::test;
using Catch::Matchers::Contains;

namespace {

// A small CNN covering every kind of layer a hook can see. Without the fused
// ReLU, max pooling sees no ties, so central differences are well defined.
Sequential<double> small_cnn(std::uint64_t seed = 3, bool fused_relu = true) {
  Sequential<double> model(Shape{1, 6, 6}, seed);
  nn::Conv2D<double>::Options options;
  if (fused_relu) options.activation = nn::Activation::relu;
  model.add<nn::Conv2D<double>>(1, 3, nn::Size2{3, 3}, options);
  model.add<nn::MaxPool2D<double>>(nn::Size2{2, 2});
  model.add<nn::Flatten<double>>();
  model.add<nn::Dense<double>>(12, 5);
  model.add<nn::Tanh<double>>();
  model.add<nn::Dense<double>>(5, 3);
  return model;
}

// Runs layers [first, end) of the model on x in eval mode, outside the model.
Tensor<double> run_layers(Sequential<double>& model, std::size_t first, Tensor<double> x) {
  for (std::size_t i = first; i < model.size(); ++i) {
    Tensor<double> y;
    model.layer(i).forward(x, y, Mode::eval);
    x = std::move(y);
  }
  return x;
}

}  // namespace

TEST_CASE("forward hooks see exactly the tensors of a manual layer-by-layer forward", "[hooks]") {
  Sequential<double> model = small_cnn();
  Rng rng(5);
  const Tensor<double> x = random_tensor(Shape{4, 1, 6, 6}, rng);
  std::vector<Tensor<double>> inputs, outputs;
  std::vector<std::string> names;
  HookHandle handle = model.add_forward_hook([&](const ForwardEvent<double>& e) {
    CHECK(e.index == inputs.size());
    CHECK(e.mode == Mode::eval);
    CHECK(&e.layer == &model.layer(e.index));
    inputs.push_back(e.input);
    outputs.push_back(e.output);
    names.push_back(e.name);
  });
  const Tensor<double> out = model.forward(x);
  REQUIRE(outputs.size() == model.size());
  CHECK(names == std::vector<std::string>{"conv2d_1", "max_pool2d_1", "flatten_1", "dense_1", "tanh_1", "dense_2"});
  Tensor<double> manual = x;
  for (std::size_t i = 0; i < model.size(); ++i) {
    CHECK(max_abs_difference(inputs[i], manual) == 0.0);
    Tensor<double> y;
    model.layer(i).forward(manual, y, Mode::eval);
    CHECK(max_abs_difference(outputs[i], y) == 0.0);
    manual = std::move(y);
  }
  CHECK(max_abs_difference(out, manual) == 0.0);
}

TEST_CASE("forward pre-hooks run before the layer, with its input", "[hooks]") {
  Sequential<double> model = small_cnn();
  std::vector<std::string> order;
  HookHandle pre = model.add_forward_pre_hook([&](const ForwardPreEvent<double>& e) {
    order.push_back("pre " + e.name);
    CHECK(e.input.shape() == (e.index == 0 ? Shape{2, 1, 6, 6} : model.output(e.index - 1).shape()));
  });
  HookHandle post = model.add_forward_hook("dense_1", [&](const ForwardEvent<double>& e) { order.push_back(e.name); });
  model.forward(Tensor<double>(Shape{2, 1, 6, 6}));
  CHECK(order == std::vector<std::string>{"pre conv2d_1", "pre max_pool2d_1", "pre flatten_1", "pre dense_1", "dense_1",
                                          "pre tanh_1", "pre dense_2"});
}

TEST_CASE("backward hooks see the gradients of a central-difference check", "[hooks]") {
  Sequential<double> model = small_cnn(3, /*fused_relu=*/false);
  Rng rng(7);
  Tensor<double> x = away_from_zero(random_tensor(Shape{2, 1, 6, 6}, rng));
  const Tensor<double> weights = random_tensor(Shape{2, 3}, rng);  // loss = sum(weights * output)
  std::vector<Tensor<double>> grad_outputs(model.size()), grad_inputs(model.size());
  std::vector<bool> has_input_grad(model.size());
  HookHandle all = model.add_backward_hook([&](const BackwardEvent<double>& e) {
    grad_outputs[e.index] = e.grad_output;
    has_input_grad[e.index] = e.grad_input != nullptr;
    if (e.grad_input) grad_inputs[e.index] = *e.grad_input;
  });
  model.forward(x);
  model.backward(weights);
  CHECK_FALSE(has_input_grad[0]);  // hooks on all layers do not force the first layer's input gradient
  CHECK(max_abs_difference(grad_outputs.back(), weights) == 0.0);

  // dLoss/d(input of layer k), numerically, by running layers k.. outside the model.
  for (std::size_t k = 1; k < model.size(); ++k) {
    Tensor<double> input = model.output(k - 1);
    const Tensor<double> numeric = numerical_gradient(
        [&] { return static_cast<double>((run_layers(model, k, input).flat() * weights.flat()).sum()); }, input);
    INFO("layer " << model.layer(k).name());
    REQUIRE(has_input_grad[k]);
    CHECK(gradient_error(grad_inputs[k], numeric) < 1e-6);
    CHECK(max_abs_difference(grad_outputs[k - 1], grad_inputs[k]) == 0.0);
  }

  SECTION("a hook on the first layer itself gets the model's input gradient") {
    HookHandle first = model.add_backward_hook(0, [&](const BackwardEvent<double>& e) {
      REQUIRE(e.grad_input != nullptr);
      grad_inputs[0] = *e.grad_input;
    });
    model.forward(x);
    model.backward(weights);
    const Tensor<double> numeric = numerical_gradient(
        [&] { return static_cast<double>((run_layers(model, 0, x).flat() * weights.flat()).sum()); }, x);
    CHECK(gradient_error(grad_inputs[0], numeric) < 1e-6);
    CHECK(max_abs_difference(model.input_grad(), grad_inputs[0]) == 0.0);
  }
}

TEST_CASE("parameter-gradient hooks fire once per parameter per step, before the update", "[hooks]") {
  Sequential<double> model = small_cnn();
  Rng rng(11);
  const Tensor<double> x = random_tensor(Shape{4, 1, 6, 6}, rng);
  const Tensor<double> target = random_tensor(Shape{4, 3}, rng);
  const double lr = 0.1;
  optim::SGD<double> sgd(model.parameters(), lr);
  nn::MSELoss<double> loss;
  std::map<std::string, int> calls;
  std::map<std::string, Tensor<double>> value_before, grad_seen;
  long long expected_step = 0;
  HookHandle handle = model.add_param_grad_hook([&](const ParamGradEvent<double>& e) {
    CHECK(e.step == expected_step);
    CHECK(&e.grad == &e.parameter.grad);
    ++calls[e.parameter.name];
    value_before[e.parameter.name] = e.value;
    grad_seen[e.parameter.name] = e.grad;
  });
  Tensor<double> grad;
  for (int step = 0; step < 3; ++step) {
    expected_step = step;
    loss.forward(model.forward(x, Mode::train), target, &grad);
    model.backward(grad);
    sgd.step();
    for (Parameter<double>* p : model.parameters()) {
      INFO(p->name);
      REQUIRE(calls[p->name] == step + 1);
      Tensor<double> expected = value_before[p->name];
      expected.flat() -= lr * grad_seen[p->name].flat();
      CHECK(max_abs_difference(p->value, expected) < 1e-15);
    }
  }
  CHECK(calls.size() == 6);  // conv2d_1, dense_1 and dense_2, weight and bias each
}

TEST_CASE("a modifying hook that zeroes a unit equals zeroing that unit's weights", "[hooks]") {
  Rng rng(13);
  const Tensor<double> x = random_tensor(Shape{3, 1, 6, 6}, rng);

  SECTION("a Dense unit") {
    Sequential<double> patched = small_cnn(), pruned = small_cnn();
    const index_t unit = 2;
    HookHandle ablate =
        patched.add_modifying_forward_hook("dense_1", [&](const ForwardEvent<double>&, Tensor<double>& y) {
          for (index_t n = 0; n < y.dim(0); ++n) y.matrix()(n, unit) = 0;
        });
    Parameter<double>& weight = *pruned.layer("dense_1").parameters()[0];
    Parameter<double>& bias = *pruned.layer("dense_1").parameters()[1];
    weight.value.matrix().row(unit).setZero();
    bias.value.flat()(unit) = 0;
    const Tensor<double> a = patched.forward(x);
    CHECK(max_abs_difference(a, pruned.forward(x)) == 0.0);
    ablate.remove();
    CHECK(max_abs_difference(patched.forward(x), a) > 1e-6);  // the unit mattered
  }

  SECTION("a Conv2D channel") {
    Sequential<double> patched = small_cnn(), pruned = small_cnn();
    const index_t channel = 1;
    HookHandle ablate = patched.add_modifying_forward_hook(0, [&](const ForwardEvent<double>&, Tensor<double>& y) {
      const index_t plane = y.dim(2) * y.dim(3);
      for (index_t n = 0; n < y.dim(0); ++n) std::fill_n(y.data() + (n * y.dim(1) + channel) * plane, plane, 0.0);
    });
    Parameter<double>& weight = *pruned.layer(0).parameters()[0];
    Parameter<double>& bias = *pruned.layer(0).parameters()[1];
    std::fill_n(weight.value.data() + channel * 9, 9, 0.0);
    bias.value.flat()(channel) = 0;
    CHECK(max_abs_difference(patched.forward(x), pruned.forward(x)) == 0.0);
  }
}

TEST_CASE("hooks are called in registration order; later ones see earlier patches", "[hooks]") {
  Sequential<double> model = small_cnn();
  std::vector<double> seen;
  HookHandle observe_before =
      model.add_forward_hook("dense_2", [&](const ForwardEvent<double>& e) { seen.push_back(e.output.flat()(0)); });
  HookHandle patch = model.add_modifying_forward_hook(
      "dense_2", [](const ForwardEvent<double>&, Tensor<double>& y) { y.flat().setConstant(7.0); });
  HookHandle observe_after =
      model.add_forward_hook("dense_2", [&](const ForwardEvent<double>& e) { seen.push_back(e.output.flat()(0)); });
  const Tensor<double>& out = model.forward(Tensor<double>(Shape{2, 1, 6, 6}));
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] != 7.0);
  CHECK(seen[1] == 7.0);
  CHECK(out.flat().minCoeff() == 7.0);
  CHECK(out.flat().maxCoeff() == 7.0);
}

TEST_CASE("a modifying hook may replace the output only with one of the same shape", "[hooks]") {
  Sequential<double> model = small_cnn();
  HookHandle bad = model.add_modifying_forward_hook("flatten_1", [](const ForwardEvent<double>&, Tensor<double>& y) {
    y = Tensor<double>(Shape{1, 1});
  });
  const Tensor<double> x(Shape{2, 1, 6, 6});
  CHECK_THROWS_WITH(model.forward(x), Contains("flatten_1") && Contains("shape from (2, 12) to (1, 1)"));
  bad.remove();
  HookHandle good = model.add_modifying_forward_hook("flatten_1", [](const ForwardEvent<double>&, Tensor<double>& y) {
    Tensor<double> replacement(y.shape());
    replacement.flat().setOnes();
    y = std::move(replacement);
  });
  model.forward(x);
  CHECK(model.output(2).flat().minCoeff() == 1.0);
}

TEST_CASE("a modifying pre-hook patches a layer's input, straight through in backward", "[hooks]") {
  Sequential<double> model = small_cnn();
  Rng rng(4);
  const Tensor<double> x = random_tensor(Shape{2, 1, 6, 6}, rng);
  // Doubling dense_1's input equals running the layers after flatten_1 on twice its output.
  model.forward(x);
  Tensor<double> doubled = model.output(2);
  doubled.flat() *= 2.0;
  const Tensor<double> expected = run_layers(model, 3, doubled);
  HookHandle twice = model.add_modifying_forward_pre_hook(
      "dense_1", [](const ForwardPreEvent<double>&, Tensor<double>& in) { in.flat() *= 2.0; });
  const Tensor<double> out = model.forward(x);
  CHECK(max_abs_difference(out, expected) < 1e-12);
  CHECK(max_abs_difference(model.output(2), doubled) == 0.0);  // the stored input is the patched one
  // On the first layer it patches the model's own copy of x, not the caller's tensor.
  HookHandle zero = model.add_modifying_forward_pre_hook(
      0, [](const ForwardPreEvent<double>&, Tensor<double>& in) { in.set_zero(); });
  const Tensor<double> copy = x;
  model.forward(x);
  CHECK(max_abs_difference(x, copy) == 0.0);
  CHECK(model.output(0).flat().maxCoeff() ==
        Approx(std::max(0.0, model.layer(0).parameters()[1]->value.flat().maxCoeff())));
  // Backward treats the patch as the identity.
  model.backward(Tensor<double>(Shape{2, 3}, 1.0), true);
  CHECK(model.input_grad().shape() == x.shape());
  HookHandle bad = model.add_modifying_forward_pre_hook(
      "dense_2", [](const ForwardPreEvent<double>&, Tensor<double>& in) { in = Tensor<double>(Shape{1}); });
  CHECK_THROWS_WITH(model.forward(x), Contains("dense_2") && Contains("input's shape from (2, 5) to (1)"));
}

TEST_CASE("Sequential::replace swaps a layer of the same kind, which takes the old name", "[hooks]") {
  Sequential<double> model = small_cnn();
  HookHandle watch = model.add_forward_hook("dense_2", [](const ForwardEvent<double>&) {});
  auto wider = std::make_unique<nn::Dense<double>>(5, 4);
  std::unique_ptr<Layer<double>> old = model.replace(5, std::move(wider));
  CHECK(old->name() == "dense_2");
  CHECK(model.layer(5).name() == "dense_2");
  CHECK(model.layer(5).parameters()[0]->name == "dense_2.weight");
  CHECK(model.forward(Tensor<double>(Shape{2, 1, 6, 6})).shape() == Shape{2, 4});
  CHECK_THROWS_WITH(model.replace(5, std::make_unique<nn::Tanh<double>>()),
                    Contains("dense_2 is a dense, the replacement a tanh"));
  CHECK_THROWS_WITH(model.replace(9, std::make_unique<nn::Tanh<double>>()), Contains("layer index 9 out of range"));
}

TEST_CASE("hook targets: index, name, layer reference or all; unknown targets are errors", "[hooks]") {
  Sequential<double> model = small_cnn();
  Sequential<double> other = small_cnn();
  std::vector<std::size_t> seen;
  auto record = [&](const ForwardEvent<double>& e) { seen.push_back(e.index); };
  HookHandle by_index = model.add_forward_hook(1, record);
  HookHandle by_name = model.add_forward_hook("dense_1", record);
  HookHandle by_layer = model.add_forward_hook(model.layer(5), record);
  model.forward(Tensor<double>(Shape{1, 1, 6, 6}));
  CHECK(seen == std::vector<std::size_t>{1, 3, 5});

  CHECK_THROWS_WITH(model.add_forward_hook("dense_9", record), Contains("'dense_9'") && Contains("no layer"));
  CHECK_THROWS_WITH(model.add_forward_hook(6, record), Contains("index 6") && Contains("6 layers"));
  CHECK_THROWS_WITH(model.add_forward_hook(-1, record), Contains("index -1"));
  CHECK_THROWS_WITH(model.add_forward_hook(other.layer(0), record), Contains("not part of this model"));
  CHECK_THROWS_WITH(model.add_forward_hook(ForwardHook<double>()), Contains("empty hook"));
}

TEST_CASE("hook context: mode, training step, epoch and batch", "[hooks]") {
  Sequential<double> model(Shape{2}, 1);
  model.add<nn::Dense<double>>(2, 1);
  std::vector<HookContext> seen;
  HookHandle h = model.add_forward_hook([&](const ForwardEvent<double>& e) { seen.push_back(e); });
  Tensor<double> x(Shape{5, 2}), y(Shape{5, 1});
  optim::SGD<double> sgd(model.parameters(), 0.01);
  nn::MSELoss<double> loss;
  train::FitOptions<double> options = quiet_fit<double>(2, 2);  // 3 batches per epoch
  options.validation_x = &x;
  options.validation_y = &y;
  train::fit(model, sgd, loss, x, y, options);
  // Per epoch: 3 train batches, then one validation batch in eval mode.
  REQUIRE(seen.size() == 8);
  for (int epoch = 0; epoch < 2; ++epoch) {
    for (int b = 0; b < 3; ++b) {
      const HookContext& c = seen[static_cast<std::size_t>(epoch * 4 + b)];
      CHECK(c.mode == Mode::train);
      CHECK(c.epoch == epoch);
      CHECK(c.batch == b);
      CHECK(c.step == epoch * 3 + b);
    }
    const HookContext& v = seen[static_cast<std::size_t>(epoch * 4 + 3)];
    CHECK(v.mode == Mode::eval);
    CHECK(v.step == (epoch + 1) * 3);  // steps taken so far
    CHECK(v.batch == 0);
  }
  CHECK(model.training_steps() == 6);
}

TEST_CASE("hook handles: scope, remove(), twice, after the model, moved models", "[hooks]") {
  int calls = 0;
  auto count = [&](const ForwardEvent<double>&) { ++calls; };
  const Tensor<double> x(Shape{1, 1, 6, 6});

  SECTION("removed when the handle leaves its scope") {
    Sequential<double> model = small_cnn();
    {
      HookHandle h = model.add_forward_hook(0, count);
      CHECK(h.active());
      model.forward(x);
    }
    model.forward(x);
    CHECK(calls == 1);
  }
  SECTION("remove() twice, then destruction, is harmless") {
    Sequential<double> model = small_cnn();
    HookHandle h = model.add_forward_hook(0, count);
    h.remove();
    CHECK_FALSE(h.active());
    h.remove();
    model.forward(x);
    CHECK(calls == 0);
  }
  SECTION("the model is destroyed first") {
    auto model = std::make_unique<Sequential<double>>(small_cnn());
    HookHandle h = model->add_forward_hook(count);
    HookHandle g = model->add_backward_hook([](const BackwardEvent<double>&) {});
    model.reset();
    CHECK_FALSE(h.active());
    h.remove();  // and g's destructor runs after the model is gone
  }
  SECTION("a moved model keeps its hooks and their handles") {
    Sequential<double> model = small_cnn();
    HookHandle h = model.add_forward_hook(0, count);
    Sequential<double> moved = std::move(model);
    moved.forward(x);
    CHECK(calls == 1);
    h.remove();
    moved.forward(x);
    CHECK(calls == 1);
  }
  SECTION("moving a handle transfers the registration") {
    Sequential<double> model = small_cnn();
    HookHandle a = model.add_forward_hook(0, count);
    HookHandle b = std::move(a);
    CHECK_FALSE(a.active());  // NOLINT(bugprone-use-after-move): moved-from handles are empty by contract
    CHECK(b.active());
    b = model.add_forward_hook(1, count);  // assigning removes the hook b held
    model.forward(x);
    CHECK(calls == 1);
  }
}

TEST_CASE("hooks may add and remove hooks while they run", "[hooks]") {
  Sequential<double> model = small_cnn();
  const Tensor<double> x(Shape{1, 1, 6, 6});
  std::vector<std::string> log;
  HookHandle self, other, added;
  other = model.add_forward_hook([&](const ForwardEvent<double>& e) { log.push_back("other " + e.name); });
  self = model.add_forward_hook(0, [&](const ForwardEvent<double>& e) {
    log.push_back("self " + e.name);
    self.remove();   // removes the running hook itself
    other.remove();  // and one that has not run yet for this layer
    added = model.add_forward_hook([&](const ForwardEvent<double>& ev) { log.push_back("added " + ev.name); });
  });
  // Registered after `self`, so `other` (registered first) already ran on layer 0.
  model.forward(x);
  CHECK(log == std::vector<std::string>{"other conv2d_1", "self conv2d_1", "added max_pool2d_1", "added flatten_1",
                                        "added dense_1", "added tanh_1", "added dense_2"});
  log.clear();
  model.forward(x);
  CHECK(log.size() == model.size());
  CHECK_FALSE(self.active());
  CHECK_FALSE(other.active());
}

TEST_CASE("a throwing hook names its layer and leaves the model usable", "[hooks]") {
  Sequential<double> model = small_cnn();
  const Tensor<double> x(Shape{2, 1, 6, 6});
  HookHandle h =
      model.add_forward_hook("dense_1", [](const ForwardEvent<double>&) { throw std::runtime_error("boom"); });
  try {
    model.forward(x);
    FAIL("forward should have thrown");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Contains("dense_1") && Contains("forward hook threw: boom"));
    CHECK_THROWS_WITH(std::rethrow_if_nested(e), "boom");
  }
  CHECK_THROWS_WITH(model.backward(Tensor<double>(Shape{2, 3})), Contains("call forward first"));
  h.remove();
  const Tensor<double> out = model.forward(x);
  CHECK(out.shape() == Shape{2, 3});
  model.backward(out);

  HookHandle b = model.add_backward_hook("tanh_1", [](const BackwardEvent<double>&) { throw 42; });
  model.forward(x);
  CHECK_THROWS_WITH(model.backward(out), Contains("tanh_1: backward hook threw"));
  b.remove();
  HookHandle p = model.add_param_grad_hook(
      "dense_2", [](const ParamGradEvent<double>& e) { throw Error("bad " + e.parameter.name); });
  CHECK_THROWS_WITH(model.backward(out), Contains("dense_2: parameter-gradient hook threw: bad dense_2.weight"));
  p.remove();
  model.backward(out);

  SECTION("through fit, too") {
    HookHandle t = model.add_forward_pre_hook("tanh_1", [](const ForwardPreEvent<double>& e) {
      if (e.step == 2) throw Error("stop at step 2");
    });
    optim::SGD<double> sgd(model.parameters(), 0.01);
    nn::MSELoss<double> loss;
    const train::FitOptions<double> options = quiet_fit<double>(3, 2);
    const Tensor<double> y(Shape{2, 3});
    REQUIRE(model.training_steps() == 0);
    CHECK_THROWS_WITH(train::fit(model, sgd, loss, x, y, options), Contains("tanh_1: forward pre-hook threw: stop"));
    CHECK(model.training_steps() == 3);
  }
}

TEST_CASE("output-block hooks see each sample of a streaming layer's output once, already final", "[hooks]") {
  const int threads = num_threads();
  set_num_threads(2);  // blocks arrive from two threads at once
  Sequential<double> model = small_cnn();
  Rng rng(5);
  const Tensor<double> x = random_tensor(Shape{6, 1, 6, 6}, rng);
  const std::size_t layers = model.size();
  // Per layer and sample: how many blocks held it, and its values then. Each
  // sample is written by the one thread whose block holds it.
  std::vector<std::vector<int>> count(layers, std::vector<int>(6, 0));
  std::vector<std::vector<std::vector<double>>> values(layers, std::vector<std::vector<double>>(6));
  std::atomic<bool> bad_thread{false};
  HookHandle h = model.add_output_block_hook([&](const OutputBlockEvent<double>& e) {
    const index_t per_sample = e.output.size() / e.output.dim(0);
    for (index_t s = e.first; s < e.last; ++s) {
      ++count[e.index][static_cast<std::size_t>(s)];
      values[e.index][static_cast<std::size_t>(s)].assign(e.output.data() + s * per_sample,
                                                          e.output.data() + (s + 1) * per_sample);
      if (e.thread < 0 || e.thread >= e.threads) bad_thread = true;
    }
  });
  auto check_blocks = [&](std::size_t unwatched) {
    for (auto& c : count) std::fill(c.begin(), c.end(), 0);
    model.forward(x);
    CHECK_FALSE(bad_thread);
    for (std::size_t i = 0; i < layers; ++i) {
      const std::string kind = model.layer(i).kind();
      const bool streams = (kind == "conv2d" || kind == "max_pool2d") && i != unwatched;
      const Tensor<double>& y = model.output(i);
      const index_t per_sample = y.size() / y.dim(0);
      CAPTURE(i);
      for (std::size_t s = 0; s < 6; ++s) {
        CHECK(count[i][s] == (streams ? 1 : 0));
        if (streams)
          CHECK(values[i][s] == std::vector<double>(y.data() + static_cast<index_t>(s) * per_sample,
                                                    y.data() + static_cast<index_t>(s + 1) * per_sample));
      }
    }
  };
  check_blocks(layers);

  SECTION("a layer watched by a modifying hook reports no blocks (they would not be its output)") {
    HookHandle patch = model.add_modifying_forward_hook(
        "conv2d_1", [](const ForwardEvent<double>&, Tensor<double>& y) { y.flat() *= 2.0; });
    check_blocks(0);
    patch.remove();
    check_blocks(layers);
  }
  SECTION("a removed hook sees no more blocks") {
    h.remove();
    for (auto& c : count) std::fill(c.begin(), c.end(), 0);
    model.forward(x);
    for (const auto& c : count) CHECK(std::count(c.begin(), c.end(), 0) == 6);
  }
  SECTION("a throwing output-block hook names its layer and leaves the model usable") {
    HookHandle boom = model.add_output_block_hook("max_pool2d_1", [](const OutputBlockEvent<double>& e) {
      if (e.first == 3) throw std::runtime_error("boom");
    });
    try {
      model.forward(x);
      FAIL("forward should have thrown");
    } catch (const Error& e) {
      CHECK_THAT(e.what(), Contains("max_pool2d_1: output-block hook threw: boom"));
      CHECK_THROWS_WITH(std::rethrow_if_nested(e), "boom");
    }
    boom.remove();
    check_blocks(layers);
  }
  set_num_threads(threads);
}

TEST_CASE("output-gradient block hooks see each sample of the gradient wrt a layer's output once, final", "[hooks]") {
  const int threads = num_threads();
  set_num_threads(2);
  // Conv2D's input gradient is conv2d_1's output gradient, MaxPool2D's is
  // conv2d_2's, Dense's is flatten_1's (one block of all 5 samples: too small to split).
  Sequential<double> model(Shape{1, 7, 7}, 2);
  model.add<nn::Conv2D<double>>(1, 2, nn::Size2{2, 2});
  model.add<nn::Conv2D<double>>(2, 3, nn::Size2{2, 2});
  model.add<nn::MaxPool2D<double>>(nn::Size2{2, 2});
  model.add<nn::Flatten<double>>();
  model.add<nn::Dense<double>>(12, 2);
  Rng rng(8);
  const Tensor<double> x = random_tensor(Shape{5, 1, 7, 7}, rng);
  std::vector<std::vector<int>> count(model.size(), std::vector<int>(5, 0));
  std::vector<std::vector<std::vector<double>>> values(model.size(), std::vector<std::vector<double>>(5));
  HookHandle h = model.add_output_grad_block_hook([&](const OutputGradBlockEvent<double>& e) {
    const index_t per_sample = e.grad_output.size() / e.grad_output.dim(0);
    for (index_t s = e.first; s < e.last; ++s) {
      ++count[e.index][static_cast<std::size_t>(s)];
      values[e.index][static_cast<std::size_t>(s)].assign(e.grad_output.data() + s * per_sample,
                                                          e.grad_output.data() + (s + 1) * per_sample);
    }
  });
  std::vector<Tensor<double>> grads(model.size());
  HookHandle b = model.add_backward_hook([&](const BackwardEvent<double>& e) { grads[e.index] = e.grad_output; });
  const Tensor<double>& y = model.forward(x, Mode::train);
  model.backward(random_tensor(y.shape(), rng));
  for (std::size_t i = 0; i < model.size(); ++i) {
    const bool streams = i == 0 || i == 1 || i == 3;
    const index_t per_sample = grads[i].size() / grads[i].dim(0);
    CAPTURE(i);
    for (std::size_t s = 0; s < 5; ++s) {
      CHECK(count[i][s] == (streams ? 1 : 0));
      if (streams)
        CHECK(values[i][s] == std::vector<double>(grads[i].data() + static_cast<index_t>(s) * per_sample,
                                                  grads[i].data() + static_cast<index_t>(s + 1) * per_sample));
    }
  }
  HookHandle boom = model.add_output_grad_block_hook(
      "conv2d_2", [](const OutputGradBlockEvent<double>&) { throw std::runtime_error("boom"); });
  model.forward(x, Mode::train);
  CHECK_THROWS_WITH(model.backward(random_tensor(y.shape(), rng)),
                    Contains("conv2d_2: output-gradient block hook threw: boom"));
  boom.remove();
  model.forward(x, Mode::train);
  model.backward(random_tensor(y.shape(), rng));
  set_num_threads(threads);
}

namespace {

// Rows of 8 pooling windows: the Conv2D and its MaxPool2D run as one pass
// while no hook watches them (nn/conv_pool_direct.hpp).
Sequential<float> fusing_cnn() {
  Sequential<float> model(Shape{1, 18, 18}, 5);
  nn::Conv2D<float>::Options relu;
  relu.activation = nn::Activation::relu;
  model.add<nn::Conv2D<float>>(1, 4, nn::Size2{3, 3}, relu);
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(256, 3);
  return model;
}

}  // namespace

TEST_CASE("A scheduled hook fires only in the passes it is due for; the others run as unwatched", "[hooks]") {
  Sequential<float> model = fusing_cnn();
  Rng rng(9);
  const Tensor<float> x = cast<float>(random_tensor(Shape{2, 1, 18, 18}, rng));
  model.forward(x, Mode::train);
  CHECK(model.ran_fused(0));
  CHECK_FALSE(model.ran_fused(2));
  int forwards = 0, backwards = 0;
  HookHandle forward = model.add_forward_hook(0, [&](const ForwardEvent<float>&) { ++forwards; });
  HookHandle backward = model.add_backward_hook(1, [&](const BackwardEvent<float>&) { ++backwards; });
  model.forward(x, Mode::train);
  CHECK_FALSE(model.ran_fused(0));  // watched every pass
  forward.only_when([](const HookContext& c) { return c.step % 3 == 0; });
  backward.only_when([](const HookContext& c) { return c.step % 3 == 0; });
  forwards = 0;
  for (long long step = 2; step < 9; ++step) {
    model.forward(x, Mode::train);
    CHECK(model.ran_fused(0) == (step % 3 != 0));
    model.backward(Tensor<float>(Shape{2, 3}, 0.5f));
  }
  CHECK(forwards == 2);  // steps 3 and 6
  CHECK(backwards == 2);
  forward.remove();
  CHECK_THROWS_WITH(forward.only_when([](const HookContext&) { return true; }), Contains("no longer registered"));
}

TEST_CASE("Recorders every N steps leave the steps between fused, and record as before", "[hooks]") {
  Sequential<float> model = fusing_cnn();
  optim::Adam<float> adam(model.parameters(), 1e-2f);
  nn::SoftmaxCrossEntropy<float> loss;
  inspect::ActivationStatsOptions stats_options;
  stats_options.schedule.every = 3;
  inspect::ActivationStats<float> stats(model, stats_options);
  inspect::GradientFlowOptions flow_options;
  flow_options.schedule.every = 3;
  inspect::GradientFlow<float> flow(model, flow_options);
  Rng rng(4);
  const Tensor<float> x = cast<float>(random_tensor(Shape{4, 1, 18, 18}, rng));
  const Tensor<float> y(Shape{4}, {0.f, 1.f, 2.f, 1.f});
  Tensor<float> grad;
  for (long long step = 0; step < 7; ++step) {
    loss.forward(model.forward(x, Mode::train), y, &grad);
    CHECK(model.ran_fused(0) == (step % 3 != 0));
    model.backward(grad);
    adam.step();
  }
  model.forward(x, Mode::eval);                         // finishes the update ratios of step 6
  CHECK(stats.series("conv2d_1").records.size() == 3);  // steps 0, 3, 6
  CHECK(stats.series("max_pool2d_1").records.size() == 3);
  CHECK(flow.layer("conv2d_1").records.size() == 3);
  for (const auto& r : flow.parameter("conv2d_1.weight").records) {
    CHECK(r.update_ratio > 0);
    CHECK(r.update_ratio < 1);
  }
}
