#pragma once
// read_idx: the IDX format of MNIST and Fashion-MNIST
// (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code, the number
// of dimensions, one big-endian uint32 per dimension, then the data, big-endian.
//
// Every header field is checked against the file's size before anything is
// allocated; any mismatch is a glassbox::Error naming the file and the field.
// The file must hold exactly the declared data: trailing bytes are an error too.

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "glassbox/core/binary_io.hpp"
#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/tensor.hpp"

namespace glassbox::io {

namespace detail {
inline std::uint64_t big_endian(const unsigned char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

// Element size in bytes of an IDX type code, 0 if the code is unknown.
inline int idx_element_size(unsigned code) {
  switch (code) {
    case 0x08:
    case 0x09: return 1;  // unsigned / signed byte
    case 0x0B: return 2;  // int16
    case 0x0C:
    case 0x0D: return 4;  // int32 / float32
    case 0x0E: return 8;  // float64
    default: return 0;
  }
}

template <class T>
T idx_element(unsigned code, const unsigned char* p) {
  switch (code) {
    case 0x08: return static_cast<T>(p[0]);
    case 0x09: return static_cast<T>(static_cast<std::int8_t>(p[0]));
    case 0x0B: return static_cast<T>(static_cast<std::int16_t>(big_endian(p, 2)));
    case 0x0C: return static_cast<T>(static_cast<std::int32_t>(big_endian(p, 4)));
    case 0x0D: {
      const auto bits = static_cast<std::uint32_t>(big_endian(p, 4));
      float f;
      std::memcpy(&f, &bits, 4);
      return static_cast<T>(f);
    }
    default: {
      const std::uint64_t bits = big_endian(p, 8);
      double d;
      std::memcpy(&d, &bits, 8);
      return static_cast<T>(d);
    }
  }
}
}  // namespace detail

// Parses an IDX file's bytes; errors name `source` (the path) and the field.
template <class T>
Tensor<T> idx_from_bytes(std::string_view data, const std::string& source, T scale = T(1)) {
  const std::string& path = source;
  const auto file_size = static_cast<std::uint64_t>(data.size());
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  if (file_size < 4)
    throw Error(fmt::format("{}: file is {} bytes, too short for the IDX header (field: magic)", path, file_size));
  const unsigned char* header = bytes;
  if (header[0] != 0 || header[1] != 0)
    throw Error(fmt::format("{}: bad magic number 0x{:02X}{:02X}{:02X}{:02X}, not an IDX file (field: magic)", path,
                            header[0], header[1], header[2], header[3]));
  const unsigned code = header[2];
  const int element_size = detail::idx_element_size(code);
  if (element_size == 0) throw Error(fmt::format("{}: unknown element type 0x{:02X} (field: type)", path, code));
  const int rank = header[3];
  if (rank < 1 || rank > Shape::max_rank)
    throw Error(
        fmt::format("{}: {} dimensions, supported are 1 to {} (field: dimension count)", path, rank, Shape::max_rank));
  const std::uint64_t header_size = 4 + 4 * static_cast<std::uint64_t>(rank);
  if (file_size < header_size)
    throw Error(fmt::format("{}: truncated header: {} dimensions need {} bytes, file has {} (field: dimensions)", path,
                            rank, header_size, file_size));
  const unsigned char* dims_raw = bytes + 4;

  // Multiply the sizes without overflow: stop as soon as they exceed the file.
  const std::uint64_t data_bytes = file_size - header_size;
  const std::uint64_t max_elements = data_bytes / static_cast<std::uint64_t>(element_size);
  std::vector<index_t> dims(static_cast<std::size_t>(rank));
  for (int i = 0; i < rank; ++i)
    dims[static_cast<std::size_t>(i)] = static_cast<index_t>(detail::big_endian(dims_raw + 4 * i, 4));
  const bool empty = std::find(dims.begin(), dims.end(), index_t{0}) != dims.end();
  std::uint64_t elements = empty ? 0 : 1;
  bool too_big = false;
  for (std::size_t i = 0; i < dims.size() && !empty && !too_big; ++i) {
    const auto d = static_cast<std::uint64_t>(dims[i]);
    if (elements > max_elements / d)
      too_big = true;
    else
      elements *= d;
  }
  std::string dims_text = fmt::format("{}", fmt::join(dims, " x "));
  if (too_big || elements * static_cast<std::uint64_t>(element_size) > data_bytes)
    throw Error(
        fmt::format("{}: dimensions {} need more data than the file's {} bytes (field: dimension sizes; "
                    "truncated or corrupt)",
                    path, dims_text, data_bytes));
  if (elements * static_cast<std::uint64_t>(element_size) < data_bytes)
    throw Error(
        fmt::format("{}: dimensions {} need {} bytes of data but the file has {} (field: dimension sizes; "
                    "trailing bytes)",
                    path, dims_text, elements * static_cast<std::uint64_t>(element_size), data_bytes));

  const unsigned char* raw = bytes + header_size;
  Tensor<T> out(Shape(dims.begin(), dims.end()));
  for (std::size_t i = 0; i < static_cast<std::size_t>(elements); ++i)
    out[static_cast<index_t>(i)] =
        scale * detail::idx_element<T>(code, raw + i * static_cast<std::size_t>(element_size));
  return out;
}

// Reads an IDX file into a Tensor<T> of the file's shape, each element
// multiplied by `scale` (1/255 turns pixels into [0, 1]).
template <class T>
Tensor<T> read_idx(const std::string& path, T scale = T(1)) {
  return idx_from_bytes<T>(read_file(path), path, scale);
}

GLASSBOX_PRECOMPILED_INSTANCE(Tensor<float> read_idx<float>(const std::string&, float))
}  // namespace glassbox::io
