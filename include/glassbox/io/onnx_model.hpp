#pragma once
// An ONNX file read into plain structs: io::parse_onnx(bytes, where) decodes
// the ModelProto (onnx.proto's field numbers) and checks what the importer
// relies on, so that io/onnx_import.hpp sees a well-formed graph:
//   - tensors: known element type (float, double, int32, int64), every
//     dimension >= 0, and exactly as many values as the dimensions say;
//     data stored outside the file (external_data) is refused;
//   - the graph: every node input produced by a node, an initializer or a
//     graph input; no tensor produced twice; no cycle (nodes come back in a
//     topological order); default-domain opset 11 to 21.
// Errors name the file and the node, tensor or field. Nothing is allocated
// beyond what the bytes present can fill (values are counted, not trusted).

#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <queue>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "glassbox/core/error.hpp"
#include "glassbox/io/protobuf.hpp"

namespace glassbox::io {

struct OnnxTensor {
  std::string name;
  std::vector<std::int64_t> dims;
  int data_type = 0;
  std::vector<double> values;  // float32 and int64 shape values both fit exactly

  std::int64_t size() const {
    std::int64_t n = 1;
    for (const std::int64_t d : dims) n *= d;
    return n;
  }
};

struct OnnxAttribute {
  enum Type {
    undefined = 0,
    float_ = 1,
    int_ = 2,
    string_ = 3,
    tensor = 4,
    graph = 5,
    floats = 6,
    ints = 7,
    strings = 8
  };
  std::string name;
  int type = undefined;
  double f = 0;
  std::int64_t i = 0;
  std::string s;
  std::vector<double> float_list;
  std::vector<std::int64_t> int_list;
  std::vector<std::string> string_list;
  std::vector<OnnxTensor> tensor_value;  // one tensor for type tensor
};

struct OnnxNode {
  std::string name, op, domain;
  std::vector<std::string> inputs, outputs;  // "" marks an optional input left out
  std::vector<OnnxAttribute> attributes;

  const OnnxAttribute* attribute(const std::string& key) const {
    for (const OnnxAttribute& a : attributes)
      if (a.name == key) return &a;
    return nullptr;
  }
  // "node 'conv1' (Conv)": the start of every error about this node.
  std::string label() const { return fmt::format("node '{}' ({})", name, op); }
};

struct OnnxValueInfo {
  std::string name;
  int elem_type = 0;
  std::vector<std::int64_t> dims;  // -1 where the dimension is symbolic or unknown
  std::vector<std::string> dim_names;
  bool has_shape = false;
};

struct OnnxModel {
  std::int64_t ir_version = 0;
  std::int64_t opset = 0;  // of the default ("" or "ai.onnx") domain
  std::string producer;
  std::string graph_name;
  std::vector<OnnxNode> nodes;  // topologically sorted
  std::vector<OnnxTensor> initializers;
  std::vector<OnnxValueInfo> inputs, outputs;                 // inputs without the initializers some exporters list
  std::vector<std::pair<std::string, std::string>> metadata;  // metadata_props
};

namespace onnx_detail {

enum TensorType { float_type = 1, int32_type = 6, int64_type = 7, double_type = 11 };

// Largest dimension a file may declare; larger ones are absurd, not models.
constexpr std::int64_t max_dimension = std::int64_t(1) << 31;

inline const char* type_name(int t) {
  switch (t) {
    case float_type: return "float";
    case int32_type: return "int32";
    case int64_type: return "int64";
    case double_type: return "double";
    default: return "unsupported";
  }
}

class Parser {
 public:
  explicit Parser(std::string where) : where_(std::move(where)) {}

  OnnxModel model(std::string_view bytes) {
    OnnxModel m;
    bool has_graph = false, has_opset = false;
    ProtoReader r(bytes, where_);
    while (r.next()) {
      switch (r.field()) {
        case 1: m.ir_version = r.int64(); break;
        case 2: m.producer = std::string(r.bytes()); break;
        case 14: {
          std::pair<std::string, std::string> entry;
          ProtoReader e = r.message();
          while (e.next()) {
            if (e.field() == 1)
              entry.first = std::string(e.bytes());
            else if (e.field() == 2)
              entry.second = std::string(e.bytes());
            else
              e.skip();
          }
          m.metadata.push_back(std::move(entry));
          break;
        }
        case 7:
          graph(r.message(), m);
          has_graph = true;
          break;
        case 8: {
          std::string domain;
          std::int64_t version = 0;
          ProtoReader o = r.message();
          while (o.next()) {
            if (o.field() == 1)
              domain = std::string(o.bytes());
            else if (o.field() == 2)
              version = o.int64();
            else
              o.skip();
          }
          if (domain.empty() || domain == "ai.onnx") {
            m.opset = version;
            has_opset = true;
          }
          break;
        }
        default: r.skip();
      }
    }
    if (!has_graph) throw Error(fmt::format("{}: not an ONNX model (no graph)", where_));
    if (!has_opset) throw Error(fmt::format("{}: the model imports no default-domain opset", where_));
    // 18 to 21 changed only what the importer refuses anyway for the ops it
    // reads (Pad's axes and wrap mode, AveragePool's dilations, new types)
    // and added Gelu (20).
    if (m.opset < 11 || m.opset > 21)
      throw Error(fmt::format("{}: opset {} is not supported (11 to 21)", where_, m.opset));
    check_graph(m);
    return m;
  }

 private:
  void graph(ProtoReader r, OnnxModel& m) {
    std::vector<OnnxValueInfo> inputs;
    while (r.next()) {
      switch (r.field()) {
        case 1: m.nodes.push_back(node(r.message())); break;
        case 2: m.graph_name = std::string(r.bytes()); break;
        case 5: m.initializers.push_back(tensor(r.message(), "initializer")); break;
        case 11: inputs.push_back(value_info(r.message())); break;
        case 12: m.outputs.push_back(value_info(r.message())); break;
        case 15: throw Error(fmt::format("{}: sparse initializers are not supported", where_));
        default: r.skip();
      }
    }
    std::set<std::string> initialized;
    for (const OnnxTensor& t : m.initializers) {
      if (t.name.empty()) throw Error(fmt::format("{}: an initializer has no name", where_));
      if (!initialized.insert(t.name).second)
        throw Error(fmt::format("{}: initializer '{}' appears twice", where_, t.name));
    }
    for (OnnxValueInfo& v : inputs)
      if (!initialized.count(v.name)) m.inputs.push_back(std::move(v));
  }

  OnnxNode node(ProtoReader r) {
    OnnxNode n;
    while (r.next()) {
      switch (r.field()) {
        case 1: n.inputs.emplace_back(r.bytes()); break;
        case 2: n.outputs.emplace_back(r.bytes()); break;
        case 3: n.name = std::string(r.bytes()); break;
        case 4: n.op = std::string(r.bytes()); break;
        case 5: n.attributes.push_back(attribute(r.message(), n)); break;
        case 7: n.domain = std::string(r.bytes()); break;
        default: r.skip();
      }
    }
    if (n.op.empty()) throw Error(fmt::format("{}: {} has no op_type", where_, n.label()));
    return n;
  }

  OnnxAttribute attribute(ProtoReader r, const OnnxNode& n) {
    OnnxAttribute a;
    while (r.next()) {
      switch (r.field()) {
        case 1: a.name = std::string(r.bytes()); break;
        case 2: a.f = static_cast<double>(r.float32()); break;
        case 3: a.i = r.int64(); break;
        case 4: a.s = std::string(r.bytes()); break;
        case 5:
          a.tensor_value.clear();
          a.tensor_value.push_back(tensor(r.message(), fmt::format("{}'s attribute", n.label())));
          break;
        case 7: r.reals<float>(a.float_list); break;
        case 8: r.int64s(a.int_list); break;
        case 9: a.string_list.emplace_back(r.bytes()); break;
        case 20: a.type = static_cast<int>(r.int64()); break;
        default: r.skip();  // graphs, strings, sparse tensors: refused by the importer via `type`
      }
    }
    return a;
  }

  OnnxTensor tensor(ProtoReader r, const std::string& what) {
    OnnxTensor t;
    std::string_view raw;
    bool has_raw = false, external = false;
    std::vector<std::int64_t> ints;
    while (r.next()) {
      switch (r.field()) {
        case 1: r.int64s(t.dims); break;
        case 2: t.data_type = static_cast<int>(r.int64()); break;
        case 4: r.reals<float>(t.values); break;
        case 5:
        case 7: r.int64s(ints); break;
        case 8: t.name = std::string(r.bytes()); break;
        case 9:
          raw = r.bytes();
          has_raw = true;
          break;
        case 10: r.reals<double>(t.values); break;
        case 13: external = true, r.skip(); break;
        case 14: external = external || r.int64() == 1; break;
        default: r.skip();
      }
    }
    const std::string label = fmt::format("{}: {} '{}'", where_, what, t.name);
    if (external)
      throw Error(fmt::format("{} keeps its data in an external file, which glassbox does not read", label));
    const char* type = type_name(t.data_type);
    if (std::string(type) == "unsupported")
      throw Error(
          fmt::format("{} has element type {}; glassbox reads float, double, int32 and int64", label, t.data_type));
    // The declared element count, bounded by what the file can hold.
    std::int64_t count = 1;
    for (const std::int64_t d : t.dims) {
      if (d < 0 || d > max_dimension) throw Error(fmt::format("{} has dimension {}", label, d));
      if (d != 0 && count > max_dimension / d)
        throw Error(fmt::format("{} declares more than {} values", label, max_dimension));
      count *= d;
    }
    if (has_raw) {
      const std::size_t width = t.data_type == float_type || t.data_type == int32_type ? 4 : 8;
      if (raw.size() != static_cast<std::size_t>(count) * width)
        throw Error(
            fmt::format("{} declares {} {} values but holds {} bytes of raw data", label, count, type, raw.size()));
      t.values.resize(static_cast<std::size_t>(count));
      for (std::size_t i = 0; i < t.values.size(); ++i) t.values[i] = raw_value(raw.data() + i * width, t.data_type);
    } else if (!ints.empty()) {
      t.values.assign(ints.begin(), ints.end());
    }
    if (static_cast<std::int64_t>(t.values.size()) != count)
      throw Error(fmt::format("{} declares {} values but holds {}", label, count, t.values.size()));
    return t;
  }

  static double raw_value(const char* p, int type) {
    switch (type) {
      case float_type: return load<float>(p);
      case int32_type: return load<std::int32_t>(p);
      case int64_type: return static_cast<double>(load<std::int64_t>(p));
      default: return load<double>(p);
    }
  }
  template <class V>
  static double load(const char* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return static_cast<double>(v);
  }

  OnnxValueInfo value_info(ProtoReader r) {
    OnnxValueInfo v;
    while (r.next()) {
      if (r.field() == 1) {
        v.name = std::string(r.bytes());
      } else if (r.field() == 2) {
        ProtoReader type = r.message();
        while (type.next()) {
          if (type.field() != 1) {
            type.skip();
            continue;
          }
          ProtoReader tensor = type.message();
          while (tensor.next()) {
            if (tensor.field() == 1) {
              v.elem_type = static_cast<int>(tensor.int64());
            } else if (tensor.field() == 2) {
              v.has_shape = true;
              ProtoReader shape = tensor.message();
              while (shape.next()) {
                if (shape.field() != 1) {
                  shape.skip();
                  continue;
                }
                std::int64_t value = -1;
                std::string param;
                ProtoReader dim = shape.message();
                while (dim.next()) {
                  if (dim.field() == 1)
                    value = dim.int64();
                  else if (dim.field() == 2)
                    param = std::string(dim.bytes());
                  else
                    dim.skip();
                }
                if (value < -1 || value > max_dimension)
                  throw Error(fmt::format("{}: graph value '{}' has dimension {}", where_, v.name, value));
                v.dims.push_back(value);
                v.dim_names.push_back(param);
              }
            } else {
              tensor.skip();
            }
          }
        }
      } else {
        r.skip();
      }
    }
    return v;
  }

  // Every input defined, nothing defined twice, and the nodes in an order
  // where each comes after what it reads (Kahn's algorithm); a cycle is named.
  void check_graph(OnnxModel& m) const {
    std::map<std::string, int> producer;  // tensor -> node index, -1 for inputs and initializers
    for (const OnnxValueInfo& v : m.inputs) producer[v.name] = -1;
    for (const OnnxTensor& t : m.initializers) producer[t.name] = -1;
    for (std::size_t i = 0; i < m.nodes.size(); ++i)
      for (const std::string& out : m.nodes[i].outputs) {
        if (out.empty()) continue;
        if (!producer.emplace(out, static_cast<int>(i)).second)
          throw Error(
              fmt::format("{}: tensor '{}' is produced twice ({} is the second)", where_, out, m.nodes[i].label()));
      }
    std::vector<int> waiting(m.nodes.size(), 0);
    std::vector<std::vector<std::size_t>> readers(m.nodes.size());
    for (std::size_t i = 0; i < m.nodes.size(); ++i)
      for (const std::string& in : m.nodes[i].inputs) {
        if (in.empty()) continue;
        const auto p = producer.find(in);
        if (p == producer.end())
          throw Error(fmt::format("{}: {} reads '{}', which no node, initializer or graph input provides", where_,
                                  m.nodes[i].label(), in));
        if (p->second >= 0) {
          ++waiting[i];
          readers[static_cast<std::size_t>(p->second)].push_back(i);
        }
      }
    for (const OnnxValueInfo& v : m.outputs)
      if (!producer.count(v.name)) throw Error(fmt::format("{}: graph output '{}' is never computed", where_, v.name));
    // The earliest ready node first: a file already in order keeps it.
    std::vector<std::size_t> order;
    std::priority_queue<std::size_t, std::vector<std::size_t>, std::greater<>> ready;
    for (std::size_t i = 0; i < m.nodes.size(); ++i)
      if (waiting[i] == 0) ready.push(i);
    while (!ready.empty()) {
      const std::size_t i = ready.top();
      ready.pop();
      order.push_back(i);
      for (const std::size_t r : readers[i])
        if (--waiting[r] == 0) ready.push(r);
    }
    if (order.size() != m.nodes.size()) {
      std::string cycle;
      for (std::size_t i = 0; i < m.nodes.size(); ++i)
        if (waiting[i] > 0) cycle += (cycle.empty() ? "" : ", ") + m.nodes[i].label();
      throw Error(fmt::format("{}: the graph has a cycle through {}", where_, cycle));
    }
    std::vector<OnnxNode> sorted;
    sorted.reserve(order.size());
    for (const std::size_t i : order) sorted.push_back(std::move(m.nodes[i]));
    m.nodes = std::move(sorted);
  }

  std::string where_;
};

}  // namespace onnx_detail

// Decodes and checks an ONNX model; `where` (the file name) starts every error.
inline OnnxModel parse_onnx(std::string_view bytes, const std::string& where) {
  return onnx_detail::Parser(where).model(bytes);
}

}  // namespace glassbox::io
