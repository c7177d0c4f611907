#pragma once
// A decision grid (inspect/decision_boundary.hpp) as a picture: each cell in
// its class's colour, paler where the model is less sure, the boundary
// between classes in dark grey, and the data points on top in their true
// class's colour with a dark outline.
//
//   const viz::Image map = viz::decision_map(grid, plane.coordinates(x), labels);

#include <fmt/format.h>

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "glassbox/inspect/decision_boundary.hpp"
#include "glassbox/viz/image.hpp"

namespace glassbox::viz {

// A categorical palette (Tableau 10) for class c; it repeats after 10.
inline Rgb class_colour(index_t c) {
  static constexpr std::array<std::uint32_t, 10> palette{0x4e79a7, 0xf28e2b, 0xe15759, 0x76b7b2, 0x59a14f,
                                                         0xedc948, 0xb07aa1, 0xff9da7, 0x9c755f, 0xbab0ac};
  const std::uint32_t v = palette[static_cast<std::size_t>(((c % 10) + 10) % 10)];
  return {static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
}

struct DecisionMapOptions {
  int point_radius = 3;
  bool boundary = true;
};

// points_uv: (N, 2) plane coordinates (InputPlane::coordinates); labels: N
// classes, or empty to draw no points. Points outside the grid are left out.
inline Image decision_map(const inspect::DecisionGrid& grid, const Eigen::MatrixXd& points_uv = Eigen::MatrixXd(),
                          const std::vector<index_t>& labels = {}, const DecisionMapOptions& options = {}) {
  if (static_cast<std::size_t>(points_uv.rows()) != labels.size() || (points_uv.rows() > 0 && points_uv.cols() != 2))
    throw Error(fmt::format("decision_map: {}x{} point coordinates for {} labels", points_uv.rows(), points_uv.cols(),
                            labels.size()));
  Image image(grid.width, grid.height);
  const double chance = 1.0 / static_cast<double>(std::max<index_t>(2, grid.classes));
  for (index_t row = 0; row < grid.height; ++row)
    for (index_t column = 0; column < grid.width; ++column) {
      const std::size_t cell = static_cast<std::size_t>(row * grid.width + column);
      const double sure = std::clamp((grid.confidence[cell] - chance) / (1 - chance), 0.0, 1.0);
      const double strength = 0.2 + 0.55 * sure;  // white at 0, the class colour at 1
      const Rgb c = class_colour(grid.predicted[cell]);
      auto mix = [strength](std::uint8_t v) {
        return static_cast<std::uint8_t>(std::lround(255 + (static_cast<double>(v) - 255) * strength));
      };
      image.set(column, row, {mix(c.r), mix(c.g), mix(c.b)});
    }
  if (options.boundary)
    for (index_t row = 0; row < grid.height; ++row)
      for (index_t column = 0; column < grid.width; ++column) {
        const index_t c = grid.at(column, row);
        if ((column + 1 < grid.width && grid.at(column + 1, row) != c) ||
            (row + 1 < grid.height && grid.at(column, row + 1) != c))
          image.set(column, row, {60, 60, 60});
      }
  const int r = options.point_radius;
  for (Eigen::Index n = 0; n < points_uv.rows(); ++n) {
    const double x =
        (points_uv(n, 0) - grid.range.u_min) / (grid.range.u_max - grid.range.u_min) * static_cast<double>(grid.width);
    const double y =
        (grid.range.v_max - points_uv(n, 1)) / (grid.range.v_max - grid.range.v_min) * static_cast<double>(grid.height);
    if (!(x >= 0 && x < static_cast<double>(grid.width) && y >= 0 && y < static_cast<double>(grid.height))) continue;
    const Rgb fill = class_colour(labels[static_cast<std::size_t>(n)]);
    for (int dy = -r - 1; dy <= r + 1; ++dy)
      for (int dx = -r - 1; dx <= r + 1; ++dx) {
        const auto px = static_cast<index_t>(x) + dx, py = static_cast<index_t>(y) + dy;
        const int d2 = dx * dx + dy * dy;
        if (px < 0 || py < 0 || px >= grid.width || py >= grid.height || d2 > (r + 1) * (r + 1)) continue;
        image.set(px, py, d2 > r * r ? Rgb{34, 34, 34} : fill);  // a dark ring around the class colour
      }
  }
  return image;
}

}  // namespace glassbox::viz
