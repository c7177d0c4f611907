#pragma once
// Decision boundaries: what a classifier predicts over a plane through its
// input space, evaluated on a grid in batches under a byte budget.
//
//   auto plane = inspect::InputPlane<float>::axes(Shape{2});           // a model of 2 inputs
//   auto plane = inspect::InputPlane<float>::through(a, b, c);        // any model: 3 samples
//   auto plane = inspect::InputPlane<float>::principal(samples);      // the data's top 2 PCs
//   const auto range = plane.range_of(samples);                       // their extent, plus a margin
//   const inspect::DecisionGrid grid = inspect::decision_grid(model, plane, range);
//
// A point (u, v) of the plane is the input origin + u * axis_u + v * axis_v.
// grid.predicted holds each cell's class (the largest output; with one
// output, output > 0), grid.confidence the softmax probability of that class
// (sigmoid with one output), rows from the top (v_max) down, as an image.
// DecisionBoundaryRecorder keeps one grid per epoch, to watch the boundary
// move while the model trains (viz::decision_map draws them).

#include <fmt/format.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/tensor.hpp"
#include "glassbox/inspect/attribution.hpp"
#include "glassbox/inspect/projection.hpp"
#include "glassbox/model/sequential.hpp"
#include "glassbox/train/callback.hpp"

namespace glassbox::inspect {

struct PlaneRange {
  double u_min = 0, u_max = 1, v_min = 0, v_max = 1;
};

template <class T>
struct InputPlane {
  Tensor<T> origin, axis_u, axis_v;  // each one sample, shaped (1, ...) like the model's input

  // The plane of the first two input features of a model whose samples have
  // `sample` shape (for a model of 2 inputs, its whole input space).
  static InputPlane axes(const Shape& sample) {
    InputPlane p;
    p.origin = Tensor<T>(sample.batched(1), T(0));
    if (p.origin.size() < 2) throw Error(fmt::format("InputPlane::axes: {} has fewer than 2 features", sample.str()));
    p.axis_u = p.origin;
    p.axis_v = p.origin;
    p.axis_u.data()[0] = T(1);
    p.axis_v.data()[1] = T(1);
    return p;
  }

  // The plane through three samples (rows of equal shape): a at (0, 0), b at
  // (1, 0), and c at v = 1 with its u the projection onto b - a.
  static InputPlane through(const Tensor<T>& a, const Tensor<T>& b, const Tensor<T>& c) {
    if (a.shape() != b.shape() || a.shape() != c.shape())
      throw Error(fmt::format("InputPlane::through: samples of shapes {}, {}, {}", a.shape().str(), b.shape().str(),
                              c.shape().str()));
    InputPlane p;
    p.origin = as_sample(a);
    p.axis_u = as_sample(b);
    p.axis_v = as_sample(c);
    p.axis_u.flat() -= p.origin.flat();
    p.axis_v.flat() -= p.origin.flat();
    const Eigen::VectorXd u = vector_of(p.axis_u);
    const double uu = u.squaredNorm();
    if (!(uu > 0)) throw Error("InputPlane::through: the first two samples are the same point");
    p.axis_v.flat() -= static_cast<T>(u.dot(vector_of(p.axis_v)) / uu) * p.axis_u.flat();
    if (!(vector_of(p.axis_v).squaredNorm() > 1e-12 * uu))
      throw Error("InputPlane::through: the three samples lie on one line");
    return p;
  }

  // The plane of the samples' first two principal components, through their mean.
  static InputPlane principal(const Tensor<T>& samples) {
    const Pca pca = inspect::pca(samples, 2);
    InputPlane p;
    const Shape one = samples.shape().sample().batched(1);
    p.origin = Tensor<T>(one);
    p.axis_u = Tensor<T>(one);
    p.axis_v = Tensor<T>(one);
    p.origin.flat() = pca.mean.cast<T>();
    p.axis_u.flat() = pca.components.col(0).cast<T>();
    p.axis_v.flat() = pca.components.col(1).cast<T>();
    return p;
  }

  // The least-squares (u, v) of each row of x: (N, 2).
  Eigen::MatrixXd coordinates(const Tensor<T>& x) const {
    if (x.rank() < 1 || x.size() != x.dim(0) * origin.size())
      throw Error(fmt::format("InputPlane::coordinates: samples like {} expected, got {}", origin.shape().str(),
                              x.shape().str()));
    Eigen::MatrixXd basis(origin.size(), 2);
    basis.col(0) = vector_of(axis_u);
    basis.col(1) = vector_of(axis_v);
    const Eigen::MatrixXd centred = x.matrix().template cast<double>().rowwise() - vector_of(origin).transpose();
    const Eigen::Matrix2d gram = basis.transpose() * basis;
    return (gram.ldlt().solve(basis.transpose() * centred.transpose())).transpose();
  }

  // The extent of the samples' coordinates, widened by `margin` of it on each side.
  PlaneRange range_of(const Tensor<T>& x, double margin = 0.1) const {
    const Eigen::MatrixXd uv = coordinates(x);
    if (uv.rows() == 0) throw Error("InputPlane::range_of: no samples");
    PlaneRange r{uv.col(0).minCoeff(), uv.col(0).maxCoeff(), uv.col(1).minCoeff(), uv.col(1).maxCoeff()};
    const double du = std::max(r.u_max - r.u_min, 1e-6) * margin, dv = std::max(r.v_max - r.v_min, 1e-6) * margin;
    return {r.u_min - du, r.u_max + du, r.v_min - dv, r.v_max + dv};
  }

 private:
  static Eigen::VectorXd vector_of(const Tensor<T>& t) { return t.flat().matrix().template cast<double>(); }
  static Tensor<T> as_sample(const Tensor<T>& x) {
    if (x.rank() >= 1 && x.dim(0) == 1) return x;
    Tensor<T> one(x.shape().batched(1));  // a sample given without its batch dimension
    std::copy(x.begin(), x.end(), one.begin());
    return one;
  }
};

struct DecisionGridOptions {
  index_t width = 200, height = 200;              // cells
  std::size_t max_bytes = std::size_t{32} << 20;  // per forward pass (forward_bytes_per_sample)
};

struct DecisionGrid {
  index_t width = 0, height = 0, classes = 0;
  PlaneRange range;
  std::vector<index_t> predicted;  // row-major from the top row (v_max), width * height
  std::vector<float> confidence;   // the predicted class's probability

  index_t at(index_t column, index_t row) const { return predicted[static_cast<std::size_t>(row * width + column)]; }
  // The (u, v) of a cell's centre.
  double u_of(index_t column) const {
    return range.u_min + (static_cast<double>(column) + 0.5) * (range.u_max - range.u_min) / static_cast<double>(width);
  }
  double v_of(index_t row) const {
    return range.v_max - (static_cast<double>(row) + 0.5) * (range.v_max - range.v_min) / static_cast<double>(height);
  }
};

// The inputs at cells [first, first + count) of the grid, row-major.
template <class T>
Tensor<T> grid_inputs(const InputPlane<T>& plane, const DecisionGrid& grid, index_t first, index_t count) {
  Tensor<T> x(plane.origin.shape().sample().batched(count));
  const index_t features = plane.origin.size();
  for (index_t k = 0; k < count; ++k) {
    const index_t cell = first + k;
    const T u = static_cast<T>(grid.u_of(cell % grid.width)), v = static_cast<T>(grid.v_of(cell / grid.width));
    T* row = x.data() + k * features;
    for (index_t f = 0; f < features; ++f)
      row[f] = plane.origin.data()[f] + u * plane.axis_u.data()[f] + v * plane.axis_v.data()[f];
  }
  return x;
}

template <class T>
DecisionGrid decision_grid(Sequential<T>& model, const InputPlane<T>& plane, const PlaneRange& range,
                           const DecisionGridOptions& options = {}) {
  if (options.width < 1 || options.height < 1 || options.width * options.height > (index_t{1} << 24))
    throw Error(fmt::format("decision_grid: {}x{} cells: each side must be at least 1 and the grid at most 2^24 cells",
                            options.width, options.height));
  if (!(range.u_max > range.u_min) || !(range.v_max > range.v_min))
    throw Error(fmt::format("decision_grid: empty range u [{}, {}], v [{}, {}]", range.u_min, range.u_max, range.v_min,
                            range.v_max));
  DecisionGrid grid;
  grid.width = options.width;
  grid.height = options.height;
  grid.range = range;
  const index_t cells = grid.width * grid.height;
  grid.predicted.resize(static_cast<std::size_t>(cells));
  grid.confidence.resize(static_cast<std::size_t>(cells));
  const index_t batch = detail::rows_per_pass(model, plane.origin.shape(), options.max_bytes);
  for (index_t first = 0; first < cells; first += batch) {
    const index_t count = std::min(batch, cells - first);
    const Tensor<T> out = model.forward(grid_inputs(plane, grid, first, count));
    if (out.rank() != 2)
      throw Error(fmt::format("decision_grid: the model's output must be (N, classes), got {}", out.shape().str()));
    grid.classes = std::max<index_t>(2, out.dim(1));
    for (index_t k = 0; k < count; ++k) {
      const auto cell = static_cast<std::size_t>(first + k);
      const T* o = out.data() + k * out.dim(1);
      if (out.dim(1) == 1) {  // one logit: class 1 when it is positive
        const double p = 1 / (1 + std::exp(-static_cast<double>(o[0])));
        grid.predicted[cell] = o[0] > 0;
        grid.confidence[cell] = static_cast<float>(o[0] > 0 ? p : 1 - p);
        continue;
      }
      index_t best = 0;
      for (index_t c = 1; c < out.dim(1); ++c)
        if (o[c] > o[best]) best = c;
      double sum = 0;
      for (index_t c = 0; c < out.dim(1); ++c) sum += std::exp(static_cast<double>(o[c] - o[best]));
      grid.predicted[cell] = best;
      grid.confidence[cell] = static_cast<float>(1 / sum);
    }
  }
  return grid;
}

struct DecisionBoundaryOptions {
  DecisionGridOptions grid;
  int every_epochs = 1;        // a grid after every k-th epoch (and before training)
  std::size_t capacity = 200;  // grids kept; older ones are dropped
};

struct DecisionFrame {
  int epochs_done = 0;  // 0: before training
  DecisionGrid grid;
};

// One grid before training and after every k-th epoch, over a fixed range.
template <class T>
class DecisionBoundaryRecorder : public train::Callback {
 public:
  using Options = DecisionBoundaryOptions;

  // The model must outlive the recorder and stay where it is.
  DecisionBoundaryRecorder(Sequential<T>& model, InputPlane<T> plane, PlaneRange range, Options options = {})
      : model_(model), plane_(std::move(plane)), range_(range), options_(options) {
    if (options_.every_epochs < 1)
      throw Error(
          fmt::format("DecisionBoundaryRecorder: every_epochs must be positive, got {}", options_.every_epochs));
  }

  void record(int epochs_done) {
    if (options_.capacity == 0) return;
    if (frames_.size() == options_.capacity) frames_.erase(frames_.begin());
    frames_.push_back({epochs_done, decision_grid(model_, plane_, range_, options_.grid)});
  }
  void on_train_begin() override { record(0); }
  void on_epoch_end(const train::EpochLogs& logs) override {
    if ((logs.epoch + 1) % options_.every_epochs == 0) record(logs.epoch + 1);
  }

  const std::vector<DecisionFrame>& frames() const { return frames_; }
  const InputPlane<T>& plane() const { return plane_; }
  const PlaneRange& range() const { return range_; }

 private:
  Sequential<T>& model_;
  InputPlane<T> plane_;
  PlaneRange range_;
  Options options_;
  std::vector<DecisionFrame> frames_;
};

GLASSBOX_PRECOMPILED_INSTANCE(DecisionGrid decision_grid<float>(Sequential<float>&, const InputPlane<float>&,
                                                                const PlaneRange&, const DecisionGridOptions&))
GLASSBOX_PRECOMPILED_INSTANCE(class DecisionBoundaryRecorder<float>)
}  // namespace glassbox::inspect
