// Parity with PyTorch: forward and backward of every layer and loss, and five
// optimizer steps, against golden vectors written by tests/data/make_golden.py
// (Debian's python3-torch). float must agree to 1e-5 and double to 1e-10,
// relative to each tensor's largest magnitude.
#include "support.hpp"

using namespace glassbox;
using test::cast;
using test::golden;
using test::relative_error;

namespace {

template <class T>
constexpr double tolerance = test::parity_tolerance<T>;

template <class T>
void check_layer(Layer<T>& layer, const std::string& name) {
  test::check_layer_parity(layer, "layers", name);
}

template <class T>
void check_loss(const nn::Loss<T>& loss, const std::string& name) {
  const Tensor<T> z = cast<T>(golden("losses", name + ".output"));
  const Tensor<T> target = cast<T>(golden("losses", name + ".target"));
  Tensor<T> grad;
  const T value = loss.forward(z, target, &grad);
  INFO(name);
  CHECK(std::abs(value - golden("losses", name + ".loss")[0]) <
        tolerance<T> * std::max(1.0, std::abs(golden("losses", name + ".loss")[0])));
  CHECK(relative_error(grad, golden("losses", name + ".grad")) < tolerance<T>);
}

template <class T, class MakeOptimizer>
void check_optimizer(const std::string& name, MakeOptimizer make) {
  Parameter<T> p("weight", golden("optimizers", "initial").shape());
  p.value = cast<T>(golden("optimizers", "initial"));
  auto optimizer = make(std::vector<Parameter<T>*>{&p});
  for (int k = 0; k < 5; ++k) {
    p.grad = cast<T>(golden("optimizers", "grad" + std::to_string(k)));
    optimizer.step();
    INFO(name << " step " << k + 1);
    CHECK(relative_error(p.value, golden("optimizers", name + ".step" + std::to_string(k + 1))) < tolerance<T>);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("PyTorch parity: layers", "", float, double) {
  using T = TestType;
  nn::Dense<T> dense(5, 3);
  check_layer(dense, "dense");
  nn::ReLU<T> relu;
  check_layer(relu, "relu");
  nn::LeakyReLU<T> leaky(T(0.1));
  check_layer(leaky, "leaky_relu");
  nn::Sigmoid<T> sigmoid;
  check_layer(sigmoid, "sigmoid");
  nn::Tanh<T> tanh_layer;
  check_layer(tanh_layer, "tanh");
  nn::GELU<T> gelu;
  check_layer(gelu, "gelu");
  nn::GELU<T> gelu_tanh(nn::GELU<T>::Approximation::tanh);
  check_layer(gelu_tanh, "gelu_tanh");
  nn::Softmax<T> softmax;
  check_layer(softmax, "softmax");
}

TEMPLATE_TEST_CASE("PyTorch parity: losses", "", float, double) {
  using T = TestType;
  check_loss(nn::MSELoss<T>(), "mse");
  check_loss(nn::SoftmaxCrossEntropy<T>(), "cross_entropy");
  check_loss(nn::BCEWithLogitsLoss<T>(), "bce_with_logits");
}

TEMPLATE_TEST_CASE("PyTorch parity: five optimizer steps", "", float, double) {
  using T = TestType;
  using Params = std::vector<Parameter<T>*>;
  using SGDOptions = typename optim::SGD<T>::Options;
  using AdamOptions = typename optim::Adam<T>::Options;
  check_optimizer<T>("sgd", [](Params p) { return optim::SGD<T>(p, T(0.1)); });
  check_optimizer<T>("sgd_momentum", [](Params p) {
    SGDOptions o;
    o.momentum = T(0.9);
    o.dampening = T(0.1);
    return optim::SGD<T>(p, T(0.1), o);
  });
  check_optimizer<T>("sgd_nesterov_wd", [](Params p) {
    SGDOptions o;
    o.momentum = T(0.9);
    o.nesterov = true;
    o.weight_decay = T(0.01);
    return optim::SGD<T>(p, T(0.1), o);
  });
  check_optimizer<T>("adam", [](Params p) { return optim::Adam<T>(p, T(0.01)); });
  check_optimizer<T>("adam_wd", [](Params p) {
    AdamOptions o;
    o.beta1 = T(0.8);
    o.beta2 = T(0.99);
    o.eps = T(1e-6);
    o.weight_decay = T(0.1);
    return optim::Adam<T>(p, T(0.01), o);
  });
  check_optimizer<T>("adamw", [](Params p) {
    AdamOptions o;
    o.weight_decay = T(0.1);
    o.decoupled_weight_decay = true;
    return optim::Adam<T>(p, T(0.01), o);
  });
}
