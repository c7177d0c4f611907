#pragma once
// Unstructured pruning: masks on Parameter<T>::mask that zero the entries with
// the lowest scores — magnitude |w| (L1), a user score such as |w * grad|, or
// random scores as a control — per parameter or with one threshold across all
// of them (global). Optimizers re-apply masks after every step, so pruned
// weights stay exactly zero while fine-tuning; remove() bakes masks in.
//
// Sparsity is the fraction of a parameter's entries that are pruned: pruning
// to s keeps what is already pruned and adds the lowest-scored rest until
// round(s * n) entries are pruned (as torch.nn.utils.prune rounds). Ties go
// to the lower index, so masks are deterministic.
//
// Schedules: one shot (one call), iterative() (prune, fine-tune, repeat) and
// PolynomialDecay with PruningCallback, TF-MOT's schedule as a fit() callback.
// Structured pruning, which shrinks layers, is compress/structured_prune.hpp.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "glassbox/core/rng.hpp"
#include "glassbox/model/sequential.hpp"
#include "glassbox/train/callback.hpp"

namespace glassbox::prune {

enum class Scope {
  per_parameter,  // each parameter reaches the sparsity
  global,         // one threshold across all: the sparsity holds for their union
};

// The weights that pruning usually targets: every dense and conv2d layer's
// "weight" (biases are few and matter more), those inside residual blocks
// and graphs included.
template <class T>
std::vector<Parameter<T>*> weights(Sequential<T>& model) {
  std::vector<Parameter<T>*> out;
  std::vector<Layer<T>*> pending;
  for (std::size_t i = model.size(); i-- > 0;) pending.push_back(&model.layer(i));
  while (!pending.empty()) {  // depth first, in the order the layers run
    Layer<T>& layer = *pending.back();
    pending.pop_back();
    const std::vector<Layer<T>*> children = layer.children();
    pending.insert(pending.end(), children.rbegin(), children.rend());
    if (layer.kind() != "dense" && layer.kind() != "conv2d") continue;
    for (Parameter<T>* p : layer.parameters())
      if (p->local_name() == "weight") out.push_back(p);
  }
  return out;
}

namespace detail {

inline void check_sparsity(const char* who, double sparsity) {
  if (!(sparsity >= 0.0 && sparsity <= 1.0))
    throw Error(fmt::format("prune::{}: sparsity must lie in [0, 1], got {}", who, sparsity));
}

// Entries to prune among n to reach `sparsity`, rounded as torch does.
inline std::size_t pruned_count(double sparsity, std::size_t n) {
  return static_cast<std::size_t>(std::llround(sparsity * static_cast<double>(n)));
}

template <class T>
bool is_pruned(const Parameter<T>& p, index_t i) {
  return p.has_mask() && p.mask[i] == T(0);
}

struct Entry {
  std::size_t param;
  index_t index;
};

// Prunes the `count` lowest-ranked entries of `entries`: already pruned ones
// first, then by score, then by position.
template <class T>
void prune_lowest(const std::vector<Parameter<T>*>& params, const std::vector<Tensor<T>>& scores,
                  std::vector<Entry>& entries, std::size_t count) {
  auto rank_before = [&](const Entry& a, const Entry& b) {
    const bool pa = is_pruned(*params[a.param], a.index), pb = is_pruned(*params[b.param], b.index);
    if (pa != pb) return pa;
    const T sa = scores[a.param][a.index], sb = scores[b.param][b.index];
    if (sa != sb) return sa < sb;
    return a.param != b.param ? a.param < b.param : a.index < b.index;
  };
  count = std::min(count, entries.size());
  if (count == 0) return;
  std::nth_element(entries.begin(), entries.begin() + static_cast<std::ptrdiff_t>(count - 1), entries.end(),
                   rank_before);
  // New masks only for the parameters the entries cover.
  std::vector<Tensor<T>> masks(params.size());
  for (std::size_t e = 0; e < count; ++e) {
    const std::size_t p = entries[e].param;
    if (masks[p].empty())
      masks[p] = params[p]->has_mask() ? params[p]->mask : Tensor<T>(params[p]->value.shape(), T(1));
    masks[p][entries[e].index] = T(0);
  }
  for (std::size_t i = 0; i < params.size(); ++i)
    if (!masks[i].empty()) params[i]->set_mask(std::move(masks[i]));
}

}  // namespace detail

// Prunes the lowest-scored entries until `sparsity` of each parameter (or,
// with Scope::global, of all of them together) is pruned. scores[i] has
// params[i]'s shape; NaN scores are refused. Sparsity never decreases:
// already pruned entries stay pruned.
template <class T>
void by_score(const std::vector<Parameter<T>*>& params, const std::vector<Tensor<T>>& scores, double sparsity,
              Scope scope = Scope::per_parameter) {
  detail::check_sparsity("by_score", sparsity);
  if (scores.size() != params.size())
    throw Error(fmt::format("prune::by_score: {} score tensors for {} parameters", scores.size(), params.size()));
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!params[i]) throw Error("prune::by_score: null parameter");
    if (scores[i].shape() != params[i]->value.shape())
      throw Error(fmt::format("prune::by_score: {}: scores of shape {} for a parameter of shape {}", params[i]->name,
                              scores[i].shape().str(), params[i]->value.shape().str()));
    for (index_t j = 0; j < scores[i].size(); ++j)
      if (std::isnan(static_cast<double>(scores[i][j])))
        throw Error(fmt::format("prune::by_score: {}: score {} is NaN", params[i]->name, j));
  }
  std::vector<detail::Entry> entries;
  auto add_entries = [&](std::size_t p) {
    for (index_t j = 0; j < params[p]->value.size(); ++j) entries.push_back({p, j});
  };
  if (scope == Scope::global) {
    for (std::size_t p = 0; p < params.size(); ++p) add_entries(p);
    detail::prune_lowest(params, scores, entries, detail::pruned_count(sparsity, entries.size()));
    return;
  }
  for (std::size_t p = 0; p < params.size(); ++p) {
    entries.clear();
    add_entries(p);
    detail::prune_lowest(params, scores, entries, detail::pruned_count(sparsity, entries.size()));
  }
}

// |w|: the L1 magnitude criterion.
template <class T>
std::vector<Tensor<T>> magnitude_scores(const std::vector<Parameter<T>*>& params) {
  std::vector<Tensor<T>> scores;
  for (const Parameter<T>* p : params) {
    scores.emplace_back(p->value.shape());
    scores.back().flat() = p->value.flat().abs();
  }
  return scores;
}

// |w * grad|: the first-order Taylor estimate of the loss change when an
// entry is zeroed. The grads are those of the last backward pass.
template <class T>
std::vector<Tensor<T>> taylor_scores(const std::vector<Parameter<T>*>& params) {
  std::vector<Tensor<T>> scores;
  for (const Parameter<T>* p : params) {
    if (p->grad.shape() != p->value.shape())
      throw Error(fmt::format("prune::taylor_scores: {} has no gradient (run backward first)", p->name));
    scores.emplace_back(p->value.shape());
    scores.back().flat() = (p->value.flat() * p->grad.flat()).abs();
  }
  return scores;
}

template <class T>
void magnitude(const std::vector<Parameter<T>*>& params, double sparsity, Scope scope = Scope::per_parameter) {
  by_score(params, magnitude_scores(params), sparsity, scope);
}

// Random pruning: the control that shows what the criterion is worth.
template <class T>
void random(const std::vector<Parameter<T>*>& params, double sparsity, Rng& rng, Scope scope = Scope::per_parameter) {
  std::vector<Tensor<T>> scores;
  for (const Parameter<T>* p : params) {
    scores.emplace_back(p->value.shape());
    for (T& s : scores.back()) s = static_cast<T>(rng.uniform());
  }
  by_score(params, scores, sparsity, scope);
}

// Bakes the masks in: pruned values are already zero, the masks go, and later
// training may revive those entries.
template <class T>
void remove(const std::vector<Parameter<T>*>& params) {
  for (Parameter<T>* p : params) {
    p->apply_mask();
    p->clear_mask();
  }
}

// Iterative pruning: `rounds` rounds that each prune the same fraction of
// what is left, s_r = 1 - (1 - final_sparsity)^(r / rounds), calling
// fine_tune() after each round.
template <class T, class FineTune>
void iterative(const std::vector<Parameter<T>*>& params, double final_sparsity, int rounds, FineTune&& fine_tune,
               Scope scope = Scope::per_parameter) {
  detail::check_sparsity("iterative", final_sparsity);
  if (rounds <= 0) throw Error(fmt::format("prune::iterative: rounds must be positive, got {}", rounds));
  for (int r = 1; r <= rounds; ++r) {
    const double s = r == rounds ? final_sparsity : 1.0 - std::pow(1.0 - final_sparsity, double(r) / double(rounds));
    magnitude(params, s, scope);
    fine_tune();
  }
}

// TF-MOT's PolynomialDecay: sparsity rises from initial to final between
// begin_step and end_step as s(t) = s_f + (s_i - s_f) (1 - (t - t0)/(t1 - t0))^power,
// pruning every `frequency` steps in that range (and at end_step).
struct PolynomialDecay {
  double initial_sparsity = 0.0;
  double final_sparsity = 0.8;
  long long begin_step = 0;
  long long end_step = 1000;
  double power = 3.0;
  long long frequency = 100;

  void validate() const {
    detail::check_sparsity("PolynomialDecay (initial)", initial_sparsity);
    detail::check_sparsity("PolynomialDecay (final)", final_sparsity);
    if (begin_step < 0 || end_step <= begin_step || frequency <= 0)
      throw Error(
          fmt::format("prune::PolynomialDecay: need 0 <= begin_step < end_step and frequency > 0, got {}, {}, {}",
                      begin_step, end_step, frequency));
  }
  double sparsity_at(long long step) const {
    const double t = std::clamp(double(step - begin_step) / double(end_step - begin_step), 0.0, 1.0);
    return final_sparsity + (initial_sparsity - final_sparsity) * std::pow(1.0 - t, power);
  }
  bool prunes_at(long long step) const {
    return step == end_step || (step >= begin_step && step < end_step && (step - begin_step) % frequency == 0);
  }
};

// Applies a PolynomialDecay schedule during fit(): before each scheduled
// batch, magnitude-prunes the parameters to the schedule's sparsity. Steps
// count batches from the first fit() the callback sees.
template <class T>
class PruningCallback : public train::Callback {
 public:
  PruningCallback(std::vector<Parameter<T>*> params, PolynomialDecay schedule, Scope scope = Scope::per_parameter)
      : params_(std::move(params)), schedule_(schedule), scope_(scope) {
    schedule_.validate();
  }
  void on_batch_begin(long long) override {
    if (schedule_.prunes_at(step_)) magnitude(params_, schedule_.sparsity_at(step_), scope_);
  }
  void on_batch_end(const train::BatchLogs&) override { ++step_; }
  long long step() const { return step_; }

 private:
  std::vector<Parameter<T>*> params_;
  PolynomialDecay schedule_;
  Scope scope_;
  long long step_ = 0;
};

// Sparsity of every parameter of a model, and the sizes dense and sparse.
struct ParameterSparsity {
  std::string name;
  index_t count = 0;
  index_t zeros = 0;
  double sparsity() const { return count ? double(zeros) / double(count) : 0.0; }
};

struct Report {
  std::vector<ParameterSparsity> parameters;
  index_t count = 0;
  index_t zeros = 0;
  std::size_t dense_bytes = 0;      // every value stored
  std::size_t effective_bytes = 0;  // non-zero values plus a one-bit-per-entry occupancy map
  double sparsity() const { return count ? double(zeros) / double(count) : 0.0; }

  std::string str() const {
    std::string s = fmt::format("{:<28}{:>12}{:>12}{:>10}\n", "parameter", "entries", "zeros", "sparsity");
    for (const auto& p : parameters)
      s += fmt::format("{:<28}{:>12}{:>12}{:>9.2f}%\n", p.name, p.count, p.zeros, 100.0 * p.sparsity());
    s += fmt::format("{:<28}{:>12}{:>12}{:>9.2f}%\n", "total", count, zeros, 100.0 * sparsity());
    s += fmt::format("size: {} bytes dense, {} bytes sparse (non-zero values + occupancy bits), {:.2f}x smaller\n",
                     dense_bytes, effective_bytes,
                     double(dense_bytes) / double(std::max<std::size_t>(effective_bytes, 1)));
    return s;
  }
};

// Counts zero values (pruned or not) in every parameter of the model.
template <class T>
Report report(Sequential<T>& model) {
  Report r;
  for (Parameter<T>* p : model.parameters()) {
    ParameterSparsity ps{p->name, p->value.size(), 0};
    for (const T v : p->value) ps.zeros += v == T(0);
    r.count += ps.count;
    r.zeros += ps.zeros;
    const auto count = static_cast<std::size_t>(ps.count);
    r.dense_bytes += count * sizeof(T);
    r.effective_bytes += static_cast<std::size_t>(ps.count - ps.zeros) * sizeof(T) + (count + 7) / 8;
    r.parameters.push_back(std::move(ps));
  }
  return r;
}

}  // namespace glassbox::prune
