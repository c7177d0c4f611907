// Decision boundaries on three generated 2-D data sets (two moons, circles,
// spirals; seeded): an MLP learns each while a DecisionBoundaryRecorder keeps
// the class regions it predicts over the plane, before training and every few
// epochs, so the boundary can be watched as it moves.
//
//   toy2d [RUN_DIR] [EPOCHS]   (runs/toy2d, 100)
//
// RUN_DIR gets, per data set, <name>_boundary.png (the frames in a strip),
// report.html (each data set's boundary with an epoch slider, and the
// accuracies) and TensorBoard images (decision_boundary/<name>, one per
// frame) in RUN_DIR/tensorboard.

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <glassbox/glassbox.hpp>
#include <glassbox/inspect/decision_boundary.hpp>
#include <glassbox/viz/decision_map.hpp>
#include <glassbox/viz/html_report.hpp>
#include <glassbox/viz/png.hpp>
#include <glassbox/viz/tensorboard.hpp>
#include <string>
#include <utility>
#include <vector>

namespace {
using namespace glassbox;
constexpr double pi = 3.14159265358979323846;

struct Points {
  Tensor<float> x;  // (N, 2)
  Tensor<float> y;  // (N) classes
};

// n points per class; noise: the standard deviation of Gaussian jitter.
Points make(const std::string& name, index_t n, double noise, std::uint64_t seed) {
  Rng rng(seed);
  Points p{Tensor<float>(Shape{2 * n, 2}), Tensor<float>(Shape{2 * n})};
  for (index_t i = 0; i < 2 * n; ++i) {
    const int label = static_cast<int>(i % 2);
    double a = 0, b = 0;
    if (name == "moons") {  // two interleaving half circles (scikit-learn's make_moons)
      const double t = pi * rng.uniform();
      a = label == 0 ? std::cos(t) : 1 - std::cos(t);
      b = label == 0 ? std::sin(t) : 0.5 - std::sin(t);
    } else if (name == "circles") {  // a ring around a disc's edge
      const double t = 2 * pi * rng.uniform(), r = label == 0 ? 1.0 : 0.5;
      a = r * std::cos(t);
      b = r * std::sin(t);
    } else {  // two spiral arms, 1.5 turns each
      const double t = rng.uniform(), r = 0.1 + t, angle = 3 * pi * t + label * pi;
      a = r * std::cos(angle);
      b = r * std::sin(angle);
    }
    p.x.data()[2 * i] = static_cast<float>(a + noise * rng.normal());
    p.x.data()[2 * i + 1] = static_cast<float>(b + noise * rng.normal());
    p.y[i] = static_cast<float>(label);
  }
  return p;
}

Sequential<float> mlp(std::uint64_t seed) {
  Sequential<float> model(Shape{2}, seed);
  model.add<nn::Dense<float>>(2, 32);
  model.add<nn::Tanh<float>>();
  model.add<nn::Dense<float>>(32, 32);
  model.add<nn::Tanh<float>>();
  model.add<nn::Dense<float>>(32, 2);
  return model;
}

std::vector<index_t> classes_of(const Tensor<float>& y) {
  std::vector<index_t> c;
  for (const float v : y) c.push_back(static_cast<index_t>(v));
  return c;
}
}  // namespace

int main(int argc, char** argv) try {
  const std::string run = argc > 1 ? argv[1] : "runs/toy2d";
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 100;
  if (epochs < 1) throw Error(fmt::format("toy2d: EPOCHS must be at least 1, got {}", argv[2]));
  std::filesystem::create_directories(run);
  viz::TensorBoardWriter tensorboard(run + "/tensorboard");
  viz::HtmlReport report("glassbox: decision boundaries on 2-D data");
  std::vector<std::vector<std::string>> rows;

  for (const auto& [name, noise] :
       std::vector<std::pair<std::string, double>>{{"moons", 0.1}, {"circles", 0.06}, {"spirals", 0.04}}) {
    const Points train = make(name, 250, noise, 11), test = make(name, 250, noise, 12);
    Sequential<float> model = mlp(3);
    optim::Adam<float> adam(model.parameters(), 0.01f);
    nn::SoftmaxCrossEntropy<float> loss;
    const auto plane = inspect::InputPlane<float>::axes(Shape{2});
    inspect::DecisionBoundaryOptions o;
    o.every_epochs = std::max(1, epochs / 10);  // about 10 frames
    inspect::DecisionBoundaryRecorder<float> boundary(model, plane, plane.range_of(train.x), o);
    train::FitOptions<float> fit;
    fit.epochs = epochs;
    fit.batch_size = 32;
    fit.seed = 5;
    fit.verbosity = train::Verbosity::silent;
    fit.callbacks = {&boundary};
    train::fit(model, adam, loss, train.x, train.y, fit);
    const train::Evaluation result = train::evaluate(model, loss, test.x, test.y);
    std::printf("%-8s test accuracy %.1f%% after %d epochs (%zu boundary frames)\n", name.c_str(),
                100 * result.accuracy, epochs, boundary.frames().size());
    rows.push_back({name, fmt::format("{:.1f}%", 100 * result.accuracy)});

    // The frames: the training points over each recorded grid.
    const Eigen::MatrixXd uv = plane.coordinates(train.x);
    const std::vector<index_t> labels = classes_of(train.y);
    std::vector<std::pair<std::string, viz::Image>> frames;
    std::vector<viz::Image> strip;
    for (const inspect::DecisionFrame& f : boundary.frames()) {
      viz::Image map = viz::decision_map(f.grid, uv, labels);
      tensorboard.add_image("decision_boundary/" + name, map, f.epochs_done);
      strip.push_back(map);
      frames.emplace_back(
          f.epochs_done ? fmt::format("{}: after epoch {}", name, f.epochs_done) : name + ": before training", map);
    }
    viz::write_png(run + "/" + name + "_boundary.png", viz::tile(strip, 6, 4));
    report.add_picture_series(
        "Two " + name, frames,
        "The class the MLP (2-32-32-2, tanh) predicts over the plane, paler where it is less sure, with the "
        "training points on top; move the slider to watch the boundary form.");
  }
  tensorboard.flush();
  report.add_table("Test accuracy (500 fresh points each)", {"data set", "accuracy"}, rows);
  report.write(run + "/report.html");
  std::printf("Written: %s/{moons,circles,spirals}_boundary.png, report.html, tensorboard/\n", run.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "toy2d: %s\n", e.what());
  return 1;
}
