// Residual blocks: gradient checks (identity and projection shortcuts, a
// block inside a block), and hooks that fire for the layers inside a block
// with dotted names, exactly as for the model's own layers.

#include "support.hpp"

using namespace glassbox;
using Catch::Matchers::Contains;
using test::check_layer_gradients;
using test::random_tensor;

namespace {

template <class T>
std::unique_ptr<nn::Residual<T>> dense_block(index_t features) {
  auto block = std::make_unique<nn::Residual<T>>();
  block->template add<nn::Dense<T>>(features, features);
  block->template add<nn::Tanh<T>>();
  block->template add<nn::Dense<T>>(features, features);
  return block;
}

}  // namespace

TEST_CASE("residual: gradient checks", "[residual]") {
  Rng rng(1);
  SECTION("identity shortcut") {
    auto block = dense_block<double>(4);
    check_layer_gradients(*block, random_tensor(Shape{3, 4}, rng));
  }
  SECTION("dense projection shortcut") {
    nn::Residual<double> block;
    block.add<nn::Dense<double>>(4, 6);
    block.add<nn::Sigmoid<double>>();
    block.set_shortcut<nn::Dense<double>>(4, 6);
    check_layer_gradients(block, random_tensor(Shape{3, 4}, rng));
  }
  SECTION("conv body, 1x1 conv projection with stride, batch norm inside") {
    nn::Residual<double> block;
    nn::Conv2D<double>::Options same;
    same.padding = nn::Padding::same;
    same.stride = {2, 2};
    same.bias = false;  // batch norm follows: a bias would have no effect (and a zero gradient)
    block.add<nn::Conv2D<double>>(2, 3, nn::Size2{3, 3}, same);
    block.add<nn::BatchNorm<double>>(3);
    block.add<nn::Tanh<double>>();
    nn::Conv2D<double>::Options stride;
    stride.stride = {2, 2};
    block.set_shortcut<nn::Conv2D<double>>(2, 3, nn::Size2{1, 1}, stride);
    check_layer_gradients(block, random_tensor(Shape{2, 2, 5, 5}, rng));
  }
  SECTION("a block inside a block") {
    nn::Residual<double> outer;
    outer.add(dense_block<double>(4));
    outer.add<nn::Tanh<double>>();
    check_layer_gradients(outer, random_tensor(Shape{3, 4}, rng));
  }
}

TEST_CASE("residual: forward is body + shortcut; names, parameters, errors", "[residual]") {
  Sequential<double> model(Shape{4}, 3);
  model.add<nn::Dense<double>>(4, 4);
  model.add(dense_block<double>(4));
  model.add<nn::Dense<double>>(4, 2);
  auto& block = dynamic_cast<nn::Residual<double>&>(model.layer("residual_1"));
  CHECK(block.body(0).name() == "residual_1.dense_1");
  CHECK(block.shortcut().name() == "residual_1.shortcut");
  CHECK(&model.layer("residual_1.dense_2") == &block.body(2));
  std::vector<std::string> names;
  for (Parameter<double>* p : model.parameters()) names.push_back(p->name);
  CHECK(names == std::vector<std::string>{"dense_1.weight", "dense_1.bias", "residual_1.dense_1.weight",
                                          "residual_1.dense_1.bias", "residual_1.dense_2.weight",
                                          "residual_1.dense_2.bias", "dense_2.weight", "dense_2.bias"});
  Rng rng(2);
  const Tensor<double> x = random_tensor(Shape{5, 4}, rng);
  model.forward(x);
  // By hand: out = dense_2(tanh(dense_1(h))) + h with h the first layer's output.
  const Tensor<double>& h = model.output(0);
  Tensor<double> a, b, c;
  block.body(0).forward(h, a, Mode::eval);
  block.body(1).forward(a, b, Mode::eval);
  block.body(2).forward(b, c, Mode::eval);
  c.flat() += h.flat();
  CHECK(test::max_abs_difference(c, model.output(1)) < 1e-12);

  CHECK_THROWS_WITH(model.index_of("residual_1.dense_1"), Contains("inside block residual_1"));
  Sequential<float> bad(Shape{4});
  nn::Residual<float> widen;
  widen.add<nn::Dense<float>>(4, 6);
  CHECK_THROWS_WITH(bad.add(std::make_unique<nn::Residual<float>>(std::move(widen))),
                    Contains("residual_1") && Contains("give the shortcut a projection"));
  CHECK_THROWS_WITH(bad.add(std::make_unique<nn::Residual<float>>()), Contains("has no layers"));
}

TEST_CASE("residual: hooks fire for the layers inside a block", "[residual][hooks]") {
  Sequential<double> model(Shape{4}, 3);
  model.add<nn::Dense<double>>(4, 4);
  model.add(dense_block<double>(4));
  model.add<nn::Dense<double>>(4, 2);
  Rng rng(5);
  const Tensor<double> x = random_tensor(Shape{3, 4}, rng);

  std::vector<std::string> forward_names, backward_names;
  std::vector<std::size_t> indices;
  std::vector<int> depths;
  HookHandle f = model.add_forward_hook([&](const ForwardEvent<double>& e) {
    forward_names.push_back(e.name);
    indices.push_back(e.index);
    depths.push_back(e.depth);
  });
  HookHandle b = model.add_backward_hook([&](const BackwardEvent<double>& e) { backward_names.push_back(e.name); });
  const Tensor<double> out = model.forward(x, Mode::train);
  CHECK(forward_names == std::vector<std::string>{"dense_1", "residual_1.dense_1", "residual_1.tanh_1",
                                                  "residual_1.dense_2", "residual_1.shortcut", "residual_1",
                                                  "dense_2"});
  CHECK(indices == std::vector<std::size_t>{0, 1, 1, 1, 1, 1, 2});
  CHECK(depths == std::vector<int>{0, 1, 1, 1, 1, 0, 0});
  model.backward(Tensor<double>(out.shape(), 1.0));
  CHECK(backward_names == std::vector<std::string>{"dense_2", "residual_1.dense_2", "residual_1.tanh_1",
                                                   "residual_1.dense_1", "residual_1.shortcut", "residual_1",
                                                   "dense_1"});
  f.remove();
  b.remove();

  SECTION("a modifying hook inside a block acts as zeroing that unit's weights would") {
    Sequential<double> copy(Shape{4}, 3);
    copy.add<nn::Dense<double>>(4, 4);
    copy.add(dense_block<double>(4));
    copy.add<nn::Dense<double>>(4, 2);
    HookHandle zero =
        model.add_modifying_forward_hook("residual_1.dense_2", [](const ForwardEvent<double>&, Tensor<double>& y) {
          for (index_t n = 0; n < y.dim(0); ++n) y.data()[n * y.dim(1) + 1] = 0;
        });
    auto& dense = dynamic_cast<nn::Dense<double>&>(copy.layer("residual_1.dense_2"));
    dense.weight().value.matrix().row(1).setZero();
    dense.bias().value[1] = 0;
    const Tensor<double> patched = model.forward(x);
    CHECK(test::max_abs_difference(patched, copy.forward(x)) < 1e-12);
  }
  SECTION("gradients with hooks attached equal those without; backward hooks see them") {
    Tensor<double> plain_dx;
    model.forward(x, Mode::train);
    model.backward(Tensor<double>(out.shape(), 1.0), true);
    plain_dx = model.input_grad();
    const Tensor<double> plain_grad = model.layer("residual_1.dense_1").parameters()[0]->grad;
    Tensor<double> shortcut_dy, block_dy;
    HookHandle h1 = model.add_backward_hook("residual_1.shortcut",
                                            [&](const BackwardEvent<double>& e) { shortcut_dy = e.grad_output; });
    HookHandle h2 =
        model.add_backward_hook("residual_1", [&](const BackwardEvent<double>& e) { block_dy = e.grad_output; });
    int param_events = 0;
    HookHandle h3 = model.add_param_grad_hook("residual_1.dense_1", [&](const ParamGradEvent<double>& e) {
      ++param_events;
      CHECK(e.name == "residual_1.dense_1");
      CHECK(e.depth == 1);
    });
    model.forward(x, Mode::train);
    model.backward(Tensor<double>(out.shape(), 1.0), true);
    CHECK(test::max_abs_difference(model.input_grad(), plain_dx) == 0.0);
    CHECK(test::max_abs_difference(model.layer("residual_1.dense_1").parameters()[0]->grad, plain_grad) == 0.0);
    CHECK(test::max_abs_difference(shortcut_dy, block_dy) == 0.0);  // the identity passes dy on
    CHECK(param_events == 2);                                       // weight and bias, once each
  }
  SECTION("recorders show the body and the shortcut separately") {
    inspect::ActivationStats<double> stats(model);
    inspect::GradientFlow<double> flow(model);
    model.forward(x, Mode::train);
    model.backward(Tensor<double>(out.shape(), 1.0));
    CHECK(stats.series("residual_1.dense_2").records.size() == 1);
    CHECK(stats.series("residual_1.shortcut").records.back().mean ==
          Approx(model.output(0).flat().mean()));  // the shortcut's output is the block's input
    CHECK(flow.layer("residual_1.tanh_1").records.size() == 1);
    CHECK(flow.parameter("residual_1.dense_1.weight").records.back().grad_norm > 0);
    CHECK(flow.layer("residual_1.shortcut").records.back().norm ==
          Approx(flow.layer("residual_1").records.back().norm));
  }
}

TEST_CASE("residual: blocks are safe to use around and after passes", "[residual][hooks]") {
  Sequential<double> model(Shape{4}, 3);
  model.add<nn::Dense<double>>(4, 4);
  model.add(dense_block<double>(4));
  model.add<nn::Dense<double>>(4, 2);
  auto& block = dynamic_cast<nn::Residual<double>&>(model.layer("residual_1"));
  Rng rng(6);
  const Tensor<double> x = random_tensor(Shape{3, 4}, rng);

  // A pre-hook that zeroes input feature 0 of a layer inside the block: the
  // weight gradient must come from the patched input, so its column 0 is 0.
  HookHandle zero_input = model.add_modifying_forward_pre_hook("residual_1.dense_1",
                                                               [](const ForwardPreEvent<double>&, Tensor<double>& in) {
                                                                 for (index_t n = 0; n < in.dim(0); ++n)
                                                                   in.data()[n * in.dim(1)] = 0;
                                                               });
  int block_param_events = 0;
  HookHandle on_block =
      model.add_param_grad_hook("residual_1", [&](const ParamGradEvent<double>&) { ++block_param_events; });
  const Tensor<double> out = model.forward(x, Mode::train);
  model.backward(Tensor<double>(out.shape(), 1.0));
  const Tensor<double>& dw = model.layer("residual_1.dense_1").parameters()[0]->grad;
  for (index_t r = 0; r < 4; ++r) CHECK(dw.data()[r * 4] == 0.0);
  CHECK(dw.flat().abs().sum() > 0);
  CHECK(block_param_events == 4);  // a hook on the block sees all its parameters

  // After the pass the block runs on its own (no runner left behind).
  Tensor<double> alone;
  block.forward(model.output(0), alone, Mode::eval);
  CHECK(alone.shape() == Shape{3, 4});

  // A block in a model is locked; "shortcut" is reserved; no add from a hook.
  CHECK_THROWS_WITH(block.add<nn::Tanh<double>>(), Contains("cannot change once it is in a model"));
  CHECK_THROWS_WITH(block.set_shortcut<nn::Dense<double>>(4, 4), Contains("cannot change once it is in a model"));
  nn::Residual<double> fresh;
  CHECK_THROWS_WITH(fresh.add(std::make_unique<nn::Tanh<double>>(), "shortcut"), Contains("'shortcut'"));
  {
    HookHandle adder = model.add_forward_hook(0, [&](const ForwardEvent<double>&) { model.add<nn::Tanh<double>>(); });
    CHECK_THROWS_WITH(model.forward(x), Contains("not during a forward or backward pass"));
  }

  // Replacing a block keeps the hooks on the layers inside it, by name.
  int inner_events = 0;
  HookHandle inner = model.add_forward_hook("residual_1.tanh_1", [&](const ForwardEvent<double>&) { ++inner_events; });
  auto old = model.replace(1, dense_block<double>(4));
  CHECK_FALSE(old->in_model());
  CHECK_NOTHROW(dynamic_cast<nn::Residual<double>&>(*old).add<nn::Tanh<double>>());  // free again
  model.forward(x);
  CHECK(inner_events == 1);
}
