#pragma once
// MultiOutputLoss: one loss per output of a model with several (a Graph's
// packed output, model/graph.hpp), as Keras' per-output losses and
// loss_weights. Each output's part of the packed output and of the packed
// targets (core/packing.hpp: pack({labels, values})) goes to its own loss;
// the loss is the weighted sum, and so is its gradient, part by part.
//
//   nn::MultiOutputLoss<float> loss;
//   loss.add<nn::SoftmaxCrossEntropy<float>>(Shape{10}, Shape{});    // digit: logits, a label
//   loss.add<nn::MSELoss<float>>(Shape{1}, Shape{1}, 0.5f);          // aux: a value, weight 0.5
//   train::fit(model, adam, loss, pack({images, metas}), pack({labels, values}), options);
//
// Accuracy (tally) is the first output's whose loss counts one.

#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>

#include "glassbox/core/packing.hpp"
#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/loss.hpp"

namespace glassbox::nn {

template <class T>
class MultiOutputLoss : public Loss<T> {
 public:
  // The next output: its per-sample shape, its targets' per-sample shape
  // (Shape{} for one class label) and its weight.
  template <class L, class... Args>
  MultiOutputLoss& add(const Shape& output, const Shape& target, T weight = T(1), Args&&... args) {
    return add(std::make_unique<L>(std::forward<Args>(args)...), output, target, weight);
  }
  MultiOutputLoss& add(std::unique_ptr<Loss<T>> loss, const Shape& output, const Shape& target, T weight = T(1)) {
    if (!loss) throw Error("multi_output: null loss");
    if (output.size() < 1 || !(weight >= T(0)))
      throw Error(fmt::format("multi_output: output {} of shape {} with weight {}: needs values and a weight >= 0",
                              parts_.size() + 1, output.str(), weight));
    parts_.push_back(Part{std::move(loss), output, target, weight, {}, {}, {}});
    return *this;
  }

  std::string name() const override {
    std::string names;
    for (const Part& p : parts_) names += (names.empty() ? "" : ", ") + p.loss->name();
    return "multi_output(" + names + ")";
  }

  T forward(const Tensor<T>& output, const Tensor<T>& target, Tensor<T>* grad) const override {
    split(output, target);
    if (grad) {
      grad->resize(output.shape());
      grad->set_zero();
    }
    T total = 0;
    index_t offset = 0;
    for (const Part& p : parts_) {
      if (p.weight != T(0)) {
        total += p.weight * p.loss->forward(p.output_part, p.target_part, grad ? &p.grad_part : nullptr);
        if (grad) {
          p.grad_part.flat() *= p.weight;
          write_part(p.grad_part, offset, *grad);
        }
      }
      offset += p.output.size();
    }
    return total;
  }

  Tally tally(const Tensor<T>& output, const Tensor<T>& target) const override {
    split(output, target);
    for (const Part& p : parts_) {
      const Tally t = p.loss->tally(p.output_part, p.target_part);
      if (t.total) return t;
    }
    return {};
  }

 private:
  struct Part {
    std::unique_ptr<Loss<T>> loss;
    Shape output, target;  // per sample
    T weight;
    mutable Tensor<T> output_part, target_part, grad_part;  // reused from batch to batch
  };

  // Each part's output and targets, checked against the packed widths.
  void split(const Tensor<T>& output, const Tensor<T>& target) const {
    if (parts_.empty()) throw Error("multi_output: no outputs added");
    index_t outputs = 0, targets = 0;
    for (const Part& p : parts_) outputs += p.output.size(), targets += p.target.size();
    const index_t n = output.shape().rank() ? output.shape()[0] : 0;
    if (output.shape() != Shape{n, outputs} || target.shape() != Shape{n, targets})
      throw Error(fmt::format("{}: expects packed outputs (N, {}) and targets (N, {}), got {} and {}", name(), outputs,
                              targets, output.shape().str(), target.shape().str()));
    index_t at_output = 0, at_target = 0;
    for (const Part& p : parts_) {
      p.output_part.resize(p.output.batched(n));
      p.target_part.resize(p.target.batched(n));
      read_part(output, at_output, p.output_part);
      read_part(target, at_target, p.target_part);
      at_output += p.output.size();
      at_target += p.target.size();
    }
  }

  std::vector<Part> parts_;
};

GLASSBOX_PRECOMPILED_INSTANCE(class MultiOutputLoss<float>)
}  // namespace glassbox::nn
