// ONNX import speed, and whether an imported model runs as fast as the same
// model built in C++: the seed CNN exported (by glassbox, or by PyTorch when
// a file is given), imported (median of 9 imports of the file's bytes), then
// inference at batch 256 of the imported and the native model taking turns
// (5 rounds; medians). Prints milliseconds per import, samples/s of each and
// their ratio.
//   bench_onnx_import [SEED_CNN_ONNX]       (bench/onnx_import.sh passes PyTorch's)
#include <glassbox/io/onnx.hpp>
#include <glassbox/io/onnx_import.hpp>
#include <string>

#include "bench_util.hpp"

int main(int argc, char** argv) try {
  using namespace glassbox;
  Sequential<float> native = bench::seed_cnn();
  const std::string source = argc > 1 ? argv[1] : "glassbox's export of the seed CNN";
  const std::string bytes = argc > 1 ? read_file(argv[1]) : io::onnx_bytes(native);
  Sequential<float> imported = io::onnx_from_bytes<float>(bytes, source);
  const double import_seconds = bench::median_seconds([&] { io::onnx_from_bytes<float>(bytes, source); }, 9);
  // The same layers and weights in both, so that both do the same arithmetic
  // (PyTorch's seed CNN of tests/onnx_import_models.py ends in a softmax).
  if (imported.layer(imported.size() - 1).kind() == "softmax") native.add<nn::Softmax<float>>();
  const auto from = imported.parameters(), to = native.parameters();
  if (from.size() != to.size()) throw Error(fmt::format("{}: not the seed CNN ({} parameters)", source, from.size()));
  for (std::size_t i = 0; i < from.size(); ++i) to[i]->value = from[i]->value;

  const index_t n = 8192;
  Rng rng(0);
  Tensor<float> x(Shape{n, 1, 28, 28});
  for (float& v : x) v = static_cast<float>(rng.uniform());
  std::vector<double> native_rates, imported_rates;
  for (int round = 0; round < 5; ++round) {
    native_rates.push_back(static_cast<double>(n) / bench::median_seconds([&] { native.predict(x, 256); }, 3));
    imported_rates.push_back(static_cast<double>(n) / bench::median_seconds([&] { imported.predict(x, 256); }, 3));
  }
  auto median = [](std::vector<double> v) {
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  std::printf("source: %s (%zu bytes, %zu layers), threads %d\n", source.c_str(), bytes.size(), imported.size(),
              num_threads());
  std::printf("glassbox onnx_import seed_cnn %.2f ms\n", 1e3 * import_seconds);
  std::printf("glassbox seed_cnn_native infer_b256 %.0f samples/s\n", median(native_rates));
  std::printf("glassbox seed_cnn_imported infer_b256 %.0f samples/s\n", median(imported_rates));
  std::printf("imported / native: %.2f\n", median(imported_rates) / median(native_rates));
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_onnx_import: %s\n", e.what());
  return 1;
}
