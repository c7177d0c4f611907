// Helper of test_checkpoint's crash test: saves checkpoint A, then B, then A
// ... to one path until it is killed. A and B are the model of
// checkpoint_models.hpp with every parameter filled with 1 or 2. Prints
// "ready" once it has written both, so that the kills land while it writes
// (however slowly it starts, under a sanitizer for instance).
//   checkpoint_writer PATH

#include <cstdio>
#include <glassbox/io/checkpoint.hpp>

#include "checkpoint_models.hpp"

int main(int argc, char** argv) try {
  if (argc != 2) {
    std::fprintf(stderr, "usage: checkpoint_writer PATH\n");
    return 2;
  }
  glassbox::Sequential<float> a = test::every_kind_model(), b = test::every_kind_model();
  test::fill_parameters(a, 1.0f);
  test::fill_parameters(b, 2.0f);
  for (long long i = 0;; ++i) {
    glassbox::io::save_checkpoint(i % 2 ? b : a, argv[1]);
    if (i == 1) {
      std::puts("ready");
      std::fflush(stdout);
    }
  }
} catch (const std::exception& e) {
  std::fprintf(stderr, "checkpoint_writer: %s\n", e.what());
  return 1;
}
