#pragma once
// ONNX import: io::import_onnx<float>("model.onnx") builds a Sequential whose
// layers fire the same hooks as a model built in C++, so every recorder,
// attribution, pruning and int8 tool works on a model trained elsewhere.
//
// What is read (opsets 11 to 17): Gemm (transB either way, alpha and beta
// folded in), MatMul with a constant weight (+ Add of a bias), Conv (group 1;
// explicit, valid or SAME_UPPER padding, or a zero Pad node before it), Relu
// (fused into the Conv before it, as glassbox's own conv), LeakyRelu,
// Sigmoid, Tanh, Softmax and LogSoftmax over the last axis, GELU written as
// its formula (any arrangement of elementwise nodes that computes GELU, exact
// or tanh form: recognised by evaluating the nodes), MaxPool, AveragePool,
// GlobalAveragePool + Flatten, BatchNormalization (inference), Flatten,
// Reshape to (batch, features), Dropout, Identity, Constant, initializers;
// LSTM, GRU and RNN (forward, zero initial states, between the Transposes
// exporters write around them); and residual blocks: a branch that leaves a
// tensor and comes back in an Add (a chain of layers on one side, the input
// or one layer on the other) becomes an nn::Residual.
//
// Layer names come from the node names (PyTorch's module paths; characters
// a hook target cannot hold become '_'), or kind_N when a node has none; a
// model exported by glassbox comes back with its own names and bit-for-bit
// its outputs. Anything else (another op, an attribute glassbox does not
// implement, a shape known only at run time, a graph with branches that are
// not residual blocks) is a glassbox::Error naming the file, the node, its op
// and the attribute.

#include <fmt/format.h>

#include <cmath>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "glassbox/core/binary_io.hpp"
#include "glassbox/io/onnx_model.hpp"
#include "glassbox/model/sequential.hpp"
#include "glassbox/nn/activations.hpp"
#include "glassbox/nn/avg_pool2d.hpp"
#include "glassbox/nn/batch_norm.hpp"
#include "glassbox/nn/conv2d.hpp"
#include "glassbox/nn/dense.hpp"
#include "glassbox/nn/dropout.hpp"
#include "glassbox/nn/flatten.hpp"
#include "glassbox/nn/max_pool2d.hpp"
#include "glassbox/nn/residual.hpp"
#include "glassbox/nn/softmax.hpp"

namespace glassbox::io {

namespace onnx_detail {

// A hook target's name from a node's: characters other than letters, digits,
// '-' and '_' become '_'. PyTorch names nodes "/<module path>/<Op>": the
// layer takes the module's name ("/stem/Conv" -> "stem",
// "/layer1/layer1.0/conv1/Conv" -> "layer1_0_conv1"), with its kind after a
// Sequential's bare index ("/0/Conv" -> "0_conv2d").
inline std::string layer_name(const std::string& node_name, const std::string& kind) {
  std::string source = node_name;
  const std::size_t last = node_name.rfind('/');
  if (!node_name.empty() && node_name[0] == '/' && last > 0) {
    // Each scope is a module's full dotted path ("layer1.0") or its attribute
    // name under the scope before ("conv1"): rebuild the full path.
    source.clear();
    std::size_t start = 1;
    while (start < last) {
      const std::size_t end = node_name.find('/', start);
      const std::string scope = node_name.substr(start, end - start);
      if (source.empty() || scope.compare(0, source.size() + 1, source + ".") == 0)
        source = scope;
      else
        source += "." + scope;
      start = end + 1;
    }
  }
  std::string out;
  for (const char c : source) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (keep || (c == '_' && !out.empty()))
      out += c;
    else if (!out.empty() && out.back() != '_')
      out += '_';
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  if (!out.empty() && out.find_first_not_of("0123456789_") == std::string::npos) out += "_" + kind;
  return out;
}

// The elementwise ops whose chains are evaluated to recognise GELU.
inline bool evaluate_elementwise(const std::string& op, double a, double b, double& out) {
  if (op == "Add")
    out = a + b;
  else if (op == "Sub")
    out = a - b;
  else if (op == "Mul")
    out = a * b;
  else if (op == "Div")
    out = a / b;
  else if (op == "Pow")
    out = std::pow(a, b);
  else if (op == "Erf")
    out = std::erf(a);
  else if (op == "Tanh")
    out = std::tanh(a);
  else if (op == "Sigmoid")
    out = 1 / (1 + std::exp(-a));
  else if (op == "Sqrt")
    out = std::sqrt(a);
  else if (op == "Exp")
    out = std::exp(a);
  else if (op == "Neg")
    out = -a;
  else if (op == "Identity")
    out = a;
  else
    return false;
  return true;
}

template <class T>
class Importer {
 public:
  Importer(const OnnxModel& model, std::string where) : m_(model), where_(std::move(where)) {}

  Sequential<T> run() {
    if (m_.inputs.size() != 1 || m_.outputs.size() != 1)
      throw Error(fmt::format("{}: the graph has {} inputs and {} outputs; glassbox imports one of each", where_,
                              m_.inputs.size(), m_.outputs.size()));
    const OnnxValueInfo& in = m_.inputs[0];
    if (in.elem_type != float_type && in.elem_type != double_type)
      throw Error(fmt::format("{}: input '{}' has element type {}; glassbox imports float and double models", where_,
                              in.name, in.elem_type));
    if (!in.has_shape || in.dims.size() < 2 || in.dims.size() > static_cast<std::size_t>(Shape::max_rank))
      throw Error(fmt::format("{}: input '{}' declares no (batch, ...) shape of rank 2 to {}", where_, in.name,
                              Shape::max_rank));
    std::vector<index_t> sample;
    std::int64_t values = 1;
    for (std::size_t d = 1; d < in.dims.size(); ++d) {
      if (in.dims[d] <= 0)
        throw Error(
            fmt::format("{}: input '{}' dimension {} is '{}', known only at run time; glassbox imports "
                        "fixed sample shapes (only the batch may vary)",
                        where_, in.name, d, in.dim_names[d].empty() ? "?" : in.dim_names[d]));
      sample.push_back(static_cast<index_t>(in.dims[d]));
      values *= in.dims[d];
      if (values > max_dimension)
        throw Error(
            fmt::format("{}: input '{}' declares more than {} values per sample", where_, in.name, max_dimension));
    }
    declared_batch_ = in.dims[0];
    for (const OnnxTensor& t : m_.initializers) constants_[t.name] = &t;
    for (const OnnxNode& n : m_.nodes) {
      if (!n.domain.empty() && n.domain != "ai.onnx")
        throw Error(
            fmt::format("{}: {} is in domain '{}'; glassbox reads the default domain", where_, n.label(), n.domain));
      if (n.op == "Constant") constant_node(n);
      // PyTorch copies some weights through an Identity: the copy is a constant too.
      if (n.op == "Identity" && n.inputs.size() == 1 && n.outputs.size() == 1 && constant(n.inputs[0]))
        constants_[n.outputs[0]] = constant(n.inputs[0]);
      shape_node(n);
    }

    const Shape sample_shape(sample.begin(), sample.end());
    Sequential<T> model{sample_shape};
    Sink top;
    top.shape = sample_shape.batched(1);
    std::set<std::string> names;
    top.add = [&model, &names](std::unique_ptr<Layer<T>> layer, const std::string& name) {
      names.insert(model.add(std::move(layer), names.count(name) ? std::string() : name).name());
    };
    chain(needed_nodes(), in.name, m_.outputs[0].name, top);
    if (top.layers == 0) throw Error(fmt::format("{}: the graph computes nothing (its output is its input)", where_));
    for (const Assignment& a : assignments_) assign(a);
    return model;
  }

 private:
  // Where the layers of a chain go: the model, or a residual block's body.
  struct Sink {
    std::function<void(std::unique_ptr<Layer<T>>, const std::string&)> add;
    Shape shape;         // of the tensor the next layer reads, batch 1
    std::string prefix;  // "<block>.": stripped from its children's node names
    std::size_t layers = 0;
  };
  // Nodes between two tensors where the chain has one live tensor.
  struct Segment {
    std::vector<const OnnxNode*> nodes;
    std::string in, out;
  };
  // A parameter or buffer and the constant that fills it, once the model is built.
  struct Assignment {
    Tensor<T>* target;
    const OnnxTensor* source;
    const OnnxNode* node;
    bool transpose = false;
    double scale = 1;
  };

  [[noreturn]] void fail(const OnnxNode& n, const std::string& what) const {
    throw Error(fmt::format("{}: {}: {}", where_, n.label(), what));
  }

  const OnnxTensor* constant(const std::string& name) const {
    const auto c = constants_.find(name);
    return c == constants_.end() ? nullptr : c->second;
  }
  bool dynamic(const std::string& name) const {
    return !name.empty() && !constant(name) && !shape_derived_.count(name);
  }

  // The constant input `index` of `n`; `role` says what it is.
  const OnnxTensor& constant_input(const OnnxNode& n, std::size_t index, const char* role) const {
    if (index >= n.inputs.size() || n.inputs[index].empty()) fail(n, fmt::format("has no {} (input {})", role, index));
    const OnnxTensor* c = constant(n.inputs[index]);
    if (!c)
      fail(n, fmt::format("its {} '{}' is computed; glassbox imports it only as a constant (an initializer or a "
                          "Constant node)",
                          role, n.inputs[index]));
    return *c;
  }

  void constant_node(const OnnxNode& n) {
    if (n.outputs.size() != 1 || n.attributes.size() != 1) fail(n, "expects one output and one attribute");
    const OnnxAttribute& a = n.attributes[0];
    OnnxTensor t;
    t.name = n.outputs[0];
    if (a.name == "value" && a.type == OnnxAttribute::tensor && a.tensor_value.size() == 1) {
      t.dims = a.tensor_value[0].dims;
      t.data_type = a.tensor_value[0].data_type;
      t.values = a.tensor_value[0].values;
    } else if (a.name == "value_float" && a.type == OnnxAttribute::float_) {
      t.data_type = float_type;
      t.values = {a.f};
    } else if (a.name == "value_floats" && a.type == OnnxAttribute::floats) {
      t.data_type = float_type;
      t.dims = {static_cast<std::int64_t>(a.float_list.size())};
      t.values = a.float_list;
    } else if (a.name == "value_int" && a.type == OnnxAttribute::int_) {
      t.data_type = int64_type;
      t.values = {static_cast<double>(a.i)};
    } else if (a.name == "value_ints" && a.type == OnnxAttribute::ints) {
      t.data_type = int64_type;
      t.dims = {static_cast<std::int64_t>(a.int_list.size())};
      t.values.assign(a.int_list.begin(), a.int_list.end());
    } else {
      fail(n, fmt::format("attribute '{}' (type {}) is not supported", a.name, a.type));
    }
    node_constants_.push_back(std::move(t));
    constants_[n.outputs[0]] = &node_constants_.back();
  }

  // Marks what a node computes from shapes alone: PyTorch sizes the zero
  // initial state of a recurrent layer from the input's batch dimension.
  void shape_node(const OnnxNode& n) {
    static const std::set<std::string> shape_ops{"Gather", "Unsqueeze", "Squeeze",        "Concat",
                                                 "Cast",   "Slice",     "ConstantOfShape"};
    bool from_shape = n.op == "Shape";
    if (shape_ops.count(n.op)) {
      from_shape = false;
      for (const std::string& in : n.inputs) {
        if (in.empty() || constant(in)) continue;
        if (!shape_derived_.count(in)) return;
        from_shape = true;
      }
    }
    if (!from_shape) return;
    double fill = std::nan("");
    if (n.op == "ConstantOfShape") {
      fill = 0;
      if (const OnnxAttribute* v = n.attribute("value"))
        fill = v->tensor_value.size() == 1 && v->tensor_value[0].values.size() == 1 ? v->tensor_value[0].values[0]
                                                                                    : std::nan("");
    }
    for (const std::string& out : n.outputs)
      if (!out.empty()) shape_derived_[out] = fill;
  }

  // The non-Constant nodes the graph output depends on, in topological order.
  std::vector<const OnnxNode*> needed_nodes() {
    std::map<std::string, const OnnxNode*> producer;
    for (const OnnxNode& n : m_.nodes)
      for (const std::string& out : n.outputs) producer[out] = &n;
    std::set<const OnnxNode*> needed;
    std::vector<std::string> pending{m_.outputs[0].name};
    while (!pending.empty()) {
      const std::string t = pending.back();
      pending.pop_back();
      const auto p = producer.find(t);
      if (p == producer.end() || p->second->op == "Constant" || !needed.insert(p->second).second) continue;
      for (const std::string& in : p->second->inputs) {
        uses_.insert(in);
        if (dynamic(in)) pending.push_back(in);
      }
    }
    std::vector<const OnnxNode*> ordered;
    for (const OnnxNode& n : m_.nodes)
      if (needed.count(&n)) ordered.push_back(&n);
    return ordered;
  }

  // Splits `nodes` (computing `output` from `input`) where one tensor alone
  // carries everything the rest needs, and turns each piece into layers.
  void chain(const std::vector<const OnnxNode*>& nodes, const std::string& input, const std::string& output,
             Sink& sink) {
    std::map<std::string, int> uses{{output, 1}};
    for (const OnnxNode* n : nodes)
      for (const std::string& in : n->inputs)
        if (dynamic(in)) ++uses[in];
    std::vector<Segment> segments;
    std::set<std::string> live{input};
    Segment current{{}, input, {}};
    for (const OnnxNode* n : nodes) {
      bool reads_live = false;
      for (const std::string& in : n->inputs)
        if (dynamic(in)) {
          reads_live = true;
          if (--uses[in] == 0) live.erase(in);
        }
      if (!reads_live) fail(*n, "computes from constants only; glassbox does not fold constant subgraphs");
      for (const std::string& out : n->outputs)
        if (!out.empty() && uses[out] > 0) live.insert(out);
      current.nodes.push_back(n);
      if (live.size() == 1) {
        current.out = *live.begin();
        segments.push_back(current);
        current = Segment{{}, current.out, {}};
      }
    }
    if (!current.nodes.empty() || (segments.empty() ? input : segments.back().out) != output)
      throw Error(fmt::format("{}: the graph does not end in '{}' as one chain", where_, output));
    for (std::size_t i = 0; i < segments.size(); ++i) {
      // The one-node pieces that follow, which some ops absorb.
      std::vector<const OnnxNode*> following;
      for (std::size_t k = i + 1; k < segments.size() && segments[k].nodes.size() == 1 && following.size() < 6; ++k)
        following.push_back(segments[k].nodes[0]);
      bool converted = true;
      try {
        if (const std::size_t merged = gelu(segments, i, sink))
          i += merged - 1;
        else if (segments[i].nodes.size() == 1)
          i += single(*segments[i].nodes[0], segments[i].in, following, sink);
        else
          converted = residual(segments[i], sink);
      } catch (const Error& e) {
        // A layer's own checks (sizes, rates, shapes) do not know the file or the node: say them.
        if (std::string_view(e.what()).substr(0, where_.size()) == where_) throw;
        throw Error(fmt::format("{}: {}: {}", where_, segments[i].nodes.back()->label(), e.what()));
      }
      if (!converted) {
        std::string names;
        for (const OnnxNode* n : segments[i].nodes) names += (names.empty() ? "" : ", ") + n->label();
        throw Error(
            fmt::format("{}: {} branch from '{}' and meet again in '{}'; glassbox imports branches only as "
                        "residual blocks (an Add of a chain and its input or one layer)",
                        where_, names, segments[i].in, segments[i].out));
      }
    }
  }

  void emit(Sink& sink, std::unique_ptr<Layer<T>> layer, const OnnxNode& n) {
    std::string name = n.name;
    if (!sink.prefix.empty() && name.compare(0, sink.prefix.size(), sink.prefix) == 0)
      name.erase(0, sink.prefix.size());
    Layer<T>* raw = layer.get();
    sink.add(std::move(layer), layer_name(name, raw->kind()));
    sink.shape = raw->output_shape(sink.shape);
    ++sink.layers;
  }

  // A value of an integer tensor (held as a double) as an integer, or an error.
  std::int64_t integer(const OnnxNode& n, double v, const char* what) const {
    if (!(std::abs(v) <= 9007199254740992.0) || v != std::floor(v))  // 2^53: exact in a double
      fail(n, fmt::format("its {} has the value {}, not an integer glassbox accepts", what, v));
    return static_cast<std::int64_t>(v);
  }

  // Attribute access; an attribute the op does not have, or of the wrong
  // type, is an error naming it.
  void allow(const OnnxNode& n, std::initializer_list<const char*> names) const {
    for (const OnnxAttribute& a : n.attributes) {
      bool known = false;
      for (const char* k : names) known = known || a.name == k;
      if (!known) fail(n, fmt::format("attribute '{}' is not supported", a.name));
    }
  }
  const OnnxAttribute* typed(const OnnxNode& n, const char* key, int type) const {
    const OnnxAttribute* a = n.attribute(key);
    if (a && a->type != type) fail(n, fmt::format("attribute '{}' has type {}, expected {}", key, a->type, type));
    return a;
  }
  std::int64_t int_attr(const OnnxNode& n, const char* key, std::int64_t fallback) const {
    const OnnxAttribute* a = typed(n, key, OnnxAttribute::int_);
    return a ? a->i : fallback;
  }
  double float_attr(const OnnxNode& n, const char* key, double fallback) const {
    const OnnxAttribute* a = typed(n, key, OnnxAttribute::float_);
    return a ? a->f : fallback;
  }
  std::vector<std::int64_t> ints_attr(const OnnxNode& n, const char* key, std::size_t count,
                                      std::int64_t fallback) const {
    const OnnxAttribute* a = typed(n, key, OnnxAttribute::ints);
    if (!a) return std::vector<std::int64_t>(count, fallback);
    if (a->int_list.size() != count)
      fail(n, fmt::format("attribute '{}' has {} values, expected {}", key, a->int_list.size(), count));
    return a->int_list;
  }
  std::string string_attr(const OnnxNode& n, const char* key, const std::string& fallback) const {
    const OnnxAttribute* a = typed(n, key, OnnxAttribute::string_);
    return a ? a->s : fallback;
  }
  // An int attribute that must have one value.
  void require(const OnnxNode& n, const char* key, std::int64_t fallback, std::int64_t wanted, const char* why) const {
    const std::int64_t v = int_attr(n, key, fallback);
    if (v != wanted) fail(n, fmt::format("attribute '{}' = {} is not supported ({})", key, v, why));
  }
  void require_rank(const OnnxNode& n, const Sink& sink, int rank) const {
    if (sink.shape.rank() != rank)
      fail(n, fmt::format("reads a rank-{} tensor {}, expected rank {}", sink.shape.rank(), sink.shape.str(), rank));
  }

  // The window of a Conv or pooling node, as glassbox's padding.
  nn::Window2D window(const OnnxNode& n, const Sink& sink, nn::Size2 kernel, bool dilations) {
    require_rank(n, sink, 4);
    const auto strides = ints_attr(n, "strides", 2, 1);
    const auto dil = dilations ? ints_attr(n, "dilations", 2, 1) : std::vector<std::int64_t>{1, 1};
    if (!dilations && n.attribute("dilations") && ints_attr(n, "dilations", 2, 1) != std::vector<std::int64_t>{1, 1})
      fail(n, "attribute 'dilations' other than 1 is not supported for pooling");
    nn::Window2D w{kernel, {strides[0], strides[1]}, {dil[0], dil[1]}, nn::Padding::valid, {0, 0}};
    check_window(n, w);  // before any padding arithmetic divides by a stride
    const bool after_pad_node = !pad_node_pads_.empty();
    if (after_pad_node && string_attr(n, "auto_pad", "NOTSET") != "NOTSET")
      fail(n, "attribute 'auto_pad' after a Pad node is not supported");
    const std::string auto_pad = string_attr(n, "auto_pad", "NOTSET");
    if (auto_pad == "SAME_UPPER") {
      if (n.attribute("pads")) fail(n, "attributes 'auto_pad' and 'pads' are both set");
      w.padding = nn::Padding::same;
    } else if (auto_pad == "VALID") {
      if (n.attribute("pads")) fail(n, "attributes 'auto_pad' and 'pads' are both set");
    } else if (auto_pad == "NOTSET") {
      auto p = ints_attr(n, "pads", 4, 0);  // top, left, bottom, right
      for (std::size_t i = 0; i < 4 && !pad_node_pads_.empty(); ++i) p[i] += pad_node_pads_[i];
      for (const std::int64_t v : p)
        if (v < 0 || v > max_window) fail(n, fmt::format("attribute 'pads' has the value {}", v));
      if (p[0] == p[2] && p[1] == p[3]) {
        if (p[0] || p[1]) w.padding = nn::Padding::explicit_, w.pad = {p[0], p[1]};
      } else {
        w.padding = nn::Padding::same;  // the only uneven padding glassbox has: does it match?
        const nn::Window2D::Pads s = w.pads(sink.shape[2], sink.shape[3]);
        if (s.top != p[0] || s.left != p[1] || s.bottom != p[2] || s.right != p[3])
          fail(n, fmt::format("attribute 'pads' = [{}, {}, {}, {}] is uneven and not 'same' padding; glassbox "
                              "pads evenly",
                              p[0], p[1], p[2], p[3]));
      }
    } else {
      fail(n, fmt::format("attribute 'auto_pad' = '{}' is not supported (NOTSET, VALID, SAME_UPPER)", auto_pad));
    }
    check_window(n, w);
    pad_node_pads_.clear();
    return w;
  }
  void check_window(const OnnxNode& n, const nn::Window2D& w) const {
    for (const index_t v :
         {w.kernel.h, w.kernel.w, w.stride.h, w.stride.w, w.dilation.h, w.dilation.w, w.pad.h, w.pad.w})
      if (v > max_window)
        fail(n, fmt::format("a window size, stride, dilation or padding of {} is past {}", v, max_window));
    w.validate(fmt::format("{}: {}", where_, n.label()));
  }

  // 2-D kernel size from a pooling node's kernel_shape.
  nn::Size2 kernel_shape(const OnnxNode& n) const {
    const OnnxAttribute* k = typed(n, "kernel_shape", OnnxAttribute::ints);
    if (!k || k->int_list.size() != 2) fail(n, "needs a 2-D 'kernel_shape'");
    return {k->int_list[0], k->int_list[1]};
  }

  void fill(Layer<T>& layer, const char* key, const OnnxTensor& source, const OnnxNode& n, bool transpose = false,
            double scale = 1) {
    for (Parameter<T>* p : layer.parameters())
      if (p->local_name() == key) {
        assignments_.push_back({&p->value, &source, &n, transpose, scale});
        return;
      }
    for (auto& [name, tensor] : layer.buffers())
      if (name == key) {
        assignments_.push_back({tensor, &source, &n, transpose, scale});
        return;
      }
    fail(n, fmt::format("glassbox's {} has no '{}' to fill", layer.kind(), key));
  }

  void assign(const Assignment& a) const {
    Tensor<T>& to = *a.target;
    const OnnxTensor& from = *a.source;
    const bool broadcast = from.values.size() == 1 && to.size() > 1;
    if (static_cast<index_t>(from.values.size()) != to.size() && !broadcast)
      fail(*a.node, fmt::format("'{}' has {} values, the layer needs {} ({})", from.name, from.values.size(), to.size(),
                                to.shape().str()));
    if (a.transpose) {  // from is (cols, rows) of to's (rows, cols)
      const index_t rows = to.dim(0), cols = to.dim(1);
      for (index_t r = 0; r < rows; ++r)
        for (index_t c = 0; c < cols; ++c)
          to.data()[r * cols + c] = static_cast<T>(from.values[static_cast<std::size_t>(c * rows + r)] * a.scale);
      return;
    }
    for (index_t i = 0; i < to.size(); ++i)
      to.data()[i] = static_cast<T>(from.values[broadcast ? 0 : static_cast<std::size_t>(i)] * a.scale);
  }

  // One node; `following` are the nodes of the one-node pieces after it,
  // which some ops absorb (Pad + Conv + Relu, MatMul + Add, GlobalAveragePool
  // + Flatten, Transpose + LSTM + Squeeze + Transpose). Returns how many it absorbed.
  std::size_t single(const OnnxNode& n, const std::string& x, const std::vector<const OnnxNode*>& following,
                     Sink& sink) {
    const OnnxNode* after = following.empty() ? nullptr : following[0];
    if (n.inputs.empty() || n.inputs[0] != x) fail(n, fmt::format("reads '{}' only as a later input", x));
    for (std::size_t i = 1; i < n.inputs.size(); ++i)
      if (dynamic(n.inputs[i]))
        fail(n, fmt::format("input {} ('{}') is computed; it must be a constant", i, n.inputs[i]));
    const std::string& op = n.op;
    if (op == "Conv") {
      allow(n, {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"});
      require(n, "group", 1, 1, "grouped and depthwise convolutions are not imported");
      const OnnxTensor& w = constant_input(n, 1, "weight");
      if (w.dims.size() != 4) fail(n, fmt::format("weight '{}' has rank {}, expected 4 (OIHW)", w.name, w.dims.size()));
      const nn::Size2 kernel{w.dims[2], w.dims[3]};
      if (n.attribute("kernel_shape") && kernel_shape(n).h != kernel.h)
        fail(n, "'kernel_shape' differs from the weight's");
      const nn::Window2D win = window(n, sink, kernel, true);
      typename nn::Conv2D<T>::Options o;
      o.stride = win.stride;
      o.dilation = win.dilation;
      o.padding = win.padding;
      o.pad = win.pad;
      o.bias = n.inputs.size() > 2 && !n.inputs[2].empty();
      const bool relu = after && after->op == "Relu" && after->attributes.empty();
      if (relu) o.activation = nn::Activation::relu;
      auto layer = std::make_unique<nn::Conv2D<T>>(w.dims[1], w.dims[0], kernel, o);
      fill(*layer, "weight", w, n);
      if (o.bias) fill(*layer, "bias", constant_input(n, 2, "bias"), n);
      emit(sink, std::move(layer), n);
      return relu;
    }
    if (op == "Gemm") {
      allow(n, {"alpha", "beta", "transA", "transB"});
      require(n, "transA", 0, 0, "the input must not be transposed");
      require_rank(n, sink, 2);
      const OnnxTensor& b = constant_input(n, 1, "weight");
      const bool trans_b = int_attr(n, "transB", 0) != 0;
      if (b.dims.size() != 2) fail(n, fmt::format("weight '{}' has rank {}, expected 2", b.name, b.dims.size()));
      const index_t in = trans_b ? b.dims[1] : b.dims[0], out = trans_b ? b.dims[0] : b.dims[1];
      typename nn::Dense<T>::Options o;
      o.bias = n.inputs.size() > 2 && !n.inputs[2].empty();
      auto layer = std::make_unique<nn::Dense<T>>(in, out, o);
      fill(*layer, "weight", b, n, !trans_b, float_attr(n, "alpha", 1));
      if (o.bias) fill(*layer, "bias", constant_input(n, 2, "bias"), n, false, float_attr(n, "beta", 1));
      emit(sink, std::move(layer), n);
      return false;
    }
    if (op == "MatMul") {
      require_rank(n, sink, 2);
      const OnnxTensor& b = constant_input(n, 1, "weight");
      if (b.dims.size() != 2) fail(n, fmt::format("weight '{}' has rank {}, expected 2", b.name, b.dims.size()));
      const OnnxTensor* bias = nullptr;
      if (after && after->op == "Add" && after->inputs.size() == 2) {
        const std::string& other = after->inputs[0] == n.outputs[0] ? after->inputs[1] : after->inputs[0];
        const OnnxTensor* c = constant(other);
        if (c && c->size() == b.dims[1] && (after->inputs[0] == n.outputs[0] || after->inputs[1] == n.outputs[0]))
          bias = c;
      }
      typename nn::Dense<T>::Options o;
      o.bias = bias != nullptr;
      auto layer = std::make_unique<nn::Dense<T>>(b.dims[0], b.dims[1], o);
      fill(*layer, "weight", b, n, true);
      if (bias) fill(*layer, "bias", *bias, *after);
      emit(sink, std::move(layer), n);
      return bias != nullptr;
    }
    if (op == "Relu" || op == "Sigmoid" || op == "Tanh" || op == "Identity") {
      allow(n, {});
      std::unique_ptr<Layer<T>> layer;
      if (op == "Relu")
        layer = std::make_unique<nn::ReLU<T>>();
      else if (op == "Sigmoid")
        layer = std::make_unique<nn::Sigmoid<T>>();
      else if (op == "Tanh")
        layer = std::make_unique<nn::Tanh<T>>();
      else
        layer = std::make_unique<nn::Identity<T>>();
      emit(sink, std::move(layer), n);
      return false;
    }
    if (op == "LeakyRelu") {
      allow(n, {"alpha"});
      emit(sink, std::make_unique<nn::LeakyReLU<T>>(static_cast<T>(float_attr(n, "alpha", 0.01))), n);
      return false;
    }
    if (op == "Softmax" || op == "LogSoftmax") {
      allow(n, {"axis"});
      const std::int64_t rank = sink.shape.rank();
      std::int64_t axis = int_attr(n, "axis", m_.opset >= 13 ? -1 : 1);
      if (axis < 0) axis += rank;
      if (axis != rank - 1)
        fail(n, fmt::format("attribute 'axis' = {} is not supported: glassbox's softmax is over the last axis ({})",
                            int_attr(n, "axis", 0), rank - 1));
      if (op == "Softmax")
        emit(sink, std::make_unique<nn::Softmax<T>>(), n);
      else
        emit(sink, std::make_unique<nn::LogSoftmax<T>>(), n);
      return false;
    }
    if (op == "MaxPool" || op == "AveragePool") {
      allow(n, {"auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "storage_order",
                "strides"});
      require(n, "ceil_mode", 0, 0, "glassbox's pooling rounds the output size down");
      if (op == "MaxPool")
        require(n, "storage_order", 0, 0, "indices are not imported");
      else if (n.attribute("storage_order"))
        fail(n, "attribute 'storage_order' is not supported");
      const bool padded_by_node = !pad_node_pads_.empty();
      const nn::Window2D win = window(n, sink, kernel_shape(n), false);
      nn::PoolOptions o;
      o.stride = win.stride;
      o.padding = win.padding;
      o.pad = win.pad;
      if (op == "MaxPool") {
        if (n.attribute("count_include_pad")) fail(n, "attribute 'count_include_pad' is not supported");
        emit(sink, std::make_unique<nn::MaxPool2D<T>>(win.kernel, o), n);
      } else {
        // A Pad node's zeros are values, which the average counts.
        const bool include = int_attr(n, "count_include_pad", 0) != 0;
        if (padded_by_node && !include && ints_attr(n, "pads", 4, 0) != std::vector<std::int64_t>(4, 0))
          fail(n, "its own 'pads' after a Pad node with count_include_pad = 0");
        emit(sink, std::make_unique<nn::AvgPool2D<T>>(win.kernel, o, include || padded_by_node), n);
      }
      return false;
    }
    if (op == "GlobalAveragePool") {
      allow(n, {});
      require_rank(n, sink, 4);
      // glassbox's global pooling drops the 1x1 that ONNX keeps: a flatten must follow.
      if (!after || !flattens(*after, Shape{sink.shape[0], sink.shape[1], 1, 1}))
        fail(n, "is imported only when a Flatten or Reshape to (batch, channels) follows");
      emit(sink, std::make_unique<nn::GlobalAvgPool2D<T>>(), n);
      return true;
    }
    if (op == "Flatten" || op == "Reshape") {
      if (!flattens(n, sink.shape)) {
        if (op == "Reshape" && reshape_target(n, sink.shape) == sink.shape) {
          emit(sink, std::make_unique<nn::Identity<T>>(), n);
          return false;
        }
        fail(n, fmt::format("reshapes {} to something other than (batch, features); glassbox has no general "
                            "reshape layer",
                            sink.shape.str()));
      }
      emit(sink, std::make_unique<nn::Flatten<T>>(), n);
      return false;
    }
    if (op == "BatchNormalization") {
      allow(n, {"epsilon", "momentum", "training_mode", "spatial"});
      require(n, "training_mode", 0, 0, "only inference graphs are imported");
      require(n, "spatial", 1, 1, "per-activation statistics are not imported");
      const OnnxTensor& scale = constant_input(n, 1, "scale");
      typename nn::BatchNorm<T>::Options o;
      o.eps = static_cast<T>(float_attr(n, "epsilon", 1e-5));
      o.momentum = static_cast<T>(1 - float_attr(n, "momentum", 0.9));
      auto layer = std::make_unique<nn::BatchNorm<T>>(scale.size(), o);
      fill(*layer, "weight", scale, n);
      fill(*layer, "bias", constant_input(n, 2, "bias"), n);
      fill(*layer, "running_mean", constant_input(n, 3, "mean"), n);
      fill(*layer, "running_var", constant_input(n, 4, "variance"), n);
      emit(sink, std::move(layer), n);
      return false;
    }
    if (op == "Dropout") {
      allow(n, {"ratio", "seed"});
      double ratio = float_attr(n, "ratio", 0.5);
      if (n.inputs.size() > 1 && !n.inputs[1].empty()) {
        const OnnxTensor& r = constant_input(n, 1, "ratio");
        if (r.values.size() != 1) fail(n, "its ratio is not one number");
        ratio = r.values[0];
      }
      if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
        const OnnxTensor& training = constant_input(n, 2, "training_mode");
        if (training.values.size() != 1 || training.values[0] != 0) fail(n, "training_mode true is not imported");
      }
      emit(sink, std::make_unique<nn::Dropout<T>>(static_cast<T>(ratio)), n);
      return false;
    }
    if (op == "Pad") {
      // Zero padding before a Conv or an AveragePool is theirs (PyTorch writes
      // AvgPool2d(padding, count_include_pad=True) so).
      allow(n, {"mode"});
      if (string_attr(n, "mode", "constant") != "constant") fail(n, "only constant (zero) padding is imported");
      require_rank(n, sink, 4);
      const OnnxTensor& pads = constant_input(n, 1, "pads");
      if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
        const OnnxTensor& value = constant_input(n, 2, "constant_value");
        if (value.values.size() != 1 || value.values[0] != 0) fail(n, "pads with a value other than 0");
      }
      if (n.inputs.size() > 3 && !n.inputs[3].empty()) fail(n, "input 3 (axes) is not supported");
      const std::vector<double>& v = pads.values;
      if (v.size() != 8 || v[0] != 0 || v[1] != 0 || v[4] != 0 || v[5] != 0)
        fail(n, "pads other than the height and width are not imported");
      if (!after || (after->op != "Conv" && after->op != "AveragePool"))
        fail(n, "is imported only right before a Conv or an AveragePool, which take its padding");
      pad_node_pads_ = {integer(n, v[2], "pads"), integer(n, v[3], "pads"), integer(n, v[6], "pads"),
                        integer(n, v[7], "pads")};
      return 1 + single(*after, n.outputs[0], {following.begin() + 1, following.end()}, sink);
    }
    if (op == "Transpose" && after && (after->op == "LSTM" || after->op == "GRU" || after->op == "RNN"))
      return recurrent(n, following, sink);
    if (op == "LSTM" || op == "GRU" || op == "RNN")
      fail(n, "is imported only after a Transpose of batch-first sequences (perm [1, 0, 2]), as exporters write it");
    fail(n, "this op is not supported");
  }

  // Transpose (N, T, F) -> (T, N, F), an LSTM, GRU or RNN node, and the
  // nodes that bring its output back to glassbox's layout: Squeeze(Y, 1) +
  // Transpose for every step's output (return_sequences), then perhaps a
  // Gather of the last step; or Squeeze / Gather of Y_h, the last hidden state.
  std::size_t recurrent(const OnnxNode& transpose, const std::vector<const OnnxNode*>& following, Sink& sink) {
    allow(transpose, {"perm"});
    require_rank(transpose, sink, 3);
    if (ints_attr(transpose, "perm", 3, 0) != std::vector<std::int64_t>{1, 0, 2})
      fail(transpose, "expected perm [1, 0, 2] (batch-first sequences to time-major) before the recurrent node");
    const OnnxNode& r = *following[0];
    allow(r, {"activations", "activation_alpha", "activation_beta", "clip", "direction", "hidden_size", "input_forget",
              "layout", "linear_before_reset"});
    if (string_attr(r, "direction", "forward") != "forward")
      fail(r, fmt::format("attribute 'direction' = '{}' is not supported (forward only)",
                          string_attr(r, "direction", "")));
    if (r.attribute("clip")) fail(r, "attribute 'clip' is not supported");
    require(r, "layout", 0, 0, "the Transpose before it makes the sequence time-major");
    require(r, "input_forget", 0, 0, "coupled input and forget gates are not imported");
    if (const OnnxAttribute* a = r.attribute("activations")) {
      static const std::map<std::string, std::string> defaults{
          {"RNN", "Tanh"}, {"GRU", "Sigmoid Tanh"}, {"LSTM", "Sigmoid Tanh Tanh"}};
      std::string named;
      for (const std::string& name : a->string_list) named += (named.empty() ? "" : " ") + name;
      if (named != defaults.at(r.op)) fail(r, fmt::format("attribute 'activations' = [{}] is not supported", named));
    }
    const int gates = r.op == "LSTM" ? 4 : r.op == "GRU" ? 3 : 1;
    if (r.op == "GRU")
      require(r, "linear_before_reset", 0, 1,
              "with 0, ONNX's default, the candidate state is computed unlike glassbox's and PyTorch's GRU");
    for (std::size_t i = 4; i < r.inputs.size(); ++i) {
      if (r.inputs[i].empty()) continue;
      if (i == 4) fail(r, "input 4 (sequence_lens) is not supported: every sequence has the full length");
      if (i == 7) fail(r, "input 7 (peepholes) is not supported");
      if (!zeros(r.inputs[i])) fail(r, fmt::format("input {} (an initial state) is not zero", i));
    }
    const OnnxTensor& w = constant_input(r, 1, "W");
    const OnnxTensor& rr = constant_input(r, 2, "R");
    if (w.dims.size() != 3 || w.dims[0] != 1 || w.dims[1] % gates != 0)
      fail(r, fmt::format("W '{}' has shape [{}], expected [1, {} x hidden, input]", w.name, fmt::join(w.dims, ", "),
                          gates));
    const index_t hidden = w.dims[1] / gates, input = w.dims[2];
    if (int_attr(r, "hidden_size", hidden) != hidden)
      fail(r, fmt::format("attribute 'hidden_size' = {} does not match W's {} rows", int_attr(r, "hidden_size", 0),
                          w.dims[1]));
    if (rr.dims != std::vector<std::int64_t>{1, gates * hidden, hidden})
      fail(r, fmt::format("R '{}' has shape [{}], expected [1, {}, {}]", rr.name, fmt::join(rr.dims, ", "),
                          gates * hidden, hidden));

    // The output glassbox gives: every step (Y) or the last hidden state (Y_h).
    if (r.outputs.size() > 2 && !r.outputs[2].empty() && uses_.count(r.outputs[2]))
      fail(r, "its cell state output Y_c is used; glassbox's LSTM gives the hidden state");
    std::size_t used = 2;  // transpose and the recurrent node
    bool sequences = false;
    auto next = [&]() -> const OnnxNode* { return used < following.size() + 1 ? following[used - 1] : nullptr; };
    const OnnxNode* a = next();
    const std::string& y = r.outputs[0];
    if (a && !y.empty() && a->inputs[0] == y) {
      const OnnxNode* b = used + 1 < following.size() + 1 ? following[used] : nullptr;
      if (!squeezes(*a, 1) || !b || b->op != "Transpose" ||
          ints_attr(*b, "perm", 3, 0) != std::vector<std::int64_t>{1, 0, 2})
        fail(r, "its output Y is used other than as Squeeze(axis 1) then Transpose(perm [1, 0, 2]) to batch-first");
      used += 2;
      sequences = true;
      const OnnxNode* c = next();
      if (c && last_step(*c, 1, sink.shape[1])) {
        sequences = false;
        ++used;
      }
    } else if (a && r.outputs.size() > 1 && a->inputs[0] == r.outputs[1]) {
      if (!squeezes(*a, 0) && !last_step(*a, 0, 1))
        fail(r, "its output Y_h is used other than as Squeeze(axis 0) or Gather(axis 0) of the one direction");
      ++used;
    } else {
      fail(r, "neither its output Y nor Y_h is read by the next node");
    }

    typename nn::Recurrent<T>::Options o;
    o.return_sequences = sequences;
    std::unique_ptr<nn::Recurrent<T>> layer;
    if (r.op == "LSTM")
      layer = std::make_unique<nn::LSTM<T>>(input, hidden, o);
    else if (r.op == "GRU")
      layer = std::make_unique<nn::GRU<T>>(input, hidden, o);
    else
      layer = std::make_unique<nn::SimpleRNN<T>>(input, hidden, o);
    // glassbox's (PyTorch's) gate order from ONNX's: LSTM i f g o from i o f c, GRU r z n from z r h.
    const std::vector<index_t> order = r.op == "LSTM"  ? std::vector<index_t>{0, 2, 3, 1}
                                       : r.op == "GRU" ? std::vector<index_t>{1, 0, 2}
                                                       : std::vector<index_t>{0};
    fill(*layer, "weight_ih", gate_blocks(w, order, hidden * input, 0), r);
    fill(*layer, "weight_hh", gate_blocks(rr, order, hidden * hidden, 0), r);
    if (r.inputs.size() > 3 && !r.inputs[3].empty()) {
      const OnnxTensor& b = constant_input(r, 3, "B");
      if (b.dims != std::vector<std::int64_t>{1, 2 * gates * hidden})
        fail(r, fmt::format("B '{}' has shape [{}], expected [1, {}]", b.name, fmt::join(b.dims, ", "),
                            2 * gates * hidden));
      fill(*layer, "bias_ih", gate_blocks(b, order, hidden, 0), r);
      fill(*layer, "bias_hh", gate_blocks(b, order, hidden, gates * hidden), r);
    } else {
      fill(*layer, "bias_ih", zero_tensor(), r);
      fill(*layer, "bias_hh", zero_tensor(), r);
    }
    emit(sink, std::move(layer), r);
    return used - 1;
  }

  // `source`'s blocks of `block` values, from `offset` on, in `order`.
  const OnnxTensor& gate_blocks(const OnnxTensor& source, const std::vector<index_t>& order, index_t block,
                                index_t offset) {
    OnnxTensor t;
    t.name = source.name;
    t.data_type = source.data_type;
    t.dims = {static_cast<std::int64_t>(order.size()) * block};
    for (const index_t g : order) {
      const auto first = source.values.begin() + offset + g * block;
      t.values.insert(t.values.end(), first, first + block);
    }
    node_constants_.push_back(std::move(t));
    return node_constants_.back();
  }
  const OnnxTensor& zero_tensor() {
    OnnxTensor t;
    t.name = "zeros";
    t.data_type = float_type;
    t.values = {0.0};
    node_constants_.push_back(std::move(t));
    return node_constants_.back();
  }

  // True when `name` is all zeros: a constant, or a ConstantOfShape of 0
  // sized from the input's shape (PyTorch's initial states).
  bool zeros(const std::string& name) const {
    const OnnxTensor* c = constant(name);
    if (!c) {
      const auto z = shape_derived_.find(name);
      return z != shape_derived_.end() && z->second == 0;
    }
    for (const double v : c->values)
      if (v != 0) return false;
    return true;
  }

  // Squeeze of the one axis `axis` (as an attribute before opset 13, an input after).
  bool squeezes(const OnnxNode& n, std::int64_t axis) const {
    if (n.op != "Squeeze") return false;
    allow(n, {"axes"});
    std::vector<std::int64_t> axes;
    if (const OnnxAttribute* a = typed(n, "axes", OnnxAttribute::ints)) axes = a->int_list;
    if (n.inputs.size() > 1 && !n.inputs[1].empty())
      for (const double v : constant_input(n, 1, "axes").values) axes.push_back(integer(n, v, "axes"));
    return axes == std::vector<std::int64_t>{axis};
  }

  // Gather of the last index (-1 or count - 1) along `axis` with a scalar index.
  bool last_step(const OnnxNode& n, std::int64_t axis, index_t count) const {
    if (n.op != "Gather" || n.inputs.size() != 2) return false;
    allow(n, {"axis"});
    const OnnxTensor* index = constant(n.inputs[1]);
    if (!index || !index->dims.empty() || index->values.size() != 1 || int_attr(n, "axis", 0) != axis) return false;
    const std::int64_t i = integer(n, index->values[0], "index");
    return i == -1 || i == count - 1;
  }

  // Reshape's target for an input of `in` (batch 1), or an error.
  Shape reshape_target(const OnnxNode& n, const Shape& in) const {
    allow(n, {"allowzero"});
    const OnnxTensor& target = constant_input(n, 1, "shape");
    const bool allow_zero = int_attr(n, "allowzero", 0) != 0;
    std::vector<index_t> dims;
    index_t known = 1;
    int inferred = -1;
    for (std::size_t i = 0; i < target.values.size(); ++i) {
      std::int64_t v = integer(n, target.values[i], "shape");
      if (v == 0 && !allow_zero) {
        if (static_cast<int>(i) >= in.rank())
          fail(n, fmt::format("shape entry {} copies a dimension the input lacks", i));
        v = in[static_cast<int>(i)];
      }
      if (i == 0 && v == declared_batch_ && v > 0) v = in[0];  // a batch fixed at export time
      if (v == -1) {
        if (inferred >= 0) fail(n, "its shape has two -1 entries");
        inferred = static_cast<int>(i);
        dims.push_back(1);
        continue;
      }
      if (v < 0 || v > in.size() || (v > 0 && known > in.size() / v))
        fail(n, fmt::format("its shape has the entry {} for an input of {}", v, in.str()));
      known *= v;
      dims.push_back(v);
    }
    if (inferred >= 0) {
      if (known == 0 || in.size() % known != 0) fail(n, fmt::format("cannot reshape {}", in.str()));
      dims[static_cast<std::size_t>(inferred)] = in.size() / known;
    }
    if (inferred == 0 && dims[0] != in[0]) fail(n, "its shape does not keep the batch dimension");
    return Shape(dims.begin(), dims.end());
  }

  // True when `n` turns `in` into (batch, everything else).
  bool flattens(const OnnxNode& n, const Shape& in) const {
    if (n.op == "Flatten") {
      allow(n, {"axis"});
      std::int64_t axis = int_attr(n, "axis", 1);
      if (axis < 0) axis += in.rank();
      return axis == 1;
    }
    if (n.op != "Reshape") return false;
    const Shape s = reshape_target(n, in);
    return s.rank() == 2 && s[0] == in[0] && s[1] == in.sample().size();
  }

  // GELU written as its formula (exporters do before opset 20): a branching
  // piece of elementwise nodes, perhaps with a few one-node pieces after it
  // (PyTorch's final "* 0.5"). Returns how many pieces it took, 0 if none.
  std::size_t gelu(const std::vector<Segment>& segments, std::size_t first, Sink& sink) {
    if (segments[first].nodes.size() < 2) return 0;
    Segment s = segments[first];
    for (std::size_t count = 1; count <= 3 && first + count <= segments.size(); ++count) {
      if (count > 1) {
        const Segment& more = segments[first + count - 1];
        if (more.nodes.size() != 1) return 0;
        s.nodes.push_back(more.nodes[0]);
        s.out = more.out;
      }
      if (computes_gelu(s, sink)) return count;
    }
    return 0;
  }

  // Evaluates the piece's nodes on sample points and compares with GELU's
  // two forms; adds the layer when one matches.
  bool computes_gelu(const Segment& s, Sink& sink) {
    static const double probes[] = {-6, -3, -2, -1.5, -1, -0.7, -0.3, -0.1, 0, 0.1, 0.4, 0.8, 1, 1.7, 2.5, 4, 7};
    std::map<std::string, std::vector<double>> values{
        {s.in, std::vector<double>(std::begin(probes), std::end(probes))}};
    for (const OnnxNode* n : s.nodes) {
      if (n->outputs.size() != 1 || n->inputs.empty() || n->inputs.size() > 2 || !n->attributes.empty()) return false;
      std::vector<const std::vector<double>*> args;
      std::vector<double> scalars;
      scalars.reserve(2);
      for (const std::string& in : n->inputs) {
        if (const OnnxTensor* c = constant(in)) {
          if (c->values.size() != 1) return false;
          scalars.push_back(c->values[0]);
          args.push_back(nullptr);
        } else if (values.count(in)) {
          scalars.push_back(0);
          args.push_back(&values.at(in));
        } else {
          return false;
        }
      }
      std::vector<double> out(std::size(probes));
      for (std::size_t p = 0; p < out.size(); ++p) {
        const double a = args[0] ? (*args[0])[p] : scalars[0];
        const double b = args.size() < 2 ? 0 : args[1] ? (*args[1])[p] : scalars[1];
        if (!evaluate_elementwise(n->op, a, b, out[p])) return false;
      }
      values[n->outputs[0]] = std::move(out);
    }
    const std::vector<double>& y = values.at(s.out);
    bool exact = true, tanh_form = true;
    for (std::size_t p = 0; p < y.size(); ++p) {
      const double x = probes[p];
      const double e = 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
      const double t = 0.5 * x * (1 + std::tanh(std::sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
      exact = exact && std::abs(y[p] - e) <= 1e-6 * (1 + std::abs(e));
      tanh_form = tanh_form && std::abs(y[p] - t) <= 1e-6 * (1 + std::abs(t));
    }
    if (!exact && !tanh_form) return false;
    using Approximation = typename nn::GELU<T>::Approximation;
    emit(sink, std::make_unique<nn::GELU<T>>(exact ? Approximation::none : Approximation::tanh), *s.nodes.back());
    return true;
  }

  // A piece ending in Add(a, b) where a and b are computed from the piece's
  // input by separate nodes: a residual block. The body is the side with
  // more than one layer (or the first); the other side, the input itself or
  // one layer, is the shortcut.
  bool residual(const Segment& s, Sink& sink) {
    const OnnxNode& add = *s.nodes.back();
    if (add.op != "Add" || add.inputs.size() != 2 || !dynamic(add.inputs[0]) || !dynamic(add.inputs[1])) return false;
    std::vector<const OnnxNode*> sides[2];
    std::set<const OnnxNode*> seen;
    for (int side = 0; side < 2; ++side) {
      std::set<std::string> wanted{add.inputs[side]};
      for (auto it = s.nodes.rbegin() + 1; it != s.nodes.rend(); ++it) {
        bool produces = false;
        for (const std::string& out : (*it)->outputs) produces = produces || wanted.count(out);
        if (!produces) continue;
        if (!seen.insert(*it).second) return false;  // shared by both sides: not a block
        sides[side].insert(sides[side].begin(), *it);
        for (const std::string& in : (*it)->inputs)
          if (dynamic(in)) wanted.insert(in);
      }
    }
    if (seen.size() + 1 != s.nodes.size()) return false;
    const std::string block_name = layer_name(add.name, "residual");
    const std::string prefix = add.name.empty() ? std::string() : add.name + ".";
    int body = sides[1].size() > sides[0].size() ? 1 : 0;
    // glassbox's export names the shortcut's node "<block>.shortcut".
    if (sides[body].size() == 1 && sides[body][0]->name == prefix + "shortcut") body = 1 - body;
    const int shortcut = 1 - body;

    if (depth_ == max_depth) fail(add, fmt::format("residual blocks nest deeper than {}", max_depth));
    struct Deeper {
      int& depth;
      explicit Deeper(int& d) : depth(++d) {}
      ~Deeper() { --depth; }
    } deeper(depth_);
    auto block = std::make_unique<nn::Residual<T>>();
    Sink inner;
    inner.shape = sink.shape;
    inner.prefix = prefix;
    nn::Residual<T>& b = *block;
    inner.add = [&b](std::unique_ptr<Layer<T>> layer, const std::string& name) {
      bool taken = false;
      for (std::size_t i = 0; i < b.size(); ++i) taken = taken || b.body(i).name() == name;
      b.add(std::move(layer), taken || name == "shortcut" ? std::string() : name);
    };
    chain(sides[body], s.in, add.inputs[body], inner);
    if (inner.layers == 0) fail(add, "adds the input to itself");
    Sink cut;
    cut.shape = sink.shape;
    cut.prefix = prefix;
    std::unique_ptr<Layer<T>> shortcut_layer;
    cut.add = [&](std::unique_ptr<Layer<T>> layer, const std::string&) { shortcut_layer = std::move(layer); };
    chain(sides[shortcut], s.in, add.inputs[shortcut], cut);
    if (cut.layers > 1)
      fail(add, fmt::format("its shortcut has {} layers; a residual block's shortcut is the input or one layer",
                            cut.layers));
    if (shortcut_layer && !dynamic_cast<nn::Identity<T>*>(shortcut_layer.get()))
      b.set_shortcut(std::move(shortcut_layer));
    if (inner.shape != cut.shape)
      fail(add, fmt::format("adds {} to {}; glassbox's residual blocks add equal shapes", inner.shape.str(),
                            cut.shape.str()));
    Layer<T>* raw = block.get();
    sink.add(std::move(block), block_name);
    sink.shape = raw->output_shape(sink.shape);
    ++sink.layers;
    return true;
  }

  static constexpr index_t max_window = 1 << 16;  // larger windows are absurd, and overflow index sums
  static constexpr int max_depth = 32;            // residual blocks inside residual blocks

  const OnnxModel& m_;
  std::string where_;
  int depth_ = 0;
  std::int64_t declared_batch_ = -1;
  std::map<std::string, const OnnxTensor*> constants_;
  std::deque<OnnxTensor> node_constants_;
  std::vector<Assignment> assignments_;
  std::vector<std::int64_t> pad_node_pads_;  // of a Pad node, for the Conv or AveragePool after it
  // Tensors computed from the input's shape alone (Shape, Gather, Concat, ...,
  // ConstantOfShape): the fill value of a ConstantOfShape, NaN for the others.
  std::map<std::string, double> shape_derived_;
  std::set<std::string> uses_;  // tensors some node the output depends on reads
};

}  // namespace onnx_detail

// An ONNX model's bytes as a glassbox model; `where` names it in errors.
template <class T>
Sequential<T> onnx_from_bytes(std::string_view bytes, const std::string& where) {
  const OnnxModel model = parse_onnx(bytes, where);
  return onnx_detail::Importer<T>(model, where).run();
}

template <class T>
Sequential<T> import_onnx(const std::string& path) {
  return onnx_from_bytes<T>(read_file(path), path);
}

}  // namespace glassbox::io
