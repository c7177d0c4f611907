#pragma once
// ONNX import, patterns of several nodes: GELU written as its formula
// (recognised by evaluating the nodes), residual blocks (an Add of two
// branches), recurrent layers between their Transposes; and layer names from
// node names (PyTorch module paths). Out-of-class
// definitions of io/onnx_import.hpp's Importer, which includes this file;
// include that one.

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "glassbox/io/onnx_import.hpp"

namespace glassbox::io::onnx_detail {

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

// Transpose (N, T, F) -> (T, N, F), an LSTM, GRU or RNN node, and the
// nodes that bring its output back to glassbox's layout: Squeeze(Y, 1) +
// Transpose for every step's output (return_sequences), then perhaps a
// Gather of the last step; or Squeeze / Gather of Y_h, the last hidden state.
template <class T>
std::size_t Importer<T>::recurrent(const OnnxNode& transpose, const std::vector<const OnnxNode*>& following,
                                   Sink& sink) {
  allow(transpose, {"perm"});
  require_rank(transpose, sink, 3);
  if (ints_attr(transpose, "perm", 3, 0) != std::vector<std::int64_t>{1, 0, 2})
    fail(transpose, "expected perm [1, 0, 2] (batch-first sequences to time-major) before the recurrent node");
  const OnnxNode& r = *following[0];
  allow(r, {"activations", "activation_alpha", "activation_beta", "clip", "direction", "hidden_size", "input_forget",
            "layout", "linear_before_reset"});
  if (string_attr(r, "direction", "forward") != "forward")
    fail(r,
         fmt::format("attribute 'direction' = '{}' is not supported (forward only)", string_attr(r, "direction", "")));
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
      fail(r,
           fmt::format("B '{}' has shape [{}], expected [1, {}]", b.name, fmt::join(b.dims, ", "), 2 * gates * hidden));
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
template <class T>
const OnnxTensor& Importer<T>::gate_blocks(const OnnxTensor& source, const std::vector<index_t>& order, index_t block,
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

template <class T>
const OnnxTensor& Importer<T>::zero_tensor() {
  OnnxTensor t;
  t.name = "zeros";
  t.data_type = float_type;
  t.values = {0.0};
  node_constants_.push_back(std::move(t));
  return node_constants_.back();
}

// True when `name` is all zeros: a constant, or a ConstantOfShape of 0
// sized from the input's shape (PyTorch's initial states).
template <class T>
bool Importer<T>::zeros(const std::string& name) const {
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
template <class T>
bool Importer<T>::squeezes(const OnnxNode& n, std::int64_t axis) const {
  if (n.op != "Squeeze") return false;
  allow(n, {"axes"});
  std::vector<std::int64_t> axes;
  if (const OnnxAttribute* a = typed(n, "axes", OnnxAttribute::ints)) axes = a->int_list;
  if (n.inputs.size() > 1 && !n.inputs[1].empty())
    for (const double v : constant_input(n, 1, "axes").values) axes.push_back(integer(n, v, "axes"));
  return axes == std::vector<std::int64_t>{axis};
}

// Gather of the last index (-1 or count - 1) along `axis` with a scalar index.
template <class T>
bool Importer<T>::last_step(const OnnxNode& n, std::int64_t axis, index_t count) const {
  if (n.op != "Gather" || n.inputs.size() != 2) return false;
  allow(n, {"axis"});
  const OnnxTensor* index = constant(n.inputs[1]);
  if (!index || !index->dims.empty() || index->values.size() != 1 || int_attr(n, "axis", 0) != axis) return false;
  const std::int64_t i = integer(n, index->values[0], "index");
  return i == -1 || i == count - 1;
}

// GELU written as its formula (exporters do before opset 20): a branching
// piece of elementwise nodes, perhaps with a few one-node pieces after it
// (PyTorch's final "* 0.5"). Returns how many pieces it took, 0 if none.
template <class T>
std::size_t Importer<T>::gelu(const std::vector<Segment>& segments, std::size_t first, Sink& sink) {
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
template <class T>
bool Importer<T>::computes_gelu(const Segment& s, Sink& sink) {
  static const double probes[] = {-6, -3, -2, -1.5, -1, -0.7, -0.3, -0.1, 0, 0.1, 0.4, 0.8, 1, 1.7, 2.5, 4, 7};
  std::map<std::string, std::vector<double>> values{{s.in, std::vector<double>(std::begin(probes), std::end(probes))}};
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
template <class T>
bool Importer<T>::residual(const Segment& s, Sink& sink) {
  const OnnxNode& add = *s.nodes.back();
  if (add.op != "Add" || add.inputs.size() != 2 || !dynamic(add.inputs[0]) || !dynamic(add.inputs[1])) return false;
  for (const OnnxNode* n : s.nodes)
    if (is_virtual(*n)) return false;  // several inputs: a graph's
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
  std::string local = add.name;  // without the enclosing block's "<block>."
  if (!sink.prefix.empty() && local.compare(0, sink.prefix.size(), sink.prefix) == 0)
    local.erase(0, sink.prefix.size());
  const std::string block_name = layer_name(local, "residual");
  const std::string prefix = add.name.empty() ? std::string() : add.name + ".";
  int body = sides[1].size() > sides[0].size() ? 1 : 0;
  // glassbox's export names the shortcut's node "<block>.shortcut".
  if (sides[body].size() == 1 && sides[body][0]->name == prefix + "shortcut") body = 1 - body;
  const int shortcut = 1 - body;

  const Nesting nesting(*this, add);
  const std::size_t assigned = assignments_.size();
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
  // A shortcut of several layers, or sides of shapes that differ (a sum that
  // broadcasts): the piece becomes a Graph instead, whose merges say what fits.
  if (cut.layers > 1 || inner.shape != cut.shape) {
    assignments_.erase(assignments_.begin() + static_cast<std::ptrdiff_t>(assigned), assignments_.end());
    return false;
  }
  if (shortcut_layer && !dynamic_cast<nn::Identity<T>*>(shortcut_layer.get()))
    b.set_shortcut(std::move(shortcut_layer));
  Layer<T>* raw = block.get();
  sink.add(std::move(block), block_name);
  sink.shape = raw->output_shape(sink.shape);
  ++sink.layers;
  return true;
}

}  // namespace glassbox::io::onnx_detail
