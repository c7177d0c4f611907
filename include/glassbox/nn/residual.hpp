#pragma once
// Residual<T>: a skip connection as one layer of a Sequential,
//   y = body(x) + shortcut(x),
// where the body is a chain of layers and the shortcut is the identity or a
// projection (a 1x1 Conv2D or a Dense) for when the body changes the shape.
//
//   nn::Residual<float> block;
//   block.add<nn::Conv2D<float>>(16, 16, nn::Size2{3, 3}, same_relu);
//   block.add<nn::Conv2D<float>>(16, 16, nn::Size2{3, 3}, same);
//   model.add(std::make_unique<nn::Residual<float>>(std::move(block)));   // "residual_1"
//
// Hooks stay uniform: the children are layers of the model too, named
// "<block>.<child>" ("residual_1.conv2d_2", "residual_1.shortcut"), and every
// hook fires for them as for any layer (Sequential runs them through its
// ChildRunner). Their events carry the block's index and depth 1, and their
// parameters are named "residual_1.conv2d_2.weight". The shortcut is always a
// child, an nn::Identity when there is no projection, so that recorders show
// the body's output and the shortcut's separately.

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox::nn {

// y = x: the shortcut of a Residual without a projection.
template <class T>
class Identity : public Layer<T> {
 public:
  std::string kind() const override { return "identity"; }
  Shape output_shape(const Shape& in) const override { return in; }
  bool reshapes_only() const override { return true; }
  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    y.resize(x.shape());
    std::copy(x.begin(), x.end(), y.begin());
  }
  void backward(const Tensor<T>&, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    if (!dx) return;
    dx->resize(dy.shape());
    std::copy(dy.begin(), dy.end(), dx->begin());
  }
};

template <class T>
class Residual : public Layer<T> {
 public:
  Residual() : shortcut_(std::make_unique<Identity<T>>()) { shortcut_->set_name("shortcut"); }

  std::string kind() const override { return "residual"; }

  // Appends a layer to the body, named kind_N within the block.
  template <class L, class... Args>
  L& add(Args&&... args) {
    auto owned = std::make_unique<L>(std::forward<Args>(args)...);
    L& ref = *owned;
    add(std::move(owned));
    return ref;
  }
  Layer<T>& add(std::unique_ptr<Layer<T>> layer, std::string name = {}) {
    if (!layer) throw Error("residual: null layer");
    require_not_in_model();
    if (name.empty()) name = fmt::format("{}_{}", layer->kind(), ++kind_counts_[layer->kind()]);
    if (name == "shortcut") throw Error("residual: 'shortcut' is the shortcut's name, not a body layer's");
    for (const auto& l : body_)
      if (local_name(*l) == name) throw Error(fmt::format("residual: a layer named '{}' already exists", name));
    local_names_.push_back(name);
    layer->set_name(this->name() == kind() ? name : this->name() + "." + name);
    body_.push_back(std::move(layer));
    body_outputs_.emplace_back();
    return *body_.back();
  }

  // Replaces the identity shortcut by a projection.
  template <class L, class... Args>
  L& set_shortcut(Args&&... args) {
    auto owned = std::make_unique<L>(std::forward<Args>(args)...);
    L& ref = *owned;
    set_shortcut(std::move(owned));
    return ref;
  }

  void set_shortcut(std::unique_ptr<Layer<T>> layer) {
    if (!layer) throw Error("residual: null shortcut");
    require_not_in_model();
    shortcut_ = std::move(layer);
    shortcut_->set_name(this->name() == kind() ? "shortcut" : this->name() + ".shortcut");
  }

  std::size_t size() const { return body_.size(); }
  Layer<T>& body(std::size_t i) { return *body_.at(i); }
  Layer<T>& shortcut() { return *shortcut_; }
  bool has_projection() const { return dynamic_cast<const Identity<T>*>(shortcut_.get()) == nullptr; }

  std::vector<Layer<T>*> children() override {
    std::vector<Layer<T>*> all;
    for (auto& l : body_) all.push_back(l.get());
    all.push_back(shortcut_.get());
    return all;
  }
  std::vector<Parameter<T>*> parameters() override {
    std::vector<Parameter<T>*> all;
    for (Layer<T>* child : children())
      for (Parameter<T>* p : child->parameters()) all.push_back(p);
    return all;
  }
  std::vector<std::pair<std::string, Tensor<T>*>> buffers() override {
    std::vector<std::pair<std::string, Tensor<T>*>> all;
    for (Layer<T>* child : children())
      for (auto& [name, tensor] : child->buffers()) all.emplace_back(local_name(*child) + "." + name, tensor);
    return all;
  }
  void reset_parameters(Rng& rng) override {
    for (Layer<T>* child : children()) child->reset_parameters(rng);
  }
  void set_name(std::string name) override {
    this->set_own_name(name);
    for (std::size_t i = 0; i < body_.size(); ++i) body_[i]->set_name(name + "." + local_names_[i]);
    shortcut_->set_name(name + ".shortcut");
  }
  std::string config() const override {
    return fmt::format("{} layers, {} shortcut", body_.size(), has_projection() ? shortcut_->kind() : "identity");
  }

  Shape output_shape(const Shape& in) const override {
    if (body_.empty()) throw Error(fmt::format("{}: the residual block has no layers", this->name()));
    Shape s = in;
    for (const auto& l : body_) s = l->output_shape(s);
    const Shape shortcut = shortcut_->output_shape(in);
    if (s != shortcut)
      throw_shape_error(this->name(), fmt::format("the body gives {} but the shortcut {} (for input {}); give the "
                                                  "shortcut a projection",
                                                  s.str(), shortcut.str(), in.str()));
    return s;
  }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override {
    const Shape out = output_shape(x.shape());
    const Tensor<T>* in = &x;
    for (std::size_t i = 0; i < body_.size(); ++i) {
      this->run_child_forward(*body_[i], *in, body_outputs_[i], mode);
      in = &body_outputs_[i];
    }
    this->run_child_forward(*shortcut_, x, shortcut_output_, mode);
    y.resize(out);
    y.flat() = in->flat() + shortcut_output_.flat();
  }

  void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    // The body: dy flows back through its layers to dL/dx along the body.
    const Tensor<T>* grad = &dy;
    for (std::size_t i = body_.size(); i-- > 0;) {
      const Tensor<T>& in = i == 0 ? x : body_outputs_[i - 1];
      this->run_child_backward(*body_[i], in, body_outputs_[i], *grad, &grads_[i % 2]);
      grad = &grads_[i % 2];
    }
    // The shortcut gets the same dy; the two paths' input gradients add up.
    this->run_child_backward(*shortcut_, x, shortcut_output_, dy, &shortcut_grad_);
    if (!dx) return;
    dx->resize(x.shape());
    dx->flat() = grad->flat() + shortcut_grad_.flat();
  }

 private:
  void require_not_in_model() const {
    if (this->in_model())
      throw Error(fmt::format("{}: a block cannot change once it is in a model; build it first", this->name()));
  }

  const std::string& local_name(const Layer<T>& child) const {
    for (std::size_t i = 0; i < body_.size(); ++i)
      if (body_[i].get() == &child) return local_names_[i];
    static const std::string shortcut = "shortcut";
    return shortcut;
  }

  std::vector<std::unique_ptr<Layer<T>>> body_;
  std::vector<std::string> local_names_;
  std::map<std::string, int> kind_counts_;
  std::unique_ptr<Layer<T>> shortcut_;
  std::vector<Tensor<T>> body_outputs_;
  Tensor<T> shortcut_output_, shortcut_grad_, grads_[2];
};

GLASSBOX_PRECOMPILED_INSTANCE(class Identity<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class Residual<float>)
}  // namespace glassbox::nn
