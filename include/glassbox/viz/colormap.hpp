#pragma once
// Colormaps for heatmaps: viridis (perceptually uniform, for magnitudes), a
// blue-white-red diverging map (for signed attributions: white is zero) and
// gray. Each is a few published key colours joined linearly in RGB:
// viridis sampled at ninths (R's viridis(10)), the diverging map is
// ColorBrewer's 11-class RdBu, reversed so that positive is red.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

namespace glassbox::viz {

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb& o) const { return r == o.r && g == o.g && b == o.b; }
};

enum class Colormap { viridis, diverging, gray };

namespace detail {
template <std::size_t N>
Rgb interpolate(const std::array<std::uint32_t, N>& keys, double t) {
  if (!(t >= 0)) t = 0;  // NaN too
  t = std::min(t, 1.0) * static_cast<double>(N - 1);
  const auto i = std::min(static_cast<std::size_t>(t), N - 2);
  const double f = t - static_cast<double>(i);
  auto channel = [&](int shift) {
    const double a = (keys[i] >> shift) & 0xff, b = (keys[i + 1] >> shift) & 0xff;
    return static_cast<std::uint8_t>(std::lround(a + f * (b - a)));
  };
  return {channel(16), channel(8), channel(0)};
}
}  // namespace detail

// The colour at t in [0, 1] (clamped; NaN reads as 0).
inline Rgb color_at(Colormap map, double t) {
  static constexpr std::array<std::uint32_t, 10> viridis{0x440154, 0x482878, 0x3e4a89, 0x31688e, 0x26828e,
                                                         0x1f9e89, 0x35b779, 0x6dcd59, 0xb4de2c, 0xfde725};
  static constexpr std::array<std::uint32_t, 11> diverging{0x053061, 0x2166ac, 0x4393c3, 0x92c5de, 0xd1e5f0, 0xf7f7f7,
                                                           0xfddbc7, 0xf4a582, 0xd6604d, 0xb2182b, 0x67001f};
  switch (map) {
    case Colormap::viridis: return detail::interpolate(viridis, t);
    case Colormap::diverging: return detail::interpolate(diverging, t);
    case Colormap::gray: break;
  }
  if (!(t >= 0)) t = 0;
  const auto v = static_cast<std::uint8_t>(std::lround(255 * std::min(t, 1.0)));
  return {v, v, v};
}

}  // namespace glassbox::viz
