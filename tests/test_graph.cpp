// Graph: gradient checks for every merge (concat, sum, multiply), a tensor
// read by several nodes, graphs and residual blocks inside each other;
// forward values by hand; hooks and recorders for the nodes inside a graph;
// and the errors of a graph wired wrong.

#include <filesystem>
#include <glassbox/compress.hpp>

#include "checkpoint_models.hpp"
#include "glassbox/viz/diagram.hpp"
#include "glassbox/viz/dot.hpp"
#include "support.hpp"

using namespace glassbox;
using Catch::Matchers::Contains;
using test::check_layer_gradients;
using test::random_tensor;

namespace {

nn::Conv2D<double>::Options same_padding() {
  nn::Conv2D<double>::Options o;
  o.padding = nn::Padding::same;
  return o;
}

// Inception-like: three branches of different depth, concatenated.
std::unique_ptr<Graph<double>> inception(index_t channels) {
  auto g = std::make_unique<Graph<double>>();
  auto x = g->input();
  auto a = g->add<nn::Conv2D<double>>(x, channels, 2, nn::Size2{1, 1});
  auto b = g->add<nn::Conv2D<double>>(x, channels, 3, nn::Size2{3, 3}, same_padding());
  b = g->add<nn::Tanh<double>>(b);
  b = g->add<nn::Conv2D<double>>(b, 3, 2, nn::Size2{3, 3}, same_padding());
  auto c = g->add<nn::AvgPool2D<double>>(x, nn::Size2{3, 3}, nn::PoolOptions{{1, 1}, nn::Padding::same, {0, 0}});
  g->concat({a, b, c});
  return g;
}

// y = dense_3(tanh(dense_1(x))) + dense_2(x) * sigmoid(dense_2(x)): a shortcut
// of one layer read twice, a gate, and x read by two branches.
template <class T = double>
std::unique_ptr<Graph<T>> gated(index_t features) {
  auto g = std::make_unique<Graph<T>>();
  auto x = g->input();
  auto h = g->template add<nn::Dense<T>>(x, features, features);
  h = g->template add<nn::Tanh<T>>(h);
  h = g->template add<nn::Dense<T>>(h, features, features);
  auto s = g->template add<nn::Dense<T>>(x, features, features);
  auto gate = g->template add<nn::Sigmoid<T>>(s);
  g->sum({h, g->multiply({s, gate})});
  return g;
}

// The gated graph on 4 features, then a Dense to `outputs` classes.
Sequential<double> gated_classifier(index_t outputs, std::uint64_t seed) {
  Sequential<double> model(Shape{4}, seed);
  model.add(gated(4));
  model.add<nn::Dense<double>>(4, outputs);
  return model;
}

}  // namespace

TEST_CASE("graph: gradient checks", "[graph]") {
  Rng rng(1);
  SECTION("concat of three branches along channels") {
    check_layer_gradients(*inception(2), random_tensor(Shape{2, 2, 5, 5}, rng));
  }
  SECTION("sum and multiply, a node read by three others") {
    check_layer_gradients(*gated(4), random_tensor(Shape{3, 4}, rng));
  }
  SECTION("the input read twice by one merge, and concat along the last axis") {
    Graph<double> g;
    auto x = g.input();
    auto twice = g.sum({x, x});
    auto d = g.add<nn::Dense<double>>(twice, 3, 2);
    g.concat({d, g.multiply({x, x, x})}, -1);
    check_layer_gradients(g, random_tensor(Shape{4, 3}, rng));
  }
  SECTION("a squeeze-and-excitation gate: products and sums broadcast along dimensions of 1") {
    Graph<double> g;
    auto x = g.input();
    auto features = g.add<nn::Conv2D<double>>(x, 2, 3, nn::Size2{3, 3}, same_padding());
    auto squeezed = g.add<nn::AvgPool2D<double>>(features, nn::Size2{4, 5});  // (N, 3, 1, 1)
    auto gate = g.add<nn::Sigmoid<double>>(g.add<nn::Conv2D<double>>(squeezed, 3, 3, nn::Size2{1, 1}));
    g.sum({g.multiply({features, gate}), gate});
    check_layer_gradients(g, random_tensor(Shape{2, 2, 4, 5}, rng));
    Tensor<double> in = random_tensor(Shape{2, 2, 4, 5}, rng), out;
    g.forward(in, out, Mode::eval);
    CHECK(out.shape() == Shape{2, 3, 4, 5});
  }
  SECTION("a residual block inside a graph, a graph inside a residual block") {
    auto inner = gated(4);
    nn::Residual<double> block;
    block.add(std::move(inner));
    block.add<nn::Tanh<double>>();
    Graph<double> g;
    auto x = g.input();
    auto r = g.add(x, std::make_unique<nn::Residual<double>>(std::move(block)));
    g.concat({r, g.add<nn::Dense<double>>(x, 4, 2)});
    check_layer_gradients(g, random_tensor(Shape{3, 4}, rng));
  }
}

TEST_CASE("graph: forward by hand, names, parameters", "[graph]") {
  Sequential<double> model(Shape{4}, 3);
  model.add<nn::Dense<double>>(4, 4);
  model.add(gated(4));
  auto& g = dynamic_cast<Graph<double>&>(model.layer("graph_1"));
  CHECK(g.layer(Graph<double>::Node{1}).name() == "graph_1.dense_1");
  CHECK(&model.layer("graph_1.sigmoid_1") == &g.layer(Graph<double>::Node{5}));
  CHECK(g.node_name(g.output()) == "sum_1");
  CHECK(g.op(Graph<double>::Node{6}) == Graph<double>::Op::multiply);
  CHECK(g.config() == "5 layers, 2 merges");
  std::vector<std::string> names;
  for (Parameter<double>* p : model.parameters()) names.push_back(p->name);
  CHECK(names == std::vector<std::string>{"dense_1.weight", "dense_1.bias", "graph_1.dense_1.weight",
                                          "graph_1.dense_1.bias", "graph_1.dense_2.weight", "graph_1.dense_2.bias",
                                          "graph_1.dense_3.weight", "graph_1.dense_3.bias"});

  Rng rng(2);
  const Tensor<double> x = random_tensor(Shape{5, 4}, rng);
  model.forward(x);
  const Tensor<double>& in = model.output(0);
  Tensor<double> h1, h2, h3, s, gate;
  model.layer("graph_1.dense_1").forward(in, h1, Mode::eval);
  model.layer("graph_1.tanh_1").forward(h1, h2, Mode::eval);
  model.layer("graph_1.dense_2").forward(h2, h3, Mode::eval);
  model.layer("graph_1.dense_3").forward(in, s, Mode::eval);
  model.layer("graph_1.sigmoid_1").forward(s, gate, Mode::eval);
  Tensor<double> expected(h3.shape());
  expected.flat() = h3.flat() + s.flat() * gate.flat();
  CHECK(test::max_abs_difference(expected, model.output(1)) < 1e-12);

  SECTION("concat places each input's channels in order") {
    Graph<double> cat;
    auto c0 = cat.input();
    cat.concat({cat.add<nn::ReLU<double>>(c0), cat.add<nn::Tanh<double>>(c0)});
    Tensor<double> image(Shape{2, 1, 2, 2}), out;
    for (index_t i = 0; i < image.size(); ++i) image[i] = double(i) - 3.5;
    cat.forward(image, out, Mode::eval);
    REQUIRE(out.shape() == Shape{2, 2, 2, 2});
    for (index_t n = 0; n < 2; ++n)
      for (index_t p = 0; p < 4; ++p) {
        CHECK(out[n * 8 + p] == std::max(0.0, image[n * 4 + p]));
        CHECK(out[n * 8 + 4 + p] == std::tanh(image[n * 4 + p]));
      }
  }
}

TEST_CASE("graph: hooks fire for the layers inside a graph", "[graph][hooks]") {
  Sequential<double> model = gated_classifier(2, 3);
  Rng rng(5);
  const Tensor<double> x = random_tensor(Shape{3, 4}, rng);
  std::vector<std::string> forward_names, backward_names;
  HookHandle f = model.add_forward_hook([&](const ForwardEvent<double>& e) { forward_names.push_back(e.name); });
  HookHandle b = model.add_backward_hook([&](const BackwardEvent<double>& e) { backward_names.push_back(e.name); });
  const Tensor<double> out = model.forward(x, Mode::train);
  CHECK(forward_names == std::vector<std::string>{"graph_1.dense_1", "graph_1.tanh_1", "graph_1.dense_2",
                                                  "graph_1.dense_3", "graph_1.sigmoid_1", "graph_1.multiply_1",
                                                  "graph_1.sum_1", "graph_1", "dense_1"});
  model.backward(Tensor<double>(out.shape(), 1.0), true);
  CHECK(backward_names == std::vector<std::string>{"dense_1", "graph_1.sum_1", "graph_1.multiply_1",
                                                   "graph_1.sigmoid_1", "graph_1.dense_3", "graph_1.dense_2",
                                                   "graph_1.tanh_1", "graph_1.dense_1", "graph_1"});
  const Tensor<double> plain_dx = model.input_grad();
  f.remove();
  b.remove();

  SECTION("a modifying hook inside a graph acts as zeroing that unit's weights would") {
    Sequential<double> twin = gated_classifier(2, 3);
    HookHandle zero =
        model.add_modifying_forward_hook("graph_1.dense_3", [](const ForwardEvent<double>&, Tensor<double>& y) {
          for (index_t n = 0; n < y.dim(0); ++n) y.data()[n * y.dim(1) + 2] = 0;
        });
    auto& dense = dynamic_cast<nn::Dense<double>&>(twin.layer("graph_1.dense_3"));
    dense.weight().value.matrix().row(2).setZero();
    dense.bias().value[2] = 0;
    CHECK(test::max_abs_difference(model.forward(x), twin.forward(x)) < 1e-12);
  }
  SECTION("recorders see every layer node; hooks leave gradients unchanged") {
    inspect::ActivationStats<double> stats(model);
    inspect::GradientFlow<double> flow(model);
    model.forward(x, Mode::train);
    model.backward(Tensor<double>(out.shape(), 1.0), true);
    CHECK(test::max_abs_difference(model.input_grad(), plain_dx) == 0.0);
    CHECK(stats.series("graph_1.sigmoid_1").records.size() == 1);
    CHECK(stats.series("graph_1.sigmoid_1").records.back().min > 0);
    CHECK(flow.parameter("graph_1.dense_3.weight").records.back().grad_norm > 0);
    // A merge is a node like any: its output is recorded, and it is the graph's.
    CHECK(stats.series("graph_1.sum_1").records.back().mean == Approx(stats.series("graph_1").records.back().mean));
    CHECK(flow.layer("graph_1.multiply_1").records.size() == 1);
  }
  SECTION("a merge's hooks show its first input and its output; a modifying hook patches the merge") {
    Tensor<double> seen_input, seen_output;
    HookHandle look = model.add_forward_hook("graph_1.multiply_1", [&](const ForwardEvent<double>& e) {
      seen_input = e.input;
      seen_output = e.output;
    });
    HookHandle zero = model.add_modifying_forward_hook(
        "graph_1.sum_1", [](const ForwardEvent<double>&, Tensor<double>& y) { y.fill(0.0); });
    const Tensor<double> y = model.forward(x);
    Tensor<double> dense3, gate, product(seen_output.shape());
    model.layer("graph_1.dense_3").forward(x, dense3, Mode::eval);
    model.layer("graph_1.sigmoid_1").forward(dense3, gate, Mode::eval);
    product.flat() = dense3.flat() * gate.flat();
    CHECK(test::max_abs_difference(seen_input, dense3) < 1e-12);
    CHECK(test::max_abs_difference(seen_output, product) < 1e-12);
    // The graph's output is zero, so the model's is the last layer's bias.
    const Tensor<double>& bias = model.layer("dense_1").parameters()[1]->value;
    for (index_t n = 0; n < y.dim(0); ++n)
      for (index_t k = 0; k < 2; ++k) CHECK(y[n * 2 + k] == bias[k]);
  }
}

TEST_CASE("graph: errors name the graph and the node", "[graph]") {
  Graph<float> g;
  auto x = g.input();
  auto a = g.add<nn::Dense<float>>(x, 4, 3);
  auto b = g.add<nn::Dense<float>>(x, 4, 2);
  CHECK_THROWS_WITH(g.sum({a}), Contains("sum needs at least two inputs"));
  CHECK_THROWS_WITH(g.concat({a, b}, 0), Contains("would mix samples"));
  CHECK_THROWS_WITH(g.add(Graph<float>::Node{42}, std::make_unique<nn::ReLU<float>>()),
                    Contains("add names node 42, but the graph has 3 nodes"));
  CHECK_THROWS_WITH(g.add(a, std::make_unique<nn::ReLU<float>>(), "dense_1"), Contains("'dense_1' already exists"));
  CHECK_THROWS_WITH(g.add(a, std::make_unique<nn::ReLU<float>>(), "input"), Contains("'input' already exists"));
  auto sum = g.sum({a, b});
  CHECK_THROWS_WITH(g.output_shape(Shape{1, 4}),
                    Contains("sum_1: input 2 ('dense_2') has shape (1, 2) but input 1 ('dense_1') (1, 3)") &&
                        Contains("equal or 1 (broadcast)"));
  g.set_output(a);
  CHECK_THROWS_WITH(g.output_shape(Shape{1, 4}), Contains("node 'dense_2' does not lead to the output 'dense_1'"));
  g.set_output(sum);
  g.set_output(g.concat({a, b}, 3));
  CHECK_THROWS_WITH(g.output_shape(Shape{1, 4}), Contains("does not lead to the output 'concat_1'"));

  Graph<float> wide;
  auto w = wide.concat({wide.input(), wide.input()}, 2);
  CHECK_THROWS_WITH(wide.output_shape(Shape{1, 4}), Contains("concat_1: axis 2 is not a non-batch axis of its rank-2"));
  (void)w;
  Graph<float> empty;
  CHECK_THROWS_WITH(empty.output_shape(Shape{1, 4}), Contains("the graph has no nodes"));

  Sequential<float> model(Shape{5});
  auto owned = std::make_unique<Graph<float>>();
  Graph<float>& ref = *owned;
  ref.sum({ref.add<nn::Dense<float>>(ref.input(), 4, 3), ref.input()});
  CHECK_THROWS_WITH(model.add(std::move(owned)), Contains("graph_1.dense_1: input has 5 features"));
  Sequential<float> fits(Shape{4});
  auto good = std::make_unique<Graph<float>>();
  Graph<float>& kept = *good;
  kept.sum({kept.add<nn::Dense<float>>(kept.input(), 4, 4), kept.input()});
  fits.add(std::move(good));
  CHECK_THROWS_WITH(kept.sum({kept.input(), kept.input()}),
                    Contains("graph_1: a graph cannot change once it is in a model"));
}

TEST_CASE("graph: checkpoints keep the wiring, names and values", "[graph][checkpoint]") {
  Sequential<float> model(Shape{2, 6, 6}, 7);
  model.add<nn::Conv2D<float>>(2, 3, nn::Size2{3, 3});
  auto g = std::make_unique<Graph<float>>();
  auto x = g->input();
  auto a = g->add<nn::Conv2D<float>>(x, 3, 2, nn::Size2{1, 1});
  auto b = g->add(x, std::make_unique<nn::BatchNorm<float>>(3), "norm");
  b = g->add<nn::Conv2D<float>>(b, 3, 2, nn::Size2{1, 1});
  auto gate = g->add<nn::Sigmoid<float>>(b);
  g->set_output(g->concat({g->sum({a, b}), g->multiply({a, gate}), x}, -3));
  model.add(std::move(g));
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(7 * 16, 3);
  Rng rng(3);
  const Tensor<float> batch = test::cast<float>(random_tensor(Shape{4, 2, 6, 6}, rng));
  model.forward(batch, Mode::train);  // moves the running statistics off their start

  const std::string path = (std::filesystem::temp_directory_path() / "glassbox_graph_test.gbck").string();
  io::save_checkpoint(model, path);
  io::Checkpoint<float> loaded = io::load_checkpoint<float>(path);
  auto& back = dynamic_cast<Graph<float>&>(loaded.model.layer("graph_1"));
  CHECK(back.node_count() == 8);
  CHECK(back.node_name(back.output()) == "concat_1");
  CHECK(back.axis(back.output()) == -3);
  CHECK(loaded.model.layer("graph_1.norm").kind() == "batch_norm");
  const Tensor<float> expected = model.forward(batch);
  const Tensor<float>& restored = loaded.model.forward(batch);
  REQUIRE(restored.shape() == expected.shape());
  CHECK(std::equal(restored.begin(), restored.end(), expected.begin()));

  SECTION("wiring that points forward, or at a layer the file does not hold, is refused") {
    io::LayerSpec spec = io::describe(model.layer("graph_1"));
    for (auto& [key, value] : spec.fields)
      if (key == "3.input_0") value = 5;
    CHECK_THROWS_WITH(io::make_layer<float>(spec, "file.gbck"),
                      Contains("file.gbck, layer 'graph_1' (graph), field '3.input_0': 5 is not an integer in [0, 2]"));
    spec = io::describe(model.layer("graph_1"));
    spec.children.pop_back();
    CHECK_THROWS_WITH(io::make_layer<float>(spec, "file.gbck"), Contains("field '7.op': names child 7 of 6"));
    spec = io::describe(model.layer("graph_1"));
    spec.children[4].kind = "concat";
    CHECK_THROWS_WITH(io::make_layer<float>(spec, "file.gbck"),
                      Contains("field '5.op': is a sum, but its child 'sum_1' is a concat"));
  }
}

TEST_CASE("graph: diagrams draw every node and edge; pruning reaches inside, int8 refuses by name", "[graph][viz]") {
  Sequential<float> model = test::graph_model();
  const std::string dot = viz::to_dot(model);
  CHECK_THAT(dot, Contains("subgraph cluster_layer1 {") && Contains("label=\"graph_1 (graph)\""));
  CHECK_THAT(dot, Contains("layer1_1 [label=\"graph_1.conv2d_1 (conv2d)\\n(N, 3, 6, 6)\\n15 parameters\"]"));
  CHECK_THAT(dot,
             Contains("layer1_8 [shape=ellipse") && Contains("label=\"graph_1.concat_1 (concat)\\n(N, 10, 6, 6)\"]"));
  for (const char* edge :
       {"layer0 -> layer1_1;", "layer0 -> layer1_2;", "layer1_1 -> layer1_8;", "layer1_4 -> layer1_8;",
        "layer1_7 -> layer1_8;", "layer1_5 -> layer1_7;", "layer1_6 -> layer1_7;", "layer1_11 -> layer2;"})
    CHECK_THAT(dot, Contains(edge));

  const std::string svg = viz::to_svg_diagram(model);
  CHECK_THAT(svg, Contains("data-layer=\"graph_1\"><title>graph_1 (graph): output (N, 4, 6, 6)"));
  CHECK_THAT(svg, Contains(">graph_1.concat_1 (concat)</text>") &&
                      Contains(">from conv2d_1, residual_1, multiply_1</text>") && Contains(">from input</text>"));
  CHECK_THAT(svg, Contains("data-layer=\"graph_1.residual_1\""));

  std::vector<std::string> pruned;
  for (Parameter<float>* p : prune::weights(model)) pruned.push_back(p->name);
  CHECK(pruned == std::vector<std::string>{"conv2d_1.weight", "graph_1.conv2d_1.weight", "graph_1.conv2d_2.weight",
                                           "graph_1.residual_1.conv2d_1.weight", "graph_1.conv2d_3.weight",
                                           "dense_1.weight"});
  prune::magnitude(prune::weights(model), 0.5, prune::Scope::global);
  const Parameter<float>& inner = *model.layer("graph_1.residual_1.conv2d_1").parameters()[0];
  REQUIRE(inner.has_mask());
  Tensor<float> x(Shape{2, 1, 6, 6}, 0.5f);
  CHECK_THROWS_WITH(quant::calibrate(model, x), Contains("graph_1 (graph) has no int8 kernel"));
}

TEST_CASE("graph: diagrams draw declared inputs; recorders and attributions work on packed inputs", "[graph][viz]") {
  Sequential<float> model = test::two_inputs_model();
  const std::string dot = viz::to_dot(model);
  CHECK_THAT(dot, Contains("layer0_1 [shape=box") && Contains("label=\"image (input)\\n(N, 1, 6, 6)\"]"));
  CHECK_THAT(dot, Contains("layer0_2 -> layer0_6;"));  // meta -> its dense
  const std::string svg = viz::to_svg_diagram(model);
  CHECK_THAT(svg, Contains(">meta (input)</text>") && Contains(">from meta</text>"));

  // Integrated Gradients over the packed input: completeness holds, and each
  // input's share is its part of the attribution.
  Rng rng(6);
  const Tensor<float> x = test::cast<float>(random_tensor(Shape{2, 40}, rng));
  inspect::IntegratedGradientsOptions options;
  options.steps = 256;  // ReLU and max pooling bend the path: the integral converges, not exactly
  inspect::IntegratedGradients<float> ig(model, options);
  const Tensor<float> attribution = ig.attribute(x, std::vector<index_t>{0, 4});  // digit 0; aux's second
  const Tensor<float> y = model.predict(x), y0 = model.predict(Tensor<float>(x.shape(), 0.0f));
  const std::vector<Tensor<float>> parts = unpack(attribution, {Shape{1, 6, 6}, Shape{4}});
  CHECK(parts[0].shape() == Shape{2, 1, 6, 6});
  for (index_t n = 0; n < 2; ++n) {
    const index_t target = n == 0 ? 0 : 4;
    double image = 0, meta = 0;
    for (index_t i = 0; i < 36; ++i) image += parts[0][n * 36 + i];
    for (index_t i = 0; i < 4; ++i) meta += parts[1][n * 4 + i];
    CHECK(image + meta == Approx(y[n * 5 + target] - y0[n * 5 + target]).margin(1e-2));
    if (target == 4) CHECK(image == 0);  // aux reads the features alone
  }
}

TEST_CASE("graph: attributions see through the graph (Integrated Gradients' completeness)", "[graph][attribution]") {
  Sequential<double> model = gated_classifier(3, 5);
  Rng rng(8);
  const Tensor<double> x = random_tensor(Shape{3, 4}, rng);
  const std::vector<index_t> targets{0, 2, 1};
  inspect::IntegratedGradientsOptions options;
  options.rule = inspect::IntegrationRule::gauss_legendre;
  options.steps = 64;
  inspect::IntegratedGradients<double> ig(model, options);
  const Tensor<double> attribution = ig.attribute(x, targets);
  // Completeness: attributions sum to f(x) - f(baseline), the baseline being 0.
  const Tensor<double> at_x = model.predict(x), at_zero = model.predict(Tensor<double>(x.shape(), 0.0));
  for (index_t n = 0; n < 3; ++n) {
    double sum = 0;
    for (index_t k = 0; k < 4; ++k) sum += attribution.matrix()(n, k);
    const auto t = targets[static_cast<std::size_t>(n)];
    CHECK(sum == Approx(at_x.matrix()(n, t) - at_zero.matrix()(n, t)).margin(1e-9));
  }
  for (double d : ig.convergence_delta()) CHECK(std::abs(d) < 1e-9);
}

TEST_CASE("graph: several inputs and outputs, packed; gradients, values by hand, training", "[graph]") {
  SECTION("inputs a (2) and b (1); outputs a * b and tanh(b), by hand") {
    Graph<double> g;
    auto a = g.input(Shape{2}, "a");
    auto b = g.input(Shape{1}, "b");
    g.set_outputs({g.multiply({a, b}, "product"), g.add<nn::Tanh<double>>(b)});
    CHECK(g.packed_input_shape() == Shape{3});
    const Tensor<double> x =
        pack<double>({Tensor<double>(Shape{2, 2}, {1, 2, 3, 4}), Tensor<double>(Shape{2, 1}, {0.5, -2})});
    CHECK(std::vector<double>(x.begin(), x.end()) == std::vector<double>{1, 2, 0.5, 3, 4, -2});
    Tensor<double> y;
    g.forward(x, y, Mode::eval);
    REQUIRE(y.shape() == Shape{2, 3});
    const std::vector<Tensor<double>> parts = unpack(y, {Shape{2}, Shape{1}});
    CHECK(std::vector<double>(parts[0].begin(), parts[0].end()) == std::vector<double>{0.5, 1, -6, -8});
    CHECK(parts[1][0] == Approx(std::tanh(0.5)));
    CHECK(parts[1][1] == Approx(std::tanh(-2.0)));
    CHECK(g.output_shapes(x.shape()) == std::vector<Shape>{Shape{2, 2}, Shape{2, 1}});
    // d(sum of outputs)/db = a0 + a1 + 1 - tanh(b)^2; d/da = b.
    Tensor<double> dx;
    g.backward(x, y, Tensor<double>(y.shape(), {1, 1, 1, 1, 1, 1}), &dx);
    CHECK(dx[0] == 0.5);
    CHECK(dx[1] == 0.5);
    CHECK(dx[2] == Approx(3 + 1 - std::pow(std::tanh(0.5), 2)));
    CHECK(dx[3] == -2);

    // A declared input may itself be the output: its gradient is the output's.
    Graph<double> same;
    same.set_output(same.input(Shape{2}, "only"));
    const Tensor<double> pair(Shape{1, 2}, {3, 4});
    Tensor<double> out, back;
    same.forward(pair, out, Mode::eval);
    same.backward(pair, out, Tensor<double>(Shape{1, 2}, {5, 6}), &back);
    CHECK(std::vector<double>(out.begin(), out.end()) == std::vector<double>{3, 4});
    CHECK(std::vector<double>(back.begin(), back.end()) == std::vector<double>{5, 6});
  }
  SECTION("gradient check: an image and features, two heads, one reading both inputs") {
    Rng rng(5);
    Graph<double> g;
    auto image = g.input(Shape{1, 4, 4}, "image");
    auto meta = g.input(Shape{5}, "meta");
    auto features = g.add<nn::Conv2D<double>>(image, 1, 2, nn::Size2{3, 3}, same_padding());
    features = g.add<nn::Flatten<double>>(g.add<nn::Tanh<double>>(features));
    auto logits = g.sum({g.add<nn::Dense<double>>(features, 32, 3), g.add<nn::Dense<double>>(meta, 5, 3)});
    auto aux = g.add<nn::Dense<double>>(g.concat({features, meta}), 37, 2);
    g.set_outputs({logits, g.add<nn::Sigmoid<double>>(aux)});
    check_layer_gradients(g, random_tensor(Shape{3, 21}, rng));
  }
  SECTION("a model of two inputs learns the weights of each (fit on packed inputs)") {
    auto g = std::make_unique<Graph<double>>();
    auto a = g->input(Shape{3}, "a");
    auto b = g->input(Shape{2}, "b");
    g->sum({g->add<nn::Dense<double>>(a, 3, 1), g->add<nn::Dense<double>>(b, 2, 1)});
    Sequential<double> model(g->packed_input_shape(), 4);
    auto& graph = static_cast<Graph<double>&>(model.add(std::move(g)));
    Rng rng(8);
    const index_t n = 400;
    Tensor<double> xa(Shape{n, 3}), xb(Shape{n, 2}), y(Shape{n, 1});
    for (index_t i = 0; i < n; ++i) {
      for (double* v : {&xa[i * 3], &xa[i * 3 + 1], &xa[i * 3 + 2], &xb[i * 2], &xb[i * 2 + 1]}) *v = rng.normal();
      y[i] = 1.5 * xa[i * 3] - 2 * xa[i * 3 + 1] + 0.25 * xa[i * 3 + 2] + 0.75 * xb[i * 2] - xb[i * 2 + 1] + 0.5;
    }
    optim::SGD<double> sgd(model.parameters(), 0.1);
    train::fit(model, sgd, nn::MSELoss<double>(), pack<double>({xa, xb}), y, test::quiet_fit<double>(150, n));
    const auto& wa = dynamic_cast<nn::Dense<double>&>(graph.layer(Graph<double>::Node{3})).weight().value;
    const auto& wb = dynamic_cast<nn::Dense<double>&>(graph.layer(Graph<double>::Node{4})).weight().value;
    CHECK(wa[0] == Approx(1.5).margin(0.01));
    CHECK(wa[1] == Approx(-2).margin(0.01));
    CHECK(wa[2] == Approx(0.25).margin(0.01));
    CHECK(wb[0] == Approx(0.75).margin(0.01));
    CHECK(wb[1] == Approx(-1).margin(0.01));
  }
  SECTION("errors name the graph, the inputs and the shapes") {
    Graph<double> g;
    auto a = g.input(Shape{2}, "a");
    g.add<nn::Tanh<double>>(a);
    Tensor<double> y;
    CHECK_THROWS_WITH(g.forward(Tensor<double>(Shape{1, 3}), y, Mode::eval),
                      Contains("graph: its inputs a (2) pack to (batch, 2); got input (1, 3)"));
    CHECK_THROWS_WITH(g.set_outputs({a, a}), Contains("node 'a' is listed twice as an output"));
    CHECK_THROWS_WITH(g.input(Shape{0}), Contains("input shape (0) needs rank >= 1"));
    Graph<double> raw;
    auto c = raw.input(Shape{2}, "c");
    raw.sum({c, raw.input()});
    CHECK_THROWS_WITH(raw.output_shape(Shape{1, 2}), Contains("reads them, not input()"));
    Graph<double> unused;
    unused.input(Shape{2}, "first");
    unused.add<nn::Tanh<double>>(unused.input(Shape{2}, "second"));
    CHECK_THROWS_WITH(unused.output_shape(Shape{1, 4}), Contains("node 'first' does not lead to the output"));
    CHECK_THROWS_WITH(pack<double>({Tensor<double>(Shape{2, 1}), Tensor<double>(Shape{3, 1})}),
                      Contains("pack: tensor 2 has shape (3, 1)"));
    CHECK_THROWS_WITH(unpack(Tensor<double>(Shape{2, 3}), {Shape{2}, Shape{2}}),
                      Contains("unpack: 2 parts of 4 values per sample in all, but the tensor has shape (2, 3)"));
  }
}

TEST_CASE("graph: a checkpoint keeps declared inputs and several outputs", "[graph][checkpoint]") {
  auto g = std::make_unique<Graph<float>>();
  auto image = g->input(Shape{1, 3, 3}, "image");
  auto meta = g->input(Shape{2}, "meta");
  auto flat = g->add<nn::Flatten<float>>(g->add<nn::Conv2D<float>>(image, 1, 2, nn::Size2{2, 2}));
  g->set_outputs({g->add<nn::Dense<float>>(g->concat({flat, meta}), 10, 3), g->add<nn::Dense<float>>(meta, 2, 1)});
  Sequential<float> model(g->packed_input_shape(), 3);
  model.add(std::move(g));
  const std::string path = (std::filesystem::temp_directory_path() / "glassbox_graph_io_test.gbck").string();
  io::save_checkpoint(model, path);
  io::Checkpoint<float> loaded = io::load_checkpoint<float>(path);
  auto& back = dynamic_cast<Graph<float>&>(loaded.model.layer("graph_1"));
  REQUIRE(back.declared_inputs().size() == 2);
  CHECK(back.node_name(back.declared_inputs()[1]) == "meta");
  CHECK(back.input_sample(back.declared_inputs()[0]) == Shape{1, 3, 3});
  CHECK(back.outputs().size() == 2);
  Rng rng(2);
  const Tensor<float> x = test::cast<float>(random_tensor(Shape{4, 11}, rng));
  const Tensor<float> expected = model.predict(x), restored = loaded.model.predict(x);
  REQUIRE(restored.shape() == Shape{4, 4});
  CHECK(std::equal(restored.begin(), restored.end(), expected.begin()));

  io::LayerSpec spec = io::describe(model.layer("graph_1"));
  spec.children[1].kind = "dense";
  CHECK_THROWS_WITH(io::make_layer<float>(spec, "file.gbck"),
                    Contains("field '2.op': is an input, but its child 'meta' is a dense"));
}

TEST_CASE("graph: two outputs train together under MultiOutputLoss", "[graph][train]") {
  SECTION("the loss is the weighted sum of each output's, and so is its gradient") {
    nn::MultiOutputLoss<double> loss;
    loss.add<nn::SoftmaxCrossEntropy<double>>(Shape{3}, Shape{}).add<nn::MSELoss<double>>(Shape{2}, Shape{2}, 0.25);
    CHECK(loss.name() == "multi_output(softmax_cross_entropy, mse)");
    Rng rng(3);
    const Tensor<double> logits = random_tensor(Shape{4, 3}, rng), values = random_tensor(Shape{4, 2}, rng);
    const Tensor<double> labels(Shape{4}, {0, 2, 1, 2}), wanted = random_tensor(Shape{4, 2}, rng);
    Tensor<double> grad, grad_ce, grad_mse;
    const double total = loss.forward(pack<double>({logits, values}), pack<double>({labels, wanted}), &grad);
    const double ce = nn::SoftmaxCrossEntropy<double>().forward(logits, labels, &grad_ce);
    const double mse = nn::MSELoss<double>().forward(values, wanted, &grad_mse);
    CHECK(total == Approx(ce + 0.25 * mse).epsilon(1e-14));
    const std::vector<Tensor<double>> parts = unpack(grad, {Shape{3}, Shape{2}});
    for (index_t i = 0; i < 12; ++i) CHECK(parts[0][i] == grad_ce[i]);
    for (index_t i = 0; i < 8; ++i) CHECK(parts[1][i] == Approx(0.25 * grad_mse[i]).epsilon(1e-15));
    CHECK(loss.tally(pack<double>({logits, values}), pack<double>({labels, wanted})).total == 4);
    CHECK_THROWS_WITH(loss.forward(logits, labels, nullptr),
                      Contains("expects packed outputs (N, 5) and targets (N, 3), got (4, 3) and (4)"));
  }
  SECTION("a class and a value from one input: both heads learn") {
    auto g = std::make_unique<Graph<float>>();
    auto x = g->input();
    auto hidden = g->add<nn::Tanh<float>>(g->add<nn::Dense<float>>(x, 4, 16));
    g->set_outputs({g->add<nn::Dense<float>>(hidden, 16, 3), g->add<nn::Dense<float>>(x, 4, 1)});
    Sequential<float> model(Shape{4}, 11);
    model.add(std::move(g));
    Rng rng(12);
    const index_t n = 600;
    Tensor<float> xs(Shape{n, 4}), labels(Shape{n}), values(Shape{n, 1});
    for (index_t i = 0; i < n; ++i) {
      float v[4];
      for (float& f : v) f = static_cast<float>(rng.normal());
      std::copy(v, v + 4, xs.data() + i * 4);
      const float score[3] = {v[0] + v[1], v[2] - v[0], -v[1] - v[3]};
      labels[i] = static_cast<float>(std::max_element(score, score + 3) - score);
      values[i] = 0.5f * v[0] - v[2] + 0.25f * v[3];
    }
    nn::MultiOutputLoss<float> loss;
    loss.add<nn::SoftmaxCrossEntropy<float>>(Shape{3}, Shape{}).add<nn::MSELoss<float>>(Shape{1}, Shape{1}, 0.5f);
    optim::Adam<float> adam(model.parameters(), 0.01f);
    const train::History h =
        train::fit(model, adam, loss, xs, pack<float>({labels, values}), test::quiet_fit<float>(40, 32));
    CHECK(h.last().accuracy > 0.93);  // the first output's
    const std::vector<Tensor<float>> out = unpack(model.predict(xs), {Shape{3}, Shape{1}});
    double squared = 0;
    for (index_t i = 0; i < n; ++i) squared += std::pow(out[1][i] - values[i], 2);
    CHECK(squared / n < 1e-3);
  }
}
