#pragma once
// Knowledge distillation (Hinton et al., 2015): a student learns from a
// teacher's softened outputs as well as from the labels,
//   loss = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(y, z_s)
// averaged over the batch (KL summed over classes: PyTorch's
// KLDivLoss(reduction="batchmean")). T^2 keeps the soft term's gradient on
// the scale of the hard one as T grows.
//
// The targets carry both: row i is (label_i, teacher logits_i...), made by
// targets(). Teacher logits are computed once up front (teacher.predict), so
// fit() shuffles and batches them with the labels and the teacher never runs
// inside the training loop.

#include <fmt/format.h>

#include <cmath>

#include "glassbox/nn/cross_entropy_loss.hpp"
#include "glassbox/nn/functional.hpp"

namespace glassbox::distill {

// (N) labels and (N, C) teacher logits -> (N, 1 + C) distillation targets.
template <class T>
Tensor<T> targets(const Tensor<T>& labels, const Tensor<T>& teacher_logits) {
  if (labels.rank() != 1 || teacher_logits.rank() != 2 || labels.dim(0) != teacher_logits.dim(0))
    throw Error(fmt::format("distill::targets: labels {} and teacher logits {} must be (N) and (N, classes)",
                            labels.shape().str(), teacher_logits.shape().str()));
  const index_t n = labels.dim(0), c = teacher_logits.dim(1);
  Tensor<T> t(Shape{n, c + 1});
  for (index_t i = 0; i < n; ++i) {
    t[i * (c + 1)] = labels[i];
    std::copy_n(teacher_logits.data() + i * c, c, t.data() + i * (c + 1) + 1);
  }
  return t;
}

template <class T>
class DistillationLoss : public nn::Loss<T> {
 public:
  DistillationLoss(T alpha, T temperature) : alpha_(alpha), temperature_(temperature) {
    if (!(alpha >= T(0) && alpha <= T(1)))
      throw Error(fmt::format("distillation: alpha must lie in [0, 1], got {}", alpha));
    if (!(temperature > T(0)))
      throw Error(fmt::format("distillation: temperature must be positive, got {}", temperature));
  }
  std::string name() const override { return "distillation"; }
  T alpha() const { return alpha_; }
  T temperature() const { return temperature_; }

  T forward(const Tensor<T>& output, const Tensor<T>& target, Tensor<T>* grad) const override {
    split(output, target);
    const index_t n = output.dim(0);
    T loss = alpha_ == T(1) ? T(0) : (T(1) - alpha_) * hard_.forward(output, labels_, grad ? &hard_grad_ : nullptr);
    if (grad) {
      grad->resize(output.shape());
      if (alpha_ == T(1))
        grad->set_zero();
      else
        grad->flat() = (T(1) - alpha_) * hard_grad_.flat();
    }
    if (alpha_ == T(0)) return loss;
    // Softened distributions from logits / T, as log-softmax for a stable KL.
    const auto zs = (output.matrix() / temperature_).eval();
    const auto zt = (teacher_.matrix() / temperature_).eval();
    const auto log_ps = log_softmax(zs);
    const auto log_pt = log_softmax(zt);
    const auto pt = log_pt.array().exp().eval();
    const T kl = (pt * (log_pt - log_ps).array()).sum() / T(n);
    loss += alpha_ * temperature_ * temperature_ * kl;
    if (grad)  // d/dz_s of alpha T^2 KL = alpha T (p_s - p_t) / n
      grad->matrix() += (alpha_ * temperature_ / T(n)) * (log_ps.array().exp() - pt).matrix();
    return loss;
  }

  nn::Tally tally(const Tensor<T>& output, const Tensor<T>& target) const override {
    split(output, target);
    return hard_.tally(output, labels_);
  }

 private:
  using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  static Matrix log_softmax(const Matrix& z) {
    Matrix y(z.rows(), z.cols());
    nn::functional::log_softmax_rows(z, y);
    return y;
  }

  // Labels and teacher logits out of the (N, 1 + C) targets.
  void split(const Tensor<T>& output, const Tensor<T>& target) const {
    if (output.rank() != 2 || target.rank() != 2 || target.dim(0) != output.dim(0) ||
        target.dim(1) != output.dim(1) + 1)
      throw Error(
          fmt::format("{}: logits {} need targets of shape (N, 1 + classes) = ({}, {}) from "
                      "distill::targets(), got {}",
                      name(), output.shape().str(), output.dim(0), output.rank() == 2 ? output.dim(1) + 1 : 0,
                      target.shape().str()));
    const index_t n = output.dim(0), c = output.dim(1);
    labels_.resize(Shape{n});
    teacher_.resize(output.shape());
    for (index_t i = 0; i < n; ++i) {
      labels_[i] = target[i * (c + 1)];
      std::copy_n(target.data() + i * (c + 1) + 1, c, teacher_.data() + i * c);
    }
  }

  T alpha_, temperature_;
  nn::SoftmaxCrossEntropy<T> hard_;
  mutable Tensor<T> labels_, teacher_, hard_grad_;  // per-batch workspaces
};

}  // namespace glassbox::distill
