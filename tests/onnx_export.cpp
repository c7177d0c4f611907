// First half of the ONNX export test (tests/onnx_check.py is the second):
// exports two trained models and writes, next to each, 100 inputs and
// glassbox's outputs for them, as raw little-endian float32 with the shapes
// in a JSON file.
//   - seed_cnn: the seed CNN after one epoch on the shipped MNIST subset, on
//     the first 100 test digits;
//   - every_kind: every built-in layer kind (tests/checkpoint_models.hpp),
//     trained on random 8x8 images so that batch norm's statistics are not
//     their initial values, exported at opset 17;
//   - recurrent: an LSTM and a SimpleRNN giving every step, a GRU giving its
//     last state, a Dense and a log-softmax, exported at opset 14;
//   - graph: a Graph layer with concat, multiply and sum merges and a
//     residual block inside (tests/checkpoint_models.hpp), trained on random
//     6x6 images, exported at opset 15.
//   onnx_export OUT_DIR MNIST_DIR

#include <cstdio>
#include <glassbox/glassbox.hpp>
#include <glassbox/io/onnx.hpp>
#include <string>

#include "checkpoint_models.hpp"

using namespace glassbox;

namespace {

void write_raw(const std::string& path, const Tensor<float>& t) {
  write_file_atomically(path,
                        std::string(reinterpret_cast<const char*>(t.data()), static_cast<std::size_t>(t.size()) * 4));
}

std::string shape_json(const Shape& s) {
  std::string out = "[";
  for (int i = 0; i < s.rank(); ++i) out += fmt::format("{}{}", i ? ", " : "", s[i]);
  return out + "]";
}

// <name>.onnx, <name>.in.f32, <name>.out.f32; returns the JSON entry.
std::string export_case(const std::string& dir, const std::string& name, Sequential<float>& model,
                        const Tensor<float>& inputs, int opset) {
  io::export_onnx(model, dir + "/" + name + ".onnx", opset);
  const Tensor<float> outputs = model.predict(inputs);
  write_raw(dir + "/" + name + ".in.f32", inputs);
  write_raw(dir + "/" + name + ".out.f32", outputs);
  std::string layers;
  for (std::size_t i = 0; i < model.size(); ++i)
    layers += fmt::format("{}\"{}\"", i ? ", " : "", model.layer(i).name());
  return fmt::format("\"{}\": {{\"input_shape\": {}, \"output_shape\": {}, \"layers\": [{}]}}", name,
                     shape_json(inputs.shape()), shape_json(outputs.shape()), layers);
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 3) {
    std::fprintf(stderr, "usage: onnx_export OUT_DIR MNIST_DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  io::Mnist<float> mnist = io::load_mnist<float>(argv[2]);
  nn::SoftmaxCrossEntropy<float> loss;
  train::FitOptions<float> fit;
  fit.verbosity = train::Verbosity::silent;

  Sequential<float> seed(Shape{1, 28, 28}, 1);
  nn::Conv2D<float>::Options relu;
  relu.activation = nn::Activation::relu;
  seed.add<nn::Conv2D<float>>(1, 32, nn::Size2{3, 3}, relu);
  seed.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  seed.add<nn::Flatten<float>>();
  seed.add<nn::Dense<float>>(5408, 10);
  optim::Adam<float> adam(seed.parameters(), 1e-3f);
  train::fit(seed, adam, loss, mnist.train_images, mnist.train_labels, fit);
  Tensor<float> digits;
  std::vector<index_t> first(100);
  for (index_t i = 0; i < 100; ++i) first[static_cast<std::size_t>(i)] = i;
  gather_rows(mnist.test_images, first.begin(), first.end(), digits);

  Sequential<float> every = test::every_kind_model();
  Rng rng(3);
  Tensor<float> x(Shape{256, 1, 8, 8}), y(Shape{256});
  for (float& v : x) v = static_cast<float>(rng.normal());
  for (float& v : y) v = static_cast<float>(rng.below(3));
  optim::Adam<float> adam2(every.parameters(), 1e-2f);
  train::fit(every, adam2, loss, x, y, fit);
  Tensor<float> probe(Shape{100, 1, 8, 8});
  for (float& v : probe) v = static_cast<float>(rng.normal());

  Sequential<float> recurrent = test::recurrent_model();
  Tensor<float> steps(Shape{100, 6, 5});
  for (float& v : steps) v = static_cast<float>(rng.normal());

  Sequential<float> graph = test::graph_model();
  Tensor<float> images(Shape{256, 1, 6, 6});
  for (float& v : images) v = static_cast<float>(rng.normal());
  optim::Adam<float> adam3(graph.parameters(), 1e-2f);
  train::fit(graph, adam3, loss, images, y, fit);
  Tensor<float> graph_probe(Shape{100, 1, 6, 6});
  for (float& v : graph_probe) v = static_cast<float>(rng.normal());

  Sequential<float> two = test::two_inputs_model();
  Tensor<float> two_probe(Shape{100, 40});
  for (float& v : two_probe) v = static_cast<float>(rng.normal());

  const std::string json = "{" + export_case(dir, "seed_cnn", seed, digits, 13) + ", " +
                           export_case(dir, "every_kind", every, probe, 17) + ", " +
                           export_case(dir, "recurrent", recurrent, steps, 14) + ", " +
                           export_case(dir, "graph", graph, graph_probe, 15) + ", " +
                           export_case(dir, "two_inputs", two, two_probe, 16) + "}\n";
  write_text_file(dir + "/cases.json", json);
  std::printf("exported seed_cnn, every_kind, recurrent, graph and two_inputs to %s\n", dir.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "onnx_export: %s\n", e.what());
  return 1;
}
