#pragma once
// Checkpoints: a model's architecture, parameters, masks, buffers and random
// generator states, and optionally its optimizer's state, in one versioned,
// checksummed binary file, so that training resumes bit-identically.
//
//   io::save_checkpoint(model, "run.gbck", &adam, /*epochs_completed=*/1);
//   io::Checkpoint<float> c = io::load_checkpoint<float>("run.gbck");
//   train::fit(c.model, *c.optimizer, loss, x, y, {.epochs = 2, .initial_epoch = 1})
//
// Writing is atomic and durable (core/binary_io.hpp): a crash leaves the old
// checkpoint or the new one. Loading checks every field against the file
// before it allocates anything a field sizes; any problem is a glassbox::Error
// naming the file, the section and the field.
//
// Format, little-endian (README, "Checkpoint format"; its fields are written
// and read by io/checkpoint_fields.hpp):
//   header (24 bytes): magic 89 'G' 'B' 'C' 'K' 'P' 'T' 0A, u32 version,
//     u8 scalar size (4 float, 8 double), u8 byte order (1 little-endian),
//     u16 zero, u32 section count, u32 CRC-32C of the 20 bytes before it;
//   sections: 4-byte tag, u64 payload size, payload, u32 CRC-32C of payload.
//   ARCH: u8 has sample shape, u32 rank, i64 dims; u32 layer count; per layer
//     kind, name (strings: u32 length + bytes), u32 field count, per field
//     key string and f64 value (io/layer_spec.hpp), u32 child count and the
//     children in the same layout (a residual block's body, then its shortcut;
//     a graph's layer nodes, its wiring being fields).
//   PARM: u32 count; per parameter name, shape (u32 rank, i64 dims), u8 has
//     mask, the values, then the mask's values if any.
//   STAT: i64 training steps, i64 epochs completed, the model's Rng state;
//     u32 layer count; per layer u32 buffer count, per buffer name, shape,
//     values; u32 generator count, each Rng state (4 u64, u8 has spare
//     normal, f64 spare): the layer's own and its children's, in order;
//     from version 2, i64 world size and i64 global batch (RunShape).
//   OPTM (only when an optimizer was saved): kind string, f64 learning rate,
//     i64 steps, u32 field count, key string + f64 value per field; u32 state
//     count; per state name string, u32 entries, per entry shape + values
//     (rank 0: no state yet).

#include <fmt/format.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "glassbox/core/binary_io.hpp"
#include "glassbox/core/crc32c.hpp"
#include "glassbox/io/checkpoint_fields.hpp"
#include "glassbox/io/layer_spec.hpp"
#include "glassbox/model/sequential.hpp"
#include "glassbox/optim/adam.hpp"
#include "glassbox/optim/sgd.hpp"

namespace glassbox::io {

// How the run that saved a checkpoint trained: its data-parallel ranks and
// its global batch (ranks x per-rank batch; 0: not said). Resuming with
// another global batch would not continue that run's batches
// (train::FitOptions::resumed_global_batch refuses it).
struct RunShape {
  std::int64_t world_size = 1;
  std::int64_t global_batch = 0;
};

template <class T>
struct Checkpoint {
  Sequential<T> model;
  std::unique_ptr<optim::Optimizer<T>> optimizer;  // null when none was saved
  long long epochs_completed = 0;
  RunShape run;  // version 1 files: {1, 0}
};

// The checkpoint as bytes (save_checkpoint writes these).
template <class T>
std::string checkpoint_bytes(Sequential<T>& model, optim::Optimizer<T>* optimizer = nullptr,
                             long long epochs_completed = 0, RunShape run = {}) {
  using namespace detail;
  if (!little_endian_machine()) throw Error("save_checkpoint: big-endian machines are not supported");
  if (epochs_completed < 0) throw Error(fmt::format("save_checkpoint: epochs_completed {} < 0", epochs_completed));
  if (run.world_size < 1 || run.global_batch < 0)
    throw Error(fmt::format("save_checkpoint: run shape {} ranks, global batch {}: need >= 1 and >= 0", run.world_size,
                            run.global_batch));

  std::string arch;
  put<std::uint8_t>(arch, model.sample_shape().has_value());
  put_shape(arch, model.sample_shape().value_or(Shape{}));
  put<std::uint32_t>(arch, static_cast<std::uint32_t>(model.size()));
  for (std::size_t i = 0; i < model.size(); ++i) {
    put_spec(arch, describe(model.layer(i)));
  }

  std::string params;
  const std::vector<Parameter<T>*> all = model.parameters();
  put<std::uint32_t>(params, static_cast<std::uint32_t>(all.size()));
  for (const Parameter<T>* p : all) {
    put_string(params, p->name);
    put_shape(params, p->value.shape());
    put<std::uint8_t>(params, p->has_mask());
    put_values(params, p->value);
    if (p->has_mask()) put_values(params, p->mask);
  }

  std::string state;
  put<std::int64_t>(state, model.training_steps());
  put<std::int64_t>(state, epochs_completed);
  put_rng(state, model.rng().state());
  put<std::uint32_t>(state, static_cast<std::uint32_t>(model.size()));
  for (std::size_t i = 0; i < model.size(); ++i) {
    Layer<T>& layer = model.layer(i);
    const auto buffers = layer.buffers();
    put<std::uint32_t>(state, static_cast<std::uint32_t>(buffers.size()));
    for (const auto& [name, tensor] : buffers) {
      put_string(state, name);
      put_shape(state, tensor->shape());
      put_values(state, *tensor);
    }
    std::vector<Rng*> rngs;
    generators(layer, rngs);
    put<std::uint32_t>(state, static_cast<std::uint32_t>(rngs.size()));
    for (const Rng* rng : rngs) put_rng(state, rng->state());
  }
  put<std::int64_t>(state, run.world_size);
  put<std::int64_t>(state, run.global_batch);

  std::string optim;
  if (optimizer) {
    if (optimizer->parameters() != all)
      throw Error("save_checkpoint: the optimizer does not hold exactly this model's parameters, in order");
    const OptimizerState<T> s = optimizer_state(*optimizer);
    put_string(optim, s.kind);
    put<double>(optim, static_cast<double>(optimizer->learning_rate()));
    put<std::int64_t>(optim, optimizer->steps());
    put<std::uint32_t>(optim, static_cast<std::uint32_t>(s.fields.size()));
    for (const auto& [key, value] : s.fields) {
      put_string(optim, key);
      put<double>(optim, value);
    }
    put<std::uint32_t>(optim, static_cast<std::uint32_t>(s.states.size()));
    for (const auto& [name, tensors] : s.states) {
      put_string(optim, name);
      put<std::uint32_t>(optim, static_cast<std::uint32_t>(tensors->size()));
      for (const Tensor<T>& t : *tensors) {
        put_shape(optim, t.shape());
        put_values(optim, t);
      }
    }
  }

  std::string file(checkpoint_format::magic, 8);
  put<std::uint32_t>(file, checkpoint_format::version);
  put<std::uint8_t>(file, sizeof(T));
  put<std::uint8_t>(file, 1);
  put<std::uint16_t>(file, 0);
  put<std::uint32_t>(file, optimizer ? 4 : 3);
  put<std::uint32_t>(file, crc32c(file.data(), file.size()));
  put_section(file, "ARCH", arch);
  put_section(file, "PARM", params);
  put_section(file, "STAT", state);
  if (optimizer) put_section(file, "OPTM", optim);
  return file;
}

template <class T>
void save_checkpoint(Sequential<T>& model, const std::string& path, optim::Optimizer<T>* optimizer = nullptr,
                     long long epochs_completed = 0, RunShape run = {}) {
  write_file_atomically(path, checkpoint_bytes(model, optimizer, epochs_completed, run));
}

template <class T>
Checkpoint<T> checkpoint_from_bytes(std::string_view data, const std::string& source = "checkpoint") {
  using namespace detail;
  namespace f = checkpoint_format;
  ByteReader h{data, 0, source, "header"};
  if (data.size() < f::header_size || data.compare(0, 8, std::string_view(f::magic, 8)) != 0)
    throw h.error("magic", "not a glassbox checkpoint (bad magic, or shorter than the 24-byte header)");
  h.pos = 8;
  const auto version = h.get<std::uint32_t>("version");
  const auto scalar = h.get<std::uint8_t>("scalar size");
  const auto order = h.get<std::uint8_t>("byte order");
  h.get<std::uint16_t>("reserved");
  const auto sections = h.get<std::uint32_t>("section count");
  const auto header_crc = h.get<std::uint32_t>("header checksum");
  if (crc32c(data.data(), 20) != header_crc) throw h.error("header checksum", "mismatch (corrupt header)");
  if (version > f::version)
    throw h.error("version", fmt::format("{} is newer than this build reads ({})", version, f::version));
  if (version == 0) throw h.error("version", "0 is not a valid version");
  if (order != 1) throw h.error("byte order", fmt::format("{} (only little-endian, 1, is written)", order));
  if (scalar != sizeof(T))
    throw h.error("scalar size", fmt::format("the file holds {}-byte values, load_checkpoint<{}> reads {}-byte ones",
                                             scalar, sizeof(T) == 4 ? "float" : "double", sizeof(T)));
  if (sections < 3 || sections > 4) throw h.error("section count", fmt::format("{} (expected 3 or 4)", sections));

  // Frame every section and check its checksum before reading any of them.
  const char* expected[4] = {"ARCH", "PARM", "STAT", "OPTM"};
  std::string_view payload[4];
  for (std::uint32_t i = 0; i < sections; ++i) {
    h.section = fmt::format("section {} ({})", i, expected[i]);
    const std::string_view tag = h.bytes(4, "tag");
    if (tag != expected[i]) throw h.error("tag", fmt::format("'{}' where '{}' belongs", tag, expected[i]));
    const auto size = h.get<std::uint64_t>("size");
    payload[i] = h.bytes(size, "size");
    if (crc32c(payload[i].data(), payload[i].size()) != h.get<std::uint32_t>("checksum"))
      throw h.error("checksum", "mismatch (corrupt data)");
  }
  if (h.left() != 0) throw Error(fmt::format("{}: {} bytes after the last section", source, h.left()));

  // ARCH: the layers, checked field by field before any is built.
  ByteReader r{payload[0], 0, source, "ARCH"};
  const bool has_sample_shape = r.get<std::uint8_t>("has sample shape") != 0;
  const Shape sample_shape = get_shape(r, "sample shape", std::uint64_t(1) << 40);
  const auto layer_count = r.get<std::uint32_t>("layer count");
  if (layer_count > f::max_layers)
    throw r.error("layer count", fmt::format("{} (at most {})", layer_count, f::max_layers));
  std::vector<LayerSpec> specs;
  std::uint32_t budget = f::max_layers;
  for (std::uint32_t i = 0; i < layer_count; ++i) {
    r.section = fmt::format("ARCH, layer {}", i);
    specs.push_back(get_spec(r, 0, budget));
  }
  if (r.left() != 0) throw r.error("end", fmt::format("{} unread bytes", r.left()));

  // PARM: the stored tensors must be exactly those the layers will allocate.
  ByteReader p{payload[1], 0, source, "PARM"};
  const auto param_count = p.get<std::uint32_t>("parameter count");
  std::vector<std::string_view> values, masks;
  std::uint32_t seen = 0;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const std::string where = fmt::format("{}: ARCH", source);
    for (const auto& [local, shape] : parameter_shapes(specs[i], where)) {
      p.section = fmt::format("PARM, parameter {}", seen);
      if (seen++ >= param_count)
        throw p.error("parameter count", fmt::format("{}, but the layers have more parameters", param_count));
      const std::string name = p.string("name", f::max_name);
      const std::string expected_name = specs[i].name + "." + local;
      if (name != expected_name) throw p.error("name", fmt::format("'{}' where '{}' belongs", name, expected_name));
      const Shape stored = get_shape(p, "shape", p.left() / sizeof(T));
      if (stored != shape)
        throw p.error("shape", fmt::format("{} for {}, whose layer needs {}", stored.str(), name, shape.str()));
      const bool has_mask = p.get<std::uint8_t>("has mask") != 0;
      const std::uint64_t bytes = static_cast<std::uint64_t>(shape.size()) * sizeof(T);
      values.push_back(p.bytes(bytes, "values"));
      masks.push_back(has_mask ? p.bytes(bytes, "mask") : std::string_view{});
    }
  }
  p.section = "PARM";
  if (seen != param_count)
    throw p.error("parameter count", fmt::format("{}, but the layers have {} parameters", param_count, seen));
  if (p.left() != 0) throw p.error("end", fmt::format("{} unread bytes", p.left()));

  // Everything the architecture sizes is now known to be in the file: build.
  Checkpoint<T> c{has_sample_shape ? Sequential<T>(sample_shape) : Sequential<T>(), nullptr, 0, {}};
  for (const LayerSpec& spec : specs) {
    try {
      c.model.add(make_layer<T>(spec, source + ": ARCH"), spec.name);
    } catch (const Error& e) {
      const std::string what = e.what();
      if (what.rfind(source, 0) == 0) throw;
      throw Error(fmt::format("{}: ARCH, layer '{}': {}", source, spec.name, what));
    }
  }
  const std::vector<Parameter<T>*> all = c.model.parameters();
  if (all.size() != values.size())
    throw Error(
        fmt::format("{}: PARM: the built model has {} parameters, the file {}", source, all.size(), values.size()));
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (values[i].size() != static_cast<std::size_t>(all[i]->value.size()) * sizeof(T))
      throw Error(fmt::format("{}: PARM, parameter '{}': size differs from the built layer's", source, all[i]->name));
    std::memcpy(all[i]->value.data(), values[i].data(), values[i].size());
    if (!masks[i].empty()) {
      Tensor<T> mask(all[i]->value.shape());
      std::memcpy(mask.data(), masks[i].data(), masks[i].size());
      for (const T m : mask)
        if (m != T(0) && m != T(1))
          throw Error(
              fmt::format("{}: PARM, parameter '{}', field 'mask': values must be 0 or 1", source, all[i]->name));
      all[i]->set_mask(mask);
    }
  }

  // STAT: steps, generators and buffers.
  ByteReader s{payload[2], 0, source, "STAT"};
  c.model.set_training_steps(s.integer("training steps", 0, std::int64_t(1) << 62));
  c.epochs_completed = s.integer("epochs completed", 0, std::int64_t(1) << 31);
  c.model.rng().set_state(get_rng(s, "model generator"));
  if (s.get<std::uint32_t>("layer count") != layer_count)
    throw s.error("layer count", fmt::format("differs from ARCH's {}", layer_count));
  for (std::uint32_t i = 0; i < layer_count; ++i) {
    Layer<T>& layer = c.model.layer(i);
    s.section = fmt::format("STAT, layer '{}'", layer.name());
    const auto buffers = layer.buffers();
    if (s.get<std::uint32_t>("buffer count") != buffers.size())
      throw s.error("buffer count", fmt::format("the layer has {} buffers", buffers.size()));
    for (const auto& [name, tensor] : buffers) {
      const std::string stored = s.string("buffer name", f::max_name);
      if (stored != name) throw s.error("buffer name", fmt::format("'{}' where '{}' belongs", stored, name));
      if (get_shape(s, "buffer shape", s.left() / sizeof(T)) != tensor->shape())
        throw s.error("buffer shape", fmt::format("differs from the layer's {}", tensor->shape().str()));
      get_values(s, "buffer values", *tensor);
    }
    std::vector<Rng*> rngs;
    generators(layer, rngs);
    if (s.get<std::uint32_t>("generator count") != rngs.size())
      throw s.error("generator count", fmt::format("the layer has {} random generators", rngs.size()));
    for (Rng* rng : rngs) rng->set_state(get_rng(s, "generator"));
  }
  s.section = "STAT";
  if (version >= 2) {
    c.run.world_size = s.integer("world size", 1, std::int64_t(1) << 24);
    c.run.global_batch = s.integer("global batch", 0, std::int64_t(1) << 40);
  }
  if (s.left() != 0) throw s.error("end", fmt::format("{} unread bytes", s.left()));

  if (sections < 4) return c;
  // OPTM: rebuild the optimizer on the loaded parameters, then its state.
  ByteReader o{payload[3], 0, source, "OPTM"};
  const std::string kind = o.string("kind", 64);
  const double lr = o.get<double>("learning rate");
  const long long steps = o.integer("steps", 0, std::int64_t(1) << 62);
  LayerSpec hyper{kind, "optimizer", {}, {}};
  const auto fields = o.get<std::uint32_t>("field count");
  if (fields > f::max_fields) throw o.error("field count", fmt::format("{} (at most {})", fields, f::max_fields));
  for (std::uint32_t k = 0; k < fields; ++k) {
    std::string key = o.string("field name", 64);
    hyper.set(key, o.get<double>("field value"));
  }
  if (!std::isfinite(lr)) throw o.error("learning rate", "not finite");
  const SpecReader hr(hyper, source + ": OPTM");
  try {
    if (kind == "adam") {
      typename optim::Adam<T>::Options ao;
      ao.beta1 = static_cast<T>(hr.real("beta1"));
      ao.beta2 = static_cast<T>(hr.real("beta2"));
      ao.eps = static_cast<T>(hr.real("eps"));
      ao.weight_decay = static_cast<T>(hr.real("weight_decay"));
      ao.decoupled_weight_decay = hr.flag("decoupled_weight_decay");
      c.optimizer = std::make_unique<optim::Adam<T>>(all, static_cast<T>(lr), ao);
    } else if (kind == "sgd") {
      typename optim::SGD<T>::Options so;
      so.momentum = static_cast<T>(hr.real("momentum"));
      so.dampening = static_cast<T>(hr.real("dampening"));
      so.nesterov = hr.flag("nesterov");
      so.weight_decay = static_cast<T>(hr.real("weight_decay"));
      c.optimizer = std::make_unique<optim::SGD<T>>(all, static_cast<T>(lr), so);
    } else {
      throw o.error("kind", fmt::format("unknown optimizer '{}'", kind));
    }
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.rfind(source, 0) == 0) throw;
    throw Error(fmt::format("{}: OPTM: {}", source, what));
  }
  c.optimizer->set_steps(steps);
  const auto states = optimizer_state(*c.optimizer).states;
  if (o.get<std::uint32_t>("state count") != states.size())
    throw o.error("state count", fmt::format("a {} optimizer has {} state lists", kind, states.size()));
  for (const auto& [name, tensors] : states) {
    const std::string stored = o.string("state name", 64);
    if (stored != name) throw o.error("state name", fmt::format("'{}' where '{}' belongs", stored, name));
    o.section = fmt::format("OPTM, state '{}'", name);
    const auto entries = o.get<std::uint32_t>("entries");
    if (entries > all.size()) throw o.error("entries", fmt::format("{} for {} parameters", entries, all.size()));
    tensors->assign(entries, Tensor<T>());
    for (std::uint32_t k = 0; k < entries; ++k) {
      const Shape shape = get_shape(o, "shape", o.left() / sizeof(T));
      if (shape.rank() == 0) continue;  // no state yet for this parameter
      if (shape != all[k]->value.shape())
        throw o.error("shape",
                      fmt::format("{} for {}, which is {}", shape.str(), all[k]->name, all[k]->value.shape().str()));
      (*tensors)[k] = Tensor<T>(shape);
      get_values(o, "values", (*tensors)[k]);
    }
    o.section = "OPTM";
  }
  if (o.left() != 0) throw o.error("end", fmt::format("{} unread bytes", o.left()));
  return c;
}

template <class T>
Checkpoint<T> load_checkpoint(const std::string& path) {
  return checkpoint_from_bytes<T>(read_file(path), path);
}

}  // namespace glassbox::io
