#pragma once
// Test helpers: golden-vector files, tensor comparison and the numerical
// gradient check, shared by every test file.

#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <functional>
#include <glassbox/glassbox.hpp>
#include <map>
#include <sstream>
#include <string>

namespace test {

using glassbox::index_t;
using glassbox::Shape;
using glassbox::Tensor;

inline std::string data_path(const std::string& relative) { return std::string(GLASSBOX_TEST_DATA) + "/" + relative; }

// Reads golden/<file>.txt: "<name> <rank> <dims...> <values...>" per line.
inline const std::map<std::string, Tensor<double>>& golden(const std::string& file) {
  static std::map<std::string, std::map<std::string, Tensor<double>>> cache;
  auto& tensors = cache[file];
  if (!tensors.empty()) return tensors;
  std::ifstream in(data_path("golden/" + file + ".txt"));
  if (!in) throw std::runtime_error("missing golden file " + file);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    std::string name;
    int rank = 0;
    s >> name >> rank;
    std::vector<index_t> dims(static_cast<std::size_t>(rank));
    for (auto& d : dims) s >> d;
    std::vector<double> values;
    for (double v; s >> v;) values.push_back(v);
    tensors.emplace(name, Tensor<double>(Shape(dims.begin(), dims.end()), values.begin(), values.end()));
  }
  return tensors;
}

inline const Tensor<double>& golden(const std::string& file, const std::string& name) {
  const auto& all = golden(file);
  const auto it = all.find(name);
  if (it == all.end()) throw std::runtime_error("golden " + file + " has no tensor " + name);
  return it->second;
}

template <class T>
Tensor<T> cast(const Tensor<double>& t) {
  Tensor<T> out(t.shape());
  for (index_t i = 0; i < t.size(); ++i) out[i] = static_cast<T>(t[i]);
  return out;
}

// Largest |a - b| relative to the reference's largest magnitude (at least 1e-3
// so that all-zero references compare absolutely).
template <class T, class U>
double relative_error(const Tensor<T>& actual, const Tensor<U>& expected) {
  REQUIRE(actual.shape() == expected.shape());
  double scale = 1e-3, worst = 0;
  for (index_t i = 0; i < expected.size(); ++i) scale = std::max(scale, std::abs(static_cast<double>(expected[i])));
  for (index_t i = 0; i < expected.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(actual[i]) - static_cast<double>(expected[i])));
  return worst / scale;
}

// Central-difference gradient of f at x, entry by entry.
inline Tensor<double> numerical_gradient(const std::function<double()>& f, Tensor<double>& x, double h = 1e-6) {
  Tensor<double> g(x.shape());
  for (index_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double up = f();
    x[i] = saved - h;
    const double down = f();
    x[i] = saved;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

// ||a - n|| / max(||a||, ||n||): the usual relative error of a gradient check.
inline double gradient_error(const Tensor<double>& analytic, const Tensor<double>& numeric) {
  REQUIRE(analytic.shape() == numeric.shape());
  const double diff = (analytic.flat() - numeric.flat()).matrix().norm();
  const double scale = std::max({analytic.flat().matrix().norm(), numeric.flat().matrix().norm(), 1e-12});
  return diff / scale;
}

inline Tensor<double> random_tensor(const Shape& shape, glassbox::Rng& rng, double low = -1, double high = 1) {
  Tensor<double> t(shape);
  for (double& v : t) v = rng.uniform(low, high);
  return t;
}

}  // namespace test
