// Feature analysis of the seed CNN: which pixels make it say "7", are those
// explanations faithful, and how robust is the model?
//
// Trains the seed CNN (Conv2D(32, 3x3, relu) -> MaxPool 2x2 -> Flatten ->
// Dense(10), Adam 1e-3, batch 32), then for 16 test digits computes six
// attribution maps (gradient, gradient x input, Integrated Gradients,
// SmoothGrad, Grad-CAM on the conv layer, occlusion) and writes them side by
// side as a PNG (see write_grid) and as CSV. (Grad-CAM is meant for the last conv layer of a deep
// network; on the seed CNN's single conv layer, right after the pixels, the
// ReLU'd biases light up the whole background, and the map ranks poorly in
// the deletion test: the numbers say so.) It prints:
//   - each method's deletion and insertion areas (a random ranking as control),
//   - the parameter-randomization sanity check per layer,
//   - Integrated Gradients' convergence deltas at 50 and 200 steps,
//   - accuracy under Gaussian noise, FGSM and PGD of increasing strength.
//
//   saliency [MNIST_DIR] [EPOCHS] [OUT_DIR]   (data/mnist, 5, runs/saliency)

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <glassbox/glassbox.hpp>
#include <glassbox/viz/png.hpp>
#include <memory>
#include <string>
#include <vector>

namespace {
using namespace glassbox;

struct Method {
  std::string name;
  Tensor<float> maps;  // (16, 1, 28, 28)
};

// Rows: digits; columns: the digit, then each method's map, enlarged 3x.
// Signed maps (gradient x input, IG, occlusion) use the diverging colormap
// (red for, blue against, white zero); magnitudes use viridis; Grad-CAM is
// laid over the digit. Each map is scaled to its own largest magnitude.
void write_grid(const std::string& path, const Tensor<float>& digits, const std::vector<Method>& methods) {
  auto is_signed = [](const Method& m) {
    return m.name == "gradient_x_input" || m.name == "integrated_gradients" || m.name == "occlusion";
  };
  std::vector<Tensor<float>> shown;  // |map| where the magnitude is what matters
  for (const Method& m : methods) {
    shown.push_back(m.maps);
    if (!is_signed(m)) shown.back().flat() = shown.back().flat().abs();
  }
  std::vector<viz::Image> cells;
  for (index_t d = 0; d < digits.dim(0); ++d) {
    const viz::Image digit = viz::grayscale(viz::plane(digits, d));
    cells.push_back(viz::enlarge(digit, 3));
    for (std::size_t k = 0; k < methods.size(); ++k) {
      const Method& m = methods[k];
      viz::Image heat = viz::heatmap(viz::plane(shown[k], d), is_signed(m));
      if (m.name == "grad_cam") heat = viz::overlay(digit, heat, 0.6);
      cells.push_back(viz::enlarge(heat, 3));
    }
  }
  viz::write_png(path, viz::tile(cells, static_cast<index_t>(methods.size()) + 1, 4));
}

void print_curve(const char* title, const char* level, const std::vector<inspect::RobustnessPoint>& curve) {
  std::printf("%s\n  %-8s accuracy\n", title, level);
  for (const inspect::RobustnessPoint& p : curve) std::printf("  %-8.3g %6.2f%%\n", p.level, 100 * p.accuracy);
}
}  // namespace

int main(int argc, char** argv) try {
  const std::string dir = argc > 1 ? argv[1] : "data/mnist";
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 5;
  const std::string out = argc > 3 ? argv[3] : "runs/saliency";

  const io::Mnist<float> data = io::load_mnist<float>(dir);
  std::printf("MNIST from %s: %td training and %td test images\n", dir.c_str(), data.train_images.dim(0),
              data.test_images.dim(0));
  Sequential<float> model(Shape{1, 28, 28}, /*seed=*/1);
  nn::Conv2D<float>::Options relu;
  relu.activation = nn::Activation::relu;
  model.add<nn::Conv2D<float>>(1, 32, nn::Size2{3, 3}, relu);
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(32 * 13 * 13, 10);
  optim::Adam<float> adam(model.parameters(), 1e-3f);
  nn::SoftmaxCrossEntropy<float> loss;
  train::FitOptions<float> options;
  options.epochs = epochs;
  options.batch_size = 32;
  options.seed = 7;
  options.verbosity = train::Verbosity::silent;
  train::fit(model, adam, loss, data.train_images, data.train_labels, options);
  const index_t evaluated = std::min<index_t>(1000, data.test_images.dim(0));
  Tensor<float> test_x, test_y;
  copy_rows(data.test_images, 0, evaluated, test_x);
  copy_rows(data.test_labels, 0, evaluated, test_y);
  std::printf("Trained %d epoch(s); accuracy on %td test images: %.2f%%\n", epochs, evaluated,
              100 * inspect::classification_accuracy(model, test_x, test_y));

  // ---- Six explanations of the predicted class of 16 test digits.
  Tensor<float> digits;
  copy_rows(data.test_images, 0, 16, digits);
  const std::vector<index_t> predicted = inspect::predicted_classes(model.forward(digits));
  inspect::Saliency<float> gradient(model);
  inspect::InputXGradient<float> input_x_gradient(model);
  inspect::IntegratedGradients<float> integrated(model);  // 50 Gauss-Legendre steps, black baseline
  inspect::NoiseTunnelOptions noise;
  noise.samples = 50;
  noise.stdev = 0.15;  // 15% of the pixel range, as Smilkov et al. suggest
  inspect::NoiseTunnel<float> smoothgrad(model, gradient, noise);
  inspect::GradCam<float> grad_cam(model, "conv2d_1");
  inspect::Occlusion<float> occlusion(model);  // 4x4 windows, stride 2, black
  std::vector<std::pair<std::string, inspect::Attribution<float>*>> methods{{"gradient", &gradient},
                                                                            {"gradient_x_input", &input_x_gradient},
                                                                            {"integrated_gradients", &integrated},
                                                                            {"smoothgrad", &smoothgrad},
                                                                            {"grad_cam", &grad_cam},
                                                                            {"occlusion", &occlusion}};
  std::vector<Method> maps;
  for (auto& [name, method] : methods) maps.push_back({name, method->attribute(digits, predicted)});
  const std::vector<double> ig_deltas = integrated.convergence_delta();  // before the sanity check reuses it

  std::filesystem::create_directories(out);
  write_grid(out + "/heatmaps.png", digits, maps);
  std::string csv = "digit,predicted,method,values\n";
  for (const Method& m : maps)
    for (index_t d = 0; d < 16; ++d)
      csv += fmt::format("{},{},{},{}\n", d, predicted[static_cast<std::size_t>(d)], m.name,
                         fmt::join(m.maps.data() + d * 784, m.maps.data() + (d + 1) * 784, ";"));
  write_text_file(out + "/attributions.csv", csv);

  // ---- Faithfulness: remove the most important pixels first (to black).
  // Magnitudes rank the pixels, so signed and unsigned methods compare fairly.
  std::printf("\nDeletion / insertion (target probability as pixels go, 16 digits; lower / higher is better)\n");
  std::printf("  %-22s deletion  insertion\n", "method");
  inspect::DeletionInsertionOptions curve_options;
  auto print_areas = [&](const std::string& name, Tensor<float> attribution) {
    attribution.flat() = attribution.flat().abs();
    const inspect::DeletionInsertionCurves c =
        inspect::deletion_insertion(model, digits, attribution, predicted, curve_options);
    std::printf("  %-22s %8.3f  %9.3f\n", name.c_str(), c.deletion_area, c.insertion_area);
  };
  for (const Method& m : maps) print_areas(m.name, m.maps);
  Tensor<float> random(digits.shape());
  Rng rng(3);
  for (float& v : random) v = static_cast<float>(rng.uniform());
  print_areas("random (control)", random);

  // ---- Sanity check: do the maps depend on what the model learned?
  std::printf(
      "\nParameter randomization (Adebayo et al.): Spearman correlation of |attribution|, trained vs\n"
      "re-initialised from the top layer down (near 0: the map depends on the learned weights)\n");
  std::printf("  %-22s %-10s %s\n", "method", "layer", "rank correlation");
  for (auto& [name, method] : methods) {
    if (name == "smoothgrad" || name == "occlusion") continue;  // slower; same picture as gradient
    for (const inspect::RandomizationStep& s : inspect::randomization_test(model, *method, digits, predicted))
      std::printf("  %-22s %-10s %.3f\n", name.c_str(), s.layer.c_str(), s.spearman_abs);
  }

  // ---- Integrated Gradients' completeness on 100 test digits.
  Tensor<float> hundred;
  copy_rows(data.test_images, 0, std::min<index_t>(100, data.test_images.dim(0)), hundred);
  const std::vector<index_t> hundred_classes = inspect::predicted_classes(model.forward(hundred));
  const Tensor<float> at_zero = model.forward(Tensor<float>(Shape{1, 1, 28, 28}));
  const Tensor<float> at_digits = model.forward(hundred);
  auto relative_delta = [&](int steps) {
    inspect::IntegratedGradientsOptions ig_options;
    ig_options.steps = steps;
    ig_options.rule = inspect::IntegrationRule::riemann_middle;  // converges visibly; Gauss-Legendre is already tight
    inspect::IntegratedGradients<float> ig(model, ig_options);
    ig.attribute(hundred, hundred_classes);
    double sum = 0;
    for (index_t n = 0; n < hundred.dim(0); ++n) {
      const index_t c = hundred_classes[static_cast<std::size_t>(n)];
      sum += std::abs(ig.convergence_delta()[static_cast<std::size_t>(n)]) /
             std::abs(static_cast<double>(at_digits.matrix()(n, c) - at_zero.matrix()(0, c)));
    }
    return 100 * sum / static_cast<double>(hundred.dim(0));
  };
  const double delta_50 = relative_delta(50), delta_200 = relative_delta(200);
  std::printf(
      "\nIntegrated Gradients (midpoint rule) on %td test digits: mean |delta| / |F(x) - F(0)| = %.3f%% at 50 "
      "steps, %.3f%% at 200 steps (%s)\n",
      hundred.dim(0), delta_50, delta_200, delta_200 < delta_50 ? "falls as steps grow" : "DOES NOT FALL");
  std::printf("  deltas of the 16 digits (50 Gauss-Legendre steps):");
  for (double d : ig_deltas) std::printf(" %.2g", d);  // of the IG maps above
  std::printf("\n\n");

  // ---- Robustness on 1,000 test images, pixels kept in [0, 1].
  inspect::NoiseRobustnessOptions noise_options;
  noise_options.range = {0, 1};
  print_curve("Gaussian noise", "sigma",
              inspect::noise_robustness(model, test_x, test_y, {0.0, 0.1, 0.2, 0.3, 0.5}, noise_options));
  inspect::AttackOptions attack;
  attack.range = {0, 1};
  const std::vector<double> epsilons{0.0, 0.05, 0.1, 0.2};
  const auto fgsm =
      inspect::adversarial_robustness(model, loss, test_x, test_y, epsilons, inspect::Attack::fgsm, attack);
  print_curve("FGSM (L-inf)", "epsilon", fgsm);
  print_curve("PGD (L-inf, 10 steps, random start)", "epsilon",
              inspect::adversarial_robustness(model, loss, test_x, test_y, epsilons, inspect::Attack::pgd, attack));
  std::printf("FGSM at epsilon 0.1: %.2f%% of the clean %.2f%%\n", 100 * fgsm[2].accuracy, 100 * fgsm[0].accuracy);
  std::printf("Maps: %s/heatmaps.png (rows: digits; columns: input, then", out.c_str());
  for (const Method& m : maps) std::printf(" %s", m.name.c_str());
  std::printf("), values in %s/attributions.csv\n", out.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "saliency: %s\n", e.what());
  return 1;
}
