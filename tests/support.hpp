#pragma once
// Test helpers: golden-vector files, tensor comparison and the numerical
// gradient check, shared by every test file.

#include <catch2/catch.hpp>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <glassbox/glassbox.hpp>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>

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

constexpr double gradient_tolerance = 1e-6;

// Keeps inputs away from the kinks of ReLU and LeakyReLU, where the
// derivative is not defined and central differences straddle the kink.
inline Tensor<double> away_from_zero(Tensor<double> x) {
  for (double& v : x)
    if (std::abs(v) < 0.05) v += v < 0 ? -0.1 : 0.1;
  return x;
}

// Checks dL/dx and dL/dparam of L = sum(r * layer(x)) against central
// differences, with freshly drawn parameters (or the layer's own, when
// `draw` is false) and a random r.
inline void check_layer_gradients(glassbox::Layer<double>& layer, Tensor<double> x, std::uint64_t seed = 1,
                                  bool draw = true) {
  using glassbox::Mode;
  glassbox::Rng rng(seed);
  if (draw) layer.reset_parameters(rng);
  Tensor<double> y;
  layer.forward(x, y, Mode::train);
  const Tensor<double> r = random_tensor(y.shape(), rng);
  Tensor<double> dx;
  layer.backward(x, y, r, &dx);
  auto objective = [&] {
    Tensor<double> out;
    layer.forward(x, out, Mode::train);
    return (out.flat() * r.flat()).sum();
  };
  INFO(layer.name() << " input gradient");
  CHECK(gradient_error(dx, numerical_gradient(objective, x)) < gradient_tolerance);
  for (glassbox::Parameter<double>* p : layer.parameters()) {
    INFO(layer.name() << " gradient of " << p->name);
    const Tensor<double> analytic = p->grad;
    CHECK(gradient_error(analytic, numerical_gradient(objective, p->value)) < gradient_tolerance);
  }
}

// PyTorch parity tolerance, relative to each tensor's largest magnitude.
template <class T>
constexpr double parity_tolerance = std::is_same_v<T, float> ? 1e-5 : 1e-10;

// Loads the golden parameters "<name>.<param>" of golden/<file>.txt into the
// layer, runs forward on "<name>.x" and backward on "<name>.dy", and compares
// y, dx and every parameter gradient with PyTorch's.
template <class T>
void check_layer_parity(glassbox::Layer<T>& layer, const std::string& file, const std::string& name) {
  const auto g = [&](const std::string& field) { return cast<T>(golden(file, name + "." + field)); };
  for (glassbox::Parameter<T>* p : layer.parameters()) p->value = g(p->local_name());
  const Tensor<T> x = g("x");
  Tensor<T> y, dx;
  layer.forward(x, y, glassbox::Mode::train);
  layer.backward(x, y, g("dy"), &dx);
  INFO(name);
  CHECK(relative_error(y, golden(file, name + ".y")) < parity_tolerance<T>);
  CHECK(relative_error(dx, golden(file, name + ".dx")) < parity_tolerance<T>);
  for (glassbox::Parameter<T>* p : layer.parameters()) {
    INFO(p->name);
    CHECK(relative_error(p->grad, golden(file, name + ".d" + p->local_name())) < parity_tolerance<T>);
  }
}

// Largest |a - b| over two tensors of the same shape.
inline double max_abs_difference(const Tensor<double>& a, const Tensor<double>& b) {
  REQUIRE(a.shape() == b.shape());
  return (a.flat() - b.flat()).cwiseAbs().maxCoeff();
}

// fit() options for tests: no progress output.
template <class T>
glassbox::train::FitOptions<T> quiet_fit(int epochs, index_t batch_size) {
  glassbox::train::FitOptions<T> o;
  o.epochs = epochs;
  o.batch_size = batch_size;
  o.verbosity = glassbox::train::Verbosity::silent;
  return o;
}

// A minimal JSON syntax check (objects, arrays, strings, numbers, literals).
class JsonChecker {
 public:
  explicit JsonChecker(const std::string& s) : s_(s) {}
  bool valid() {
    skip();
    if (!value()) return false;
    skip();
    return i_ == s_.size();
  }

 private:
  void skip() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool literal(const char* word) {
    const std::string w(word);
    if (s_.compare(i_, w.size(), w) != 0) return false;
    i_ += w.size();
    return true;
  }
  bool string() {
    if (s_[i_] != '"') return false;
    for (++i_; i_ < s_.size(); ++i_) {
      if (s_[i_] == '\\') {
        ++i_;
      } else if (s_[i_] == '"') {
        ++i_;
        return true;
      } else if (static_cast<unsigned char>(s_[i_]) < 0x20) {
        return false;
      }
    }
    return false;
  }
  bool number() {
    const char* start = s_.c_str() + i_;
    char* end = nullptr;
    std::strtod(start, &end);
    if (end == start || !std::isdigit(static_cast<unsigned char>(end[-1]))) return false;
    i_ += static_cast<std::size_t>(end - start);
    return true;
  }
  template <class Item>
  bool sequence(char close, Item item) {
    ++i_;
    skip();
    if (i_ < s_.size() && s_[i_] == close) return ++i_, true;
    while (i_ < s_.size()) {
      if (!item()) return false;
      skip();
      if (i_ < s_.size() && s_[i_] == close) return ++i_, true;
      if (i_ >= s_.size() || s_[i_] != ',') return false;
      ++i_;
      skip();
    }
    return false;
  }
  bool value() {
    if (i_ >= s_.size()) return false;
    switch (s_[i_]) {
      case '{':
        return sequence('}', [&] {
          if (!string()) return false;
          skip();
          if (i_ >= s_.size() || s_[i_] != ':') return false;
          ++i_;
          skip();
          return value();
        });
      case '[': return sequence(']', [&] { return value(); });
      case '"': return string();
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      default: return number();
    }
  }
  const std::string& s_;
  std::size_t i_ = 0;
};

// Whether every element of the markup is closed in order (self-closing
// `<x/>` included), as an XML parser requires of an SVG.
inline bool balanced_markup(const std::string& text) {
  std::vector<std::string> open;
  for (std::size_t at = text.find('<'); at != std::string::npos; at = text.find('<', at + 1)) {
    const std::size_t end = text.find('>', at);
    if (end == std::string::npos) return false;
    const std::string tag = text.substr(at + 1, end - at - 1);
    if (tag.empty() || tag[0] == '!' || tag[0] == '?') continue;
    if (tag[0] == '/') {
      if (open.empty() || open.back() != tag.substr(1)) return false;
      open.pop_back();
    } else if (tag.back() != '/') {
      open.push_back(tag.substr(0, tag.find_first_of(" \t\n")));
    }
  }
  return open.empty();
}

}  // namespace test
