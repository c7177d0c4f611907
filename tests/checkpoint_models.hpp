#pragma once
// Models shared by test_checkpoint and its crash-test writer.

#include <glassbox/glassbox.hpp>

namespace test {

// Every built-in layer kind that can follow a 1x8x8 image, with a conv
// whose ReLU is fused, explicit padding, a stride, dropout, batch norm,
// affine maps (per channel; a scalar scale, then a per-pixel shift; per
// feature), reshapes, and residual blocks (one with dropout inside, one with a projection).
inline glassbox::Sequential<float> every_kind_model(std::uint64_t seed = 7) {
  using namespace glassbox;
  Sequential<float> m(Shape{1, 8, 8}, seed);
  nn::Conv2D<float>::Options conv;
  conv.activation = nn::Activation::relu;
  conv.padding = nn::Padding::explicit_;
  conv.pad = {1, 1};
  m.add<nn::Conv2D<float>>(1, 4, nn::Size2{3, 3}, conv);
  m.add<nn::BatchNorm<float>>(4);
  // Affine layers start as the identity: give them values to show.
  const auto affine = [&m](const Shape& shape, nn::Affine<float>::Options options, float offset) {
    nn::Affine<float>& a = m.add<nn::Affine<float>>(shape, options);
    for (index_t i = 0; i < shape.size(); ++i) {
      a.weight().value[i] = offset + 0.25f * static_cast<float>(i % 5);
      a.bias().value[i] = 0.1f * static_cast<float>(i % 7) - offset * 0.2f;
    }
  };
  affine(Shape{4, 1, 1}, {true, true}, 0.75f);
  affine(Shape{1, 1, 1}, {true, false}, -1.25f);
  affine(Shape{1, 8, 8}, {false, true}, 0.5f);
  nn::PoolOptions pool;
  pool.stride = {2, 2};
  m.add<nn::MaxPool2D<float>>(nn::Size2{2, 2}, pool);
  m.add<nn::AvgPool2D<float>>(nn::Size2{2, 2}, nn::PoolOptions{}, false);
  m.add<nn::LeakyReLU<float>>(0.05f);
  m.add<nn::Flatten<float>>();
  m.add<nn::Reshape<float>>(Shape{4, 2, 2});
  m.add<nn::Reshape<float>>(Shape{16});
  m.add<nn::Dropout<float>>(0.25f);
  m.add<nn::Dense<float>>(16, 12);
  m.add<nn::BatchNorm<float>>(12);
  affine(Shape{12}, {true, true}, 1.5f);
  m.add<nn::GELU<float>>(nn::GELU<float>::Approximation::tanh);
  auto block = std::make_unique<nn::Residual<float>>();  // identity shortcut, dropout inside
  block->add<nn::Dense<float>>(12, 12);
  block->add<nn::Dropout<float>>(0.2f);
  block->add<nn::Tanh<float>>();
  m.add(std::move(block));
  auto projected = std::make_unique<nn::Residual<float>>();
  projected->add<nn::Dense<float>>(12, 8);
  projected->add<nn::Sigmoid<float>>();
  projected->set_shortcut<nn::Dense<float>>(12, 8);
  m.add(std::move(projected));
  m.add<nn::Dense<float>>(8, 8);
  m.add<nn::Tanh<float>>();
  m.add<nn::ReLU<float>>();
  m.add<nn::Sigmoid<float>>();
  nn::Dense<float>::Options no_bias;
  no_bias.bias = false;
  m.add<nn::Dense<float>>(8, 3, no_bias);
  return m;
}

// Each recurrent kind on (6 steps, 5 features): an LSTM and a SimpleRNN giving
// every step, a GRU giving its last state, a Dense and a log-softmax.
inline glassbox::Sequential<float> recurrent_model(std::uint64_t seed = 5) {
  using namespace glassbox;
  Sequential<float> m(Shape{6, 5}, seed);
  nn::Recurrent<float>::Options sequences;
  sequences.return_sequences = true;
  m.add<nn::LSTM<float>>(5, 8, sequences);
  m.add<nn::SimpleRNN<float>>(8, 6, sequences);
  m.add<nn::GRU<float>>(6, 7);
  m.add<nn::Dense<float>>(7, 3);
  m.add<nn::LogSoftmax<float>>();
  return m;
}

// A Graph between a conv and a classifier: an Inception-like concat of three
// branches (a 1x1 conv; a conv with fused ReLU, batch norm and a residual
// block; an average pool), a sigmoid gate multiplying one branch, a sum of
// three, and a conv after the last merge.
inline glassbox::Sequential<float> graph_model(std::uint64_t seed = 9) {
  using namespace glassbox;
  Sequential<float> m(Shape{1, 6, 6}, seed);
  nn::Conv2D<float>::Options same;
  same.padding = nn::Padding::same;
  m.add<nn::Conv2D<float>>(1, 4, nn::Size2{3, 3}, same);
  auto g = std::make_unique<Graph<float>>();
  auto x = g->input();
  auto a = g->add<nn::Conv2D<float>>(x, 4, 3, nn::Size2{1, 1});
  nn::Conv2D<float>::Options relu = same;
  relu.activation = nn::Activation::relu;
  auto b = g->add<nn::Conv2D<float>>(x, 4, 3, nn::Size2{3, 3}, relu);
  b = g->add<nn::BatchNorm<float>>(b, 3);
  auto block = std::make_unique<nn::Residual<float>>();
  block->add<nn::Conv2D<float>>(3, 3, nn::Size2{3, 3}, same);
  block->add<nn::Tanh<float>>();
  b = g->add(b, std::move(block));
  auto c = g->add<nn::AvgPool2D<float>>(x, nn::Size2{3, 3}, nn::PoolOptions{{1, 1}, nn::Padding::same, {0, 0}});
  auto gate = g->add<nn::Sigmoid<float>>(c);
  auto gated = g->multiply({c, gate});
  auto cat = g->concat({a, b, gated});
  auto mixed = g->add<nn::Conv2D<float>>(cat, 10, 4, nn::Size2{1, 1});
  g->sum({mixed, x, g->add<nn::ReLU<float>>(x)});
  m.add(std::move(g));
  m.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  m.add<nn::Flatten<float>>();
  m.add<nn::Dense<float>>(36, 3);
  return m;
}

// Two inputs and two outputs: an image (1, 6, 6) and features (4), packed
// (40 per sample); a head reading both (a concat) and one the features alone.
inline glassbox::Sequential<float> two_inputs_model(std::uint64_t seed = 4) {
  using namespace glassbox;
  auto g = std::make_unique<Graph<float>>();
  auto image = g->input(Shape{1, 6, 6}, "image");
  auto meta = g->input(Shape{4}, "meta");
  nn::Conv2D<float>::Options relu;
  relu.activation = nn::Activation::relu;
  relu.padding = nn::Padding::same;
  auto features = g->add<nn::Conv2D<float>>(image, 1, 3, nn::Size2{3, 3}, relu);
  features = g->add<nn::Flatten<float>>(g->add<nn::MaxPool2D<float>>(features, nn::Size2{2, 2}));
  auto m = g->add<nn::Tanh<float>>(g->add<nn::Dense<float>>(meta, 4, 6));
  auto digit = g->add(g->concat({features, m}), std::make_unique<nn::Dense<float>>(33, 3), "digit");
  g->set_outputs({digit, g->add(m, std::make_unique<nn::Dense<float>>(6, 2), "aux")});
  Sequential<float> model(g->packed_input_shape(), seed);
  model.add(std::move(g));
  return model;
}

inline void fill_parameters(glassbox::Sequential<float>& m, float value) {
  for (glassbox::Parameter<float>* p : m.parameters()) p->value.fill(value);
}

}  // namespace test
