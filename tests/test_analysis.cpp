// Analyses of what a trained model decides (inspect/): error analysis, PCA,
// t-SNE, decision boundaries, decision paths, causal interventions, group
// fairness.
#include <cmath>

#include "glassbox/inspect/decision_boundary.hpp"
#include "glassbox/inspect/decision_path.hpp"
#include "glassbox/inspect/error_analysis.hpp"
#include "glassbox/inspect/fairness.hpp"
#include "glassbox/inspect/layer_attribution.hpp"
#include "glassbox/inspect/patching.hpp"
#include "glassbox/inspect/projection.hpp"
#include "glassbox/inspect/tsne.hpp"
#include "glassbox/viz/decision_map.hpp"
#include "glassbox/viz/path_diagram.hpp"
#include "support.hpp"

using namespace glassbox;
using namespace glassbox::inspect;
using Catch::Matchers::Contains;

TEST_CASE("analyze_errors: confusion matrix and per-class metrics as classification_report defines them",
          "[analysis]") {
  // Class 3 occurs once and is never predicted: its precision is 0 by convention.
  const std::vector<index_t> truth{0, 0, 0, 1, 1, 2, 2, 2, 2, 3};
  const std::vector<index_t> predicted{0, 0, 1, 1, 2, 2, 2, 0, 2, 0};
  const ErrorAnalysis e = analyze_errors(predicted, truth, 4);
  const std::vector<index_t> confusion{2, 1, 0, 0,  //
                                       0, 1, 1, 0,  //
                                       1, 0, 3, 0,  //
                                       1, 0, 0, 0};
  CHECK(e.confusion == confusion);
  CHECK(e.count(2, 0) == 1);
  CHECK(e.accuracy == 0.6);
  CHECK(e.samples == 10);
  const double precision[] = {0.5, 0.5, 0.75, 0}, recall[] = {2.0 / 3, 0.5, 0.75, 0};
  const index_t support[] = {3, 2, 4, 1}, predicted_as[] = {4, 2, 4, 0};
  for (std::size_t c = 0; c < 4; ++c) {
    INFO("class " << c);
    const ClassMetrics& m = e.per_class[c];
    CHECK(m.precision == Approx(precision[c]).margin(1e-15));
    CHECK(m.recall == Approx(recall[c]).margin(1e-15));
    const double f1 = precision[c] + recall[c] > 0 ? 2 * precision[c] * recall[c] / (precision[c] + recall[c]) : 0;
    CHECK(m.f1 == Approx(f1).margin(1e-15));
    CHECK(m.support == support[c]);
    CHECK(m.predicted == predicted_as[c]);
  }
  CHECK(e.macro.precision == Approx(0.4375));
  CHECK(e.macro.recall == Approx((2.0 / 3 + 0.5 + 0.75) / 4));
  CHECK(e.macro.f1 == Approx((4.0 / 7 + 0.5 + 0.75) / 4));
  CHECK(e.weighted.precision == Approx(0.55));
  CHECK(e.weighted.recall == Approx(0.6));  // the support-weighted recall is the accuracy
  CHECK(e.weighted.f1 == Approx((3 * 4.0 / 7 + 2 * 0.5 + 4 * 0.75) / 10));
  CHECK(e.misclassified == std::vector<index_t>{2, 4, 7, 9});
  // Every error cell once, ties in row-major order.
  REQUIRE(e.confused_pairs.size() == 4);
  CHECK(e.confused_pairs[0].truth == 0);
  CHECK(e.confused_pairs[0].predicted == 1);
  CHECK(e.confused_pairs[3].truth == 3);
  CHECK(e.confused_pairs[3].count == 1);

  const std::string text = e.to_text({"zero", "one", "two", "three"});
  CHECK_THAT(text, Contains("confusion matrix (rows: true class, columns: predicted class)"));
  CHECK_THAT(text, Contains("\n zero     2     1     0     0\n"));
  CHECK_THAT(text, Contains("\n       three     0.0000     0.0000     0.0000          1\n"));
  CHECK_THAT(text, Contains("\n    accuracy                           0.6000         10\n"));
  CHECK_THAT(text, Contains("\n   macro avg     0.4375     0.4792     0.4554         10\n"));
  CHECK_THAT(text, Contains("most confused (true -> predicted): zero -> one (1), one -> two (1)"));
  CHECK_THROWS_WITH(e.to_text({"a", "b"}), Contains("2 class names for 4 classes"));
  const std::string json = e.to_json();
  CHECK_THAT(json, Contains("\"confusion\":[[2,1,0,0],[0,1,1,0],[1,0,3,0],[1,0,0,0]]"));
  CHECK_THAT(json, Contains("\"misclassified\":[2,4,7,9]"));
  CHECK(test::JsonChecker(json).valid());
}

TEST_CASE("analyze_errors: from a model's outputs and labels, with the most frequent confusion first", "[analysis]") {
  Tensor<double> outputs(Shape{5, 3}, {0.1, 0.8, 0.1,  //
                                       0.9, 0.0, 0.1,  //
                                       0.2, 0.3, 0.5,  //
                                       0.2, 0.1, 0.7,  //
                                       0.6, 0.3, 0.1});
  const Tensor<double> labels(Shape{5}, {1, 2, 2, 0, 2});
  const ErrorAnalysis e = analyze_errors(outputs, labels);
  CHECK(e.classes == 3);
  CHECK(e.misclassified == std::vector<index_t>{1, 3, 4});
  REQUIRE(e.confused_pairs.size() == 2);
  CHECK(e.confused_pairs[0].truth == 2);  // 2 -> 0 twice, before 0 -> 2 once
  CHECK(e.confused_pairs[0].predicted == 0);
  CHECK(e.confused_pairs[0].count == 2);

  CHECK_THROWS_WITH(analyze_errors(outputs, Tensor<double>(Shape{5}, {1, 2, 2, 0, 1.5})),
                    Contains("label 1.5 of sample 4 is not a class in [0, 3)"));
  CHECK_THROWS_WITH(analyze_errors(outputs, Tensor<double>(Shape{5}, {1, 2, 3, 0, 1})), Contains("label 3"));
  CHECK_THROWS_WITH(analyze_errors(outputs, Tensor<double>(Shape{4}, {1, 2, 2, 0})), Contains("4 labels for 5"));
  CHECK_THROWS_WITH(analyze_errors(Tensor<double>(Shape{5}), labels), Contains("(N, classes)"));
  CHECK_THROWS_WITH(analyze_errors({0, 1}, {0}, 2), Contains("2 predictions for 1 labels"));
  CHECK_THROWS_WITH(analyze_errors({0, 5}, {0, 1}, 2), Contains("sample 1: class 5 is outside [0, 2)"));
  CHECK_THROWS_WITH(analyze_errors({}, {}, max_error_analysis_classes + 1), Contains("classes must be in"));
  const ErrorAnalysis none = analyze_errors({}, {}, 2);  // no samples: zeros, no division by zero
  CHECK(none.accuracy == 0);
  CHECK(none.macro.f1 == 0);
}

TEST_CASE("pca: the components and variances of an independent SVD, either Gram matrix", "[analysis][pca]") {
  Rng rng(7);
  for (const Shape& shape : {Shape{60, 5}, Shape{6, 40}}) {  // more samples than features, and fewer
    INFO(shape.str());
    Tensor<double> x(shape);
    for (index_t n = 0; n < shape[0]; ++n)
      for (index_t f = 0; f < shape[1]; ++f)  // features of falling spread, so the components are distinct
        x.matrix()(n, f) = rng.normal() * 3.0 / static_cast<double>(f + 1) + static_cast<double>(f);
    const Pca p = pca(x, 3);
    const Eigen::MatrixXd centred = x.matrix().rowwise() - x.matrix().colwise().mean();
    const Eigen::JacobiSVD<Eigen::MatrixXd> svd(centred, Eigen::ComputeThinV);
    for (index_t c = 0; c < 3; ++c) {
      const double s = svd.singularValues()(c);
      CHECK(p.explained_variance(c) == Approx(s * s / static_cast<double>(shape[0] - 1)).epsilon(1e-9));
      // The same direction up to its sign, which pca fixes: the largest entry positive.
      CHECK(std::abs(p.components.col(c).dot(svd.matrixV().col(c))) == Approx(1).epsilon(1e-9));
      Eigen::Index largest = 0;
      p.components.col(c).cwiseAbs().maxCoeff(&largest);
      CHECK(p.components(largest, c) > 0);
    }
    CHECK(p.total_variance == Approx(svd.singularValues().squaredNorm() / static_cast<double>(shape[0] - 1)));
    CHECK((p.components.transpose() * p.components - Eigen::Matrix3d::Identity()).cwiseAbs().maxCoeff() < 1e-12);
    const Eigen::MatrixXd projected = p.project(x);
    CHECK((projected - centred * p.components).cwiseAbs().maxCoeff() < 1e-9);
  }
  CHECK_THROWS_WITH(pca(Tensor<double>(Shape{1, 3}), 1), Contains("at least 2 samples"));
  CHECK_THROWS_WITH(pca(Tensor<double>(Shape{4, 3}), 4), Contains("k must be in [1, 3]"));
  Tensor<double> bad(Shape{3, 2}, 1.0);
  bad.data()[3] = std::nan("");
  CHECK_THROWS_WITH(pca(bad, 1), Contains("non-finite"));
}

TEST_CASE("pca: the randomized solver finds the exact solver's components on wide data", "[analysis][pca]") {
  // 700 samples of 600 features: 6 strong directions of falling spread plus noise.
  Rng rng(11);
  const index_t n = 700, f = 600, rank = 6;
  Eigen::MatrixXd basis(rank, f);
  for (index_t i = 0; i < basis.size(); ++i) basis.data()[i] = rng.normal();
  Tensor<double> x(Shape{n, f});
  for (index_t s = 0; s < n; ++s) {
    Eigen::RowVectorXd row = Eigen::RowVectorXd::Zero(f);
    for (index_t r = 0; r < rank; ++r) row += rng.normal() * 10.0 / static_cast<double>(r + 1) * basis.row(r);
    for (index_t k = 0; k < f; ++k) row(k) += 0.3 * rng.normal();
    x.matrix().row(s) = row;
  }
  PcaOptions exact, randomized;
  exact.solver = PcaSolver::exact;
  randomized.solver = PcaSolver::randomized;
  const Pca a = pca(x, 5, exact), b = pca(x, 5, randomized), automatic = pca(x, 5);
  for (index_t c = 0; c < 5; ++c) {
    INFO("component " << c);
    CHECK(b.explained_variance(c) == Approx(a.explained_variance(c)).epsilon(1e-8));
    CHECK(std::abs(b.components.col(c).dot(a.components.col(c))) == Approx(1).epsilon(1e-8));
    CHECK((b.components.col(c) - a.components.col(c)).cwiseAbs().maxCoeff() < 1e-5);  // the same sign
  }
  CHECK(automatic.explained_variance == b.explained_variance);  // both sides over 500: randomized
  CHECK(b.total_variance == Approx(a.total_variance).epsilon(1e-12));
  CHECK((b.components.transpose() * b.components - Eigen::MatrixXd::Identity(5, 5)).cwiseAbs().maxCoeff() < 1e-12);
  randomized.seed = 99;  // another random start converges to the same components
  CHECK((pca(x, 5, randomized).components - b.components).cwiseAbs().maxCoeff() < 1e-5);
  randomized.oversamples = -1;
  CHECK_THROWS_WITH(pca(x, 5, randomized), Contains("must not be negative"));
}

// The sparse affinities as a dense matrix.
static Eigen::MatrixXd densified(const inspect::detail::SparseAffinities& p) {
  const auto n = static_cast<index_t>(p.offsets.size() - 1);
  Eigen::MatrixXd dense = Eigen::MatrixXd::Zero(n, n);
  for (index_t i = 0; i < n; ++i)
    for (index_t e = p.offsets[static_cast<std::size_t>(i)]; e < p.offsets[static_cast<std::size_t>(i + 1)]; ++e)
      dense(i, p.columns[static_cast<std::size_t>(e)]) = p.values[static_cast<std::size_t>(e)];
  return dense;
}

TEST_CASE("t-SNE's affinities: each row's entropy is log(perplexity); P is symmetric and sums to 1",
          "[analysis][tsne]") {
  Rng rng(3);
  std::vector<double> distances(50), p(50);
  for (double& d : distances) d = 10 * rng.uniform();
  inspect::detail::calibrate_row(distances.data(), 50, 7.5, p.data());
  double sum = 0, entropy = 0;
  for (const double v : p) {
    sum += v;
    if (v > 0) entropy -= v * std::log(v);
  }
  CHECK(sum == Approx(1).epsilon(1e-12));
  CHECK(entropy == Approx(std::log(7.5)).margin(1e-4));

  Eigen::MatrixXd x(40, 5);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = rng.normal();
  const Eigen::MatrixXd dense = inspect::detail::exact_affinities(x, 13);
  CHECK(dense.sum() == Approx(1).epsilon(1e-12));
  CHECK((dense - dense.transpose()).cwiseAbs().maxCoeff() == 0);
  CHECK(dense.diagonal().cwiseAbs().maxCoeff() == 0);
  // With 3 x perplexity + 1 >= N - 1 neighbours the sparse P is the dense one (up to
  // the rounding of distances taken through a GEMM).
  const inspect::detail::SparseAffinities sparse = inspect::detail::sparse_affinities(x, 13, 2);
  CHECK((densified(sparse) - dense).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("t-SNE's gradients: exact against finite differences of KL, Barnes-Hut against exact", "[analysis][tsne]") {
  Rng rng(5);
  Eigen::MatrixXd x(30, 4), y(30, 2);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = rng.normal();
  for (index_t i = 0; i < y.size(); ++i) y.data()[i] = rng.normal();
  const Eigen::MatrixXd p = inspect::detail::exact_affinities(x, 8);
  double kl = 0;
  const Eigen::MatrixXd grad = inspect::detail::exact_gradient(p, y, 1.0, &kl);
  CHECK(kl > 0);
  for (const index_t at : {0, 7, 33, 59}) {
    INFO("coordinate " << at);
    Eigen::MatrixXd moved = y;
    double up = 0, down = 0;
    moved.data()[at] += 1e-6;
    inspect::detail::exact_gradient(p, moved, 1.0, &up);
    moved.data()[at] -= 2e-6;
    inspect::detail::exact_gradient(p, moved, 1.0, &down);
    CHECK(grad.data()[at] == Approx((up - down) / 2e-6).epsilon(1e-5));
  }
  // One P for both (the sparse one, densified); theta 0 opens every cell: the exact repulsion.
  const inspect::detail::SparseAffinities sparse = inspect::detail::sparse_affinities(x, 8, 1);
  const Eigen::MatrixXd dense_of_sparse = densified(sparse);
  const Eigen::MatrixXd reference = inspect::detail::exact_gradient(dense_of_sparse, y, 12.0);
  double bh_kl = 0, reference_kl = 0;
  inspect::detail::exact_gradient(dense_of_sparse, y, 1.0, &reference_kl);
  const Eigen::MatrixXd opened = inspect::detail::barnes_hut_gradient(sparse, y, 12.0, 0.0, 2, &bh_kl);
  CHECK((opened - reference).cwiseAbs().maxCoeff() < 1e-12 * reference.cwiseAbs().maxCoeff());
  CHECK(bh_kl == Approx(reference_kl).epsilon(1e-12));
  const Eigen::MatrixXd summarised = inspect::detail::barnes_hut_gradient(sparse, y, 1.0, 0.5, 2);
  const Eigen::MatrixXd exact_one = inspect::detail::exact_gradient(dense_of_sparse, y, 1.0);
  CHECK((summarised - exact_one).norm() < 0.05 * exact_one.norm());
  CHECK((summarised - exact_one).norm() > 0);  // theta 0.5 did summarise some cells
  // Points at one location: none repels itself, the others count fully.
  Eigen::MatrixXd twins(3, 2);
  twins << 1, 1, 1, 1, 4, 5;
  const inspect::detail::SpaceTree tree(twins);
  double force[3];
  CHECK(tree.repulsion(0, 0.5, force) == Approx(1 + 1.0 / 26));
  CHECK(force[0] == Approx(-3.0 / 26 / 26));
}

// Four Gaussian blobs in 10 dimensions, 60 points each, far apart.
static Eigen::MatrixXd blobs(std::vector<index_t>& labels) {
  Rng rng(17);
  Eigen::MatrixXd x(240, 10);
  labels.clear();
  for (index_t i = 0; i < 240; ++i) {
    labels.push_back(i % 4);
    for (index_t k = 0; k < 10; ++k) x(i, k) = rng.normal() + (k == i % 4 ? 12.0 : 0.0);
  }
  return x;
}

TEST_CASE("tsne: KL divergence falls, well-separated clusters stay separated, either method", "[analysis][tsne]") {
  std::vector<index_t> labels;
  const Eigen::MatrixXd x = blobs(labels);
  for (const TsneMethod method : {TsneMethod::barnes_hut, TsneMethod::exact}) {
    INFO((method == TsneMethod::exact ? "exact" : "Barnes-Hut"));
    TsneOptions o;
    o.method = method;
    o.iterations = 500;
    o.perplexity = 20;
    const TsneResult r = tsne(x, o);
    REQUIRE(r.embedding.rows() == 240);
    REQUIRE(r.embedding.cols() == 2);
    CHECK(r.learning_rate == 50);  // max(240 / 12 / 4, 50)
    // KL at 0, 50, ..., 450 and at 500; it ends far below where it began and
    // keeps falling once the exaggeration is over.
    REQUIRE(r.kl_divergence.size() == 11);
    CHECK(r.kl_divergence.front().first == 0);
    CHECK(r.kl_divergence.back().first == 500);
    CHECK(r.kl_divergence.back().second < 0.5 * r.kl_divergence.front().second);
    CHECK(r.kl_divergence.back().second < r.kl_divergence[6].second);  // iteration 300
    // Every point nearer its own cluster's centre than any other's, and
    // clusters far apart next to their own spread.
    Eigen::MatrixXd centres = Eigen::MatrixXd::Zero(4, 2);
    for (index_t i = 0; i < 240; ++i) centres.row(labels[static_cast<std::size_t>(i)]) += r.embedding.row(i) / 60;
    double spread = 0;
    for (index_t i = 0; i < 240; ++i) {
      Eigen::Index nearest = 0;
      (centres.rowwise() - r.embedding.row(i)).rowwise().squaredNorm().minCoeff(&nearest);
      CHECK(nearest == labels[static_cast<std::size_t>(i)]);
      spread = std::max(spread, (r.embedding.row(i) - centres.row(labels[static_cast<std::size_t>(i)])).norm());
    }
    for (index_t a = 0; a < 4; ++a)
      for (index_t b = a + 1; b < 4; ++b) CHECK((centres.row(a) - centres.row(b)).norm() > 2 * spread);
  }
}

TEST_CASE("tsne: seeded and reproducible, whatever the threads; bad options refused", "[analysis][tsne]") {
  std::vector<index_t> labels;
  const Eigen::MatrixXd x = blobs(labels);
  TsneOptions o;
  o.iterations = 120;
  o.exaggeration_iterations = 60;
  o.pca_init = false;
  o.seed = 4;
  o.threads = 1;
  const TsneResult one = tsne(x, o);
  o.threads = 2;
  const TsneResult two = tsne(x, o);
  CHECK(one.embedding == two.embedding);  // bit for bit
  CHECK(one.kl_divergence == two.kl_divergence);
  o.seed = 5;
  CHECK(tsne(x, o).embedding != one.embedding);
  o.dimensions = 3;
  CHECK(tsne(x, o).embedding.cols() == 3);

  TsneOptions bad;
  bad.perplexity = 240;
  CHECK_THROWS_WITH(tsne(x, bad), Contains("perplexity must be in (0, 240) for 240 samples"));
  bad = {};
  bad.dimensions = 4;
  CHECK_THROWS_WITH(tsne(x, bad), Contains("dimensions must be in [1, 3] for Barnes-Hut"));
  bad = {};
  bad.exaggeration_iterations = 2000;
  CHECK_THROWS_WITH(tsne(x, bad), Contains("exaggeration_iterations (2000) <= iterations (1000)"));
  Eigen::MatrixXd holed = x;
  holed(7, 3) = std::nan("");
  CHECK_THROWS_WITH(tsne(holed, {}), Contains("sample 7 holds a non-finite value"));
  CHECK_THROWS_WITH(tsne(Eigen::MatrixXd(2, 3), {}), Contains("at least 3 samples"));
}

TEST_CASE("layer_activations: a layer's output for every sample, batch by batch", "[analysis]") {
  Sequential<double> model(Shape{3}, 2);
  model.add<nn::Dense<double>>(3, 4);
  model.add<nn::Tanh<double>>();
  model.add<nn::Dense<double>>(4, 2);
  Rng rng(8);
  const Tensor<double> x = test::random_tensor(Shape{7, 3}, rng);
  model.forward(x);
  const Tensor<double> whole = model.output(1);
  const Tensor<double> batched = layer_activations(model, "tanh_1", x, 3);
  REQUIRE(batched.shape() == Shape{7, 4});
  CHECK(test::max_abs_difference(batched, whole) < 1e-15);
  CHECK_THROWS_WITH(layer_activations(model, "tanh_1", x, 0), Contains("batch_size must be positive"));
  CHECK_THROWS(layer_activations(model, "nope", x));
}

TEST_CASE("InputPlane: axes, the plane through three samples, coordinates back", "[analysis][boundary]") {
  const auto axes = InputPlane<double>::axes(Shape{2});
  const Tensor<double> points(Shape{2, 2}, {0.5, -1, 2, 3});
  CHECK((axes.coordinates(points) - points.matrix()).cwiseAbs().maxCoeff() == 0);

  const Tensor<double> a(Shape{1, 3}, {1, 1, 1}), b(Shape{1, 3}, {3, 1, 1}), c(Shape{1, 3}, {2, 4, 1});
  const auto plane = InputPlane<double>::through(a, b, c);
  Tensor<double> three(Shape{3, 3}, {1, 1, 1, 3, 1, 1, 2, 4, 1});
  const Eigen::MatrixXd uv = plane.coordinates(three);
  CHECK(uv.row(0).norm() < 1e-12);                                             // a at (0, 0)
  CHECK((uv.row(1) - Eigen::RowVector2d(1, 0)).norm() < 1e-12);                // b at (1, 0)
  CHECK((uv.row(2) - Eigen::RowVector2d(0.5, 1)).norm() < 1e-12);              // c: half way along b - a, v = 1
  CHECK(std::abs((plane.axis_u.flat() * plane.axis_v.flat()).sum()) < 1e-12);  // orthogonal axes
  CHECK_THROWS_WITH(InputPlane<double>::through(a, a, c), Contains("same point"));
  CHECK_THROWS_WITH(InputPlane<double>::through(a, b, Tensor<double>(Shape{1, 3}, {5, 1, 1})), Contains("one line"));
  CHECK_THROWS_WITH(InputPlane<double>::axes(Shape{1}), Contains("fewer than 2 features"));
}

TEST_CASE(
    "decision_grid: a model trained on separable blobs puts every point in its class's region, and the "
    "grid's classes are predict's",
    "[analysis][boundary]") {
  Rng rng(21);
  Tensor<float> x(Shape{200, 2}), y(Shape{200});
  for (index_t n = 0; n < 200; ++n) {  // two blobs, well apart along (1, 1)
    const int label = static_cast<int>(n % 2);
    const double centre = label ? 1.5 : -1.5;
    x.data()[2 * n] = static_cast<float>(centre + 0.4 * rng.normal());
    x.data()[2 * n + 1] = static_cast<float>(centre + 0.4 * rng.normal());
    y[n] = static_cast<float>(label);
  }
  Sequential<float> model(Shape{2}, 4);
  model.add<nn::Dense<float>>(2, 2);
  optim::Adam<float> adam(model.parameters(), 0.05f);
  nn::SoftmaxCrossEntropy<float> loss;
  const auto plane = InputPlane<float>::axes(Shape{2});
  DecisionBoundaryOptions every;
  every.grid.width = 64;
  every.grid.height = 48;
  DecisionBoundaryRecorder<float> recorder(model, plane, plane.range_of(x), every);
  train::FitOptions<float> o = test::quiet_fit<float>(30, 20);
  o.callbacks = {&recorder};
  train::fit(model, adam, loss, x, y, o);
  REQUIRE(recorder.frames().size() == 31);  // before training and after each epoch
  CHECK(recorder.frames().front().epochs_done == 0);
  CHECK(recorder.frames().back().epochs_done == 30);

  const DecisionGrid& grid = recorder.frames().back().grid;
  CHECK(grid.classes == 2);
  // Every training point's cell holds its class.
  const Eigen::MatrixXd uv = plane.coordinates(x);
  for (index_t n = 0; n < 200; ++n) {
    const auto column =
        static_cast<index_t>((uv(n, 0) - grid.range.u_min) / (grid.range.u_max - grid.range.u_min) * 64);
    const auto row = static_cast<index_t>((grid.range.v_max - uv(n, 1)) / (grid.range.v_max - grid.range.v_min) * 48);
    INFO("point " << n);
    CHECK(grid.at(column, row) == static_cast<index_t>(y[n]));
  }
  // Both classes have a region, split by one line: the far corners differ.
  CHECK(grid.at(0, 47) == 0);
  CHECK(grid.at(63, 0) == 1);

  // The grid's classes and confidences are predict's at the cell centres
  // (the same batch, so the same arithmetic).
  const Tensor<float> centres = grid_inputs(plane, grid, 0, 64 * 48);
  const Tensor<float> logits = model.predict(centres, 64 * 48);
  const std::vector<index_t> predicted = predicted_classes(logits);
  CHECK(predicted == grid.predicted);
  const double gap = static_cast<double>(logits.matrix()(5, 1) - logits.matrix()(5, 0));
  CHECK(grid.confidence[5] == Approx(1 / (1 + std::exp(-std::abs(gap)))).epsilon(1e-6));

  // A byte budget of a few cells per batch: the same grid.
  DecisionGridOptions tiny = every.grid;
  tiny.max_bytes = 64;  // 2 inputs and 2 outputs, as values and gradients, of 4 bytes: 2 cells a pass
  CHECK(inspect::detail::rows_per_pass(model, Shape{1, 2}, tiny.max_bytes) == 2);
  const DecisionGrid small_batches = decision_grid(model, plane, grid.range, tiny);
  CHECK(small_batches.predicted == grid.predicted);
  CHECK_THROWS_WITH(decision_grid(model, plane, PlaneRange{1, 1, 0, 1}), Contains("empty range"));
  DecisionGridOptions none;
  none.width = 0;
  CHECK_THROWS_WITH(decision_grid(model, plane, grid.range, none), Contains("0x200 cells"));
}

TEST_CASE("decision_map: class colours paler where unsure, the boundary dark, the points ringed",
          "[analysis][boundary]") {
  DecisionGrid grid;
  grid.width = 20;
  grid.height = 10;
  grid.classes = 2;
  grid.range = {0, 20, 0, 10};
  for (index_t row = 0; row < 10; ++row)
    for (index_t column = 0; column < 20; ++column) {
      grid.predicted.push_back(column >= 10);
      grid.confidence.push_back(column < 5 ? 1.0f : 0.5f);
    }
  const Eigen::MatrixXd uv = (Eigen::MatrixXd(1, 2) << 15.5, 4.5).finished();  // cell (15, 5)
  const viz::Image map = viz::decision_map(grid, uv, {0});
  const viz::Rgb blue = viz::class_colour(0), orange = viz::class_colour(1);
  auto mixed = [](viz::Rgb c, double strength) {
    auto m = [strength](std::uint8_t v) {
      return static_cast<std::uint8_t>(std::lround(255 + (static_cast<double>(v) - 255) * strength));
    };
    return viz::Rgb{m(c.r), m(c.g), m(c.b)};
  };
  CHECK(map.at(0, 0) == mixed(blue, 0.75));  // sure: strong
  CHECK(map.at(7, 0) == mixed(blue, 0.2));   // a coin toss: pale
  CHECK(map.at(12, 0) == mixed(orange, 0.2));
  CHECK(map.at(9, 0) == viz::Rgb{60, 60, 60});       // the boundary, on the left of the change
  CHECK(map.at(15, 5) == blue);                      // the point, in its true class's colour
  CHECK(map.at(15, 5 - 4) == viz::Rgb{34, 34, 34});  // its ring
  CHECK_THROWS_WITH(viz::decision_map(grid, uv, {}), Contains("1x2 point coordinates for 0 labels"));
}

namespace {
// Sets a layer's weight (in place) and zeroes its bias.
void set_weights(Layer<double>& layer, std::initializer_list<double> weight) {
  Tensor<double>& w = layer.parameters()[0]->value;
  REQUIRE(static_cast<index_t>(weight.size()) == w.size());
  std::copy(weight.begin(), weight.end(), w.begin());
  layer.parameters()[1]->value.flat().setZero();
}

// logit 0 = 2 relu(x0), logit 1 = relu(x1); x2 reaches the hidden layer and goes no further.
Sequential<double> known_causes() {
  Sequential<double> model(Shape{3}, 1);
  model.add<nn::Dense<double>>(3, 3);
  model.add<nn::ReLU<double>>();
  model.add<nn::Dense<double>>(3, 2);
  set_weights(model.layer(0), {1, 0, 0, 0, 1, 0, 0, 0, 1});
  set_weights(model.layer(2), {2, 0, 0, 0, 1, 0});
  return model;
}
}  // namespace

TEST_CASE("ActivationPatching finds the unit and the channel that carry the difference, known by construction",
          "[analysis][causal]") {
  Sequential<double> model = known_causes();
  const Tensor<double> clean(Shape{1, 3}, {1, 0, 1}), corrupted(Shape{1, 3}, {0, 0, 1});
  ActivationPatching<double> patching(model, clean, corrupted, /*target=*/0, /*foil=*/1);
  CHECK(patching.clean_metric() == 2);  // 2 - 0
  CHECK(patching.corrupted_metric() == 0);
  const PatchResult whole = patching.patch_layer("relu_1");
  CHECK(whole.patched == 2);
  CHECK(whole.restored == 1);
  const std::vector<PatchResult> units = patching.patch_units("relu_1");
  REQUIRE(units.size() == 3);
  CHECK(units[0].restored == 1);  // the cause
  CHECK(units[1].restored == 0);  // the same in both runs
  CHECK(units[2].restored == 0);  // differs in neither run and feeds nothing
  CHECK(patching.patch_units("dense_1")[0].restored == 1);
  // Clean and corrupted alike: nothing to restore.
  CHECK(std::isnan(ActivationPatching<double>(model, clean, clean, 0).patch_layer("relu_1").restored));

  // Channels: conv channel 0 is x, channel 1 is -x; only channel 0 reaches logit 0.
  Sequential<double> conv(Shape{1, 2, 2}, 1);
  conv.add<nn::Conv2D<double>>(1, 2, nn::Size2{1, 1});
  conv.add<nn::ReLU<double>>();
  conv.add<nn::Flatten<double>>();
  conv.add<nn::Dense<double>>(8, 2);
  set_weights(conv.layer(0), {1, -1});
  set_weights(conv.layer(3), {1, 1, 1, 1, 0, 0, 0, 0,  //
                              0, 0, 0, 0, 1, 1, 1, 1});
  ActivationPatching<double> by_channel(conv, Tensor<double>(Shape{1, 1, 2, 2}, 1.0),
                                        Tensor<double>(Shape{1, 1, 2, 2}, -1.0), 0);
  CHECK(by_channel.clean_metric() == 4);  // logit 0 alone: relu(1) over 4 pixels
  const std::vector<PatchResult> channels = by_channel.patch_channels("relu_1");
  REQUIRE(channels.size() == 2);
  CHECK(channels[0].restored == 1);
  CHECK(channels[1].restored == 0);
  CHECK_THROWS_WITH(by_channel.patch_channels("dense_1"), Contains("has no channels"));

  CHECK_THROWS_WITH(ActivationPatching<double>(model, clean, Tensor<double>(Shape{2, 3}), 0),
                    Contains("differ in shape"));
  CHECK_THROWS_WITH(ActivationPatching<double>(model, clean, corrupted, 2), Contains("target 2 and foil -1"));
}

TEST_CASE("average_ablation_effect: each unit's or group's mean effect over a data set", "[analysis][causal]") {
  Sequential<double> model = known_causes();
  const Tensor<double> x(Shape{2, 3}, {1, 0, 1, 2, 0, 0});
  const std::vector<double> effect = average_ablation_effect(model, "relu_1", x, {0, 0});
  CHECK(effect == std::vector<double>{3, 0, 0});  // (2 + 4) / 2: only unit 0 feeds logit 0
  CHECK(average_ablation_effect(model, "relu_1", x, {0, 0}, {0, -1, 0}) == std::vector<double>{3});
  CHECK(average_ablation_effect(model, "relu_1", x, {1, 1}) == std::vector<double>{0, 0, 0});
}

TEST_CASE("DecisionPaths: scores and edges of a hand-built network, known by construction", "[analysis][paths]") {
  // h = relu(x) (identity weights), out = W2 h with W2 = [[1, 0, 2], [0, 1, 0]], no biases.
  Sequential<double> model(Shape{3}, 1);
  model.add<nn::Dense<double>>(3, 3);
  model.add<nn::ReLU<double>>();
  model.add<nn::Dense<double>>(3, 2);
  auto& w1 = *model.layer("dense_1").parameters()[0];
  auto& w2 = *model.layer("dense_2").parameters()[0];
  w1.value.matrix() = Eigen::MatrixXd::Identity(3, 3);
  w2.value.matrix() << 1, 0, 2, 0, 1, 0;
  for (const char* dense : {"dense_1", "dense_2"}) model.layer(dense).parameters()[1]->value.flat().setZero();
  DecisionPathOptions two;
  two.top_k = 2;
  DecisionPaths<double> paths(model, {"dense_1", "dense_2"}, two);
  const Tensor<double> x(Shape{1, 3}, {1, 2, 0.5});
  const DecisionPath p = paths.explain(x, 0);
  CHECK(p.target == 0);
  CHECK(p.output == 2);  // 1 + 2 x 0.5
  REQUIRE(p.layers.size() == 2);
  CHECK(p.layers[0].units == 3);
  CHECK_FALSE(p.layers[0].channels);
  // dF/dh = (1, 0, 2): scores a * g = (1, 0, 1); the tie goes to the lower unit.
  REQUIRE(p.layers[0].top.size() == 2);
  CHECK(p.layers[0].top[0].unit == 0);
  CHECK(p.layers[0].top[0].score == 1);
  CHECK(p.layers[0].top[1].unit == 2);
  CHECK(p.layers[0].top[1].score == 1);
  CHECK_FALSE(p.layers[0].output);
  CHECK(p.layers[1].output);
  REQUIRE(p.layers[1].top.size() == 1);  // the last layer: the class's own unit
  CHECK(p.layers[1].top[0].unit == 0);
  CHECK(p.layers[1].top[0].score == 2);
  REQUIRE(p.edges.size() == 2);
  CHECK(p.edges[0].from == 0);
  CHECK(p.edges[0].weight == 1);  // 1 x 1
  CHECK(p.edges[1].from == 2);
  CHECK(p.edges[1].weight == 1);        // 0.5 x 2
  CHECK(paths.explain(x).target == 0);  // the predicted class: 2 > ... a tie goes to the first
  // Class 1 goes through unit 1 alone.
  const DecisionPath q = paths.explain(x, 1);
  CHECK(q.layers[0].top[0].unit == 1);
  CHECK(q.layers[0].top[0].score == 2);

  CHECK_THROWS_WITH(DecisionPaths<double>(model, {"dense_2", "dense_1"}), Contains("in model order"));
  CHECK_THROWS_WITH(DecisionPaths<double>(model, {}), Contains("at least one layer"));
  DecisionPathOptions none;
  none.top_k = 0;
  CHECK_THROWS_WITH(DecisionPaths<double>(model, {"dense_1"}, none), Contains("top_k (0)"));
  CHECK_THROWS_WITH(paths.explain(Tensor<double>(Shape{2, 3})), Contains("one sample (1, ...) expected"));
}

TEST_CASE("DecisionPaths on a CNN: channel scores are gradient x activation per channel, edges follow the chain rule",
          "[analysis][paths]") {
  Sequential<double> model(Shape{1, 6, 6}, 3);
  model.add<nn::Conv2D<double>>(1, 3, nn::Size2{3, 3});
  model.add<nn::ReLU<double>>();
  model.add<nn::MaxPool2D<double>>(nn::Size2{2, 2});
  model.add<nn::Flatten<double>>();
  model.add<nn::Dense<double>>(12, 4);
  Rng rng(12);
  const Tensor<double> x = test::random_tensor(Shape{1, 1, 6, 6}, rng);
  DecisionPathOptions all;
  all.top_k = 3;
  DecisionPaths<double> paths(model, {"conv2d_1", "max_pool2d_1", "dense_1"}, all);
  const DecisionPath p = paths.explain(x, 2);
  REQUIRE(p.layers.size() == 3);
  CHECK(p.layers[0].channels);
  CHECK(p.layers[0].units == 3);
  // The scores are Captum's layer gradient x activation, summed per channel, largest first.
  const Tensor<double> gxa = LayerGradientXActivation<double>(model, "conv2d_1").attribute(x, {2});
  for (const PathUnit& u : p.layers[0].top) {
    double sum = 0;
    for (index_t i = 0; i < 16; ++i) sum += gxa[u.unit * 16 + i];
    CHECK(u.score == Approx(sum).margin(1e-12));
  }
  CHECK(p.layers[0].top[0].score >= p.layers[0].top[1].score);
  CHECK(p.layers[0].top[1].score >= p.layers[0].top[2].score);
  // Pooled channel j comes from conv channel j alone: the edges are diagonal,
  // and each conv channel's edges give back its score.
  REQUIRE(p.edges.size() == 9 + 3);
  for (const PathEdge& e : p.edges) {
    if (e.layer != 0) continue;
    INFO("conv channel " << e.from << " to pooled channel " << e.to);
    if (e.from != e.to) {
      CHECK(e.weight == 0);
    } else {
      const auto conv = std::find_if(p.layers[0].top.begin(), p.layers[0].top.end(),
                                     [&](const PathUnit& u) { return u.unit == e.from; });
      CHECK(e.weight == Approx(conv->score).margin(1e-12));
    }
  }
  // Into the class: the pooled channels' edges are their scores (dense_1 is adjacent).
  for (const PathEdge& e : p.edges)
    if (e.layer == 1) {
      const auto pooled = std::find_if(p.layers[1].top.begin(), p.layers[1].top.end(),
                                       [&](const PathUnit& u) { return u.unit == e.from; });
      CHECK(e.weight == Approx(pooled->score).margin(1e-12));
    }

  // Class frequencies are the explained paths counted.
  DecisionPathOptions one;
  one.top_k = 1;
  one.batch_size = 3;
  DecisionPaths<double> single(model, {"conv2d_1", "max_pool2d_1", "dense_1"}, one);
  const Tensor<double> batch = test::random_tensor(Shape{8, 1, 6, 6}, rng);
  const std::vector<index_t> targets{0, 1, 1, 3, 1, 0, 3, 1};
  const std::vector<ClassPath> classes = single.frequencies(batch, targets);
  REQUIRE(classes.size() == 4);
  CHECK(classes[1].samples == 4);
  CHECK(classes[2].samples == 0);
  std::vector<std::vector<double>> expected(4, std::vector<double>(3, 0));
  for (index_t n = 0; n < 8; ++n) {
    Tensor<double> sample;
    copy_rows(batch, n, 1, sample);
    const DecisionPath path = single.explain(sample, targets[static_cast<std::size_t>(n)]);
    expected[static_cast<std::size_t>(targets[static_cast<std::size_t>(n)])]
            [static_cast<std::size_t>(path.layers[0].top[0].unit)] += 1;
  }
  for (const index_t k : {0, 1, 3}) {
    INFO("class " << k);
    const PathLayer& conv = classes[static_cast<std::size_t>(k)].layers[0];
    double total = 0;
    for (const PathUnit& u : conv.top) {
      CHECK(u.score == Approx(expected[static_cast<std::size_t>(k)][static_cast<std::size_t>(u.unit)] /
                              static_cast<double>(classes[static_cast<std::size_t>(k)].samples)));
      total += u.score;
    }
    CHECK(total <= 1.0 + 1e-12);
    CHECK(classes[static_cast<std::size_t>(k)].layers[2].top.front().unit == k);  // the class's own output
    CHECK(classes[static_cast<std::size_t>(k)].layers[2].top.front().score == 1);
  }
  CHECK_THROWS_WITH(single.frequencies(batch, {1, 2}), Contains("2 targets for 8 samples"));

  // Drawn: a node per unit with its hover text, an edge per pair, balanced markup; DOT too.
  const std::string svg = viz::to_svg_path(p, {"a", "b", "c", "d"});
  std::size_t nodes = 0, lines = 0;
  for (std::size_t at = svg.find("<g class=\"node\">"); at != std::string::npos;
       at = svg.find("<g class=\"node\">", at + 1))
    ++nodes;
  for (std::size_t at = svg.find("<line "); at != std::string::npos; at = svg.find("<line ", at + 1)) ++lines;
  CHECK(nodes == 3 + 3 + 1);
  CHECK(lines == 12);
  CHECK_THAT(svg, Contains("class c"));
  CHECK_THAT(svg, Contains(">the class's output</text>"));
  CHECK_THAT(svg, Contains("<title>conv2d_1 channel "));
  CHECK(test::balanced_markup(svg));
  // The class table names its columns after the first class with samples, and skips the output layer.
  const std::vector<ClassPath> from_empty(classes.begin() + 2, classes.end());  // class 2 had no sample
  const std::string html = viz::detail::decision_paths_html("paths", {{"#0", p}}, from_empty, {}, "");
  CHECK_THAT(html, Contains("<th>samples</th><th>conv2d_1: most often on the path</th><th>max_pool2d_1: most often "
                            "on the path</th></tr><tr><td>3</td><td>2</td>"));
  const std::string dot = viz::to_dot(p);
  CHECK_THAT(dot, Contains("subgraph cluster_0 {\n    label=\"conv2d_1\";"));
  CHECK_THAT(dot, Contains("n1_" + std::to_string(p.edges.back().from) + " -> n2_2"));
}

TEST_CASE("group_metrics: per-group rates and Fairlearn's parity differences, by hand", "[analysis][fairness]") {
  // A: TP, FN, FP, TN. B: 3 TP, 2 TN. C: no positives; 2 FP, 1 TN.
  const std::vector<std::string> group{"A", "B", "A", "B", "C", "A", "B", "A", "B", "C", "B", "C"};
  const std::vector<index_t> truth{1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0};
  const std::vector<index_t> predicted{1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 0, 0};
  const GroupFairness f = group_metrics(predicted, truth, group, 1);
  REQUIRE(f.groups.size() == 3);
  const GroupMetrics &a = f.groups[0], &b = f.groups[1], &c = f.groups[2];
  CHECK(a.group == "A");
  CHECK(a.samples == 4);
  CHECK(a.true_positives == 1);
  CHECK(a.false_negatives == 1);
  CHECK(a.false_positives == 1);
  CHECK(a.true_negatives == 1);
  CHECK(a.accuracy == 0.5);
  CHECK(a.selection_rate == 0.5);
  CHECK(a.true_positive_rate == 0.5);
  CHECK(a.false_positive_rate == 0.5);
  CHECK(b.samples == 5);
  CHECK(b.accuracy == 1);
  CHECK(b.selection_rate == Approx(0.6));
  CHECK(b.true_positive_rate == 1);
  CHECK(b.false_positive_rate == 0);
  CHECK(c.accuracy == Approx(1.0 / 3));
  CHECK(c.selection_rate == Approx(2.0 / 3));
  CHECK(std::isnan(c.true_positive_rate));  // no positives: left out of the TPR difference
  CHECK(c.false_positive_rate == Approx(2.0 / 3));
  CHECK(f.demographic_parity_difference == Approx(2.0 / 3 - 0.5));
  CHECK(f.demographic_parity_ratio == Approx(0.75));
  CHECK(f.equal_opportunity_difference == Approx(0.5));
  CHECK(f.equalized_odds_difference == Approx(2.0 / 3));  // the FPR spread is the larger
  const std::string text = f.to_text("sex");
  CHECK_THAT(text, Contains("                 sex  samples  accuracy  selection      TPR      FPR\n"));
  CHECK_THAT(text, Contains("                   C        3    0.3333     0.6667      n/a   0.6667\n"));
  CHECK_THAT(f.to_json(), Contains("{\"group\":\"C\",\"samples\":3,\"tp\":0,\"fp\":2,\"tn\":1,\"fn\":0,"));
  CHECK_THAT(f.to_json(), Contains("\"true_positive_rate\":null"));
  // The other class as the positive one: rates swap their meaning.
  const GroupFairness other = group_metrics(predicted, truth, group, 0);
  CHECK(other.groups[2].true_positive_rate == Approx(1.0 / 3));
  CHECK(other.groups[2].selection_rate == Approx(1.0 / 3));
  CHECK_THROWS_WITH(group_metrics({1}, {1, 0}, {"a"}), Contains("1 predictions, 2 labels and 1 group values"));
}
