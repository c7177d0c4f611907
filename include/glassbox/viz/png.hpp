#pragma once
// PNG files through libpng's simplified API (libpng >= 1.6.24). Not part of
// glassbox.hpp: include it where you write images and link libpng (the CMake
// target glassbox::glassbox does when CMake found PNG; otherwise -lpng).

#include <fmt/format.h>
#include <png.h>

#include <string>
#include <vector>

#include "glassbox/core/text_output.hpp"
#include "glassbox/viz/image.hpp"

namespace glassbox::viz {

// Encodes the image as an 8-bit RGB PNG.
inline std::string encode_png(const Image& image) {
  if (image.width <= 0 || image.height <= 0)
    throw Error(fmt::format("encode_png: image of {}x{} has no pixels", image.width, image.height));
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  const auto stride = static_cast<png_int_32>(image.width * 3);
  if (!png_image_write_to_memory(&png, nullptr, &size, 0, image.pixels.data(), stride, nullptr))
    throw Error(fmt::format("encode_png: {}", png.message));
  std::string bytes(size, '\0');
  if (!png_image_write_to_memory(&png, bytes.data(), &size, 0, image.pixels.data(), stride, nullptr))
    throw Error(fmt::format("encode_png: {}", png.message));
  bytes.resize(size);
  return bytes;
}

// Written atomically (write_file_atomically), like every report file.
inline void write_png(const std::string& path, const Image& image) { write_text_file(path, encode_png(image)); }

// Any PNG, converted to 8-bit RGB.
inline Image read_png(const std::string& path) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&png, path.c_str())) throw Error(fmt::format("{}: {}", path, png.message));
  png.format = PNG_FORMAT_RGB;
  if (png.width > (1u << 14) || png.height > (1u << 14)) {
    png_image_free(&png);
    throw Error(
        fmt::format("{}: {}x{} pixels is larger than read_png accepts (16384 a side)", path, png.width, png.height));
  }
  Image image(static_cast<index_t>(png.width), static_cast<index_t>(png.height));
  if (!png_image_finish_read(&png, nullptr, image.pixels.data(), 0, nullptr))
    throw Error(fmt::format("{}: {}", path, png.message));
  return image;
}

}  // namespace glassbox::viz
