#pragma once
// LayerSpec: a layer's kind, name and hyperparameters as named numbers, the
// architecture part of a checkpoint. describe() reads them from a built-in
// layer; make_layer() builds the layer back after checking every field, and
// parameter_shapes() says which parameter tensors that layer will allocate,
// so that a loader can compare them with what a file holds before anything
// is allocated.
//
// Fields are doubles: integers (sizes, flags, enumerations) are stored
// exactly, and float hyperparameters round-trip exactly too.

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "glassbox/model/graph.hpp"
#include "glassbox/nn/activations.hpp"
#include "glassbox/nn/affine.hpp"
#include "glassbox/nn/avg_pool2d.hpp"
#include "glassbox/nn/batch_norm.hpp"
#include "glassbox/nn/conv2d.hpp"
#include "glassbox/nn/dense.hpp"
#include "glassbox/nn/dropout.hpp"
#include "glassbox/nn/flatten.hpp"
#include "glassbox/nn/max_pool2d.hpp"
#include "glassbox/nn/recurrent.hpp"
#include "glassbox/nn/reshape.hpp"
#include "glassbox/nn/residual.hpp"
#include "glassbox/nn/softmax.hpp"

namespace glassbox::io {

struct LayerSpec {
  std::string kind, name;  // inside a block, the name within it ("conv2d_1", "shortcut")
  std::vector<std::pair<std::string, double>> fields;
  // nn::Residual: the body's layers, then the shortcut; Graph: its nodes
  // (layers and merges) in order, the wiring in fields (detail::describe_wiring).
  std::vector<LayerSpec> children;

  void set(const std::string& key, double value) { fields.emplace_back(key, value); }
  const double* find(const std::string& key) const {
    for (const auto& [k, v] : fields)
      if (k == key) return &v;
    return nullptr;
  }
};

namespace detail {

// Largest size a checkpoint may declare for one dimension of a layer.
constexpr std::int64_t max_features = std::int64_t(1) << 24;
constexpr std::int64_t max_window = 4096;

// Reads spec fields, with errors naming `where` (file and section), the layer
// and the field.
class SpecReader {
 public:
  SpecReader(const LayerSpec& spec, std::string where) : spec_(spec), where_(std::move(where)) {}

  Error error(const std::string& field, const std::string& what) const {
    return Error(fmt::format("{}, layer '{}' ({}), field '{}': {}", where_, spec_.name, spec_.kind, field, what));
  }
  double real(const std::string& field) const {
    const double* v = spec_.find(field);
    if (!v) throw error(field, "missing");
    if (!std::isfinite(*v)) throw error(field, fmt::format("{} is not finite", *v));
    return *v;
  }
  std::int64_t integer(const std::string& field, std::int64_t low, std::int64_t high) const {
    const double v = real(field);
    if (v != std::floor(v) || v < static_cast<double>(low) || v > static_cast<double>(high))
      throw error(field, fmt::format("{} is not an integer in [{}, {}]", v, low, high));
    return static_cast<std::int64_t>(v);
  }
  bool flag(const std::string& field) const { return integer(field, 0, 1) != 0; }
  nn::Size2 size2(const std::string& stem, std::int64_t low, std::int64_t high) const {
    return {integer(stem + "_h", low, high), integer(stem + "_w", low, high)};
  }
  nn::Padding padding() const { return static_cast<nn::Padding>(integer("padding", 0, 2)); }

 private:
  const LayerSpec& spec_;
  std::string where_;
};

inline void put_size2(LayerSpec& s, const std::string& stem, nn::Size2 v) {
  s.set(stem + "_h", static_cast<double>(v.h));
  s.set(stem + "_w", static_cast<double>(v.w));
}
inline void put_window(LayerSpec& s, const nn::Window2D& w) {
  put_size2(s, "kernel", w.kernel);
  put_size2(s, "stride", w.stride);
  put_size2(s, "dilation", w.dilation);
  s.set("padding", static_cast<double>(w.padding));
  put_size2(s, "pad", w.pad);
}
inline nn::PoolOptions pool_options(const SpecReader& r) {
  nn::PoolOptions o;
  o.stride = r.size2("stride", 1, max_window);
  o.padding = r.padding();
  o.pad = r.size2("pad", 0, max_window);
  return o;
}

// A graph's wiring as fields: "nodes" (without the input), per node j from 1
// "j.op" (Graph::Op), "j.inputs" and "j.input_k" (earlier nodes' indices),
// "j.axis" for a concat; and "output", or "outputs" and "output_k" when
// there are several. Node j is the graph's child j - 1; a declared input's
// child is of kind "input", its sample shape in put_shape's fields.
template <class T>
void describe_wiring(const Graph<T>& g, LayerSpec& s) {
  using Node = typename Graph<T>::Node;
  s.set("nodes", static_cast<double>(g.node_count() - 1));
  for (std::size_t j = 1; j < g.node_count(); ++j) {
    const std::string key = std::to_string(j) + ".";
    s.set(key + "op", static_cast<double>(g.op(Node{j})));
    const auto inputs = g.inputs(Node{j});
    s.set(key + "inputs", static_cast<double>(inputs.size()));
    for (std::size_t k = 0; k < inputs.size(); ++k) s.set(key + "input_" + std::to_string(k), double(inputs[k].id));
    if (g.op(Node{j}) == Graph<T>::Op::concat) s.set(key + "axis", g.axis(Node{j}));
  }
  s.set("output", static_cast<double>(g.output().id));
  const auto outputs = g.outputs();
  if (outputs.size() > 1) {
    s.set("outputs", static_cast<double>(outputs.size()));
    for (std::size_t k = 0; k < outputs.size(); ++k) s.set("output_" + std::to_string(k), double(outputs[k].id));
  }
}

constexpr std::int64_t max_graph_nodes = 1 << 16;

// nn::Affine's parameter shape as fields "rank" and "dim_0" ...
inline void put_shape(LayerSpec& s, const Shape& shape) {
  s.set("rank", shape.rank());
  for (int d = 0; d < shape.rank(); ++d) s.set("dim_" + std::to_string(d), static_cast<double>(shape[d]));
}
inline Shape shape_field(const SpecReader& r) {
  const auto rank = r.integer("rank", 1, Shape::max_rank - 1);
  std::vector<index_t> dims;
  std::int64_t size = 1;
  for (std::int64_t d = 0; d < rank; ++d) {
    const std::string field = "dim_" + std::to_string(d);
    dims.push_back(r.integer(field, 1, max_features));
    size *= dims.back();
    if (size > max_features) throw r.error(field, fmt::format("the shape has more than {} values", max_features));
  }
  return Shape(dims.begin(), dims.end());
}

}  // namespace detail

// The spec of a built-in layer; throws for a kind it does not know.
template <class T>
LayerSpec describe(Layer<T>& layer) {
  LayerSpec s{layer.kind(), layer.name(), {}, {}};
  if (auto* graph = dynamic_cast<Graph<T>*>(&layer)) {
    using Node = typename Graph<T>::Node;
    detail::describe_wiring(*graph, s);
    for (std::size_t j = 1; j < graph->node_count(); ++j) {
      const Node node{j};
      LayerSpec c{"input", graph->node_name(node), {}, {}};
      if (graph->op(node) == Graph<T>::Op::input)
        detail::put_shape(c, graph->input_sample(node));
      else
        c = describe(graph->layer(node));
      c.name = graph->node_name(node);
      s.children.push_back(std::move(c));
    }
  } else if (dynamic_cast<nn::Residual<T>*>(&layer)) {
    const std::string prefix = layer.name() + ".";
    for (Layer<T>* child : layer.children()) {
      LayerSpec c = describe(*child);
      if (c.name.rfind(prefix, 0) == 0) c.name = c.name.substr(prefix.size());
      s.children.push_back(std::move(c));
    }
  } else if (auto* d = dynamic_cast<nn::Dense<T>*>(&layer)) {
    s.set("in", static_cast<double>(d->in_features()));
    s.set("out", static_cast<double>(d->out_features()));
    s.set("bias", d->options().bias);
  } else if (auto* c = dynamic_cast<nn::Conv2D<T>*>(&layer)) {
    s.set("in", static_cast<double>(c->in_channels()));
    s.set("out", static_cast<double>(c->out_channels()));
    detail::put_window(s, c->window());
    s.set("bias", c->options().bias);
    s.set("activation", static_cast<double>(c->options().activation));
  } else if (auto* m = dynamic_cast<nn::MaxPool2D<T>*>(&layer)) {
    detail::put_window(s, m->window());
  } else if (auto* a = dynamic_cast<nn::AvgPool2D<T>*>(&layer)) {
    detail::put_window(s, a->window());
    s.set("count_include_pad", a->count_include_pad());
  } else if (auto* b = dynamic_cast<nn::BatchNorm<T>*>(&layer)) {
    s.set("features", static_cast<double>(b->features()));
    s.set("eps", static_cast<double>(b->options().eps));
    s.set("momentum", static_cast<double>(b->options().momentum));
  } else if (auto* a = dynamic_cast<nn::Affine<T>*>(&layer)) {
    detail::put_shape(s, a->shape());
    s.set("scale", a->options().scale);
    s.set("shift", a->options().shift);
  } else if (auto* reshape = dynamic_cast<nn::Reshape<T>*>(&layer)) {
    detail::put_shape(s, reshape->shape());
  } else if (auto* rnn = dynamic_cast<nn::Recurrent<T>*>(&layer)) {
    s.set("in", static_cast<double>(rnn->input_size()));
    s.set("hidden", static_cast<double>(rnn->hidden_size()));
    s.set("return_sequences", rnn->options().return_sequences);
    s.set("truncate", static_cast<double>(rnn->options().truncate));
  } else if (dynamic_cast<GraphMerge<T>*>(&layer)) {
    // its inputs and axis are its graph's wiring
  } else if (auto* r = dynamic_cast<nn::Dropout<T>*>(&layer)) {
    s.set("rate", static_cast<double>(r->rate()));
  } else if (auto* l = dynamic_cast<nn::LeakyReLU<T>*>(&layer)) {
    s.set("negative_slope", static_cast<double>(l->negative_slope()));
  } else if (auto* g = dynamic_cast<nn::GELU<T>*>(&layer)) {
    s.set("approximation", static_cast<double>(g->approximation()));
  } else if (!dynamic_cast<nn::GlobalAvgPool2D<T>*>(&layer) && !dynamic_cast<nn::Flatten<T>*>(&layer) &&
             !dynamic_cast<nn::ReLU<T>*>(&layer) && !dynamic_cast<nn::Sigmoid<T>*>(&layer) &&
             !dynamic_cast<nn::Tanh<T>*>(&layer) && !dynamic_cast<nn::Softmax<T>*>(&layer) &&
             !dynamic_cast<nn::LogSoftmax<T>*>(&layer) && !dynamic_cast<nn::Identity<T>*>(&layer)) {
    throw Error(
        fmt::format("{}: layers of kind '{}' cannot be saved (not a built-in layer)", layer.name(), layer.kind()));
  }
  return s;
}

// The parameter tensors (local name, shape) the layer of `spec` has, in the
// order of its parameters(); checks the fields that decide them.
inline std::vector<std::pair<std::string, Shape>> parameter_shapes(const LayerSpec& spec, const std::string& where) {
  const detail::SpecReader r(spec, where);
  using detail::max_features;
  if (spec.kind == "dense") {
    const auto in = r.integer("in", 1, max_features), out = r.integer("out", 1, max_features);
    std::vector<std::pair<std::string, Shape>> shapes{{"weight", Shape{out, in}}};
    if (r.flag("bias")) shapes.emplace_back("bias", Shape{out});
    return shapes;
  }
  if (spec.kind == "conv2d") {
    const auto in = r.integer("in", 1, max_features), out = r.integer("out", 1, max_features);
    const nn::Size2 k = r.size2("kernel", 1, detail::max_window);
    std::vector<std::pair<std::string, Shape>> shapes{{"weight", Shape{out, in, k.h, k.w}}};
    if (r.flag("bias")) shapes.emplace_back("bias", Shape{out});
    return shapes;
  }
  if (spec.kind == "simple_rnn" || spec.kind == "lstm" || spec.kind == "gru") {
    const std::int64_t gates = spec.kind == "lstm" ? 4 : spec.kind == "gru" ? 3 : 1;
    const auto in = r.integer("in", 1, max_features), hidden = r.integer("hidden", 1, max_features);
    return {{"weight_ih", Shape{gates * hidden, in}},
            {"weight_hh", Shape{gates * hidden, hidden}},
            {"bias_ih", Shape{gates * hidden}},
            {"bias_hh", Shape{gates * hidden}}};
  }
  if (spec.kind == "batch_norm") {
    const auto f = r.integer("features", 1, max_features);
    return {{"weight", Shape{f}}, {"bias", Shape{f}}};
  }
  if (spec.kind == "affine") {
    const Shape shape = detail::shape_field(r);
    std::vector<std::pair<std::string, Shape>> shapes;
    if (r.flag("scale")) shapes.emplace_back("weight", shape);
    if (r.flag("shift")) shapes.emplace_back("bias", shape);
    return shapes;
  }
  if (spec.kind == "residual" || spec.kind == "graph") {  // the children's, named within the block
    if (spec.kind == "residual" && spec.children.size() < 2)
      throw r.error("children", "a residual block needs a body and a shortcut");
    if (spec.kind == "residual" && spec.children.back().name != "shortcut")
      throw r.error("children", "the last child must be the shortcut");
    std::vector<std::pair<std::string, Shape>> shapes;
    for (const LayerSpec& child : spec.children)
      for (auto& [local, shape] : parameter_shapes(child, where + ", in " + spec.name))
        shapes.emplace_back(child.name + "." + local, shape);
    return shapes;
  }
  for (const char* kind :
       {"max_pool2d", "avg_pool2d", "global_avg_pool2d", "flatten", "dropout", "relu", "leaky_relu", "sigmoid", "tanh",
        "gelu", "softmax", "log_softmax", "identity", "sum", "multiply", "concat", "input", "reshape"})
    if (spec.kind == kind) return {};
  throw Error(fmt::format("{}, layer '{}': unknown layer kind '{}'", where, spec.name, spec.kind));
}

template <class T>
std::unique_ptr<Layer<T>> make_layer(const LayerSpec& spec, const std::string& where);

namespace detail {
// A graph from its spec: every index checked against the nodes before it.
template <class T>
std::unique_ptr<Layer<T>> make_graph(const LayerSpec& spec, const SpecReader& r, const std::string& where) {
  using Op = typename Graph<T>::Op;
  using Node = typename Graph<T>::Node;
  auto g = std::make_unique<Graph<T>>();
  const auto nodes = static_cast<std::size_t>(r.integer("nodes", 1, max_graph_nodes));
  std::size_t child = 0;
  for (std::size_t j = 1; j <= nodes; ++j) {
    const std::string key = std::to_string(j) + ".";
    const auto op = static_cast<Op>(r.integer(key + "op", int(Op::input), int(Op::concat)));
    const std::int64_t fewest = op == Op::input ? 0 : op == Op::layer ? 1 : 2;
    const auto count = r.integer(key + "inputs", fewest, op == Op::input || op == Op::layer ? fewest : max_graph_nodes);
    std::vector<Node> inputs;
    for (std::int64_t k = 0; k < count; ++k)
      inputs.push_back(
          Node{static_cast<std::size_t>(r.integer(key + "input_" + std::to_string(k), 0, std::int64_t(j) - 1))});
    if (child == spec.children.size())
      throw r.error(key + "op", fmt::format("names child {} of {}", child + 1, spec.children.size()));
    const LayerSpec& c = spec.children[child++];
    const char* kind = op == Op::layer ? nullptr : Graph<T>::op_name(op);
    if (kind && c.kind != kind)
      throw r.error(key + "op", fmt::format("is {} {}, but its child '{}' is a {}", op == Op::input ? "an" : "a", kind,
                                            c.name, c.kind));
    if (!kind && c.kind == "input")
      throw r.error(key + "op", fmt::format("is a layer, but its child '{}' is an input", c.name));
    if (op == Op::input)
      g->input(shape_field(SpecReader(c, where + ", in " + spec.name)), c.name);
    else if (op == Op::layer)
      g->add(inputs[0], make_layer<T>(c, where + ", in " + spec.name), c.name);
    else if (op == Op::sum)
      g->sum(inputs, c.name);
    else if (op == Op::multiply)
      g->multiply(inputs, c.name);
    else
      g->concat(inputs, static_cast<int>(r.integer(key + "axis", -Shape::max_rank, Shape::max_rank)), c.name);
  }
  if (child != spec.children.size())
    throw r.error("children", fmt::format("{} children, but the nodes use {}", spec.children.size(), child));
  const auto node_field = [&](const std::string& field) {
    return Node{static_cast<std::size_t>(r.integer(field, 1, std::int64_t(nodes)))};
  };
  std::vector<Node> outputs{node_field("output")};
  if (spec.find("outputs")) {
    outputs.clear();
    const auto count = r.integer("outputs", 2, max_graph_nodes);
    for (std::int64_t k = 0; k < count; ++k) outputs.push_back(node_field("output_" + std::to_string(k)));
  }
  g->set_outputs(outputs);
  return g;
}
}  // namespace detail

// Builds the layer of `spec` (parameters uninitialised until the caller loads
// them). Errors name `where`, the layer and the field.
template <class T>
std::unique_ptr<Layer<T>> make_layer(const LayerSpec& spec, const std::string& where) {
  const detail::SpecReader r(spec, where);
  using detail::max_features;
  using detail::max_window;
  const auto& kind = spec.kind;
  try {
    if (kind == "dense") {
      typename nn::Dense<T>::Options o;
      o.bias = r.flag("bias");
      return std::make_unique<nn::Dense<T>>(r.integer("in", 1, max_features), r.integer("out", 1, max_features), o);
    }
    if (kind == "conv2d") {
      typename nn::Conv2D<T>::Options o;
      o.stride = r.size2("stride", 1, max_window);
      o.dilation = r.size2("dilation", 1, max_window);
      o.padding = r.padding();
      o.pad = r.size2("pad", 0, max_window);
      o.bias = r.flag("bias");
      o.activation = static_cast<nn::Activation>(r.integer("activation", 0, 1));
      return std::make_unique<nn::Conv2D<T>>(r.integer("in", 1, max_features), r.integer("out", 1, max_features),
                                             r.size2("kernel", 1, max_window), o);
    }
    if (kind == "max_pool2d" || kind == "avg_pool2d") {
      if (r.size2("dilation", 1, 1).h != 1) throw r.error("dilation", "pooling has no dilation");
      const nn::Size2 kernel = r.size2("kernel", 1, max_window);
      if (kind == "max_pool2d") return std::make_unique<nn::MaxPool2D<T>>(kernel, detail::pool_options(r));
      return std::make_unique<nn::AvgPool2D<T>>(kernel, detail::pool_options(r), r.flag("count_include_pad"));
    }
    if (kind == "simple_rnn" || kind == "lstm" || kind == "gru") {
      typename nn::Recurrent<T>::Options o;
      o.return_sequences = r.flag("return_sequences");
      o.truncate = r.integer("truncate", 0, std::int64_t(1) << 30);
      const auto in = r.integer("in", 1, max_features), hidden = r.integer("hidden", 1, max_features);
      if (kind == "lstm") return std::make_unique<nn::LSTM<T>>(in, hidden, o);
      if (kind == "gru") return std::make_unique<nn::GRU<T>>(in, hidden, o);
      return std::make_unique<nn::SimpleRNN<T>>(in, hidden, o);
    }
    if (kind == "residual") {
      if (spec.children.empty()) throw r.error("children", "a residual block needs a body and a shortcut");
      auto block = std::make_unique<nn::Residual<T>>();
      for (std::size_t i = 0; i + 1 < spec.children.size(); ++i)
        block->add(make_layer<T>(spec.children[i], where + ", in " + spec.name), spec.children[i].name);
      if (spec.children.back().kind != "identity")
        block->set_shortcut(make_layer<T>(spec.children.back(), where + ", in " + spec.name));
      return block;
    }
    if (kind == "graph") return detail::make_graph<T>(spec, r, where);
    if (kind == "sum" || kind == "multiply" || kind == "concat" || kind == "input")
      throw Error(fmt::format("{}, layer '{}': a {} exists only inside a graph", where, spec.name, kind));
    if (kind == "identity") return std::make_unique<nn::Identity<T>>();
    if (kind == "global_avg_pool2d") return std::make_unique<nn::GlobalAvgPool2D<T>>();
    if (kind == "flatten") return std::make_unique<nn::Flatten<T>>();
    if (kind == "reshape") return std::make_unique<nn::Reshape<T>>(detail::shape_field(r));
    if (kind == "batch_norm") {
      typename nn::BatchNorm<T>::Options o;
      o.eps = static_cast<T>(r.real("eps"));
      o.momentum = static_cast<T>(r.real("momentum"));
      return std::make_unique<nn::BatchNorm<T>>(r.integer("features", 1, max_features), o);
    }
    if (kind == "affine")
      return std::make_unique<nn::Affine<T>>(detail::shape_field(r),
                                             typename nn::Affine<T>::Options{r.flag("scale"), r.flag("shift")});
    if (kind == "dropout") return std::make_unique<nn::Dropout<T>>(static_cast<T>(r.real("rate")));
    if (kind == "relu") return std::make_unique<nn::ReLU<T>>();
    if (kind == "leaky_relu") return std::make_unique<nn::LeakyReLU<T>>(static_cast<T>(r.real("negative_slope")));
    if (kind == "sigmoid") return std::make_unique<nn::Sigmoid<T>>();
    if (kind == "tanh") return std::make_unique<nn::Tanh<T>>();
    if (kind == "gelu")
      return std::make_unique<nn::GELU<T>>(
          static_cast<typename nn::GELU<T>::Approximation>(r.integer("approximation", 0, 1)));
    if (kind == "softmax") return std::make_unique<nn::Softmax<T>>();
    if (kind == "log_softmax") return std::make_unique<nn::LogSoftmax<T>>();
  } catch (const Error& e) {
    // A layer constructor's own check (a dropout rate of 2): say where.
    if (std::string(e.what()).rfind(where, 0) == 0) throw;
    throw Error(fmt::format("{}, layer '{}': {}", where, spec.name, e.what()));
  }
  throw Error(fmt::format("{}, layer '{}': unknown layer kind '{}'", where, spec.name, kind));
}

}  // namespace glassbox::io
