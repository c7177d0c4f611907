#pragma once
// 8-bit RGB images built from tensors: heatmaps through a colormap, the
// grayscale input, overlays, nearest-neighbour enlargement, tiled grids and a
// labelled colour bar. viz/png.hpp writes them as PNG.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "glassbox/core/tensor.hpp"
#include "glassbox/viz/colormap.hpp"

namespace glassbox::viz {

struct Image {
  index_t width = 0, height = 0;
  std::vector<std::uint8_t> pixels;  // RGB, row-major

  Image() = default;
  Image(index_t w, index_t h, Rgb fill = {255, 255, 255}) : width(w), height(h) {
    if (w < 0 || h < 0 || w * h > (index_t{1} << 28))
      throw Error(fmt::format("Image: size {}x{} is negative or larger than 2^28 pixels", w, h));
    pixels.resize(static_cast<std::size_t>(w * h * 3));
    for (index_t i = 0; i < w * h; ++i) set(i % w, i / w, fill);
  }
  Rgb at(index_t x, index_t y) const {
    const std::uint8_t* p = &pixels[static_cast<std::size_t>((y * width + x) * 3)];
    return {p[0], p[1], p[2]};
  }
  void set(index_t x, index_t y, Rgb c) {
    std::uint8_t* p = &pixels[static_cast<std::size_t>((y * width + x) * 3)];
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
  }
};

// One (H, W) plane of a tensor: sample n, channel c of (N, C, H, W); sample n
// of (N, H, W); the whole of (H, W).
template <class T>
struct Plane {
  const T* data;
  index_t height, width;
};

template <class T>
Plane<T> plane(const Tensor<T>& t, index_t n = 0, index_t c = 0) {
  const int r = t.rank();
  if (r < 2 || r > 4)
    throw Error(fmt::format("viz::plane: expected (H, W), (N, H, W) or (N, C, H, W), got {}", t.shape().str()));
  const index_t h = t.dim(r - 2), w = t.dim(r - 1);
  const index_t samples = r >= 3 ? t.dim(0) : 1, channels = r == 4 ? t.dim(1) : 1;
  if (n < 0 || n >= samples || c < 0 || c >= channels)
    throw Error(fmt::format("viz::plane: sample {} channel {} is outside {}", n, c, t.shape().str()));
  return {t.data() + (n * channels + c) * h * w, h, w};
}

// Value range mapped onto a colormap.
struct Range {
  double low = 0, high = 1;
};

// [0, max |v|] for magnitudes; [-m, m] with m = max |v| for signed values
// (so zero sits in the middle of a diverging map). Never empty.
template <class T>
Range range_of(const Plane<T>& p, bool symmetric) {
  double m = 0;
  for (index_t k = 0; k < p.height * p.width; ++k)
    if (std::isfinite(static_cast<double>(p.data[k]))) m = std::max(m, std::abs(static_cast<double>(p.data[k])));
  if (m == 0) m = 1;
  return symmetric ? Range{-m, m} : Range{0, m};
}

// Each value through the colormap, (v - low) / (high - low) clamped to [0, 1].
template <class T>
Image heatmap(const Plane<T>& p, Colormap map, Range range) {
  if (!(range.high > range.low)) throw Error(fmt::format("viz::heatmap: empty range [{}, {}]", range.low, range.high));
  Image image(p.width, p.height);
  for (index_t y = 0; y < p.height; ++y)
    for (index_t x = 0; x < p.width; ++x)
      image.set(x, y,
                color_at(map, (static_cast<double>(p.data[y * p.width + x]) - range.low) / (range.high - range.low)));
  return image;
}

// Magnitudes with viridis over [0, max |v|], or signed values with the
// diverging map over [-max |v|, max |v|].
template <class T>
Image heatmap(const Plane<T>& p, bool signed_values) {
  return heatmap(p, signed_values ? Colormap::diverging : Colormap::viridis, range_of(p, signed_values));
}

// The input itself (e.g. an MNIST digit in [0, 1]), dark on light like ink.
template <class T>
Image grayscale(const Plane<T>& p, Range range = {0, 1}) {
  Image image(p.width, p.height);
  for (index_t y = 0; y < p.height; ++y)
    for (index_t x = 0; x < p.width; ++x) {
      const double t = (static_cast<double>(p.data[y * p.width + x]) - range.low) / (range.high - range.low);
      image.set(x, y, color_at(Colormap::gray, 1 - t));
    }
  return image;
}

// alpha * heat + (1 - alpha) * base, per pixel; equal sizes.
inline Image overlay(const Image& base, const Image& heat, double alpha = 0.5) {
  if (base.width != heat.width || base.height != heat.height)
    throw Error(fmt::format("viz::overlay: base {}x{} and heatmap {}x{} differ", base.width, base.height, heat.width,
                            heat.height));
  Image out = base;
  for (std::size_t k = 0; k < out.pixels.size(); ++k)
    out.pixels[k] = static_cast<std::uint8_t>(std::lround(alpha * heat.pixels[k] + (1 - alpha) * base.pixels[k]));
  return out;
}

// Every pixel becomes a factor x factor block (28-pixel digits are small).
inline Image enlarge(const Image& image, int factor) {
  if (factor < 1 || factor > 64) throw Error(fmt::format("viz::enlarge: factor {} outside [1, 64]", factor));
  Image out(image.width * factor, image.height * factor);
  for (index_t y = 0; y < out.height; ++y)
    for (index_t x = 0; x < out.width; ++x) out.set(x, y, image.at(x / factor, y / factor));
  return out;
}

// Images laid out row by row, `columns` per row, `gap` pixels apart; cells
// take the largest image's size, smaller ones sit at their top left.
inline Image tile(const std::vector<Image>& images, index_t columns, index_t gap = 2,
                  Rgb background = {255, 255, 255}) {
  if (images.empty() || columns < 1) throw Error("viz::tile: needs at least one image and one column");
  index_t cell_w = 0, cell_h = 0;
  for (const Image& i : images) {
    cell_w = std::max(cell_w, i.width);
    cell_h = std::max(cell_h, i.height);
  }
  const auto count = static_cast<index_t>(images.size());
  const index_t rows = (count + columns - 1) / columns, used_columns = std::min(columns, count);
  Image out(used_columns * cell_w + (used_columns - 1) * gap, rows * cell_h + (rows - 1) * gap, background);
  for (index_t k = 0; k < count; ++k) {
    const Image& i = images[static_cast<std::size_t>(k)];
    const index_t left = (k % columns) * (cell_w + gap), top = (k / columns) * (cell_h + gap);
    for (index_t y = 0; y < i.height; ++y)
      for (index_t x = 0; x < i.width; ++x) out.set(left + x, top + y, i.at(x, y));
  }
  return out;
}

namespace detail {
// A 3x5 pixel font for numbers: rows top to bottom, 3 bits each (left = 4).
inline const std::uint8_t* glyph(char c) {
  static const std::uint8_t digits[10][5] = {{7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7},
                                             {5, 5, 7, 1, 1}, {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1},
                                             {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7}};
  static const std::uint8_t minus[5] = {0, 0, 7, 0, 0}, plus[5] = {0, 2, 7, 2, 0}, dot[5] = {0, 0, 0, 0, 2},
                            e[5] = {7, 4, 7, 4, 7}, blank[5] = {0, 0, 0, 0, 0};
  if (c >= '0' && c <= '9') return digits[c - '0'];
  switch (c) {
    case '-': return minus;
    case '+': return plus;
    case '.': return dot;
    case 'e': return e;
    default: return blank;
  }
}
}  // namespace detail

// Writes a number-like string (digits . - + e) in the 3x5 font, scaled.
inline void draw_text(Image& image, index_t left, index_t top, const std::string& text, Rgb color, int scale = 1) {
  for (std::size_t k = 0; k < text.size(); ++k) {
    const std::uint8_t* g = detail::glyph(text[k]);
    for (index_t row = 0; row < 5 * scale; ++row)
      for (index_t col = 0; col < 3 * scale; ++col) {
        if (!((g[row / scale] >> (2 - col / scale)) & 1)) continue;
        const index_t x = left + static_cast<index_t>(k) * 4 * scale + col, y = top + row;
        if (x >= 0 && x < image.width && y >= 0 && y < image.height) image.set(x, y, color);
      }
  }
}

// The image with a vertical colour bar on its right, labelled with the
// range's ends (high at the top).
inline Image with_colour_bar(const Image& image, Colormap map, Range range, int scale = 1) {
  const std::string high = fmt::format("{:.3g}", range.high), low = fmt::format("{:.3g}", range.low);
  const index_t label_w = static_cast<index_t>(std::max(high.size(), low.size())) * 4 * scale;
  const index_t bar_w = 6 * scale, gap = 4 * scale, height = std::max<index_t>(image.height, 12 * scale);
  Image out(image.width + gap + bar_w + gap / 2 + label_w, height);
  for (index_t y = 0; y < image.height; ++y)
    for (index_t x = 0; x < image.width; ++x) out.set(x, y, image.at(x, y));
  for (index_t y = 0; y < height; ++y) {
    const Rgb c = color_at(map, 1 - static_cast<double>(y) / static_cast<double>(std::max<index_t>(1, height - 1)));
    for (index_t x = 0; x < bar_w; ++x) out.set(image.width + gap + x, y, c);
  }
  const index_t text_x = image.width + gap + bar_w + gap / 2;
  draw_text(out, text_x, 0, high, {0, 0, 0}, scale);
  draw_text(out, text_x, height - 5 * scale, low, {0, 0, 0}, scale);
  return out;
}

}  // namespace glassbox::viz
