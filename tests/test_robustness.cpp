// inspect/robustness.hpp, faithfulness.hpp and permutation_importance.hpp:
// noise and adversarial robustness (a real attack on a trained MNIST model),
// explanation stability, deletion/insertion curves, the parameter
// randomization sanity check and permutation importance.
#include <cmath>

#include "support.hpp"

using namespace glassbox;
using namespace glassbox::inspect;
using Catch::Matchers::Contains;
using test::gradient_error;
using test::max_abs_difference;
using test::numerical_gradient;
using test::random_tensor;

namespace {

struct TrainedMnist {
  io::Mnist<float> data;
  Sequential<float> model{Shape{784}, 3};
};

// An MLP trained on the 1,000-image MNIST subset (about 88% on its test half).
TrainedMnist& trained_mnist() {
  static TrainedMnist trained = [] {
    TrainedMnist t;
    t.data = io::load_mnist<float>(test::data_path("mnist-subset"));
    t.data.train_images.reshape({1000, 784});
    t.data.test_images.reshape({1000, 784});
    t.model.add<nn::Dense<float>>(784, 64);
    t.model.add<nn::ReLU<float>>();
    t.model.add<nn::Dense<float>>(64, 10);
    optim::Adam<float> adam(t.model.parameters(), 1e-3f);
    nn::SoftmaxCrossEntropy<float> ce;
    train::fit(t.model, adam, ce, t.data.train_images, t.data.train_labels, test::quiet_fit<float>(10, 32));
    return t;
  }();
  return trained;
}

}  // namespace

TEST_CASE("noise robustness: sigma 0 is the clean accuracy, large noise destroys it", "[robustness]") {
  TrainedMnist& t = trained_mnist();
  const double clean = classification_accuracy(t.model, t.data.test_images, t.data.test_labels);
  CHECK(clean > 0.82);  // measured 0.857
  NoiseRobustnessOptions options;
  options.range = {0, 1};
  const std::vector<RobustnessPoint> curve =
      noise_robustness(t.model, t.data.test_images, t.data.test_labels, {0.0, 0.1, 2.0}, options);
  REQUIRE(curve.size() == 3);
  CHECK(curve[0].level == 0.0);
  CHECK(curve[0].accuracy == clean);
  CHECK(curve[1].accuracy > clean - 0.05);  // MNIST shrugs off mild noise
  CHECK(curve[2].accuracy < 0.5);
  CHECK_THROWS_WITH(noise_robustness(t.model, t.data.test_images, t.data.test_labels, {-1.0}),
                    Contains("sigma must be >= 0"));
  CHECK_THROWS_WITH(classification_accuracy(t.model, t.data.test_images, Tensor<float>(Shape{10})),
                    Contains("expected 1000 labels of shape (1000), got shape (10)"));
  Tensor<float> bad = t.data.test_labels;
  bad[3] = 2.5f;
  CHECK_THROWS_WITH(classification_accuracy(t.model, t.data.test_images, bad),
                    Contains("label 2.5 of sample 3 is not a class index"));
  bad[3] = 10;
  CHECK_THROWS_WITH(classification_accuracy(t.model, t.data.test_images, bad),
                    Contains("label 10 of sample 3 is outside the model's 10 classes"));
}

TEST_CASE("FGSM and PGD are real attacks: accuracy collapses inside a small L-inf ball", "[robustness]") {
  TrainedMnist& t = trained_mnist();
  nn::SoftmaxCrossEntropy<float> ce;
  const Tensor<float>& x = t.data.test_images;
  const Tensor<float>& y = t.data.test_labels;
  AttackOptions options;
  options.range = {0, 1};
  options.epsilon = 0.1;
  const Tensor<float> adversarial = fgsm(t.model, ce, x, y, options);
  // Every pixel moved by at most epsilon and stayed a valid intensity.
  CHECK((adversarial.flat() - x.flat()).abs().maxCoeff() <= 0.1f + 1e-6f);
  CHECK(adversarial.flat().minCoeff() >= 0.0f);
  CHECK(adversarial.flat().maxCoeff() <= 1.0f);

  const std::vector<RobustnessPoint> fgsm_curve =
      adversarial_robustness(t.model, ce, x, y, {0.0, 0.05, 0.1}, Attack::fgsm, options);
  const std::vector<RobustnessPoint> pgd_curve = adversarial_robustness(t.model, ce, x, y, {0.1}, Attack::pgd, options);
  const double clean = classification_accuracy(t.model, x, y);
  CHECK(fgsm_curve[0].accuracy == clean);
  CHECK(fgsm_curve[1].accuracy < clean);
  CHECK(fgsm_curve[2].accuracy < clean / 3);  // far below the clean ~88%
  CHECK(fgsm_curve[2].accuracy < fgsm_curve[1].accuracy);
  CHECK(pgd_curve[0].accuracy <= fgsm_curve[2].accuracy);  // iterating is at least as strong
  INFO("clean " << clean << ", FGSM 0.1 " << fgsm_curve[2].accuracy << ", PGD 0.1 " << pgd_curve[0].accuracy);
}

TEST_CASE("FGSM steps along the sign of the loss gradient, which matches central differences", "[robustness]") {
  Sequential<double> model(Shape{5}, 4);
  model.add<nn::Dense<double>>(5, 4);
  model.add<nn::Tanh<double>>();
  model.add<nn::Dense<double>>(4, 3);
  Rng rng(4);
  Tensor<double> x = random_tensor(Shape{3, 5}, rng);
  const Tensor<double> labels(Shape{3}, {2, 0, 1});
  nn::SoftmaxCrossEntropy<double> ce;
  const Tensor<double> analytic = loss_input_gradient(model, ce, x, labels);
  const Tensor<double> numeric = numerical_gradient([&] { return ce.forward(model.forward(x), labels, nullptr); }, x);
  CHECK(gradient_error(analytic, numeric) < 1e-6);

  AttackOptions options;
  options.epsilon = 0.25;
  const Tensor<double> adversarial = fgsm(model, ce, x, labels, options);
  for (index_t k = 0; k < x.size(); ++k)
    CHECK(adversarial[k] == Approx(x[k] + 0.25 * ((analytic[k] > 0) - (analytic[k] < 0))).margin(1e-15));
  CHECK(ce.forward(model.forward(adversarial), labels, nullptr) > ce.forward(model.forward(x), labels, nullptr));
  options.steps = 0;
  CHECK_THROWS_WITH(pgd(model, ce, x, labels, options), Contains("steps must be >= 1"));
}

TEST_CASE("sensitivity_max: zero for a constant explanation, bounded for gradient x input", "[robustness]") {
  Sequential<double> model(Shape{6}, 5);
  model.add<nn::Dense<double>>(6, 2);
  Rng rng(5);
  const Tensor<double> x = random_tensor(Shape{4, 6}, rng);
  Saliency<double> saliency(model);  // the weights of a linear model: x does not matter
  for (double s : sensitivity_max(saliency, model, x)) CHECK(s == 0.0);

  InputXGradient<double> input_x_gradient(model);
  SensitivityOptions options;
  options.radius = 0.05;
  const std::vector<double> moved = sensitivity_max(input_x_gradient, model, x, {0, 1, 0, 1}, options);
  const Tensor<double>& weight = model.layer(0).parameters()[0]->value;
  for (index_t n = 0; n < 4; ++n) {
    // ||w * delta|| / ||w * x|| <= radius ||w|| / ||w * x||
    const auto w = weight.matrix().row(n % 2).array();
    const double bound = 0.05 * std::sqrt(w.square().sum()) / std::sqrt((w * x.matrix().row(n).array()).square().sum());
    CHECK(moved[static_cast<std::size_t>(n)] > 0);
    CHECK(moved[static_cast<std::size_t>(n)] <= bound + 1e-12);
  }
}

TEST_CASE("deletion and insertion curves reward the faithful ranking", "[faithfulness]") {
  Sequential<double> model(Shape{1, 4, 4}, 6);
  model.add<nn::Flatten<double>>();
  model.add<nn::Dense<double>>(16, 3);
  Rng rng(6);
  const Tensor<double> x = random_tensor(Shape{5, 1, 4, 4}, rng, 0, 1);
  const std::vector<index_t> targets{0, 1, 2, 0, 1};
  InputXGradient<double> exact(model);  // the exact contributions of a linear model (zero baseline)
  const Tensor<double> faithful = exact.attribute(x, targets);
  Tensor<double> reversed = faithful;
  reversed.flat() = -reversed.flat();

  DeletionInsertionOptions options;
  options.points = 16;  // one feature per point
  options.score = CurveScore::logit;
  const DeletionInsertionCurves good = deletion_insertion(model, x, faithful, targets, options);
  const DeletionInsertionCurves bad = deletion_insertion(model, x, reversed, targets, options);
  REQUIRE(good.fractions.size() == 17);
  CHECK(good.fractions.front() == 0.0);
  CHECK(good.fractions.back() == 1.0);
  // For a linear model, removing the k largest contributions lowers the logit
  // most of any k features: the faithful curve lies below every other one.
  for (std::size_t i = 0; i < good.deletion.size(); ++i) {
    CHECK(good.deletion[i] <= bad.deletion[i] + 1e-12);
    CHECK(good.insertion[i] >= bad.insertion[i] - 1e-12);
  }
  // Both orders start at F(x) and end at F(0) (deletion), and the reverse for insertion.
  CHECK(good.deletion.front() == Approx(bad.deletion.front()));
  CHECK(good.deletion.back() == Approx(bad.deletion.back()));
  CHECK(good.insertion.front() == Approx(good.deletion.back()));
  CHECK(good.insertion.back() == Approx(good.deletion.front()));
  CHECK(good.deletion_area < bad.deletion_area);
  CHECK(good.insertion_area > bad.insertion_area);
  double mean_logit = 0;
  const Tensor<double> out = model.forward(x);
  for (index_t n = 0; n < 5; ++n) mean_logit += out.matrix()(n, targets[static_cast<std::size_t>(n)]) / 5;
  CHECK(good.deletion.front() == Approx(mean_logit).epsilon(1e-12));

  options.score = CurveScore::probability;
  const DeletionInsertionCurves probability = deletion_insertion(model, x, faithful, targets, options);
  for (double p : probability.deletion) CHECK((p > 0 && p < 1));
  CHECK_THROWS_WITH(deletion_insertion(model, x, Tensor<double>(Shape{5, 16}), targets),
                    Contains("attributions of shape (5, 16) for inputs of shape (5, 1, 4, 4)"));
  CHECK_THROWS_WITH(deletion_insertion(model, x, faithful, {0, 1, 3, 0, 1}),
                    Contains("target 3 of sample 2 is outside [0, 3)"));
  Tensor<double> with_nan = faithful;  // NaN attributions rank last instead of breaking the sort
  with_nan[0] = NAN;
  CHECK(deletion_insertion(model, x, with_nan, targets, options).deletion.size() == 17);
}

TEST_CASE("spearman_correlation ranks ties by their mean rank", "[faithfulness]") {
  CHECK(spearman_correlation({1, 2, 3, 4}, {10, 20, 30, 40}) == Approx(1));
  CHECK(spearman_correlation({1, 2, 3, 4}, {4, 3, 2, 1}) == Approx(-1));
  CHECK(spearman_correlation({1, 2, 2, 3}, {1, 3, 2, 4}) == Approx(4.5 / std::sqrt(22.5)));  // scipy.stats.spearmanr
  CHECK(spearman_correlation({1, 1, 1}, {1, 2, 3}) == 0.0);
  CHECK_THROWS_WITH(spearman_correlation({1}, {1}), Contains("length >= 2"));
}

TEST_CASE("randomization sanity check: gradient saliency of a trained model decorrelates", "[faithfulness]") {
  TrainedMnist& t = trained_mnist();
  Tensor<float> digits;
  copy_rows(t.data.test_images, 0, 20, digits);
  std::vector<Tensor<float>> before;
  for (Parameter<float>* p : t.model.parameters()) before.push_back(p->value);

  Saliency<float> saliency(t.model, /*absolute=*/true);
  const std::vector<RandomizationStep> steps = randomization_test(t.model, saliency, digits);
  REQUIRE(steps.size() == 2);
  CHECK(steps[0].layer == "dense_2");
  CHECK(steps[1].layer == "dense_1");
  CHECK(steps[0].spearman_abs < 0.3);  // measured 0.04: the top layer alone already decorrelates an MLP's maps
  CHECK(steps[1].spearman_abs < 0.3);  // everything re-initialised: unrelated maps
  CHECK(steps[1].spearman < 0.3);
  INFO("top layer only: " << steps[0].spearman_abs << ", all layers: " << steps[1].spearman_abs);
  // The trained parameters are back.
  std::size_t i = 0;
  for (Parameter<float>* p : t.model.parameters()) CHECK((p->value.flat() == before[i++].flat()).all());
}

TEST_CASE("permutation importance finds the only informative feature", "[importance]") {
  // Class = [x0 > 0]; x1 and x2 are noise the model ignores (weights set by hand).
  Sequential<double> model(Shape{3}, 7);
  nn::Dense<double>& dense = model.add<nn::Dense<double>>(3, 2);
  dense.weight().value = Tensor<double>(Shape{2, 3}, {-1, 0, 0, 1, 0, 0});
  dense.bias().value.set_zero();
  Rng rng(7);
  const Tensor<double> x = random_tensor(Shape{200, 3}, rng);
  Tensor<double> labels(Shape{200});
  for (index_t n = 0; n < 200; ++n) labels[n] = x.matrix()(n, 0) > 0;

  PermutationImportanceOptions options;
  options.repeats = 4;
  const PermutationImportance result = permutation_importance(model, x, labels, accuracy_metric<double>(), options);
  CHECK(result.baseline_score == 1.0);
  REQUIRE(result.features.size() == 3);
  CHECK(result.features[0].mean > 0.3);  // shuffling x0 leaves about a coin flip
  CHECK(result.features[0].stddev > 0);
  CHECK(result.features[0].drops.size() == 4);
  for (int f : {1, 2}) {
    CHECK(result.features[static_cast<std::size_t>(f)].mean == 0.0);
    CHECK(result.features[static_cast<std::size_t>(f)].stddev == 0.0);
  }
  // Same with minus the loss as the metric.
  nn::SoftmaxCrossEntropy<double> ce;
  const PermutationImportance by_loss = permutation_importance(model, x, labels, negative_loss_metric(ce), options);
  CHECK(by_loss.features[0].mean > 0.1);
  CHECK(by_loss.features[1].mean == 0.0);
  CHECK_THROWS_WITH(permutation_importance(model, Tensor<double>(Shape{2, 1, 3}), labels, accuracy_metric<double>()),
                    Contains("tabular data"));
}

TEST_CASE("permutation importance shuffles a group's columns together", "[importance]") {
  // x1 = -x0, and the model reads 5 (x0 + x1) + x2: shuffled together the two
  // cancel as before; shuffled apart they swamp x2, which decides the class.
  Sequential<double> model(Shape{3}, 7);
  nn::Dense<double>& dense = model.add<nn::Dense<double>>(3, 2);
  dense.weight().value = Tensor<double>(Shape{2, 3}, {-5, -5, -1, 5, 5, 1});
  dense.bias().value.set_zero();
  Rng rng(9);
  Tensor<double> x = random_tensor(Shape{200, 3}, rng);
  Tensor<double> labels(Shape{200});
  for (index_t n = 0; n < 200; ++n) {
    x.matrix()(n, 1) = -x.matrix()(n, 0);
    labels[n] = x.matrix()(n, 2) > 0;
  }
  PermutationImportanceOptions options;
  options.repeats = 3;
  options.groups = {{0, 1}, {2}};
  const PermutationImportance grouped = permutation_importance(model, x, labels, accuracy_metric<double>(), options);
  CHECK(grouped.baseline_score == 1.0);
  REQUIRE(grouped.features.size() == 2);
  CHECK(grouped.features[0].feature == 0);
  CHECK(grouped.features[0].mean == 0.0);
  CHECK(grouped.features[1].mean > 0.3);
  options.groups.clear();
  const PermutationImportance alone = permutation_importance(model, x, labels, accuracy_metric<double>(), options);
  REQUIRE(alone.features.size() == 3);
  CHECK(alone.features[0].mean > 0.2);
  options.groups = {{0, 3}};
  CHECK_THROWS_WITH(permutation_importance(model, x, labels, accuracy_metric<double>(), options),
                    Contains("a group names column 3 of 3"));
}
