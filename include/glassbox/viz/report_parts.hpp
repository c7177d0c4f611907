#pragma once
// The small parts report.html (viz/html_report.hpp) is built from: base64
// for inline pictures, JSON that is safe inside <script>, the even
// subsample of long series and the note that says so, and the captioned
// picture grid.

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "glassbox/core/text_output.hpp"
#include "glassbox/viz/image.hpp"
#include "glassbox/viz/png.hpp"

namespace glassbox::viz {

inline std::string base64(const std::string& bytes) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::uint32_t b0 = static_cast<unsigned char>(bytes[i]);
    const std::uint32_t b1 = i + 1 < bytes.size() ? static_cast<unsigned char>(bytes[i + 1]) : 0;
    const std::uint32_t b2 = i + 2 < bytes.size() ? static_cast<unsigned char>(bytes[i + 2]) : 0;
    const std::uint32_t n = b0 << 16 | b1 << 8 | b2;
    out += alphabet[n >> 18 & 63];
    out += alphabet[n >> 12 & 63];
    out += i + 1 < bytes.size() ? alphabet[n >> 6 & 63] : '=';
    out += i + 2 < bytes.size() ? alphabet[n & 63] : '=';
  }
  return out;
}

namespace detail {
// JSON inside <script>: every '<' as \u003c (JSON reads it back as '<'),
// so no "</script>" or "<!--" can change how the page parses.
inline std::string script_safe(const std::string& json) {
  std::string out;
  for (char c : json) out += c == '<' ? std::string("\\u003c") : std::string(1, c);
  return out;
}

inline std::string numbers_json(const std::vector<double>& values) {
  std::string s = "[";
  for (std::size_t i = 0; i < values.size(); ++i) s += (i ? "," : "") + json_number(values[i]);
  return s + "]";
}

// `budget` (>= 2) indices of [0, count) spread evenly, the first and the
// last included; all of them when count <= budget.
inline std::vector<std::size_t> evenly_spaced(std::size_t count, std::size_t budget) {
  std::vector<std::size_t> kept;
  if (count <= budget) {
    for (std::size_t i = 0; i < count; ++i) kept.push_back(i);
    return kept;
  }
  for (std::size_t k = 0; k < budget; ++k)
    kept.push_back(static_cast<std::size_t>(
        static_cast<double>(k) * static_cast<double>(count - 1) / static_cast<double>(budget - 1) + 0.5));
  return kept;
}

// What the page leaves out of a recorder's series: older records the
// recorder dropped (beyond its capacity) and the steps subsampled away.
inline std::string subsampled_note(std::size_t shown, std::size_t kept, std::uint64_t dropped, const char* file) {
  std::string note;
  if (dropped > 0)
    note += fmt::format(
        "The recorder kept the newest {} records of each layer and dropped {} older ones (its capacity option). ", kept,
        dropped);
  if (shown < kept)
    note += fmt::format(
        "Showing {} of the {} recorded steps, evenly spaced (the first and the newest included), to keep this page "
        "small; {} holds every record kept.",
        shown, kept, file);
  return note.empty() ? note : "<p class=\"note subsampled\">" + note + "</p>";
}
// Captioned pictures in a grid whose cells fit the widest picture.
inline std::string picture_grid(const std::vector<std::pair<std::string, Image>>& pictures,
                                const std::string& description) {
  index_t widest = 0;
  for (const auto& picture : pictures) widest = std::max(widest, picture.second.width);
  std::string html = description.empty() ? "" : "<p class=\"note\">" + markup_escape(description) + "</p>";
  html += fmt::format("<div class=\"pictures\" style=\"--cell: {}px\">", std::clamp<index_t>(widest, 120, 700));
  for (const auto& [caption, image] : pictures)
    html += fmt::format(
        "<figure><img alt=\"{0}\" width=\"{1}\" height=\"{2}\" src=\"data:image/png;base64,{3}\"><figcaption>{0}"
        "</figcaption></figure>",
        markup_escape(caption), image.width, image.height, base64(encode_png(image)));
  return html + "</div>";
}
}  // namespace detail

}  // namespace glassbox::viz
