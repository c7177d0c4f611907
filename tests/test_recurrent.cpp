// Recurrent layers: gradient checks (every kind, sequences or last state,
// truncated BPTT), parity with torch.nn.RNN/LSTM/GRU, shapes and errors,
// and what the recorders read (gate values, per-step gradient norms).

#include <glassbox/inspect/recurrent_stats.hpp>
#include <glassbox/io/checkpoint.hpp>

#include "support.hpp"

using namespace glassbox;
using Catch::Matchers::Contains;
using test::check_layer_gradients;
using test::check_layer_parity;
using test::random_tensor;

namespace {

template <class T>
std::unique_ptr<nn::Recurrent<T>> make(const std::string& kind, index_t in, index_t hidden,
                                       typename nn::Recurrent<T>::Options o) {
  if (kind == "lstm") return std::make_unique<nn::LSTM<T>>(in, hidden, o);
  if (kind == "gru") return std::make_unique<nn::GRU<T>>(in, hidden, o);
  return std::make_unique<nn::SimpleRNN<T>>(in, hidden, o);
}

const char* const kinds[] = {"simple_rnn", "lstm", "gru"};

}  // namespace

TEST_CASE("recurrent layers: gradient checks", "[recurrent]") {
  Rng rng(4);
  for (const char* kind : kinds) {
    for (const bool sequences : {true, false}) {
      for (const index_t truncate : {index_t(0), index_t(2)}) {
        nn::Recurrent<double>::Options o;
        o.return_sequences = sequences;
        o.truncate = truncate;
        auto layer = make<double>(kind, 3, 4, o);
        INFO(kind << (sequences ? " sequences" : " last") << " truncate " << truncate);
        if (truncate == 0) {
          check_layer_gradients(*layer, random_tensor(Shape{2, 5, 3}, rng));
        } else {
          // Truncation changes the gradient, not the function, so central
          // differences do not apply: the parity test compares it with
          // PyTorch's detached state; here, the forward is unchanged and the
          // gradient really differs from the full one.
          Rng init(1);
          layer->reset_parameters(init);
          const Tensor<double> x = random_tensor(Shape{2, 5, 3}, rng);
          Tensor<double> y, dx_truncated, dx_full;
          layer->forward(x, y, Mode::train);
          const Tensor<double> dy = random_tensor(y.shape(), rng);
          layer->backward(x, y, dy, &dx_truncated);
          nn::Recurrent<double>::Options full = o;
          full.truncate = 0;
          auto reference = make<double>(kind, 3, 4, full);
          Rng init2(1);
          reference->reset_parameters(init2);
          Tensor<double> y2;
          reference->forward(x, y2, Mode::train);
          CHECK(test::max_abs_difference(y, y2) == 0.0);  // the forward is the same
          reference->backward(x, y2, dy, &dx_full);
          CHECK(test::max_abs_difference(dx_truncated, dx_full) > 1e-6);
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("recurrent layers: parity with torch.nn.RNN, LSTM and GRU", "[recurrent][parity]", float, double) {
  for (const char* kind : kinds) {
    for (const std::string& suffix : {std::string(""), std::string("_last"), std::string("_truncated")}) {
      typename nn::Recurrent<TestType>::Options o;
      o.return_sequences = suffix != "_last";
      o.truncate = suffix == "_truncated" ? 2 : 0;
      auto layer = make<TestType>(kind, 4, 6, o);
      check_layer_parity(*layer, "recurrent", kind + suffix);
    }
  }
}

TEST_CASE("recurrent layers: shapes, errors, recorder data, checkpoints", "[recurrent]") {
  nn::LSTM<float> lstm(28, 16);
  CHECK(lstm.output_shape(Shape{8, 28, 28}) == Shape{8, 16});
  nn::Recurrent<float>::Options sequences;
  sequences.return_sequences = true;
  nn::GRU<float> gru(28, 16, sequences);
  CHECK(gru.output_shape(Shape{8, 7, 28}) == Shape{8, 7, 16});
  lstm.set_name("lstm_1");
  CHECK_THROWS_WITH(lstm.output_shape(Shape{8, 28}), Contains("lstm_1") && Contains("(N, T, F)"));
  CHECK_THROWS_WITH(lstm.output_shape(Shape{8, 28, 27}), Contains("27 features per step, layer expects 28"));
  CHECK_THROWS_WITH(nn::LSTM<float>(0, 4), Contains("lstm") && Contains("positive"));
  nn::Recurrent<float>::Options bad;
  bad.truncate = -1;
  CHECK_THROWS_WITH(nn::GRU<float>(3, 4, bad), Contains("truncate"));

  // Gate values are the gates' outputs: sigmoid gates in (0, 1).
  Sequential<float> model(Shape{6, 5}, 2);
  model.add<nn::LSTM<float>>(5, 8);
  model.add<nn::Dense<float>>(8, 3);
  Rng rng(3);
  Tensor<float> x(Shape{4, 6, 5});
  for (float& v : x) v = static_cast<float>(rng.normal());
  const Tensor<float> out = model.forward(x, Mode::train);
  const auto& cell = dynamic_cast<nn::LSTM<float>&>(model.layer(0));
  REQUIRE(cell.gate_values().shape() == Shape{6, 4, 32});
  for (index_t t = 0; t < 6; ++t)
    for (index_t n = 0; n < 4; ++n)
      for (index_t k = 0; k < 8; ++k) {
        const float input_gate = cell.gate_values().data()[(t * 4 + n) * 32 + k];
        CHECK((input_gate > 0.0f && input_gate < 1.0f));
      }
  // The last hidden state is the layer's output.
  const Tensor<float>& h = cell.hidden_states();
  const Tensor<float>& layer_out = model.output(0);
  for (index_t i = 0; i < 4 * 8; ++i) CHECK(layer_out[i] == h.data()[5 * 4 * 8 + i]);
  Tensor<float> grad(out.shape(), 1.0f);
  model.backward(grad);
  REQUIRE(cell.step_grad_norms().size() == 6);
  for (double g : cell.step_grad_norms()) CHECK(g > 0);

  // Checkpoints keep recurrent layers.
  nn::Recurrent<float>::Options o;
  o.return_sequences = true;
  o.truncate = 3;
  Sequential<float> seq(Shape{6, 5}, 2);
  seq.add<nn::GRU<float>>(5, 4, o);
  seq.add<nn::SimpleRNN<float>>(4, 3);
  io::Checkpoint<float> c = io::checkpoint_from_bytes<float>(io::checkpoint_bytes(seq));
  CHECK(c.model.summary() == seq.summary());
  const Tensor<float> a = seq.forward(x), b = c.model.forward(x);
  CHECK(std::equal(a.begin(), a.end(), b.begin()));
}

TEST_CASE("RecurrentStats records gate means, |h| and gradient norms per time step", "[recurrent][inspect]") {
  Sequential<float> model(Shape{12, 3}, 5);
  model.add<nn::LSTM<float>>(3, 6);
  model.add<nn::Dense<float>>(6, 2);
  inspect::RecurrentStats<float> stats(model);
  Rng rng(8);
  Tensor<float> x(Shape{5, 12, 3});
  for (float& v : x) v = static_cast<float>(rng.normal());
  const Tensor<float> out = model.forward(x, Mode::train);
  model.backward(Tensor<float>(out.shape(), 1.0f));

  REQUIRE(stats.all().size() == 1);  // the dense layer is not recurrent
  const inspect::RecurrentRecord& r = stats.series("lstm_1").records.back();
  REQUIRE(r.gates == std::vector<std::string>{"input", "forget", "cell", "output"});
  const auto& cell = dynamic_cast<nn::LSTM<float>&>(model.layer(0));
  // The forget gate's mean at step 7, by hand.
  double sum = 0;
  for (index_t n = 0; n < 5; ++n)
    for (index_t k = 0; k < 6; ++k) sum += cell.gate_values().data()[(7 * 5 + n) * 24 + 6 + k];
  CHECK(r.mean[1][7] == Approx(sum / 30).epsilon(1e-6));
  CHECK(r.grad_norm == cell.step_grad_norms());
  // The loss reads only the last step, so the gradient wrt h_t shrinks going
  // back in time (the vanishing gradient through time).
  CHECK(r.grad_norm.front() < r.grad_norm.back());
  const std::string csv = stats.to_csv();
  CHECK_THAT(csv, Contains("forget="));
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 13);  // header + 12 steps
  CHECK_THAT(stats.to_json(), Contains("\"grad_norm\":["));
}
