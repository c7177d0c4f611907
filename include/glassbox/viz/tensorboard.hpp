#pragma once
// TensorBoard event files, written directly: `tensorboard --logdir DIR` shows
// the scalars, histograms and images. No protobuf or TensorFlow dependency:
//
//   file    events.out.tfevents.<seconds>.<host>.glassbox, a sequence of records
//   record  uint64 length | uint32 masked CRC32C of the length bytes | data |
//           uint32 masked CRC32C of the data (little-endian; TFRecord framing)
//   data    an Event protocol buffer (tensorflow/core/util/event.proto):
//           wall_time = 1 (double), step = 2 (int64), file_version = 3 (string),
//           summary = 5; Summary.value = 1: tag = 1, simple_value = 2 (float),
//           image = 4 (height 1, width 2, colorspace 3, encoded PNG 4),
//           histo = 5 (HistogramProto: min 1, max 2, num 3, sum 4,
//           sum_squares 5, bucket_limit 6 and bucket 7, packed doubles)
//
// TensorBoardLogger is a train::Callback that logs loss, accuracy, the
// learning rate, weight and gradient histograms, and, when given, the
// recorders' newest activation histograms and gradient norms.

#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "glassbox/core/crc32c.hpp"
#include "glassbox/core/precompiled.hpp"
#include "glassbox/inspect/activation_stats.hpp"
#include "glassbox/inspect/gradient_flow.hpp"
#include "glassbox/optim/optimizer.hpp"
#include "glassbox/train/callback.hpp"
#include "glassbox/viz/png.hpp"

namespace glassbox::viz {

// TFRecord stores the CRC rotated and offset, so that CRCs of CRCs stay useful.
inline std::uint32_t masked_crc32c(const void* data, std::size_t size) {
  const std::uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

namespace detail {
// Protocol buffer encoding, only what Event needs.
class ProtoWriter {
 public:
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      bytes_ += static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    bytes_ += static_cast<char>(v);
  }
  void key(int field, int wire_type) {
    varint(static_cast<std::uint64_t>(field) << 3 | static_cast<unsigned>(wire_type));
  }
  void int_field(int field, long long v) {
    key(field, 0);
    varint(static_cast<std::uint64_t>(v));
  }
  void double_field(int field, double v) {
    key(field, 1);
    little_endian(v);
  }
  void float_field(int field, float v) {
    key(field, 5);
    little_endian(v);
  }
  void bytes_field(int field, const std::string& v) {
    key(field, 2);
    varint(v.size());
    bytes_ += v;
  }
  void packed_doubles(int field, const std::vector<double>& values) {
    ProtoWriter packed;
    for (double v : values) packed.little_endian(v);
    bytes_field(field, packed.bytes());
  }
  template <class V>
  void little_endian(V v) {  // x86 and ARM Linux are little-endian, as the format
    char raw[sizeof(V)];
    std::memcpy(raw, &v, sizeof(V));
    bytes_.append(raw, sizeof(V));
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};
}  // namespace detail

// Bucketed values as TensorBoard's HistogramProto: bucket i counts the values
// from limit[i-1] up to limit[i] (equal buckets of [min, max] here, as
// TensorFlow's own summaries); the last limit is +max double.
struct HistogramSummary {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> bucket_limit, bucket;
};

// `bins` equal buckets over the finite values' [min, max]; non-finite values
// are left out.
template <class T>
HistogramSummary histogram_of(const T* values, index_t count, int bins = 30) {
  if (bins < 1) throw Error(fmt::format("histogram_of: bins must be >= 1, got {}", bins));
  HistogramSummary h;
  h.min = std::numeric_limits<double>::infinity();
  h.max = -h.min;
  for (index_t k = 0; k < count; ++k) {
    const double v = static_cast<double>(values[k]);
    if (!std::isfinite(v)) continue;
    h.min = std::min(h.min, v);
    h.max = std::max(h.max, v);
    h.num += 1;
    h.sum += v;
    h.sum_squares += v * v;
  }
  if (h.num == 0) {
    h.min = h.max = 0;
    return h;
  }
  const double width = (h.max - h.min) / bins;
  h.bucket.assign(static_cast<std::size_t>(bins), 0);
  for (int b = 0; b < bins; ++b) h.bucket_limit.push_back(h.min + width * (b + 1));
  h.bucket_limit.back() = std::numeric_limits<double>::max();
  for (index_t k = 0; k < count; ++k) {
    const double v = static_cast<double>(values[k]);
    if (!std::isfinite(v)) continue;
    const int b = width > 0 ? std::min(bins - 1, static_cast<int>((v - h.min) / width)) : 0;
    h.bucket[static_cast<std::size_t>(b)] += 1;
  }
  return h;
}

// An ActivationStats histogram (counts over [low, high], plus values below
// and above a fixed range) in TensorBoard's form.
inline HistogramSummary histogram_of(const inspect::ActivationRecord& r) {
  HistogramSummary h;
  const inspect::Histogram& in = r.histogram;
  h.min = r.min;
  h.max = r.max;
  h.sum = r.mean * static_cast<double>(r.count);
  h.sum_squares = (r.std * r.std + r.mean * r.mean) * static_cast<double>(r.count);
  const double width = in.counts.empty() ? 0 : (in.high - in.low) / static_cast<double>(in.counts.size());
  if (in.below) {
    h.bucket_limit.push_back(in.low);
    h.bucket.push_back(static_cast<double>(in.below));
  }
  for (std::size_t b = 0; b < in.counts.size(); ++b) {
    h.bucket_limit.push_back(in.low + width * static_cast<double>(b + 1));
    h.bucket.push_back(static_cast<double>(in.counts[b]));
  }
  if (in.above) {
    h.bucket_limit.push_back(std::numeric_limits<double>::max());
    h.bucket.push_back(static_cast<double>(in.above));
  }
  for (double c : h.bucket) h.num += c;
  return h;
}

class TensorBoardWriter {
 public:
  // Creates log_dir if needed and a new event file in it.
  explicit TensorBoardWriter(const std::string& log_dir) {
    std::error_code error;
    std::filesystem::create_directories(log_dir, error);
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    const auto seconds = static_cast<long long>(wall_time());
    path_ = fmt::format("{}/events.out.tfevents.{}.{}.glassbox", log_dir, seconds, host);
    for (int n = 1; std::filesystem::exists(path_); ++n)  // two writers in one second
      path_ = fmt::format("{}/events.out.tfevents.{}.{}.glassbox.{}", log_dir, seconds, host, n);
    file_ = std::fopen(path_.c_str(), "wb");
    if (!file_) throw Error(fmt::format("TensorBoardWriter: cannot create {}: {}", path_, std::strerror(errno)));
    detail::ProtoWriter event;
    event.double_field(1, wall_time());
    event.bytes_field(3, "brain.Event:2");
    try {
      write_record(event.bytes());
      flush();
    } catch (...) {
      std::fclose(file_);
      throw;
    }
  }
  ~TensorBoardWriter() {
    if (file_) std::fclose(file_);
  }
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  const std::string& path() const { return path_; }

  void add_scalar(const std::string& tag, double value, long long step) {
    detail::ProtoWriter v;
    v.bytes_field(1, tag);
    v.float_field(2, static_cast<float>(value));
    write_summary(v, step);
  }

  void add_histogram(const std::string& tag, const HistogramSummary& h, long long step) {
    detail::ProtoWriter histo;
    histo.double_field(1, h.min);
    histo.double_field(2, h.max);
    histo.double_field(3, h.num);
    histo.double_field(4, h.sum);
    histo.double_field(5, h.sum_squares);
    histo.packed_doubles(6, h.bucket_limit);
    histo.packed_doubles(7, h.bucket);
    detail::ProtoWriter v;
    v.bytes_field(1, tag);
    v.bytes_field(5, histo.bytes());
    write_summary(v, step);
  }
  template <class T>
  void add_histogram(const std::string& tag, const Tensor<T>& values, long long step, int bins = 30) {
    add_histogram(tag, histogram_of(values.data(), values.size(), bins), step);
  }

  void add_image(const std::string& tag, const Image& image, long long step) {
    detail::ProtoWriter picture;
    picture.int_field(1, image.height);
    picture.int_field(2, image.width);
    picture.int_field(3, 3);  // RGB
    picture.bytes_field(4, encode_png(image));
    detail::ProtoWriter v;
    v.bytes_field(1, tag);
    v.bytes_field(4, picture.bytes());
    write_summary(v, step);
  }

  void flush() {
    if (std::fflush(file_) != 0) throw Error(fmt::format("{}: write failed", path_));
  }

 private:
  static double wall_time() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }

  void write_summary(const detail::ProtoWriter& value, long long step) {
    detail::ProtoWriter summary;
    summary.bytes_field(1, value.bytes());
    detail::ProtoWriter event;
    event.double_field(1, wall_time());
    event.int_field(2, step);
    event.bytes_field(5, summary.bytes());
    write_record(event.bytes());
  }

  void write_record(const std::string& data) {
    detail::ProtoWriter header;
    header.little_endian(static_cast<std::uint64_t>(data.size()));
    std::string record = header.bytes();
    detail::ProtoWriter crcs;
    crcs.little_endian(masked_crc32c(record.data(), record.size()));
    record += crcs.bytes() + data;
    detail::ProtoWriter data_crc;
    data_crc.little_endian(masked_crc32c(data.data(), data.size()));
    record += data_crc.bytes();
    if (std::fwrite(record.data(), 1, record.size(), file_) != record.size())
      throw Error(fmt::format("{}: write failed", path_));
  }

  std::string path_;
  std::FILE* file_ = nullptr;
};

struct TensorBoardLoggerOptions {
  long long every = 50;  // training steps between batch-loss points; 0: none
};

// Logs through fit(): train/batch_loss every `every` steps; per epoch loss,
// accuracy, validation loss and accuracy, the learning rate (with an
// optimizer), histograms of every parameter's value and gradient (the last
// step's), and, with recorders, each layer's newest activation histogram
// and gradient norm.
template <class T>
class TensorBoardLogger : public train::Callback {
 public:
  using Options = TensorBoardLoggerOptions;

  TensorBoardLogger(TensorBoardWriter& writer, Sequential<T>& model, const inspect::ActivationStats<T>* stats = nullptr,
                    const inspect::GradientFlow<T>* flow = nullptr, const optim::Optimizer<T>* optimizer = nullptr,
                    Options options = {})
      : writer_(writer), model_(model), stats_(stats), flow_(flow), optimizer_(optimizer), options_(options) {}

  void on_batch_end(const train::BatchLogs& logs) override {
    if (options_.every > 0 && model_.training_steps() % options_.every == 0 && std::isfinite(logs.loss))
      writer_.add_scalar("train/batch_loss", logs.loss, model_.training_steps());
  }

  void on_epoch_end(const train::EpochLogs& logs) override {
    const long long step = model_.training_steps();
    auto scalar = [&](const char* tag, double v) {
      if (std::isfinite(v)) writer_.add_scalar(tag, v, step);
    };
    scalar("epoch/loss", logs.loss);
    scalar("epoch/accuracy", logs.accuracy);
    scalar("epoch/val_loss", logs.val_loss);
    scalar("epoch/val_accuracy", logs.val_accuracy);
    if (optimizer_) scalar("epoch/learning_rate", static_cast<double>(optimizer_->learning_rate()));
    for (Parameter<T>* p : model_.parameters()) {
      writer_.add_histogram("weights/" + p->name, p->value, step);
      if (p->grad.size() == p->value.size()) writer_.add_histogram("gradients/" + p->name, p->grad, step);
    }
    if (stats_)
      for (const auto& series : stats_->all())
        if (!series.records.empty() && !series.records.back().histogram.counts.empty())
          writer_.add_histogram("activations/" + series.name, histogram_of(series.records.back()), step);
    if (flow_)
      for (const auto& series : flow_->layers())
        if (!series.records.empty()) scalar(("gradient_norm/" + series.name).c_str(), series.records.back().norm);
    writer_.flush();
  }

 private:
  TensorBoardWriter& writer_;
  Sequential<T>& model_;
  const inspect::ActivationStats<T>* stats_;
  const inspect::GradientFlow<T>* flow_;
  const optim::Optimizer<T>* optimizer_;
  Options options_;
};

GLASSBOX_PRECOMPILED_INSTANCE(class TensorBoardLogger<float>)
}  // namespace glassbox::viz
