// libFuzzer target: the IDX reader (io/idx.hpp) on arbitrary bytes. It must
// return a tensor or throw glassbox::Error; anything else is a finding.
//   scripts/fuzz.sh builds and runs it.

#include <cstddef>
#include <cstdint>
#include <glassbox/io/idx.hpp>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    glassbox::io::idx_from_bytes<float>(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.idx",
                                        1.0f / 255);
  } catch (const glassbox::Error&) {
  }
  return 0;
}
