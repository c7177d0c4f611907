#pragma once
// Sequential's passes (model/sequential.hpp): forward and backward through
// the layers, and running a layer and the next as one pass when the layer
// offers it (Layer::fuses_next: Conv2D with the MaxPool2D after it) and no
// hook watches either. Included at the end of sequential.hpp: these are its
// members.

#include <fmt/format.h>

#include <algorithm>

#include "glassbox/model/sequential.hpp"

namespace glassbox {

template <class T>
const Tensor<T>& Sequential<T>::forward(const Tensor<T>& x, Mode mode) {
  if (layers_.empty()) throw Error("Sequential::forward: the model has no layers");
  if (sample_shape_ && (x.rank() == 0 || x.shape().sample() != *sample_shape_))
    throw Error(fmt::format("model input: expected samples of shape {}, got a batch of shape {}", sample_shape_->str(),
                            x.shape().str()));
  input_.resize(x.shape());
  std::copy(x.begin(), x.end(), input_.begin());
  has_forward_ = false;  // until every layer (and hook) has run
  has_input_grad_ = false;
  context_.mode = mode;
  context_.step = mode == Mode::train ? training_steps_++ : training_steps_;
  if (hooks_) hooks_->now = context_;  // what hook schedules are asked about in this pass
  const bool hooked =
      hooks_enabled && hooks_ && !(hooks_->pre.empty() && hooks_->forward.empty() && hooks_->output_block.empty());
  Tensor<T>* in = &input_;
  Runner runner(*this);
  PassScope pass(*this);
  std::fill(fused_.begin(), fused_.end(), false);
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->output_shape(in->shape());
    if (fuses_with_next(i, in->shape())) {
      layers_[i]->forward_fused(*in, *layers_[i + 1], outputs_[i + 1]);
      fused_[i] = true;
      in = &outputs_[++i];
      continue;
    }
    if (hooked) run_forward_pre_hooks(i, *in);
    layers_[i]->set_child_runner(nested_.empty() ? nullptr : &runner);
    if (hooked && !hooks_->output_block.empty())
      forward_with_block_hooks(i, *in, mode);
    else
      layers_[i]->forward(*in, outputs_[i], mode);
    if (hooked) run_forward_hooks(i, *in, outputs_[i]);
    in = &outputs_[i];
  }
  has_forward_ = true;
  return *in;
}

template <class T>
void Sequential<T>::backward_from(std::size_t last, const Tensor<T>& grad_output, bool want_input_grad,
                                  ParamGrads params) {
  if (!has_forward_) throw Error("Sequential::backward: call forward first");
  if (hooks_) hooks_->now = context_;
  if (last >= layers_.size())
    throw Error(
        fmt::format("Sequential::backward: layer index {} out of range (model has {} layers)", last, layers_.size()));
  for (std::size_t i = 0; i <= last; ++i)
    if (fused_[i] && (i == last || watched_in_backward(i) || watched_in_backward(i + 1))) unfuse(i);
  if (grad_output.shape() != outputs_[last].shape())
    throw Error(fmt::format("Sequential::backward: gradient shape {} differs from {}'s output shape {}",
                            grad_output.shape().str(), layers_[last]->name(), outputs_[last].shape().str()));
  const bool hooked = hooks_enabled && hooks_ && !hooks_->backward.empty();
  const bool grad_blocks = hooks_enabled && hooks_ && !hooks_->output_grad_block.empty();
  const bool first_input_grad = want_input_grad || (hooked && hooks_->backward.watches(0, /*through_all=*/false));
  has_input_grad_ = false;
  const Tensor<T>* dy = &grad_output;
  if (grads_.size() < layers_.size()) grads_.resize(layers_.size());
  Runner runner(*this);
  PassScope pass(*this);
  for (std::size_t i = last + 1; i-- > 0;) {
    const bool pair = i > 0 && fused_[i - 1];  // layers i - 1 and i ran as one pass
    const std::size_t first = pair ? i - 1 : i;
    const Tensor<T>& x = first == 0 ? input_ : outputs_[first - 1];
    Tensor<T>* dx = (first > 0 || first_input_grad) ? &grads_[first] : nullptr;
    layers_[first]->want_parameter_grads(params == ParamGrads::compute);
    if (pair) {
      layers_[first]->backward_fused(x, outputs_[i], *dy, dx);
      dy = dx;
      i = first;
      continue;
    }
    layers_[i]->set_child_runner(nested_.empty() ? nullptr : &runner);
    if (grad_blocks && dx)
      backward_with_block_hooks(i, x, *dy, *dx);
    else
      layers_[i]->backward(x, outputs_[i], *dy, dx);
    if (hooked) run_backward_hooks(i, *dy, dx);
    dy = dx;
  }
  if (hooks_enabled && hooks_ && !hooks_->param_grad.empty() && params == ParamGrads::compute)
    run_param_grad_hooks(last);
  has_input_grad_ = first_input_grad;
}

template <class T>
bool Sequential<T>::fuses_with_next(std::size_t i, const Shape& in) const {
  if (i + 1 >= layers_.size() || !layers_[i]->fuses_next(in, *layers_[i + 1])) return false;
  for (std::size_t j : {i, i + 1})
    if (hooks_enabled && hooks_ && (hooks_->watches_in_forward(j) || hooks_->watches_in_backward(j))) return false;
  layers_[i + 1]->output_shape(layers_[i]->output_shape(in));
  return true;
}

template <class T>
void Sequential<T>::unfuse(std::size_t i) {
  const Tensor<T>& x = i == 0 ? input_ : outputs_[i - 1];
  layers_[i]->forward(x, outputs_[i], context_.mode);
  layers_[i + 1]->forward(outputs_[i], outputs_[i + 1], context_.mode);
  fused_[i] = false;
}

}  // namespace glassbox
