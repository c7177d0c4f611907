// What the analyses of inspect/ cost, on MNIST test digits and the seed CNN
// (its weights do not change the arithmetic; one epoch on 10,000 digits makes
// the maps and paths look like the main job's): each the median of 3 runs.
//
//   pca        2,000 digits x 784 pixels to 50 components (randomized)
//   tsne       t-SNE (Barnes-Hut, scikit-learn's defaults) of those 2,000 x 50
//   grid       the decision-boundary grid, 200 x 200 cells through the seed CNN
//              on the plane of the digits' first two principal components
//   patching   activation patching of each of conv2d_1's 32 channels, 1,000
//              clean digits against 1,000 others
//   ablation   average_ablation_effect of each conv2d_1 channel over 1,000 digits
//   paths      DecisionPaths::frequencies over 1,000 digits (3 layers, top 5)
//
// Prints "glassbox analyses <what> <seconds>", and writes the t-SNE input to
// OUT_DIR/tsne_input.txt (and glassbox's KL) for bench/analyses.sh, which runs
// scikit-learn's TSNE on the same input.
//
//   bench_analyses [MNIST_DIR] [OUT_DIR]   (data/mnist, build/bench)

#include <cstdio>
#include <glassbox/glassbox.hpp>
#include <glassbox/inspect/decision_boundary.hpp>
#include <glassbox/inspect/decision_path.hpp>
#include <glassbox/inspect/tsne.hpp>
#include <string>

#include "bench_util.hpp"

int main(int argc, char** argv) try {
  using namespace glassbox;
  const std::string dir = argc > 1 ? argv[1] : "data/mnist";
  const std::string out = argc > 2 ? argv[2] : "build/bench";
  io::Mnist<float> data = io::load_mnist<float>(dir);
  Tensor<float> digits, others;
  copy_rows(data.test_images, 0, 2000, digits);
  copy_rows(data.test_images, 2000, 1000, others);

  Sequential<float> model = bench::seed_cnn();
  {
    optim::Adam<float> adam(model.parameters(), 1e-3f);
    nn::SoftmaxCrossEntropy<float> loss;
    train::FitOptions<float> fit;
    fit.epochs = 1;
    fit.batch_size = 32;
    fit.verbosity = train::Verbosity::silent;
    Tensor<float> x, y;
    copy_rows(data.test_images, 0, 10000, x);
    copy_rows(data.test_labels, 0, 10000, y);
    train::fit(model, adam, loss, x, y, fit);
  }
  std::printf("threads %d\n", num_threads());
  auto report = [](const char* what, double seconds) { std::printf("glassbox analyses %s %.3f\n", what, seconds); };

  Eigen::MatrixXd principal;
  report("pca", bench::median_seconds([&] { principal = inspect::pca(digits, 50).project(digits); }, 3));
  inspect::TsneResult map;
  report("tsne", bench::median_seconds([&] { map = inspect::tsne(principal); }, 3));
  std::string text;
  for (index_t i = 0; i < principal.rows(); ++i) {
    for (index_t j = 0; j < principal.cols(); ++j) text += fmt::format("{}{:.17g}", j ? " " : "", principal(i, j));
    text += '\n';
  }
  write_text_file(out + "/tsne_input.txt", text);
  std::printf("glassbox tsne kl %.4f\n", map.kl_divergence.back().second);

  const Tensor<float> thousand = [&] {
    Tensor<float> t;
    copy_rows(digits, 0, 1000, t);
    return t;
  }();
  const auto plane = inspect::InputPlane<float>::principal(thousand);
  const inspect::PlaneRange range = plane.range_of(thousand);
  report("grid", bench::median_seconds([&] { inspect::decision_grid(model, plane, range); }, 3));

  inspect::ActivationPatching<float> patching(model, thousand, others, 7, 1);
  report("patching", bench::median_seconds([&] { patching.patch_channels("conv2d_1"); }, 3));

  std::vector<index_t> channel_of(32 * 26 * 26);
  for (std::size_t u = 0; u < channel_of.size(); ++u) channel_of[u] = static_cast<index_t>(u / (26 * 26));
  report("ablation", bench::median_seconds(
                         [&] { inspect::average_ablation_effect(model, "conv2d_1", thousand, {}, channel_of); }, 3));

  inspect::DecisionPaths<float> paths(model, {"conv2d_1", "max_pool2d_1", "dense_1"});
  report("paths", bench::median_seconds([&] { paths.frequencies(thousand); }, 3));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_analyses: %s\n", e.what());
  return 1;
}
