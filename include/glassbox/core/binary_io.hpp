#pragma once
// What glassbox's binary files share: little-endian appends, a bounds-checked
// reader whose errors name the source, section and field, whole-file reading,
// and atomic, durable writes.
//
// write_file_atomically writes a temporary file in the target's directory,
// flushes and fsyncs it, renames it over the target and fsyncs the directory:
// a crash or kill at any moment leaves the old file or the new one, never a
// torn one.

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "glassbox/core/error.hpp"

namespace glassbox {

static_assert(sizeof(float) == 4 && sizeof(double) == 8, "glassbox's binary formats need IEEE-754 float and double");

// Appends v's bytes (the formats are little-endian, as every target is;
// io/checkpoint.hpp checks the machine's byte order).
template <class V>
void put(std::string& out, V v) {
  static_assert(std::is_trivially_copyable_v<V>);
  char bytes[sizeof(V)];
  std::memcpy(bytes, &v, sizeof(V));
  out.append(bytes, sizeof(V));
}

// A u32 length, then the bytes.
inline void put_string(std::string& out, std::string_view s) {
  put<std::uint32_t>(out, static_cast<std::uint32_t>(s.size()));
  out.append(s.data(), s.size());
}

inline bool little_endian_machine() {
  const std::uint32_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// Reads fields from a byte buffer, never past its end. Errors read
// "<source>: <section>, field '<field>': <what>".
struct ByteReader {
  std::string_view data;
  std::size_t pos = 0;
  std::string source, section;

  Error error(const char* field, const std::string& what) const {
    return Error(fmt::format("{}: {}, field '{}': {}", source, section, field, what));
  }
  std::size_t left() const { return data.size() - pos; }
  void need(std::uint64_t bytes, const char* field) const {
    if (bytes > left())
      throw error(field, fmt::format("needs {} bytes, {} left (truncated or corrupt)", bytes, left()));
  }
  template <class V>
  V get(const char* field) {
    static_assert(std::is_trivially_copyable_v<V>);
    need(sizeof(V), field);
    V v;
    std::memcpy(&v, data.data() + pos, sizeof(V));
    pos += sizeof(V);
    return v;
  }
  // A u32-length-prefixed string of at most max_length bytes.
  std::string string(const char* field, std::uint32_t max_length = 4096) {
    const auto length = get<std::uint32_t>(field);
    if (length > max_length) throw error(field, fmt::format("length {} (at most {})", length, max_length));
    need(length, field);
    std::string s(data.substr(pos, length));
    pos += length;
    return s;
  }
  // An i64 in [low, high].
  std::int64_t integer(const char* field, std::int64_t low, std::int64_t high) {
    const auto v = get<std::int64_t>(field);
    if (v < low || v > high) throw error(field, fmt::format("{} is outside [{}, {}]", v, low, high));
    return v;
  }
  std::string_view bytes(std::uint64_t count, const char* field) {
    need(count, field);
    const std::string_view b = data.substr(pos, static_cast<std::size_t>(count));
    pos += static_cast<std::size_t>(count);
    return b;
  }
};

// The whole file; errors name the path.
inline std::string read_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::string data;
  char buffer[1 << 16];
  std::size_t got;
  while ((got = std::fread(buffer, 1, sizeof buffer, f)) > 0) data.append(buffer, got);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) throw Error(fmt::format("{}: read error", path));
  return data;
}

namespace detail {
inline bool write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}
}  // namespace detail

inline void write_file_atomically(const std::string& path, std::string_view bytes) {
  const std::size_t slash = path.find_last_of('/');
  const std::string directory = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  std::string temporary = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(temporary.data());
  if (fd < 0) throw Error(fmt::format("{}: cannot create a temporary file: {}", path, std::strerror(errno)));
  // mkstemp creates the file 0600: keep the mode of the file it replaces, or
  // make it an ordinary 0644 file.
  struct stat existing;
  ::fchmod(fd, ::stat(path.c_str(), &existing) == 0 ? existing.st_mode & 07777 : 0644);
  const bool written = detail::write_all(fd, bytes.data(), bytes.size()) && ::fsync(fd) == 0;
  const int write_error = errno;
  const bool closed = ::close(fd) == 0;
  if (!written || !closed) {
    ::unlink(temporary.c_str());
    throw Error(fmt::format("{}: write failed: {}", temporary, std::strerror(written ? errno : write_error)));
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(temporary.c_str());
    throw Error(fmt::format("{}: cannot rename to {}: {}", temporary, path, std::strerror(error)));
  }
  // The rename itself is durable once the directory is synced.
  const int dir = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace glassbox
