// Second half of the ONNX import test (tests/onnx_import_models.py is the
// first): imports each model PyTorch exported and checks, on its 100 inputs,
// that glassbox's outputs and its gradients of sum(outputs * R) with respect
// to the inputs match PyTorch's (largest difference <= 1e-5 of the largest
// value), and that the model survives a glassbox export and import unchanged.
//   onnx_import_check DIR        (DIR/manifest.txt lists the cases)

#include <cstdio>
#include <fstream>
#include <glassbox/glassbox.hpp>
#include <glassbox/io/onnx.hpp>
#include <glassbox/io/onnx_import.hpp>
#include <sstream>
#include <string>

using namespace glassbox;

namespace {

constexpr double tolerance = 1e-5;

Tensor<float> read_raw(const std::string& path, const Shape& shape) {
  const std::string bytes = read_file(path);
  if (bytes.size() != static_cast<std::size_t>(shape.size()) * sizeof(float))
    throw Error(fmt::format("{}: {} bytes, expected {} floats of {}", path, bytes.size(), shape.size(), shape.str()));
  Tensor<float> t(shape);
  std::memcpy(t.data(), bytes.data(), bytes.size());
  return t;
}

Shape read_shape(std::istream& in) {
  int rank = 0;
  in >> rank;
  std::vector<index_t> dims(static_cast<std::size_t>(rank));
  for (index_t& d : dims) in >> d;
  return Shape(dims.begin(), dims.end());
}

// Largest |a - b| over the largest |b|.
double relative_difference(const Tensor<float>& a, const Tensor<float>& b) {
  if (a.shape() != b.shape()) throw Error(fmt::format("shape {} against {}", a.shape().str(), b.shape().str()));
  double diff = 0, scale = 0;
  for (index_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a.data()[i]) - b.data()[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b.data()[i])));
  }
  return diff / std::max(scale, 1e-30);
}

bool check_case(const std::string& dir, const std::string& name, const Shape& in_shape, const Shape& out_shape) {
  const std::string base = dir + "/" + name;
  Sequential<float> model = io::import_onnx<float>(base + ".onnx");
  const Tensor<float> x = read_raw(base + ".in.f32", in_shape);
  const Tensor<float> expected = read_raw(base + ".out.f32", out_shape);
  const Tensor<float> weighting = read_raw(base + ".r.f32", out_shape);
  const Tensor<float> expected_grad = read_raw(base + ".grad.f32", in_shape);

  const Tensor<float> y = model.forward(x, Mode::eval);
  const double output_difference = relative_difference(y, expected);
  model.backward(weighting, /*want_input_grad=*/true, ParamGrads::skip);
  const double grad_difference = relative_difference(model.input_grad(), expected_grad);

  // glassbox's own export of the imported model reads back to the same outputs.
  Sequential<float> again = io::onnx_from_bytes<float>(io::onnx_bytes(model), name + " (exported again)");
  const double round_trip = relative_difference(again.predict(x), y);

  std::string layers;
  for (std::size_t i = 0; i < model.size(); ++i)
    layers += fmt::format("{}{} ({})", i ? ", " : "", model.layer(i).name(), model.layer(i).kind());
  const bool ok = output_difference <= tolerance && grad_difference <= tolerance && round_trip == 0;
  std::printf("%s %s: outputs %.2e, input gradients %.2e, re-export %.2e; layers: %s\n", ok ? "ok  " : "FAIL",
              name.c_str(), output_difference, grad_difference, round_trip, layers.c_str());
  return ok;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 2) {
    std::fprintf(stderr, "usage: onnx_import_check DIR\n");
    return 2;
  }
  std::ifstream manifest(std::string(argv[1]) + "/manifest.txt");
  if (!manifest) throw Error(fmt::format("{}/manifest.txt: cannot open", argv[1]));
  int cases = 0, failures = 0;
  for (std::string line; std::getline(manifest, line);) {
    std::istringstream fields(line);
    std::string name;
    fields >> name;
    const Shape in = read_shape(fields), out = read_shape(fields);
    ++cases;
    if (!check_case(argv[1], name, in, out)) ++failures;
  }
  if (cases == 0) throw Error("the manifest lists no models");
  std::printf("onnx_import_check: %d of %d models match PyTorch\n", cases - failures, cases);
  return failures ? 1 : 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "onnx_import_check: %s\n", e.what());
  return 1;
}
