// io/onnx_import.hpp: what glassbox exports comes back bit for bit with its
// names; the importer's op mapping (GELU by evaluation, residual blocks,
// MatMul + Add, Gemm's transposes and scales, Reshape); and hostile files
// (truncated, wrong types, absurd sizes, cycles, missing tensors, unknown ops
// and attributes) give a glassbox::Error naming the node or field, never a
// crash. PyTorch's own exports are checked by ctest's onnx_import.
#include <filesystem>
#include <glassbox/io/checkpoint.hpp>
#include <glassbox/io/onnx.hpp>
#include <glassbox/io/onnx_import.hpp>
#include <optional>

#include "checkpoint_models.hpp"
#include "support.hpp"

using namespace glassbox;
using Catch::Matchers::Contains;

namespace {

using io::onnx_detail::attribute_float;
using io::onnx_detail::attribute_int;
using io::onnx_detail::attribute_ints;
using io::onnx_detail::Proto;

// Hand-built ONNX files, field by field (onnx.proto's numbers), so that each
// test can break exactly one thing.
class OnnxFile {
 public:
  OnnxFile& input(const std::string& name, const std::vector<std::int64_t>& dims, int elem_type = 1) {
    builder_.graph().message(11, value_info(name, dims, elem_type));
    return *this;
  }
  OnnxFile& output(const std::string& name) {
    builder_.graph().message(12, value_info(name, {}, 1));
    return *this;
  }
  OnnxFile& node(const std::string& op, const std::vector<std::string>& inputs, const std::string& output,
                 const std::string& name, const std::vector<Proto>& attributes = {}) {
    return node(op, inputs, std::vector<std::string>{output}, name, attributes);
  }
  OnnxFile& node(const std::string& op, const std::vector<std::string>& inputs, const std::vector<std::string>& outputs,
                 const std::string& name, const std::vector<Proto>& attributes = {}) {
    builder_.node(op, inputs, outputs, name, attributes);
    return *this;
  }
  OnnxFile& initializer(const std::string& name, const std::vector<std::int64_t>& dims,
                        const std::vector<float>& values, int data_type = 1) {
    Proto t;
    for (const std::int64_t d : dims) t.int64(1, d);
    t.varint(2, static_cast<std::uint64_t>(data_type)).bytes(8, name);
    t.bytes(9, std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
    builder_.graph().message(5, t);
    return *this;
  }
  OnnxFile& int64_initializer(const std::string& name, const std::vector<std::int64_t>& values) {
    builder_.int64s(name, values);
    return *this;
  }
  OnnxFile& raw_initializer(const Proto& tensor) {
    builder_.graph().message(5, tensor);
    return *this;
  }
  OnnxFile& opset(int version) {
    opset_ = version;
    return *this;
  }
  std::string bytes() {
    Proto m;
    m.int64(1, 8).message(7, builder_.graph()).message(8, Proto().bytes(1, "").int64(2, opset_));
    return m.str();
  }

 private:
  static Proto value_info(const std::string& name, const std::vector<std::int64_t>& dims, int elem_type) {
    Proto shape;
    for (const std::int64_t d : dims) shape.message(1, d < 0 ? Proto().bytes(2, "batch") : Proto().int64(1, d));
    Proto tensor;
    tensor.varint(1, static_cast<std::uint64_t>(elem_type)).message(2, shape);
    return Proto().bytes(1, name).message(2, Proto().message(1, tensor));
  }
  io::onnx_detail::GraphBuilder<float> builder_;  // nodes as the export writes them
  int opset_ = 13;
};

// A string attribute (AttributeProto type 3), which the export never writes.
Proto string_attribute(const std::string& name, const std::string& value) {
  Proto a;
  a.bytes(1, name).bytes(4, value).varint(20, 3);
  return a;
}

// x (batch, 3) -> Gemm with a (2, 3) weight and a bias -> y.
OnnxFile gemm_file(std::vector<Proto> attributes = {attribute_int("transB", 1)}) {
  OnnxFile f;
  f.input("x", {-1, 3})
      .output("y")
      .initializer("w", {2, 3}, {1, 2, 3, 4, 5, 6})
      .initializer("b", {2}, {0.5f, -0.5f})
      .node("Gemm", {"x", "w", "b"}, "y", "fc", attributes);
  return f;
}

Sequential<float> import(const std::string& bytes) { return io::onnx_from_bytes<float>(bytes, "test.onnx"); }

Tensor<float> random_input(const Shape& shape, std::uint64_t seed) {
  Rng rng(seed);
  Tensor<float> x(shape);
  for (float& v : x) v = static_cast<float>(rng.normal());
  return x;
}

// Every layer's name, children included, in order.
std::vector<std::string> all_names(Sequential<float>& m) {
  std::vector<std::string> names;
  std::function<void(Layer<float>&)> visit = [&](Layer<float>& l) {
    names.push_back(l.name() + " " + std::to_string(l.parameters().size()));
    for (Layer<float>* child : l.children()) visit(*child);
  };
  for (std::size_t i = 0; i < m.size(); ++i) visit(m.layer(i));
  return names;
}

std::vector<std::string> files_in(const std::string& relative) {
  std::vector<std::string> files;
  const std::string dir = test::data_path(relative);
  if (!std::filesystem::exists(dir)) return files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

TEST_CASE("import_onnx gives back what export_onnx wrote: same names, outputs bit for bit, same file again") {
  Sequential<float> every = test::every_kind_model();
  Rng rng(11);
  for (Parameter<float>* p : every.parameters())
    for (float& v : p->value) v = static_cast<float>(rng.normal() * 0.5);
  for (std::size_t i = 0; i < every.size(); ++i)
    for (auto& [name, buffer] : every.layer(i).buffers())
      for (float& v : *buffer)
        v = static_cast<float>(name.find("var") != std::string::npos ? 0.5 + rng.uniform() : rng.normal());

  for (const int opset : {13, 17}) {
    INFO("opset " << opset);
    const std::string bytes = io::onnx_bytes(every, opset);
    Sequential<float> back = import(bytes);
    CHECK(all_names(back) == all_names(every));
    const Tensor<float> x = random_input(Shape{7, 1, 8, 8}, 5);
    const Tensor<float> expected = every.predict(x), got = back.predict(x);
    REQUIRE(got.shape() == expected.shape());
    for (index_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == expected[i]);
    CHECK(io::onnx_bytes(back, opset) == bytes);
  }

  // An MLP with exact GELU and log-softmax, through a file; in double too.
  Sequential<double> mlp(Shape{6});
  mlp.add<nn::Dense<double>>(6, 5);
  mlp.add<nn::GELU<double>>();
  mlp.add<nn::Dense<double>>(5, 4);
  mlp.add<nn::LogSoftmax<double>>();
  const std::string path = (std::filesystem::temp_directory_path() / "glassbox_test_onnx_mlp.onnx").string();
  io::export_onnx(mlp, path);
  Sequential<double> mlp_back = io::import_onnx<double>(path);
  REQUIRE(mlp_back.size() == 4);
  CHECK(mlp_back.layer(1).kind() == "gelu");
  CHECK(mlp_back.layer(3).kind() == "log_softmax");
  Tensor<double> x(Shape{3, 6});
  Rng r(2);
  for (double& v : x) v = r.normal();
  const Tensor<double> a = mlp.predict(x), b = mlp_back.predict(x);
  for (index_t i = 0; i < a.size(); ++i) CHECK(a[i] == b[i]);
  CHECK_THROWS_WITH(io::import_onnx<float>(path + ".missing"), Contains(".missing") && Contains("cannot open"));
  // LogSoftmax is a built-in kind: checkpoints keep it.
  io::Checkpoint<double> saved = io::checkpoint_from_bytes<double>(io::checkpoint_bytes(mlp_back));
  CHECK(saved.model.layer(3).kind() == "log_softmax");
  CHECK(saved.model.predict(x)[5] == b[5]);
}

TEST_CASE("import_onnx gives a Graph layer back as written, and builds one for other branches") {
  Sequential<float> model = test::graph_model();
  Rng rng(12);
  for (Parameter<float>* p : model.parameters())
    for (float& v : p->value) v = static_cast<float>(rng.normal() * 0.5);
  for (auto& [name, buffer] : model.layer("graph_1").buffers())
    for (float& v : *buffer)
      v = static_cast<float>(name.find("var") != std::string::npos ? 0.5 + rng.uniform() : rng.normal());
  for (const int opset : {13, 17}) {
    INFO("opset " << opset);
    const std::string bytes = io::onnx_bytes(model, opset);
    Sequential<float> back = import(bytes);
    CHECK(all_names(back) == all_names(model));
    auto& graph = dynamic_cast<Graph<float>&>(back.layer("graph_1"));
    CHECK(graph.node_count() == 12);
    CHECK(graph.node_name(graph.output()) == "sum_1");
    const Tensor<float> x = random_input(Shape{5, 1, 6, 6}, 3);
    const Tensor<float> expected = model.predict(x), got = back.predict(x);
    REQUIRE(got.shape() == expected.shape());
    for (index_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == expected[i]);
    CHECK(io::onnx_bytes(back, opset) == bytes);
  }

  // A graph inside a graph, and a product of three (written as two Mul nodes).
  Sequential<float> nested(Shape{5}, 3);
  auto inner = std::make_unique<Graph<float>>();
  inner->concat({inner->add<nn::Dense<float>>(inner->input(), 5, 2), inner->add<nn::Tanh<float>>(inner->input())});
  auto outer = std::make_unique<Graph<float>>();
  const auto a = outer->add(outer->input(), std::move(inner));
  const auto b = outer->add<nn::Dense<float>>(outer->input(), 5, 7);
  outer->multiply({a, b, b});
  nested.add(std::move(outer));
  nested.add<nn::Dense<float>>(7, 2);
  const std::string nested_bytes = io::onnx_bytes(nested, 15);
  Sequential<float> nested_back = import(nested_bytes);
  CHECK(all_names(nested_back) == all_names(nested));
  CHECK(nested_back.layer("graph_1.graph_1.concat_1").kind() == "concat");
  CHECK(io::onnx_bytes(nested_back, 15) == nested_bytes);
  const Tensor<float> probe = random_input(Shape{4, 5}, 6);
  const Tensor<float> nested_expected = nested.predict(probe), nested_got = nested_back.predict(probe);
  for (index_t i = 0; i < nested_got.size(); ++i) REQUIRE(nested_got[i] == nested_expected[i]);

  // A shortcut of two layers (a conv and a batch norm, as PyTorch's ResNet
  // projection is before folding) and a concat along features after it.
  const std::vector<float> w1{0.5f, -1, 2, 1}, bn{1.5f, 0.5f, 0.25f, -0.25f, 0.1f, 0.2f, 1, 2};
  OnnxFile f;
  f.input("x", {-1, 2, 3, 3})
      .output("y")
      .initializer("w1", {2, 2, 1, 1}, w1)
      .initializer("w2", {2, 2, 1, 1}, {1, 0, 0, 1})
      .initializer("scale", {2}, {bn[0], bn[1]})
      .initializer("shift", {2}, {bn[2], bn[3]})
      .initializer("mean", {2}, {bn[4], bn[5]})
      .initializer("var", {2}, {bn[6], bn[7]})
      .node("Conv", {"x", "w1"}, "c", "/block/conv/Conv")
      .node("Relu", {"c"}, "body", "/block/relu/Relu")
      .node("Conv", {"x", "w2"}, "s", "/block/down/down.0/Conv")
      .node("BatchNormalization", {"s", "scale", "shift", "mean", "var"}, "short",
            "/block/down/down.1/BatchNormalization")
      .node("Add", {"body", "short"}, "sum", "/block/Add")
      .node("Concat", {"sum", "x"}, "y", "/Concat", {attribute_int("axis", 1)});
  Sequential<float> branched = import(f.bytes());
  REQUIRE(branched.size() == 1);
  auto* g = dynamic_cast<Graph<float>*>(&branched.layer(0));
  REQUIRE(g);
  // The block, a single-entry single-exit part, is a graph of its own inside the outer one.
  CHECK(g->name() == "Concat");
  REQUIRE(g->children().size() == 2);
  CHECK(g->children()[0]->name() == "Concat.block");
  CHECK(g->children()[1]->name() == "Concat.Concat");  // the concat, named after its node
  CHECK(g->children()[0]->children().size() == 4);     // two convs, the batch norm, the sum
  CHECK(branched.layer("Concat.block.block_conv").kind() == "conv2d");
  CHECK(branched.layer("Concat.block.block_down_down_1").kind() == "batch_norm");
  const Tensor<float> x = random_input(Shape{2, 2, 3, 3}, 4);
  const Tensor<float> y = branched.predict(x);
  REQUIRE(y.shape() == Shape{2, 4, 3, 3});
  for (index_t n = 0; n < 2; ++n)
    for (index_t c = 0; c < 2; ++c)
      for (index_t p = 0; p < 9; ++p) {
        const float x0 = x[(n * 2) * 9 + p], x1 = x[(n * 2 + 1) * 9 + p], xc = c == 0 ? x0 : x1;
        const float conv = w1[std::size_t(c * 2)] * x0 + w1[std::size_t(c * 2 + 1)] * x1;
        const float norm =
            (xc - bn[4 + std::size_t(c)]) / std::sqrt(bn[6 + std::size_t(c)] + 1e-5f) * bn[std::size_t(c)] +
            bn[2 + std::size_t(c)];
        CHECK(y[(n * 4 + c) * 9 + p] == Approx(std::max(conv, 0.0f) + norm).margin(1e-5));
        CHECK(y[(n * 4 + 2 + c) * 9 + p] == xc);
      }

  // Merges that broadcast, or that read a constant, are refused by name.
  OnnxFile gate;
  gate.input("x", {-1, 3})
      .output("y")
      .initializer("w", {2, 3}, {1, 2, 3, 4, 5, 6})
      .node("Gemm", {"x", "w"}, "h", "fc", {attribute_int("transB", 1)})
      .node("Mul", {"x", "h"}, "y", "scale");
  CHECK_THROWS_WITH(
      import(gate.bytes()),
      Contains("node 'scale' (Mul): merges (1, 3) with (1, 2); glassbox broadcasts only dimensions of 1"));
  OnnxFile batch_concat;
  batch_concat.input("x", {-1, 3})
      .output("y")
      .node("Relu", {"x"}, "r", "relu")
      .node("Concat", {"x", "r"}, "y", "cat", {attribute_int("axis", 0)});
  CHECK_THROWS_WITH(import(batch_concat.bytes()),
                    Contains("node 'cat' (Concat): attribute 'axis' = 0 is not supported"));
}

TEST_CASE("import_onnx and export_onnx: several inputs and outputs, the model's own", "[graph]") {
  Sequential<float> two = test::two_inputs_model();
  const std::string bytes = io::onnx_bytes(two, 15);
  const io::OnnxModel parsed = io::parse_onnx(bytes, "two.onnx");
  REQUIRE(parsed.inputs.size() == 2);
  CHECK(parsed.inputs[0].name == "image");
  CHECK(parsed.inputs[1].dims == std::vector<std::int64_t>{-1, 4});
  REQUIRE(parsed.outputs.size() == 2);
  CHECK(parsed.outputs[1].name == "graph_1.aux");
  Sequential<float> back = import(bytes);
  CHECK(all_names(back) == all_names(two));
  auto& graph = dynamic_cast<Graph<float>&>(back.layer(0));
  CHECK(graph.node_name(graph.declared_inputs()[1]) == "meta");
  CHECK(graph.outputs().size() == 2);
  const Tensor<float> x = random_input(Shape{5, 40}, 3);
  const Tensor<float> expected = two.predict(x), got = back.predict(x);
  REQUIRE(got.shape() == Shape{5, 5});
  CHECK(std::equal(got.begin(), got.end(), expected.begin()));
  CHECK(io::onnx_bytes(back, 15) == bytes);

  // Layers after a graph of two inputs stay the model's own.
  const auto two_sums = [] {
    auto g = std::make_unique<Graph<float>>();
    auto a = g->input(Shape{30}, "a");
    auto b = g->input(Shape{10}, "b");
    g->concat({g->add<nn::Dense<float>>(a, 30, 4), g->add<nn::Dense<float>>(b, 10, 4)});
    return g;
  };
  Sequential<float> chain(Shape{40}, 2);
  chain.add(two_sums());
  chain.add<nn::Dense<float>>(8, 3);
  chain.add<nn::Softmax<float>>();
  Sequential<float> chain_back = import(io::onnx_bytes(chain));
  CHECK(all_names(chain_back) == all_names(chain));
  const Tensor<float> cx = random_input(Shape{3, 40}, 4);
  const Tensor<float> c_expected = chain.predict(cx), c_got = chain_back.predict(cx);
  CHECK(std::equal(c_got.begin(), c_got.end(), c_expected.begin()));

  // Declared inputs only as the first layer, several outputs only as the last.
  Sequential<float> late(Shape{40});
  late.add<nn::Tanh<float>>();
  late.add(two_sums());
  CHECK_THROWS_WITH(io::onnx_bytes(late),
                    Contains("graph_1 has declared inputs; it exports only as the model's first"));
  Sequential<float> early = test::two_inputs_model();
  early.add<nn::Tanh<float>>();
  CHECK_THROWS_WITH(io::onnx_bytes(early),
                    Contains("graph_1 has several outputs; it exports only as the model's last"));
}

TEST_CASE("import_onnx maps Gemm's transposes and scales, MatMul + Add, Reshape, Squeeze and a residual block") {
  const Tensor<float> x(Shape{2, 3}, {1, 0, -1, 0.5f, 2, 1});
  // Gemm with transB: y = x W^T + b.
  Sequential<float> plain = import(gemm_file().bytes());
  REQUIRE(plain.size() == 1);
  CHECK(plain.layer(0).name() == "fc");
  Tensor<float> y = plain.predict(x);
  CHECK(y[0] == Approx(1 - 3 + 0.5));
  CHECK(y[3] == Approx(4 * 0.5 + 5 * 2 + 6 - 0.5));

  // Without transB the weight is (in, out); alpha and beta scale.
  OnnxFile scaled;
  scaled.input("x", {-1, 3})
      .output("y")
      .initializer("w", {3, 2}, {1, 4, 2, 5, 3, 6})
      .initializer("b", {2}, {0.5f, -0.5f})
      .node("Gemm", {"x", "w", "b"}, "y", "fc", {attribute_float("alpha", 2), attribute_float("beta", 3)});
  y = import(scaled.bytes()).predict(x);
  CHECK(y[0] == Approx(2 * (1 - 3) + 1.5));
  CHECK(y[3] == Approx(2 * (4 * 0.5 + 5 * 2 + 6) - 1.5));

  // MatMul then Add of a bias: one Dense with a bias.
  OnnxFile matmul;
  matmul.input("x", {-1, 3})
      .output("y")
      .initializer("w", {3, 2}, {1, 4, 2, 5, 3, 6})
      .initializer("b", {2}, {0.5f, -0.5f})
      .node("MatMul", {"x", "w"}, "h", "mm")
      .node("Add", {"b", "h"}, "y", "bias");
  Sequential<float> mm = import(matmul.bytes());
  REQUIRE(mm.size() == 1);
  CHECK(mm.layer(0).kind() == "dense");
  CHECK(mm.predict(x)[0] == Approx(1 - 3 + 0.5));

  // Reshape to (batch, -1) flattens; a branch added back to its input is a residual block.
  OnnxFile block;
  block.input("x", {-1, 1, 2, 2})
      .output("y")
      .int64_initializer("shape", {0, -1})
      .node("Reshape", {"x", "shape"}, "flat", "reshape")
      .node("Relu", {"flat"}, "r", "relu")
      .node("Tanh", {"r"}, "t", "tanh")
      .node("Add", {"flat", "t"}, "y", "block");
  Sequential<float> res = import(block.bytes());
  REQUIRE(res.size() == 2);
  CHECK(res.layer(0).kind() == "flatten");
  auto* residual = dynamic_cast<nn::Residual<float>*>(&res.layer(1));
  REQUIRE(residual);
  CHECK(residual->name() == "block");
  CHECK(residual->size() == 2);
  CHECK(!residual->has_projection());
  const Tensor<float> out = res.predict(Tensor<float>(Shape{1, 1, 2, 2}, {-1, 0, 0.5f, 2}));
  CHECK(out[0] == -1);
  CHECK(out[2] == Approx(0.5 + std::tanh(0.5)));

  // The batch read from the tensor's own shape, as PyTorch writes x.view(x.size(0), -1).
  auto view = [](const std::string& shape_of) {
    OnnxFile f;
    f.input("x", {-1, 1, 2, 2})
        .output("y")
        .int64_initializer("zero", {0})
        .int64_initializer("minus_one", {-1})
        .node("Relu", {"x"}, "r", "relu")
        .node("Shape", {shape_of}, "shape", "shape")
        .node("Gather", {"shape", "zero"}, "batch", "batch")
        .node("Concat", {"batch", "minus_one"}, "target", "target", {attribute_int("axis", 0)})
        .node("Reshape", {"r", "target"}, "y", "view");
    return f.bytes();
  };
  Sequential<float> viewed = import(view("r"));
  REQUIRE(viewed.size() == 2);
  CHECK(viewed.layer(1).kind() == "flatten");
  CHECK(viewed.predict(Tensor<float>(Shape{3, 1, 2, 2}, 1.0f)).shape() == Shape{3, 4});
  CHECK_THROWS_WITH(import(view("x")), Contains("node 'view' (Reshape)") &&
                                           Contains("the shape of a tensor other than the one it reshapes"));

  // Other shapes that keep the batch are Reshape layers; Unsqueeze and Squeeze too.
  OnnxFile reshape;
  reshape.input("x", {-1, 4})
      .output("y")
      .int64_initializer("shape", {0, 2, 2})
      .int64_initializer("axes", {1})
      .int64_initializer("first", {1})
      .node("Reshape", {"x", "shape"}, "square", "to_square")
      .node("Unsqueeze", {"square", "axes"}, "deeper", "unsqueeze")
      .node("Squeeze", {"deeper", "first"}, "y", "squeeze");
  Sequential<float> reshaped = import(reshape.bytes());
  REQUIRE(reshaped.size() == 3);
  CHECK(reshaped.layer(0).kind() == "reshape");
  CHECK(reshaped.predict(Tensor<float>(Shape{2, 4}, 1.0f)).shape() == Shape{2, 2, 2});
  const auto refused = [](const std::string& op, const std::vector<std::int64_t>& values) {
    OnnxFile f;
    f.input("x", {-1, 4, 1}).output("y").int64_initializer("k", values).node(op, {"x", "k"}, "y", "node");
    return f.bytes();
  };
  CHECK_THROWS_WITH(import(refused("Reshape", {2, 2, 1})),
                    Contains("node 'node' (Reshape): reshapes (1, 4, 1) to (2, 2, 1) without keeping the batch"));
  CHECK_THROWS_WITH(import(refused("Squeeze", {0})), Contains("axis 0 is the batch"));
  CHECK_THROWS_WITH(import(refused("Squeeze", {1})), Contains("squeezes axis 1 of size 4"));
  CHECK_THROWS_WITH(import(refused("Unsqueeze", {2, 2})),
                    Contains("axis 2 is the batch, out of range for rank 5, or repeated"));
}

TEST_CASE("import_onnx reads recurrent layers back, and refuses what glassbox's cannot compute") {
  Sequential<float> steps = test::recurrent_model(3);
  const Tensor<float> x = random_input(Shape{4, 6, 5}, 9);
  for (const int opset : {13, 17}) {
    const std::string bytes = io::onnx_bytes(steps, opset);
    Sequential<float> back = import(bytes);
    CHECK(all_names(back) == all_names(steps));
    REQUIRE(back.size() == 5);
    CHECK(back.layer(0).kind() == "lstm");
    CHECK(back.layer(1).kind() == "simple_rnn");
    CHECK(back.layer(2).kind() == "gru");
    const Tensor<float> expected = steps.predict(x), got = back.predict(x);
    for (index_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == expected[i]);
    CHECK(io::onnx_bytes(back, opset) == bytes);
  }

  // x (batch, 4 steps, 3) -> Transpose -> GRU (hidden 2) -> Squeeze(Y_h) -> y
  auto gru = [](const std::vector<Proto>& attributes, const std::vector<std::string>& extra_inputs = {}) {
    std::vector<std::string> inputs{"t", "w", "r"};
    inputs.insert(inputs.end(), extra_inputs.begin(), extra_inputs.end());
    OnnxFile f;
    f.input("x", {-1, 4, 3})
        .output("y")
        .initializer("w", {1, 6, 3}, std::vector<float>(18, 0.1f))
        .initializer("r", {1, 6, 2}, std::vector<float>(12, 0.2f))
        .initializer("lengths", {1}, {4})
        .int64_initializer("axis", {0})
        .node("Transpose", {"x"}, "t", "to_time", {attribute_ints("perm", {1, 0, 2})})
        .node("GRU", inputs, std::vector<std::string>{"", "h"}, "gru", attributes)
        .node("Squeeze", {"h", "axis"}, "y", "last");
    return f.bytes();
  };
  Sequential<float> plain = import(gru({attribute_int("linear_before_reset", 1)}));
  REQUIRE(plain.size() == 1);
  CHECK(plain.layer(0).name() == "gru");
  CHECK(plain.predict(Tensor<float>(Shape{1, 4, 3}, 1.0f)).shape() == Shape{1, 2});
  CHECK_THROWS_WITH(import(gru({})), Contains("node 'gru' (GRU): attribute 'linear_before_reset' = 0") &&
                                         Contains("unlike glassbox's and PyTorch's GRU"));
  Proto bidirectional;
  bidirectional.bytes(1, "direction").bytes(4, "bidirectional").varint(20, 3);
  CHECK_THROWS_WITH(import(gru({attribute_int("linear_before_reset", 1), bidirectional})),
                    Contains("attribute 'direction' = 'bidirectional' is not supported"));
  CHECK_THROWS_WITH(import(gru({attribute_int("linear_before_reset", 1)}, {"", "lengths"})),
                    Contains("input 4 (sequence_lens) is not supported"));
}

TEST_CASE("import_onnx recognises GELU from its formula and refuses other elementwise arithmetic") {
  // x * 0.5 * (1 + erf(x / sqrt(2))), in PyTorch's order, with Constant nodes.
  auto constant = [](float v) {
    return std::vector<Proto>{[&] {
      Proto t;
      t.varint(2, 1).bytes(9, std::string(reinterpret_cast<const char*>(&v), 4));
      Proto a;
      a.bytes(1, "value").message(5, t).varint(20, 4);
      return a;
    }()};
  };
  OnnxFile gelu;
  gelu.input("x", {-1, 4})
      .output("y")
      .node("Constant", {}, "sqrt2", "c1", constant(1.41421356f))
      .node("Constant", {}, "one", "c2", constant(1))
      .node("Constant", {}, "half", "c3", constant(0.5f))
      .node("Div", {"x", "sqrt2"}, "d", "/act/Div")
      .node("Erf", {"d"}, "e", "/act/Erf")
      .node("Add", {"e", "one"}, "a", "/act/Add")
      .node("Mul", {"x", "a"}, "m", "/act/Mul")
      .node("Mul", {"m", "half"}, "y", "/act/Mul_1");
  Sequential<float> m = import(gelu.bytes());
  REQUIRE(m.size() == 1);
  CHECK(m.layer(0).kind() == "gelu");
  CHECK(m.layer(0).name() == "act");
  const Tensor<float> y = m.predict(Tensor<float>(Shape{1, 4}, {-1, 0, 1, 2}));
  CHECK(y[2] == Approx(0.8413447));

  // The same nodes with 0.6 for the half: not GELU, so a branch glassbox cannot import.
  OnnxFile other;
  other.input("x", {-1, 4})
      .output("y")
      .node("Constant", {}, "sqrt2", "c1", constant(1.41421356f))
      .node("Constant", {}, "one", "c2", constant(1))
      .node("Constant", {}, "half", "c3", constant(0.6f))
      .node("Div", {"x", "sqrt2"}, "d", "div")
      .node("Erf", {"d"}, "e", "erf")
      .node("Add", {"e", "one"}, "a", "add")
      .node("Mul", {"x", "a"}, "m", "mul")
      .node("Mul", {"m", "half"}, "y", "mul_1");
  // Its Div by a constant is an Affine; the Erf after it has no layer.
  CHECK_THROWS_WITH(import(other.bytes()), Contains("node 'erf' (Erf): this op is not supported"));
}

TEST_CASE("import_onnx reads Add, Sub, Mul and Div of a constant as Affine layers, a scale taking the shift after it") {
  // y = ((x - m) / 4) * c + b on (N, 3): m and b per feature, 4 a scalar, c (1, 3).
  OnnxFile f;
  f.input("x", {-1, 3})
      .output("y")
      .initializer("m", {3}, {1, 2, 3})
      .initializer("four", {}, {4})
      .initializer("c", {1, 3}, {2, -1, 0.5f})
      .initializer("b", {3}, {0.25f, 0, -3})
      .node("Sub", {"x", "m"}, "centred", "/norm/Sub")
      .node("Div", {"centred", "four"}, "scaled", "/norm/Div")
      .node("Mul", {"c", "scaled"}, "weighted", "/head/Mul")
      .node("Add", {"weighted", "b"}, "y", "/head/Add");
  Sequential<float> m = import(f.bytes());
  REQUIRE(m.size() == 3);
  CHECK(all_names(m) == std::vector<std::string>{"norm 1", "affine_2 1", "head 2"});  // name, parameters
  auto& shift = dynamic_cast<nn::Affine<float>&>(m.layer(0));
  auto& divide = dynamic_cast<nn::Affine<float>&>(m.layer(1));
  auto& head = dynamic_cast<nn::Affine<float>&>(m.layer(2));
  CHECK((!shift.options().scale && shift.options().shift && shift.shape() == Shape{3}));
  CHECK((divide.options().scale && !divide.options().shift && divide.shape() == Shape{1}));
  CHECK((head.options().scale && head.options().shift && head.shape() == Shape{3}));
  const Tensor<float> x(Shape{2, 3}, {5, 6, 7, -1, 0, 11});
  const Tensor<float> y = m.predict(x);
  const float mean[] = {1, 2, 3}, c[] = {2, -1, 0.5f}, b[] = {0.25f, 0, -3};
  for (index_t n = 0; n < 2; ++n)
    for (index_t i = 0; i < 3; ++i) CHECK(y[n * 3 + i] == Approx((x[n * 3 + i] - mean[i]) / 4 * c[i] + b[i]));

  // A constant minus the input: a scale of -1 and a shift; on images, per channel.
  OnnxFile flip;
  flip.input("x", {-1, 2, 1, 2})
      .output("y")
      .initializer("one", {1, 2, 1, 1}, {1, 3})
      .node("Sub", {"one", "x"}, "y", "flip");
  Sequential<float> flipped = import(flip.bytes());
  CHECK(dynamic_cast<nn::Affine<float>&>(flipped.layer(0)).shape() == Shape{2, 1, 1});
  const Tensor<float> fy = flipped.predict(Tensor<float>(Shape{1, 2, 1, 2}, {0.5f, 2, 1, -1}));
  CHECK(std::vector<float>(fy.begin(), fy.end()) == std::vector<float>{0.5f, -1, 2, 4});

  // What an Affine cannot be, by name.
  const auto one_node = [](const std::string& op, const std::vector<std::string>& inputs,
                           const std::vector<std::int64_t>& dims, int type = 1) {
    OnnxFile g;
    g.input("x", {-1, 3}).output("y");
    std::size_t size = 1;
    for (const std::int64_t d : dims) size *= static_cast<std::size_t>(d);
    if (type == 1)
      g.initializer("k", dims, std::vector<float>(size));
    else
      g.int64_initializer("k", {2});
    return g.node(op, inputs, "y", "op").bytes();
  };
  CHECK_THROWS_WITH(import(one_node("Div", {"k", "x"}, {})),
                    Contains("node 'op' (Div): divides the constant 'k' by the input"));
  CHECK_THROWS_WITH(import(one_node("Add", {"x", "k"}, {2, 3})),
                    Contains("node 'op' (Add): its constant 'k' of shape (2, 3) does not broadcast over the input "
                             "(1, 3) without changing its shape"));
  CHECK_THROWS_WITH(import(one_node("Mul", {"x", "k"}, {4})), Contains("of shape (4) does not broadcast"));
  CHECK_THROWS_WITH(import(one_node("Add", {"x", "x"}, {})),
                    Contains("node 'op' (Add): combines the computed tensors 'x' and 'x'"));
  CHECK_THROWS_WITH(import(one_node("Mul", {"x", "k"}, {1}, 7)), Contains("constant 'k' has element type 7"));
}

TEST_CASE("import_onnx reads opsets 18 to 21: Gelu's op (20) in both forms") {
  for (const std::string form : {"none", "tanh"}) {
    OnnxFile f;
    f.input("x", {-1, 3})
        .output("y")
        .node("Gelu", {"x"}, "y", "gelu", {string_attribute("approximate", form)})
        .opset(20);
    Sequential<float> m = import(f.bytes());
    REQUIRE(m.size() == 1);
    auto* gelu = dynamic_cast<nn::GELU<float>*>(&m.layer(0));
    REQUIRE(gelu);
    CHECK((gelu->approximation() == nn::GELU<float>::Approximation::tanh) == (form == "tanh"));
    const Tensor<float> y = m.predict(Tensor<float>(Shape{1, 3}, {-1, 0.5f, 2}));
    const double exact = 0.5 * (1 + std::erf(2 / std::sqrt(2.0))) * 2;
    CHECK(y[2] == Approx(exact).epsilon(form == "tanh" ? 1e-3 : 1e-6));
  }
  OnnxFile odd;
  odd.input("x", {-1, 3})
      .output("y")
      .node("Gelu", {"x"}, "y", "gelu", {string_attribute("approximate", "erf")})
      .opset(21);
  CHECK_THROWS_WITH(import(odd.bytes()), Contains("node 'gelu' (Gelu): attribute 'approximate' = 'erf' is not GELU's"));
}

TEST_CASE("import_onnx names the node, op and attribute it cannot import") {
  CHECK_THROWS_WITH(import(gemm_file({attribute_int("transA", 1)}).bytes()),
                    Contains("test.onnx") && Contains("node 'fc' (Gemm)") && Contains("'transA' = 1"));
  CHECK_THROWS_WITH(import(gemm_file({attribute_int("broadcast", 1)}).bytes()),
                    Contains("node 'fc' (Gemm)") && Contains("attribute 'broadcast' is not supported"));
  CHECK_THROWS_WITH(import(gemm_file({attribute_float("transB", 1)}).bytes()),
                    Contains("attribute 'transB' has type 1, expected 2"));

  OnnxFile conv;
  conv.input("x", {-1, 2, 5, 5})
      .output("y")
      .initializer("w", {2, 1, 3, 3}, std::vector<float>(18, 0.1f))
      .node("Conv", {"x", "w"}, "y", "grouped", {attribute_int("group", 2)});
  CHECK_THROWS_WITH(import(conv.bytes()),
                    Contains("node 'grouped' (Conv)") && Contains("'group' = 2") && Contains("grouped and depthwise"));

  OnnxFile uneven;
  uneven.input("x", {-1, 1, 5, 5})
      .output("y")
      .initializer("w", {1, 1, 3, 3}, std::vector<float>(9, 0.1f))
      .node("Conv", {"x", "w"}, "y", "c", {attribute_ints("pads", {0, 0, 2, 1})});
  CHECK_THROWS_WITH(import(uneven.bytes()), Contains("'pads' = [0, 0, 2, 1]"));

  OnnxFile unknown;
  unknown.input("x", {-1, 3}).output("y").node("Celu", {"x"}, "y", "odd");
  CHECK_THROWS_WITH(import(unknown.bytes()), Contains("node 'odd' (Celu): this op is not supported"));

  OnnxFile computed_weight;
  computed_weight.input("x", {-1, 3})
      .output("y")
      .node("Relu", {"x"}, "r", "relu")
      .node("MatMul", {"x", "r"}, "y", "mm");
  CHECK_THROWS_WITH(import(computed_weight.bytes()),
                    Contains("node 'mm' (MatMul): combines 2 computed tensors; glassbox merges branches with Add"));

  OnnxFile dynamic;
  dynamic.input("x", {-1, -1}).output("y").node("Relu", {"x"}, "y", "relu");
  CHECK_THROWS_WITH(import(dynamic.bytes()), Contains("input 'x' dimension 1") && Contains("run time"));

  OnnxFile two_outputs;
  two_outputs.input("x", {-1, 3}).output("y").output("z").node("Relu", {"x"}, "y", "a").node("Tanh", {"x"}, "z", "b");
  // Two outputs come packed: relu(x), then tanh(x).
  const Tensor<float> both = import(two_outputs.bytes()).predict(Tensor<float>(Shape{1, 3}, {-1, 0, 2}));
  CHECK(std::vector<float>(both.begin(), both.end()) ==
        std::vector<float>{0, 0, 2, std::tanh(-1.0f), 0, std::tanh(2.0f)});
  OnnxFile twice;
  twice.input("x", {-1, 3}).output("y").output("y").node("Relu", {"x"}, "y", "a");
  CHECK_THROWS_WITH(import(twice.bytes()), Contains("output 'y' is listed twice"));
  OnnxFile reserved;
  reserved.input("x", {-1, 3}).output("glassbox.packed_inputs").node("Relu", {"x"}, "glassbox.packed_inputs", "a");
  CHECK_THROWS_WITH(import(reserved.bytes()), Contains("node 'a' (Relu): writes 'glassbox.packed_inputs'"));

  CHECK_THROWS_WITH(import(gemm_file().opset(9).bytes()), Contains("opset 9 is not supported (11 to 21)"));
  CHECK_THROWS_WITH(import(gemm_file().opset(22).bytes()), Contains("opset 22 is not supported (11 to 21)"));
  OnnxFile integers;
  integers.input("x", {-1, 3}, 7).output("y").node("Relu", {"x"}, "y", "relu");
  CHECK_THROWS_WITH(import(integers.bytes()), Contains("element type 7"));
}

TEST_CASE("import_onnx refuses broken graphs: cycles, missing tensors, tensors made twice") {
  OnnxFile cycle;
  cycle.input("x", {-1, 3}).output("b").node("Add", {"x", "b"}, "a", "first").node("Relu", {"a"}, "b", "second");
  CHECK_THROWS_WITH(import(cycle.bytes()), Contains("cycle through node 'first' (Add), node 'second' (Relu)"));

  OnnxFile missing;
  missing.input("x", {-1, 3}).output("y").node("Gemm", {"x", "w"}, "y", "fc");
  CHECK_THROWS_WITH(import(missing.bytes()),
                    Contains("node 'fc' (Gemm) reads 'w', which no node, initializer or graph input provides"));

  OnnxFile twice;
  twice.input("x", {-1, 3}).output("y").node("Relu", {"x"}, "y", "a").node("Tanh", {"x"}, "y", "b");
  CHECK_THROWS_WITH(import(twice.bytes()), Contains("tensor 'y' is produced twice"));

  OnnxFile never;
  never.input("x", {-1, 3}).output("z").node("Relu", {"x"}, "y", "a");
  CHECK_THROWS_WITH(import(never.bytes()), Contains("graph output 'z' is never computed"));

  OnnxFile no_graph_output;
  no_graph_output.input("x", {-1, 3}).output("x");
  CHECK_THROWS_WITH(import(no_graph_output.bytes()), Contains("test.onnx: the graph computes nothing"));
}

TEST_CASE("import_onnx checks tensors against the bytes present before allocating") {
  auto with = [](const Proto& tensor) { return gemm_file().raw_initializer(tensor).bytes(); };
  Proto huge;  // 2^40 floats declared, none present
  huge.int64(1, std::int64_t(1) << 40).varint(2, 1).bytes(8, "huge");
  CHECK_THROWS_WITH(import(with(huge)), Contains("initializer 'huge' has dimension 1099511627776"));
  Proto product;  // each dimension allowed, the product absurd
  product.int64(1, 1 << 20).int64(1, 1 << 20).varint(2, 1).bytes(8, "product");
  CHECK_THROWS_WITH(import(with(product)), Contains("initializer 'product' declares more than"));
  Proto short_raw;
  short_raw.int64(1, 4).varint(2, 1).bytes(8, "short").bytes(9, std::string(12, '\0'));
  CHECK_THROWS_WITH(import(with(short_raw)), Contains("'short' declares 4 float values but holds 12 bytes"));
  Proto negative;
  negative.int64(1, -3).varint(2, 1).bytes(8, "negative");
  CHECK_THROWS_WITH(import(with(negative)), Contains("'negative' has dimension -3"));
  Proto strings;
  strings.int64(1, 1).varint(2, 8).bytes(8, "text");
  CHECK_THROWS_WITH(import(with(strings)), Contains("'text' has element type 8"));
  Proto external;
  external.int64(1, 2).varint(2, 1).bytes(8, "outside").varint(14, 1);
  CHECK_THROWS_WITH(import(with(external)), Contains("'outside' keeps its data in an external file"));
  Proto unpacked;  // float_data, one value per field: fine when the count matches
  unpacked.int64(1, 2).varint(2, 1).bytes(8, "listed").float32(4, 1).float32(4, 2);
  CHECK_NOTHROW(import(with(unpacked)));

  // Malformed protobuf: each a clean error with the byte offset.
  CHECK_THROWS_WITH(import(std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 11)),
                    Contains("test.onnx: malformed protobuf at byte"));
  CHECK_THROWS_WITH(import(std::string("\x3a\xff\xff\xff\x0f", 5)),
                    Contains("field 7 declares 33554431 bytes, 0 are left"));
  CHECK_THROWS_WITH(import(std::string("\x0b", 1)), Contains("wire type 3"));
  CHECK_THROWS_WITH(import(""), Contains("not an ONNX model"));

  // Every truncation of a real model is refused cleanly.
  Sequential<float> seed = test::every_kind_model();
  const std::string bytes = io::onnx_bytes(seed);
  for (std::size_t length = 0; length < bytes.size(); length += 1 + length / 64) {
    INFO("first " << length << " of " << bytes.size() << " bytes");
    CHECK_THROWS_AS(import(bytes.substr(0, length)), Error);
  }
}

// scripts/fuzz.sh onnx starts from these seeds and commits what it finds
// (once fixed) to regressions/onnx: each must import or fail with an Error.
TEST_CASE("onnx fuzz seeds import, and fuzz findings give glassbox::Error") {
  const auto seeds = files_in("fuzz/seeds/onnx");
  CHECK(seeds.size() >= 3);
  for (const std::string& f : seeds) {
    INFO(f);
    CHECK_NOTHROW(io::import_onnx<float>(f));
  }
  for (const std::string& f : files_in("fuzz/regressions/onnx")) {
    INFO(f);
    std::optional<Sequential<float>> m;
    try {
      m.emplace(io::import_onnx<float>(f));
    } catch (const Error& e) {
      CHECK_THAT(e.what(), Contains(f));
      continue;
    }
    // As fuzz/fuzz_onnx.cpp demands: a model that imports runs, and its export imports again.
    m->predict(Tensor<float>(m->sample_shape()->batched(2), 0.5f));
    CHECK_NOTHROW(io::onnx_from_bytes<float>(io::onnx_bytes(*m), f + " (exported again)"));
  }
}
