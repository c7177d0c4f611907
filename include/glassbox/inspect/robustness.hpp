#pragma once
// Robustness and explanation stability of a classifier that outputs (N, classes):
//
//   classification_accuracy   share of argmax(model(x)) equal to the labels
//   noise_robustness          accuracy under Gaussian input noise of each sigma
//   fgsm / pgd                L-inf adversarial examples: x + eps sign(dLoss/dx)
//                             (Goodfellow et al. 2015) and projected gradient
//                             descent with a random start (Madry et al. 2018)
//   adversarial_robustness    accuracy under FGSM or PGD for each epsilon
//   sensitivity_max           how much an explanation changes under small input
//                             perturbations (Yeh et al. 2019; Captum's sensitivity_max)
//
// Labels are class indices stored as T, shape (N), as io::load_mnist gives
// them. Inputs can be clipped to a valid range (e.g. [0, 1] for MNIST) after
// every perturbation. Everything runs in eval mode in batches.

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <vector>

#include "glassbox/inspect/attribution.hpp"
#include "glassbox/nn/loss.hpp"

namespace glassbox::inspect {

struct InputRange {
  double low = -std::numeric_limits<double>::infinity();
  double high = std::numeric_limits<double>::infinity();
};

// One point of a robustness curve: the noise sigma or attack epsilon, and the
// accuracy at it.
struct RobustnessPoint {
  double level = 0;
  double accuracy = 0;
};

namespace detail {
template <class T>
void check_labelled(const char* who, const Tensor<T>& x, const Tensor<T>& labels) {
  if (x.rank() < 2 || x.dim(0) == 0)
    throw Error(fmt::format("{}: expected a non-empty batch, got input of shape {}", who, x.shape().str()));
  if (labels.rank() != 1 || labels.dim(0) != x.dim(0))
    throw Error(fmt::format("{}: expected {} labels of shape ({}), got shape {}", who, x.dim(0), x.dim(0),
                            labels.shape().str()));
  for (index_t n = 0; n < labels.size(); ++n) {
    const double label = static_cast<double>(labels[n]);
    if (!(label >= 0) || label != std::floor(label) || label > 1e9)
      throw Error(fmt::format("{}: label {} of sample {} is not a class index", who, label, n));
  }
}

template <class T>
void clip(Tensor<T>& x, const InputRange& range) {
  for (T& v : x) v = static_cast<T>(std::min(std::max(static_cast<double>(v), range.low), range.high));
}

constexpr index_t robustness_batch = 256;

// Share of rows whose argmax equals the label.
template <class T>
double accuracy_of(const Tensor<T>& output, const Tensor<T>& labels) {
  const std::vector<index_t> predicted = predicted_classes(output);
  index_t correct = 0;
  for (index_t n = 0; n < output.dim(0); ++n) {
    const auto label = static_cast<index_t>(labels[n]);
    if (label < 0 || label >= output.dim(1))
      throw Error(
          fmt::format("accuracy: label {} of sample {} is outside the model's {} classes", label, n, output.dim(1)));
    correct += predicted[static_cast<std::size_t>(n)] == label;
  }
  return static_cast<double>(correct) / static_cast<double>(output.dim(0));
}
}  // namespace detail

template <class T>
double classification_accuracy(Sequential<T>& model, const Tensor<T>& x, const Tensor<T>& labels) {
  detail::check_labelled("classification_accuracy", x, labels);
  return detail::accuracy_of(model.predict(x, detail::robustness_batch), labels);
}

struct NoiseRobustnessOptions {
  std::uint64_t seed = 0;
  InputRange range;  // noisy inputs are clipped to it
};

// Accuracy on x + N(0, sigma^2) noise for every sigma (sigma 0: the clean accuracy).
template <class T>
std::vector<RobustnessPoint> noise_robustness(Sequential<T>& model, const Tensor<T>& x, const Tensor<T>& labels,
                                              const std::vector<double>& sigmas, NoiseRobustnessOptions options = {}) {
  detail::check_labelled("noise_robustness", x, labels);
  std::vector<RobustnessPoint> curve;
  Tensor<T> noisy(x.shape());
  for (double sigma : sigmas) {
    if (!(sigma >= 0)) throw Error(fmt::format("noise_robustness: sigma must be >= 0, got {}", sigma));
    Rng rng(options.seed);
    for (index_t k = 0; k < x.size(); ++k) noisy[k] = x[k] + static_cast<T>(sigma * rng.normal());
    if (sigma > 0) detail::clip(noisy, options.range);
    curve.push_back({sigma, classification_accuracy(model, noisy, labels)});
  }
  return curve;
}

// dLoss/dx for a batch (the loss's batch mean, so only its direction is meaningful).
template <class T>
Tensor<T> loss_input_gradient(Sequential<T>& model, const nn::Loss<T>& loss, const Tensor<T>& x,
                              const Tensor<T>& labels) {
  const Tensor<T>& out = model.forward(x, Mode::eval);
  Tensor<T> grad;
  loss.forward(out, labels, &grad);
  model.backward(grad, /*want_input_grad=*/true, ParamGrads::skip);
  return model.input_grad();
}

struct AttackOptions {
  double epsilon = 0.1;  // L-inf radius
  InputRange range;      // adversarial inputs are clipped to it
  // PGD only:
  int steps = 10;
  double step_size = 0;  // 0: 2.5 epsilon / steps, as Madry et al.
  bool random_start = true;
  std::uint64_t seed = 0;
};

namespace detail {
// One signed-gradient ascent step on the loss, projected onto the epsilon
// ball around `clean` and the valid range, in batches.
template <class T>
void signed_gradient_step(Sequential<T>& model, const nn::Loss<T>& loss, const Tensor<T>& clean,
                          const Tensor<T>& labels, double step, const AttackOptions& options, Tensor<T>& adversarial) {
  Tensor<T> batch, batch_labels;
  for (index_t first = 0; first < clean.dim(0); first += robustness_batch) {
    const index_t count = std::min(robustness_batch, clean.dim(0) - first);
    copy_rows(adversarial, first, count, batch);
    copy_rows(labels, first, count, batch_labels);
    const Tensor<T> g = loss_input_gradient(model, loss, batch, batch_labels);
    const index_t offset = first * (clean.size() / clean.dim(0));
    for (index_t k = 0; k < batch.size(); ++k) {
      const double c = static_cast<double>(clean[offset + k]);
      const double sign = (g[k] > 0) - (g[k] < 0);
      double v = static_cast<double>(batch[k]) + step * sign;
      v = std::min(std::max(v, c - options.epsilon), c + options.epsilon);
      adversarial.data()[offset + k] = static_cast<T>(std::min(std::max(v, options.range.low), options.range.high));
    }
  }
}
}  // namespace detail

template <class T>
Tensor<T> fgsm(Sequential<T>& model, const nn::Loss<T>& loss, const Tensor<T>& x, const Tensor<T>& labels,
               AttackOptions options = {}) {
  detail::check_labelled("fgsm", x, labels);
  if (!(options.epsilon >= 0)) throw Error(fmt::format("fgsm: epsilon must be >= 0, got {}", options.epsilon));
  Tensor<T> adversarial = x;
  detail::signed_gradient_step(model, loss, x, labels, options.epsilon, options, adversarial);
  return adversarial;
}

template <class T>
Tensor<T> pgd(Sequential<T>& model, const nn::Loss<T>& loss, const Tensor<T>& x, const Tensor<T>& labels,
              AttackOptions options = {}) {
  detail::check_labelled("pgd", x, labels);
  if (!(options.epsilon >= 0)) throw Error(fmt::format("pgd: epsilon must be >= 0, got {}", options.epsilon));
  if (options.steps < 1) throw Error(fmt::format("pgd: steps must be >= 1, got {}", options.steps));
  if (!(options.step_size >= 0)) throw Error(fmt::format("pgd: step_size must be >= 0, got {}", options.step_size));
  const double step = options.step_size > 0 ? options.step_size : 2.5 * options.epsilon / options.steps;
  Tensor<T> adversarial = x;
  if (options.random_start) {
    Rng rng(options.seed);
    for (index_t k = 0; k < x.size(); ++k)
      adversarial[k] = x[k] + static_cast<T>(rng.uniform(-options.epsilon, options.epsilon));
    detail::clip(adversarial, options.range);
  }
  for (int s = 0; s < options.steps; ++s)
    detail::signed_gradient_step(model, loss, x, labels, step, options, adversarial);
  return adversarial;
}

enum class Attack { fgsm, pgd };

// Accuracy under the attack for every epsilon (epsilon 0: the clean accuracy).
template <class T>
std::vector<RobustnessPoint> adversarial_robustness(Sequential<T>& model, const nn::Loss<T>& loss, const Tensor<T>& x,
                                                    const Tensor<T>& labels, const std::vector<double>& epsilons,
                                                    Attack attack = Attack::fgsm, AttackOptions options = {}) {
  std::vector<RobustnessPoint> curve;
  for (double epsilon : epsilons) {
    options.epsilon = epsilon;
    const Tensor<T> adversarial =
        attack == Attack::fgsm ? fgsm(model, loss, x, labels, options) : pgd(model, loss, x, labels, options);
    curve.push_back({epsilon, classification_accuracy(model, adversarial, labels)});
  }
  return curve;
}

struct SensitivityOptions {
  double radius = 0.02;  // perturbations uniform in the L-inf ball of this radius
  int samples = 10;
  std::uint64_t seed = 0;
};

// Per example: max over perturbed copies x' of ||A(x') - A(x)|| / ||A(x)||
// (L2 norms, targets fixed to those of x). 0 for an explanation that never moves.
template <class T>
std::vector<double> sensitivity_max(Attribution<T>& method, Sequential<T>& model, const Tensor<T>& x,
                                    const std::vector<index_t>& targets = {}, SensitivityOptions options = {}) {
  if (options.samples < 1) throw Error(fmt::format("sensitivity_max: samples must be >= 1, got {}", options.samples));
  if (!(options.radius >= 0)) throw Error(fmt::format("sensitivity_max: radius must be >= 0, got {}", options.radius));
  const std::vector<index_t> chosen = detail::resolve_targets(model, x, targets);
  const Tensor<T> reference = method.attribute(x, chosen);
  const index_t n = x.dim(0), per_sample = x.size() / n;
  std::vector<double> norms(static_cast<std::size_t>(n), 0.0), worst(static_cast<std::size_t>(n), 0.0);
  for (index_t e = 0; e < n; ++e)
    norms[static_cast<std::size_t>(e)] =
        std::sqrt(reference.flat().segment(e * per_sample, per_sample).template cast<double>().square().sum());
  Rng rng(options.seed);
  Tensor<T> perturbed(x.shape());
  for (int s = 0; s < options.samples; ++s) {
    for (index_t k = 0; k < x.size(); ++k)
      perturbed[k] = x[k] + static_cast<T>(rng.uniform(-options.radius, options.radius));
    const Tensor<T> moved = method.attribute(perturbed, chosen);
    for (index_t e = 0; e < n; ++e) {
      double change = 0;
      for (index_t k = e * per_sample; k < (e + 1) * per_sample; ++k) {
        const double d = static_cast<double>(moved[k]) - static_cast<double>(reference[k]);
        change += d * d;
      }
      const double norm = norms[static_cast<std::size_t>(e)];
      const double relative =
          norm > 0 ? std::sqrt(change) / norm : (change > 0 ? std::numeric_limits<double>::infinity() : 0.0);
      worst[static_cast<std::size_t>(e)] = std::max(worst[static_cast<std::size_t>(e)], relative);
    }
  }
  return worst;
}

}  // namespace glassbox::inspect
