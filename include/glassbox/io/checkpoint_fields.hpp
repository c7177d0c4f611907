#pragma once
// The fields of a checkpoint (io/checkpoint.hpp, where the format is laid
// out): the format's constants and limits, and the encoding of shapes,
// values, generator states, layer specs, sections and optimizer state, each
// read back bounds-checked (nothing is sized by a field before the bytes
// left confirm it).

#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "glassbox/core/binary_io.hpp"
#include "glassbox/core/crc32c.hpp"
#include "glassbox/core/rng.hpp"
#include "glassbox/core/tensor.hpp"
#include "glassbox/io/layer_spec.hpp"
#include "glassbox/nn/layer.hpp"
#include "glassbox/optim/adam.hpp"
#include "glassbox/optim/optimizer.hpp"
#include "glassbox/optim/sgd.hpp"

namespace glassbox::io {

namespace checkpoint_format {
inline constexpr char magic[8] = {'\x89', 'G', 'B', 'C', 'K', 'P', 'T', '\n'};
inline constexpr std::uint32_t version = 2;  // 2: STAT ends with the RunShape
inline constexpr std::size_t header_size = 24;
inline constexpr std::uint32_t max_layers = 4096;  // in all, blocks' children included
inline constexpr int max_depth = 8;                // blocks inside blocks
inline constexpr std::uint32_t max_fields = 64;
inline constexpr std::uint32_t max_name = 1024;
}  // namespace checkpoint_format

namespace detail {

inline void put_shape(std::string& out, const Shape& shape) {
  put<std::uint32_t>(out, static_cast<std::uint32_t>(shape.rank()));
  for (int i = 0; i < shape.rank(); ++i) put<std::int64_t>(out, shape[i]);
}

template <class T>
void put_values(std::string& out, const Tensor<T>& t) {
  out.append(reinterpret_cast<const char*>(t.data()), static_cast<std::size_t>(t.size()) * sizeof(T));
}

inline void put_rng(std::string& out, const Rng::State& s) {
  for (std::uint64_t w : s.words) put(out, w);
  put<std::uint8_t>(out, s.has_spare_normal);
  put<double>(out, s.spare_normal);
}

inline void put_spec(std::string& out, const LayerSpec& spec) {
  put_string(out, spec.kind);
  put_string(out, spec.name);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(spec.fields.size()));
  for (const auto& [key, value] : spec.fields) {
    put_string(out, key);
    put<double>(out, value);
  }
  put<std::uint32_t>(out, static_cast<std::uint32_t>(spec.children.size()));
  for (const LayerSpec& child : spec.children) put_spec(out, child);
}

// Reads a spec and its children; `budget` counts the layers still allowed.
inline LayerSpec get_spec(ByteReader& r, int depth, std::uint32_t& budget) {
  if (budget == 0) throw r.error("layer count", fmt::format("more than {} layers", checkpoint_format::max_layers));
  --budget;
  LayerSpec spec;
  spec.kind = r.string("kind", 64);
  spec.name = r.string("name", checkpoint_format::max_name);
  if (spec.name.empty()) throw r.error("name", "empty");
  const auto fields = r.get<std::uint32_t>("field count");
  if (fields > checkpoint_format::max_fields)
    throw r.error("field count", fmt::format("{} (at most {})", fields, checkpoint_format::max_fields));
  for (std::uint32_t k = 0; k < fields; ++k) {
    std::string key = r.string("field name", 64);
    spec.set(key, r.get<double>("field value"));
  }
  const auto children = r.get<std::uint32_t>("child count");
  if (children > 0 && depth >= checkpoint_format::max_depth)
    throw r.error("child count", fmt::format("blocks nested deeper than {}", checkpoint_format::max_depth));
  if (children > budget) throw r.error("child count", fmt::format("{} (too many layers)", children));
  for (std::uint32_t k = 0; k < children; ++k) spec.children.push_back(get_spec(r, depth + 1, budget));
  return spec;
}

// The random generators of a layer and of the layers inside it, in order.
template <class T>
void generators(Layer<T>& layer, std::vector<Rng*>& out) {
  if (Rng* rng = layer.rng()) out.push_back(rng);
  for (Layer<T>* child : layer.children()) generators(*child, out);
}

inline void put_section(std::string& file, const char (&tag)[5], const std::string& payload) {
  file.append(tag, 4);
  put<std::uint64_t>(file, payload.size());
  file += payload;
  put<std::uint32_t>(file, crc32c(payload.data(), payload.size()));
}

// A shape of rank 0..max_rank whose element count is at most max_elements
// (the bytes left in the section bound it, so nothing is sized by a lie).
inline Shape get_shape(ByteReader& r, const char* field, std::uint64_t max_elements) {
  const auto rank = r.get<std::uint32_t>(field);
  if (rank > static_cast<std::uint32_t>(Shape::max_rank))
    throw r.error(field, fmt::format("rank {} (at most {})", rank, Shape::max_rank));
  std::vector<index_t> dims;
  std::uint64_t nonzero = 1;  // the product of the non-zero dimensions: a zero must not hide huge ones
  for (std::uint32_t i = 0; i < rank; ++i) {
    const auto d = r.get<std::int64_t>(field);
    if (d < 0) throw r.error(field, fmt::format("negative dimension {}", d));
    if (d > 0 && nonzero > max_elements / static_cast<std::uint64_t>(d))
      throw r.error(field, fmt::format("shape larger than the {} values the file can hold", max_elements));
    if (d > 0) nonzero *= static_cast<std::uint64_t>(d);
    dims.push_back(static_cast<index_t>(d));
  }
  return Shape(dims.begin(), dims.end());
}

template <class T>
void get_values(ByteReader& r, const char* field, Tensor<T>& t) {
  const std::string_view bytes = r.bytes(static_cast<std::uint64_t>(t.size()) * sizeof(T), field);
  std::memcpy(t.data(), bytes.data(), bytes.size());
}

inline Rng::State get_rng(ByteReader& r, const char* field) {
  Rng::State s;
  for (std::uint64_t& w : s.words) w = r.get<std::uint64_t>(field);
  s.has_spare_normal = r.get<std::uint8_t>(field) != 0;
  s.spare_normal = r.get<double>(field);
  if (s.words[0] == 0 && s.words[1] == 0 && s.words[2] == 0 && s.words[3] == 0)
    throw r.error(field, "the all-zero generator state is invalid");
  return s;
}

// The optimizer's kind, hyperparameters and per-parameter state lists.
template <class T>
struct OptimizerState {
  std::string kind;
  std::vector<std::pair<std::string, double>> fields;
  std::vector<std::pair<std::string, std::vector<Tensor<T>>*>> states;
};

template <class T>
OptimizerState<T> optimizer_state(optim::Optimizer<T>& optimizer) {
  if (auto* adam = dynamic_cast<optim::Adam<T>*>(&optimizer)) {
    const auto& o = adam->options();
    return {"adam",
            {{"beta1", o.beta1},
             {"beta2", o.beta2},
             {"eps", o.eps},
             {"weight_decay", o.weight_decay},
             {"decoupled_weight_decay", o.decoupled_weight_decay}},
            {{"exp_avg", &adam->exp_avg()}, {"exp_avg_sq", &adam->exp_avg_sq()}}};
  }
  if (auto* sgd = dynamic_cast<optim::SGD<T>*>(&optimizer)) {
    const auto& o = sgd->options();
    return {"sgd",
            {{"momentum", o.momentum},
             {"dampening", o.dampening},
             {"nesterov", o.nesterov},
             {"weight_decay", o.weight_decay}},
            {{"momentum_buffer", &sgd->momentum_buffers()}}};
  }
  throw Error("save_checkpoint: only Adam and SGD optimizers can be saved");
}

}  // namespace detail

}  // namespace glassbox::io
