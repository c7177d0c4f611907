#pragma once
// The protocol-buffer wire format, both ways, without a protobuf dependency:
// ProtoWriter builds a message (ONNX export), ProtoReader walks one (ONNX
// import). Each field is a varint key (number << 3 | wire type) then a
// varint, a fixed 32/64-bit value, or a length and that many bytes.
//
// The reader trusts nothing: every length is checked against the bytes left
// before it is used, varints longer than 10 bytes are refused, and it never
// allocates: bytes() returns a view into the input, message() a reader over
// a sub-range. Errors name the input (`where`) and the byte offset.

#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "glassbox/core/error.hpp"

namespace glassbox::io {

class ProtoWriter {
 public:
  ProtoWriter& varint(int field, std::uint64_t v) {
    key(field, 0);
    raw_varint(v);
    return *this;
  }
  ProtoWriter& int64(int field, std::int64_t v) { return varint(field, static_cast<std::uint64_t>(v)); }
  ProtoWriter& float32(int field, float v) {
    key(field, 5);
    char b[4];
    std::memcpy(b, &v, 4);
    bytes_.append(b, 4);
    return *this;
  }
  ProtoWriter& bytes(int field, const std::string& b) {
    key(field, 2);
    raw_varint(b.size());
    bytes_ += b;
    return *this;
  }
  ProtoWriter& message(int field, const ProtoWriter& m) { return bytes(field, m.bytes_); }
  const std::string& str() const { return bytes_; }

 private:
  void key(int field, int wire) {
    raw_varint(static_cast<std::uint64_t>(field) << 3 | static_cast<std::uint64_t>(wire));
  }
  void raw_varint(std::uint64_t v) {
    while (v >= 0x80) {
      bytes_ += static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    bytes_ += static_cast<char>(v);
  }
  std::string bytes_;
};

class ProtoReader {
 public:
  enum Wire { varint_wire = 0, fixed64_wire = 1, bytes_wire = 2, fixed32_wire = 5 };

  // `base` is the offset of `bytes` in the whole input, for error messages.
  ProtoReader(std::string_view bytes, const std::string& where, std::size_t base = 0)
      : data_(bytes), where_(&where), base_(base) {}

  // Moves to the next field; false at the end of the message.
  bool next() {
    if (pos_ == data_.size()) return false;
    const std::uint64_t key = raw_varint();
    field_ = key >> 3;
    wire_ = static_cast<int>(key & 7);
    if (field_ == 0 || field_ > (std::uint64_t(1) << 29) - 1) fail(fmt::format("field number {}", field_));
    if (wire_ != varint_wire && wire_ != fixed64_wire && wire_ != bytes_wire && wire_ != fixed32_wire)
      fail(fmt::format("wire type {} of field {}", wire_, field_));
    return true;
  }
  std::uint64_t field() const { return field_; }
  int wire() const { return wire_; }

  std::uint64_t varint() {
    expect(varint_wire);
    return raw_varint();
  }
  std::int64_t int64() { return static_cast<std::int64_t>(varint()); }
  float float32() {
    expect(fixed32_wire);
    return fixed<float>();
  }
  std::string_view bytes() {
    expect(bytes_wire);
    return raw_bytes();
  }
  ProtoReader message() {
    expect(bytes_wire);
    const std::string_view b = raw_bytes();
    return ProtoReader(b, *where_, base_ + pos_ - b.size());
  }

  // A repeated integer field, packed (one length-delimited run) or not;
  // the count is bounded by the bytes present, so `out` grows only with input.
  void int64s(std::vector<std::int64_t>& out) {
    if (wire_ != bytes_wire) {
      out.push_back(int64());
      return;
    }
    const std::string_view run = raw_bytes();
    ProtoReader packed(run, *where_, base_ + pos_ - run.size());
    while (!packed.at_end()) out.push_back(static_cast<std::int64_t>(packed.raw_varint()));
  }
  // A repeated float (fixed32) or double (fixed64) field, packed or not.
  template <class F>
  void reals(std::vector<double>& out) {
    constexpr int wire = sizeof(F) == 4 ? fixed32_wire : fixed64_wire;
    if (wire_ != bytes_wire) {
      expect(wire);
      out.push_back(static_cast<double>(fixed<F>()));
      return;
    }
    const std::string_view run = raw_bytes();
    if (run.size() % sizeof(F) != 0)
      fail(fmt::format("a packed run of {} bytes is not a whole number of {}-byte values", run.size(), sizeof(F)));
    out.reserve(out.size() + run.size() / sizeof(F));
    for (std::size_t i = 0; i < run.size(); i += sizeof(F)) {
      F v;
      std::memcpy(&v, run.data() + i, sizeof(F));
      out.push_back(static_cast<double>(v));
    }
  }

  // Skips the current field's value.
  void skip() {
    switch (wire_) {
      case varint_wire: raw_varint(); break;
      case fixed64_wire: take(8); break;
      case bytes_wire: raw_bytes(); break;
      case fixed32_wire: take(4); break;
    }
  }

  bool at_end() const { return pos_ == data_.size(); }
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(fmt::format("{}: malformed protobuf at byte {}: {}", *where_, base_ + pos_, what));
  }

 private:
  void expect(int wire) const {
    if (wire_ != wire) fail(fmt::format("field {} has wire type {}, expected {}", field_, wire_, wire));
  }
  std::uint64_t raw_varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (pos_ == data_.size()) fail("truncated varint");
      const auto byte = static_cast<unsigned char>(data_[pos_++]);
      if (shift == 63 && byte > 1) fail("varint overflows 64 bits");
      v |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return v;
    }
    fail("varint longer than 10 bytes");
  }
  std::string_view raw_bytes() {
    const std::uint64_t size = raw_varint();
    if (size > data_.size() - pos_)
      fail(fmt::format("field {} declares {} bytes, {} are left", field_, size, data_.size() - pos_));
    return take(static_cast<std::size_t>(size));
  }
  std::string_view take(std::size_t n) {
    if (n > data_.size() - pos_)
      fail(fmt::format("field {} needs {} bytes, {} are left", field_, n, data_.size() - pos_));
    const std::string_view b = data_.substr(pos_, n);
    pos_ += n;
    return b;
  }
  template <class F>
  F fixed() {
    const std::string_view b = take(sizeof(F));
    F v;
    std::memcpy(&v, b.data(), sizeof(F));
    return v;
  }

  std::string_view data_;
  const std::string* where_;
  std::size_t base_ = 0, pos_ = 0;
  std::uint64_t field_ = 0;
  int wire_ = 0;
};

}  // namespace glassbox::io
