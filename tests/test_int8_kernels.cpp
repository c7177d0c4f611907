// The int8 path's vector kernels against their scalar twins
// (compress/int8_scalar.hpp): the same bytes, or the same floats, for every
// convolution shape the int8 path uses and for dense rows. Built once per
// instruction set (tests/CMakeLists.txt): each build checks the kernel sets
// its target compiles.

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <glassbox/compress/int8_gemm.hpp>
#include <glassbox/core/rng.hpp>
#include <limits>
#include <string>
#include <vector>

using namespace glassbox;
using namespace glassbox::quant::detail;

namespace {

// Per-channel requantization constants: offsets from small to wrapping,
// scales from tiny to infinite (0 * inf is NaN: both must clamp it to low).
struct RandomEpilogue {
  std::vector<std::int32_t> offset;
  std::vector<float> scale;
  Epilogue epilogue;

  RandomEpilogue(index_t channels, Rng& rng) {
    for (index_t c = 0; c < channels; ++c) {
      const bool huge = rng.below(8) == 0;
      offset.push_back(huge ? std::numeric_limits<std::int32_t>::max() - static_cast<std::int32_t>(rng.below(1000))
                            : static_cast<std::int32_t>(rng.below(20001)) - 10000);
      scale.push_back(c == 5 ? std::numeric_limits<float>::infinity()
                             : static_cast<float>(rng.uniform(1e-5, 1e-2)) * (rng.below(2) ? 1.0f : -1.0f));
    }
    epilogue.offset = offset.data();
    epilogue.scale = scale.data();
    epilogue.zero_point = static_cast<std::int32_t>(rng.below(256));
    epilogue.low = static_cast<std::int32_t>(rng.below(100));
    epilogue.high = epilogue.low + static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(256 - epilogue.low)));
  }
};

std::vector<std::uint8_t> random_bytes(index_t n, Rng& rng) {
  std::vector<std::uint8_t> v(static_cast<std::size_t>(n));
  for (auto& b : v) b = static_cast<std::uint8_t>(rng.below(256));
  return v;
}
std::vector<std::int8_t> random_weights(index_t n, Rng& rng) {
  std::vector<std::int8_t> v(static_cast<std::size_t>(n));
  for (auto& b : v) b = static_cast<std::int8_t>(static_cast<int>(rng.below(255)) - 127);
  return v;
}

template <class Out>
bool same(const std::vector<Out>& a, const std::vector<Out>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(Out)) == 0;
}

struct ConvCase {
  index_t h, w, in_stride, quads, out16;
  nn::Window2D window;
  std::string what;
  nn::Size2 out{0, 0};  // the window's output unless given (the rows path keeps the real kernel's)
};

// Every kernel set of this build on one convolution, both output types, with
// and without pooling, against conv_image_scalar.
template <class Kernels>
void check_conv(const ConvCase& c, Rng& rng) {
  const ConvGeometry g(c.h, c.w, c.in_stride, c.quads, c.out16, c.window,
                       c.out.h > 0 ? c.out : c.window.output("test", c.h, c.w));
  const index_t taps = c.window.kernel.h * c.window.kernel.w;
  const auto image = random_bytes(c.h * c.w * c.in_stride + 64, rng);  // spare bytes, as the int8 path keeps
  const auto padding = random_bytes(c.in_stride, rng);
  const auto weights = random_weights(taps * c.quads * c.out16 * 4, rng);
  const RandomEpilogue e(c.out16, rng);
  const index_t positions = g.out.h * g.out.w;
  for (bool pool : {false, true}) {
    if (pool && (g.out.h < 2 || g.out.w < 2)) continue;
    const index_t outputs = (pool ? (g.out.h / 2) * (g.out.w / 2) : positions) * c.out16;
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(outputs)), bytes_ref(bytes.size());
    std::vector<float> floats(bytes.size()), floats_ref(bytes.size());
    conv_image_scalar(g, image.data(), padding.data(), weights.data(), e.epilogue, bytes_ref.data(), pool);
    conv_image_with<Kernels>(g, image.data(), padding.data(), weights.data(), e.epilogue, bytes.data(), pool);
    conv_image_scalar(g, image.data(), padding.data(), weights.data(), e.epilogue, floats_ref.data(), pool);
    conv_image_with<Kernels>(g, image.data(), padding.data(), weights.data(), e.epilogue, floats.data(), pool);
    INFO(Kernels::name << ", " << c.what << (pool ? ", pooled" : ""));
    CHECK(same(bytes, bytes_ref));
    CHECK(same(floats, floats_ref));
  }
}

template <class Kernels>
void check_dense(index_t n, index_t k, index_t m, Rng& rng, bool extreme = false) {
  auto x = random_bytes(n * k, rng);
  auto w = random_weights(m * k, rng);
  if (extreme) {  // every product 255 * 127: the int32 sums wrap, identically
    std::fill(x.begin(), x.end(), std::uint8_t(255));
    std::fill(w.begin(), w.end(), std::int8_t(127));
  }
  const RandomEpilogue e(m, rng);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(n * m)), bytes_ref(bytes.size());
  std::vector<float> floats(bytes.size()), floats_ref(bytes.size());
  dense_rows_scalar(x.data(), 0, n, k, w.data(), m, e.epilogue, bytes_ref.data());
  Kernels::rows(x.data(), 0, n, k, w.data(), m, e.epilogue, bytes.data());
  dense_rows_scalar(x.data(), 0, n, k, w.data(), m, e.epilogue, floats_ref.data());
  Kernels::rows(x.data(), 0, n, k, w.data(), m, e.epilogue, floats.data());
  INFO(Kernels::name << ", dense " << n << " x " << k << " -> " << m);
  CHECK(same(bytes, bytes_ref));
  CHECK(same(floats, floats_ref));
}

nn::Window2D window(index_t kh, index_t kw, index_t stride, index_t dilation, nn::Padding padding) {
  return nn::Window2D{nn::Size2{kh, kw}, nn::Size2{stride, stride}, nn::Size2{dilation, dilation}, padding, {0, 0}};
}

template <class Kernels>
void check_kernel_set() {
  Rng rng(7);
  using nn::Padding;
  // The channel path: pixels of in_stride bytes, quads = in_stride / 4.
  for (index_t in_stride : {4, 8, 16})
    for (index_t out16 : {16, 32, 48, 64, 80})
      for (const auto& [win, what] : {std::pair{window(3, 3, 1, 1, Padding::valid), "3x3"},
                                      std::pair{window(3, 3, 1, 1, Padding::same), "3x3 same"},
                                      std::pair{window(1, 1, 1, 1, Padding::valid), "1x1"},
                                      std::pair{window(3, 2, 2, 1, Padding::same), "3x2 stride 2 same"},
                                      std::pair{window(3, 3, 1, 2, Padding::same), "3x3 dilation 2 same"}})
        check_conv<Kernels>(
            {9, 7, in_stride, in_stride / 4, out16, win,
             std::string(what) + ", stride " + std::to_string(in_stride) + ", out16 " + std::to_string(out16)},
            rng);
  // A 1-channel image read as rows of 4-pixel quads (kernel kh x 1, quads = round_up(kw, 4) / 4), as the seed CNN's
  // first layer.
  for (index_t kw : {3, 5})
    for (index_t out16 : {16, 32}) {
      check_conv<Kernels>(
          {28, 28, 1, round_up(kw, 4) / 4, out16, window(3, 1, 1, 1, Padding::valid),
           "rows, kw " + std::to_string(kw) + ", out16 " + std::to_string(out16), nn::Size2{26, 28 - kw + 1}},
          rng);
    }
  // Patches convolved 1x1 (a padded 1-channel image).
  check_conv<Kernels>({6, 5, 12, 3, 32, window(1, 1, 1, 1, Padding::valid), "patches"}, rng);
  // Odd sizes: fewer than 4 positions, a single row.
  check_conv<Kernels>({3, 3, 4, 1, 16, window(2, 2, 1, 1, Padding::valid), "2x2 output"}, rng);
  check_conv<Kernels>({1, 11, 8, 2, 16, window(1, 3, 1, 1, Padding::valid), "one row"}, rng);

  for (index_t k : {1, 3, 31, 32, 33, 64, 100, 129, 5408})
    for (index_t m : {1, 3, 4, 10, 13}) check_dense<Kernels>(3, k, m, rng);
  check_dense<Kernels>(2, 70016, 5, rng, true);
}

}  // namespace

TEST_CASE("every int8 kernel set of this build gives its scalar twin's bytes and floats", "[kernels]") {
  std::string sets;
#ifdef GLASSBOX_INT8_AVX2
  if (__builtin_cpu_supports("avx2")) {
    check_kernel_set<avx2::Kernels>();
    sets += " AVX2";
  }
#endif
#ifdef GLASSBOX_INT8_VNNI
  if (__builtin_cpu_supports("avx512vnni")) {
    check_kernel_set<avx512::Kernels>();
    sets += " AVX-512-VNNI";
  }
#endif
  // The scalar twins themselves, against sums written out here.
  Rng rng(3);
  const auto x = random_bytes(2 * 5, rng);
  const auto w = random_weights(3 * 5, rng);
  const std::int32_t offset[3] = {7, -9, 100};
  const float scale[3] = {1.0f, 0.5f, 0.25f};
  Epilogue e;
  e.offset = offset;
  e.scale = scale;
  std::vector<float> out(6);
  dense_rows_scalar(x.data(), 0, 2, 5, w.data(), 3, e, out.data());
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 3; ++c) {
      std::int32_t sum = offset[c];
      for (int j = 0; j < 5; ++j)
        sum += std::int32_t(x[std::size_t(n * 5 + j)]) * std::int32_t(w[std::size_t(c * 5 + j)]);
      CHECK(out[std::size_t(n * 3 + c)] == static_cast<float>(sum) * scale[c]);
    }
  WARN("kernel sets checked against the scalar twins:" << (sets.empty() ? " none in this build" : sets)
                                                       << "; this build runs " << int8_kernel_name());
}
