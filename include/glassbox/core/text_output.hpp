#pragma once
// Text output shared by every exporter: numbers that survive a round trip,
// JSON strings and numbers (non-finite values become null, as JSON has no
// NaN), and a file write that never leaves a half-written file behind.

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "glassbox/core/binary_io.hpp"
#include "glassbox/core/error.hpp"

namespace glassbox {

// Shortest text that reads back to the same double; "nan", "inf", "-inf"
// for non-finite values (what Python's float() and spreadsheets accept).
inline std::string number_text(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return fmt::format("{}", x);
}

inline std::string json_number(double x) { return std::isfinite(x) ? fmt::format("{}", x) : "null"; }

inline std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        else
          out += c;
    }
  }
  return out + "\"";
}

// Text for HTML and SVG: the five markup characters as entities, and the
// control characters that XML forbids left out.
inline std::string markup_escape(const std::string& s) {
  std::string out;
  for (const char c : s) switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\n' || c == '\t') out += c;
    }
  return out;
}

// Writes `text` to `path` atomically (see write_file_atomically): a crash
// leaves either the old file or the new one.
inline void write_text_file(const std::string& path, const std::string& text) { write_file_atomically(path, text); }

}  // namespace glassbox
