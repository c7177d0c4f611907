// libFuzzer target: the checkpoint loader (io/checkpoint.hpp) on arbitrary
// bytes. It must return a checkpoint or throw glassbox::Error; anything else
// (a crash, a leak, an allocation past -rss_limit_mb) is a finding. A
// checkpoint that loads must save to a file that loads again.
//   scripts/fuzz.sh builds and runs it.

#include <cstddef>
#include <cstdint>
#include <glassbox/io/checkpoint.hpp>
#include <optional>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace glassbox;
  std::optional<io::Checkpoint<float>> c;
  try {
    c.emplace(
        io::checkpoint_from_bytes<float>(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.gbck"));
  } catch (const Error&) {
    return 0;
  }
  // Outside the try: an exception here escapes and is reported.
  const std::string again = io::checkpoint_bytes(c->model, c->optimizer.get(), c->epochs_completed);
  io::checkpoint_from_bytes<float>(again, "fuzz.gbck (saved again)");
  return 0;
}
