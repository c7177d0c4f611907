#pragma once
// Decision paths: which units, layer by layer, carried a sample to its class.
//
//   inspect::DecisionPaths<float> paths(model, {"conv2d_1", "max_pool2d_1", "dense_1"});
//   const inspect::DecisionPath p = paths.explain(digit);        // (1, 1, 28, 28); its predicted class
//   std::vector<inspect::ClassPath> c = paths.frequencies(test_images);
//
// A unit is a channel of an (N, C, H, W) output, else one output feature. Its
// score for class k is gradient x activation summed over the unit: sum a *
// dF/da with F = output[k], the first-order share of F the unit carries
// (Captum's LayerGradientXActivation, summed per unit). Each chosen layer
// keeps its top_k units by score (the most positive: those that pushed
// towards the class); the model's last layer keeps the class's own unit.
//
// An edge from unit i of one chosen layer to unit j of the next says how much
// of j's score came through i: sum over i of a_i * d(F_j)/d(a_i), where F_j
// is j's part of F (dF/dy on unit j, zero elsewhere), taken by one backward
// pass per j. Summed over every i, a unit's incoming edges give back its own
// score when the layers are adjacent (the chain rule), and a unit's outgoing
// edges over every j give its score.
//
// frequencies(): for a data set, how often each unit is on the path of the
// samples of each class (predicted or given), as the share of those samples.

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "glassbox/inspect/saliency.hpp"

namespace glassbox::inspect {

struct PathUnit {
  index_t unit = 0;
  double score = 0;  // gradient x activation; for frequencies(), the share of the class's samples
};

struct PathLayer {
  std::string name;
  index_t units = 0;      // channels, or features
  bool channels = false;  // units are the channels of an (N, C, H, W) output
  bool output = false;    // the model's last layer: its one unit is the class's output
  std::vector<PathUnit> top;
};

struct PathEdge {
  std::size_t layer = 0;  // from layers[layer] to layers[layer + 1]
  index_t from = 0, to = 0;
  double weight = 0;
};

struct DecisionPath {
  index_t target = 0;  // the class explained
  double output = 0;   // the model's output for it
  std::vector<PathLayer> layers;
  std::vector<PathEdge> edges;

  std::string to_json() const {
    std::string s = fmt::format("{{\"target\":{},\"output\":{},\"layers\":[", target, json_number(output));
    for (std::size_t l = 0; l < layers.size(); ++l) {
      s += fmt::format("{}{{\"layer\":{},\"units\":{},\"channels\":{},\"output\":{},\"top\":[", l ? "," : "",
                       json_string(layers[l].name), layers[l].units, layers[l].channels ? "true" : "false",
                       layers[l].output ? "true" : "false");
      for (std::size_t k = 0; k < layers[l].top.size(); ++k)
        s += fmt::format("{}{{\"unit\":{},\"score\":{}}}", k ? "," : "", layers[l].top[k].unit,
                         json_number(layers[l].top[k].score));
      s += "]}";
    }
    s += "],\"edges\":[";
    for (std::size_t e = 0; e < edges.size(); ++e)
      s += fmt::format("{}{{\"layer\":{},\"from\":{},\"to\":{},\"weight\":{}}}", e ? "," : "", edges[e].layer,
                       edges[e].from, edges[e].to, json_number(edges[e].weight));
    return s + "]}";
  }
};

struct ClassPath {
  index_t target = 0;
  index_t samples = 0;            // of this class in the data set
  std::vector<PathLayer> layers;  // top: units by how often they were on a path, most often first
};

struct DecisionPathOptions {
  index_t top_k = 5;
  index_t batch_size = 64;  // frequencies()
};

template <class T>
class DecisionPaths {
 public:
  using Options = DecisionPathOptions;

  // `layers`: top-level layers of the model, input side first.
  DecisionPaths(Sequential<T>& model, const std::vector<HookTarget>& layers, Options options = {})
      : model_(model), options_(options) {
    if (layers.empty()) throw Error("DecisionPaths: name at least one layer");
    if (options_.top_k < 1 || options_.batch_size < 1)
      throw Error(fmt::format("DecisionPaths: top_k ({}) and batch_size ({}) must be positive", options_.top_k,
                              options_.batch_size));
    for (const HookTarget& target : layers) {
      const std::size_t index = model.index_of(target);  // refuses a layer inside a block
      if (!indices_.empty() && index <= indices_.back())
        throw Error("DecisionPaths: list the layers in model order, input side first, each once");
      indices_.push_back(index);
    }
  }

  // The path of one sample x (1, ...) to `target` (-1: its predicted class).
  DecisionPath explain(const Tensor<T>& x, index_t target = -1) {
    if (x.rank() < 2 || x.dim(0) != 1)
      throw Error(fmt::format("DecisionPaths::explain: one sample (1, ...) expected, got {}", x.shape().str()));
    std::vector<index_t> targets;
    if (target >= 0) targets.push_back(target);
    Pass pass = run(x, targets);
    DecisionPath path;
    path.target = targets[0];
    path.output = static_cast<double>(model_.output(model_.size() - 1)[targets[0]]);
    for (std::size_t l = 0; l < indices_.size(); ++l) {
      PathLayer layer = describe(l, pass.activations[l]);
      layer.top = top_units(l, unit_scores(pass.activations[l], pass.gradients[l], 0), path.target);
      path.layers.push_back(std::move(layer));
    }
    // Edges: one backward pass per unit of each later layer, its part of dF/dy alone.
    for (std::size_t l = 0; l + 1 < indices_.size(); ++l)
      for (const PathUnit& to : path.layers[l + 1].top) {
        Tensor<T> seed = pass.gradients[l + 1];
        keep_unit(seed, to.unit);
        Tensor<T> upstream;
        const HookHandle hook =
            model_.add_backward_hook(indices_[l], [&upstream](const BackwardEvent<T>& e) { upstream = e.grad_output; });
        model_.backward_from(indices_[l + 1], seed, false, ParamGrads::skip);
        const std::vector<double> through = unit_scores(pass.activations[l], upstream, 0);
        for (const PathUnit& from : path.layers[l].top)
          path.edges.push_back({l, from.unit, to.unit, through[static_cast<std::size_t>(from.unit)]});
      }
    return path;
  }

  // For each class, the units most often on the paths of its samples in x
  // (N, ...): `targets` gives each sample's class (empty: the predicted one).
  std::vector<ClassPath> frequencies(const Tensor<T>& x, const std::vector<index_t>& targets = {}) {
    if (x.rank() < 2 || x.dim(0) < 1)
      throw Error(fmt::format("DecisionPaths::frequencies: a batch expected, got {}", x.shape().str()));
    if (!targets.empty() && static_cast<index_t>(targets.size()) != x.dim(0))
      throw Error(fmt::format("DecisionPaths::frequencies: {} targets for {} samples", targets.size(), x.dim(0)));
    std::vector<ClassPath> classes;
    std::vector<std::vector<std::vector<index_t>>> counts;  // [class][layer][unit]
    Tensor<T> batch;
    for (index_t start = 0; start < x.dim(0); start += options_.batch_size) {
      const index_t n = std::min(options_.batch_size, x.dim(0) - start);
      copy_rows(x, start, n, batch);
      std::vector<index_t> chosen;
      if (!targets.empty()) chosen.assign(targets.begin() + start, targets.begin() + start + n);
      Pass pass = run(batch, chosen);
      for (index_t s = 0; s < n; ++s) {
        const index_t k = chosen[static_cast<std::size_t>(s)];
        while (static_cast<index_t>(classes.size()) <= k) {
          classes.push_back({static_cast<index_t>(classes.size()), 0, {}});
          counts.emplace_back();
        }
        ClassPath& c = classes[static_cast<std::size_t>(k)];
        ++c.samples;
        for (std::size_t l = 0; l < indices_.size(); ++l) {
          if (c.layers.size() <= l) {
            c.layers.push_back(describe(l, pass.activations[l]));
            counts[static_cast<std::size_t>(k)].emplace_back(static_cast<std::size_t>(c.layers[l].units), 0);
          }
          for (const PathUnit& u : top_units(l, unit_scores(pass.activations[l], pass.gradients[l], s), k))
            ++counts[static_cast<std::size_t>(k)][l][static_cast<std::size_t>(u.unit)];
        }
      }
    }
    for (std::size_t k = 0; k < classes.size(); ++k)
      for (std::size_t l = 0; l < classes[k].layers.size(); ++l) {
        std::vector<PathUnit> all;
        for (std::size_t u = 0; u < counts[k][l].size(); ++u)
          if (counts[k][l][u] > 0)
            all.push_back({static_cast<index_t>(u),
                           static_cast<double>(counts[k][l][u]) / static_cast<double>(classes[k].samples)});
        std::stable_sort(all.begin(), all.end(),
                         [](const PathUnit& a, const PathUnit& b) { return a.score > b.score; });
        if (static_cast<index_t>(all.size()) > options_.top_k) all.resize(static_cast<std::size_t>(options_.top_k));
        classes[k].layers[l].top = std::move(all);
      }
    return classes;
  }

 private:
  struct Pass {
    std::vector<Tensor<T>> activations, gradients;  // per chosen layer
  };

  // Forward x and backward from each sample's target (filled in when empty),
  // keeping each chosen layer's output and dF/d(output).
  Pass run(const Tensor<T>& x, std::vector<index_t>& targets) {
    Pass pass;
    pass.activations.resize(indices_.size());
    pass.gradients.resize(indices_.size());
    std::vector<HookHandle> hooks;
    for (std::size_t l = 0; l < indices_.size(); ++l) {
      hooks.push_back(model_.add_forward_hook(
          indices_[l], [&pass, l](const ForwardEvent<T>& e) { pass.activations[l] = e.output; }));
      hooks.push_back(model_.add_backward_hook(
          indices_[l], [&pass, l](const BackwardEvent<T>& e) { pass.gradients[l] = e.grad_output; }));
    }
    detail::backward_from_targets(model_, x, targets, /*want_input_grad=*/false, "DecisionPaths");
    return pass;
  }

  PathLayer describe(std::size_t l, const Tensor<T>& activation) const {
    PathLayer layer;
    layer.name = model_.layer(indices_[l]).name();
    layer.channels = activation.rank() == 4;
    layer.units = layer.channels ? activation.dim(1) : activation.size() / activation.dim(0);
    layer.output = indices_[l] + 1 == model_.size();
    return layer;
  }

  // Sample s's gradient x activation summed per unit.
  static std::vector<double> unit_scores(const Tensor<T>& a, const Tensor<T>& g, index_t s) {
    const index_t per_sample = a.size() / a.dim(0);
    const index_t units = a.rank() == 4 ? a.dim(1) : per_sample, each = per_sample / units;
    std::vector<double> scores(static_cast<std::size_t>(units), 0.0);
    const T* av = a.data() + s * per_sample;
    const T* gv = g.data() + s * per_sample;
    for (index_t u = 0; u < units; ++u)
      for (index_t i = u * each; i < (u + 1) * each; ++i)
        scores[static_cast<std::size_t>(u)] += static_cast<double>(av[i]) * static_cast<double>(gv[i]);
    return scores;
  }

  // The top_k units by score; the model's last layer: the target's own unit.
  std::vector<PathUnit> top_units(std::size_t l, const std::vector<double>& scores, index_t target) const {
    if (indices_[l] + 1 == model_.size()) return {{target, scores[static_cast<std::size_t>(target)]}};
    std::vector<PathUnit> all;
    for (std::size_t u = 0; u < scores.size(); ++u) all.push_back({static_cast<index_t>(u), scores[u]});
    const auto k =
        static_cast<std::ptrdiff_t>(std::min<std::size_t>(static_cast<std::size_t>(options_.top_k), all.size()));
    std::partial_sort(all.begin(), all.begin() + k, all.end(), [](const PathUnit& a, const PathUnit& b) {
      return a.score != b.score ? a.score > b.score : a.unit < b.unit;
    });
    all.resize(static_cast<std::size_t>(k));
    return all;
  }

  // Zeroes every element of g (one sample) outside unit u.
  static void keep_unit(Tensor<T>& g, index_t u) {
    const index_t units = g.rank() == 4 ? g.dim(1) : g.size(), each = g.size() / units;
    for (index_t i = 0; i < g.size(); ++i)
      if (i / each != u) g.data()[i] = T(0);
  }

  Sequential<T>& model_;
  Options options_;
  std::vector<std::size_t> indices_;
};

}  // namespace glassbox::inspect
