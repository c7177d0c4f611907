// libFuzzer target: the ONNX importer (io/onnx_model.hpp's parser and
// io/onnx_import.hpp) on arbitrary bytes. It must return a model or throw
// glassbox::Error; anything else (a crash, a leak, an allocation past
// -rss_limit_mb) is a finding. A model that imports must run on a batch and
// export to a file that imports again.
//   scripts/fuzz.sh builds and runs it.

#include <cstddef>
#include <cstdint>
#include <glassbox/io/onnx.hpp>
#include <glassbox/io/onnx_import.hpp>
#include <optional>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace glassbox;
  std::optional<Sequential<float>> model;
  try {
    model.emplace(io::onnx_from_bytes<float>(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.onnx"));
  } catch (const Error&) {
    return 0;
  }
  // Outside the try: an exception here escapes and is reported. Samples past
  // 64k values are not run, to keep each input fast.
  const Shape sample = *model->sample_shape();
  if (sample.size() <= (1 << 16)) model->predict(Tensor<float>(sample.batched(2), 0.5f));
  io::onnx_from_bytes<float>(io::onnx_bytes(*model), "fuzz.onnx (exported again)");
  return 0;
}
