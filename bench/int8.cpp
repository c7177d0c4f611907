// Inference at batch 256 of the seed CNN in fp32 and through the int8 path
// (compress/quantized_model.hpp), in one process, on uniform random inputs
// (weights as initialised, calibrated on the first 1,000 inputs): prints
// samples/s of each and their ratio. Reference: bench/torch_int8.py.
//   bench_int8 [SAMPLES]
#include <cstdlib>
#include <glassbox/compress.hpp>

#include "bench_util.hpp"

int main(int argc, char** argv) {
  using namespace glassbox;
  const index_t n = argc > 1 ? std::atol(argv[1]) : 8192;
  Rng rng(0);
  Tensor<float> x(Shape{n, 1, 28, 28});
  for (float& v : x) v = static_cast<float>(rng.uniform());
  Sequential<float> model = bench::seed_cnn();
  Tensor<float> calibration;
  copy_rows(x, 0, std::min<index_t>(1000, n), calibration);
  quant::QuantizedModel int8(model, quant::calibrate(model, calibration));
  std::printf("threads %d, samples %td, int8 GEMM: %s\n", num_threads(), n,
              quant::detail::int8_kernel_name());
  const double fp32 = static_cast<double>(n) / bench::median_seconds([&] { model.predict(x, 256); });
  const double q8 = static_cast<double>(n) / bench::median_seconds([&] { int8.predict(x, 256); });
  std::printf("glassbox seed_cnn_fp32 infer_b256 %.0f samples/s\n", fp32);
  std::printf("glassbox seed_cnn_int8 infer_b256 %.0f samples/s\n", q8);
  std::printf("int8 / fp32 (glassbox): %.2f\n", q8 / fp32);
}
