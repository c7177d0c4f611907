#pragma once
// Recurrent layers over batch-first sequences (N, T, F): SimpleRNN (tanh),
// LSTM and GRU, with the equations, gate order and parameter layout of
// torch.nn.RNN / LSTM / GRU (one layer, unidirectional, batch_first=True):
//   weight_ih (G*H, F), weight_hh (G*H, H), bias_ih (G*H), bias_hh (G*H),
//   G = 1 (SimpleRNN), 4 (LSTM: gates i, f, g, o), 3 (GRU: r, z, n).
// (PyTorch names them weight_ih_l0 and so on.) The initial state is zero.
// Output: (N, T, H) with return_sequences, else the last hidden state (N, H).
//
// Truncated BPTT: with truncate = k > 0 the gradient does not flow from step
// t back to step t - 1 when t is a multiple of k, which is what detaching the
// state every k steps does in PyTorch; the forward pass is unchanged.
//
// Inside, per step: the input projections of all steps are one GEMM before
// the loop, then each step is one (N, H) x (H, G*H) GEMM plus the cell's
// elementwise work. The layer keeps, time-major, what backward needs and what
// the inspect/ recorders read: gate_values() (T, N, G*H) after the
// nonlinearity, hidden_states() (T, N, H), and after backward
// step_grad_norms() (T values: the L2 norm of dLoss/dh_t, the
// vanishing-gradient-through-time picture).

#include <fmt/format.h>

#include <cmath>
#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/nn/layer.hpp"

namespace glassbox::nn {

template <class T>
class Recurrent : public Layer<T> {
 public:
  struct Options {
    bool return_sequences = false;
    index_t truncate = 0;  // truncated BPTT segment length; 0: full BPTT
  };

  index_t input_size() const { return input_; }
  index_t hidden_size() const { return hidden_; }
  int gates() const { return gates_; }
  const Options& options() const { return options_; }

  Parameter<T>& weight_ih() { return weight_ih_; }
  Parameter<T>& weight_hh() { return weight_hh_; }
  Parameter<T>& bias_ih() { return bias_ih_; }
  Parameter<T>& bias_hh() { return bias_hh_; }
  std::vector<Parameter<T>*> parameters() override { return {&weight_ih_, &weight_hh_, &bias_ih_, &bias_hh_}; }

  // PyTorch's initialisation: every parameter uniform in +-1/sqrt(H).
  void reset_parameters(Rng& rng) override {
    const double bound = 1.0 / std::sqrt(static_cast<double>(hidden_));
    for (Parameter<T>* p : parameters())
      for (T& v : p->value) v = static_cast<T>(rng.uniform(-bound, bound));
  }

  std::string config() const override {
    std::string s = fmt::format("{} -> {}", input_, hidden_);
    if (options_.return_sequences) s += ", sequences";
    if (options_.truncate > 0) s += fmt::format(", truncate={}", options_.truncate);
    return s;
  }

  Shape output_shape(const Shape& in) const override {
    if (in.rank() != 3)
      throw_shape_error(this->name(), fmt::format("expects batch-first sequences (N, T, F), got {}", in.str()));
    if (in[2] != input_)
      throw_shape_error(this->name(), fmt::format("input has {} features per step, layer expects {}", in[2], input_));
    if (in[1] < 1) throw_shape_error(this->name(), fmt::format("sequences of {} steps", in[1]));
    return options_.return_sequences ? Shape{in[0], in[1], hidden_} : Shape{in[0], hidden_};
  }

  // (T, N, G*H): each step's gate values after their nonlinearity (LSTM: i,
  // f, g, o; GRU: r, z, n; SimpleRNN: h), from the last forward.
  const Tensor<T>& gate_values() const { return acts_; }
  // (T, N, H): h_1 .. h_T of the last forward.
  const Tensor<T>& hidden_states() const { return hs_; }
  // ||dLoss/dh_t|| for each step t, from the last backward.
  const std::vector<double>& step_grad_norms() const { return step_grad_norms_; }

  void forward(const Tensor<T>& x, Tensor<T>& y, Mode) override {
    const Shape out = output_shape(x.shape());
    const index_t n = x.dim(0), steps = x.dim(1), gh = gates_ * hidden_;
    // All input projections at once: P = X W_ih^T + b_ih, rows n * T + t.
    projected_.resize(Shape{n * steps, gh});
    Map(projected_.data(), n * steps, gh).noalias() = CMap(x.data(), n * steps, input_) * W(weight_ih_).transpose();
    Map(projected_.data(), n * steps, gh).rowwise() += bias_ih_.value.flat().matrix().transpose();
    acts_.resize(Shape{steps, n, gh});
    hs_.resize(Shape{steps, n, hidden_});
    cs_.resize(Shape{steps, n, hidden_});
    hh_.resize(Shape{steps, n, gh});
    zeros_.resize(Shape{n, hidden_});
    zeros_.fill(T(0));
    for (index_t t = 0; t < steps; ++t) {
      const T* h_prev = t ? hs_.data() + (t - 1) * n * hidden_ : zeros_.data();
      const T* c_prev = t ? cs_.data() + (t - 1) * n * hidden_ : zeros_.data();
      // Recurrent part W_hh h_{t-1} + b_hh, kept (the GRU needs it apart).
      auto rec = Map(hh_.data() + t * n * gh, n, gh);
      rec.noalias() = CMap(h_prev, n, hidden_) * W(weight_hh_).transpose();
      rec.rowwise() += bias_hh_.value.flat().matrix().transpose();
      step_forward(StridedMap(projected_.data() + t * gh, n, gh, Eigen::OuterStride<>(steps * gh)), rec, c_prev, h_prev,
                   acts_.data() + t * n * gh, cs_.data() + t * n * hidden_, hs_.data() + t * n * hidden_, n);
    }
    y.resize(out);
    if (options_.return_sequences) {
      for (index_t t = 0; t < steps; ++t)
        StridedMap(y.data() + t * hidden_, n, hidden_, Eigen::OuterStride<>(steps * hidden_)) =
            CMap(hs_.data() + t * n * hidden_, n, hidden_);
    } else {
      Map(y.data(), n, hidden_) = CMap(hs_.data() + (steps - 1) * n * hidden_, n, hidden_);
    }
  }

  void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
    const index_t n = x.dim(0), steps = x.dim(1), gh = gates_ * hidden_;
    const bool grads = this->parameter_grads_wanted();
    // Gradients wrt the pre-activations: input part (N*T rows, batch-major,
    // for W_ih, b_ih and dx) and recurrent part (per step, for W_hh, b_hh).
    d_input_.resize(Shape{n * steps, gh});
    d_rec_.resize(Shape{n, gh});
    dh_.resize(Shape{n, hidden_});
    dc_.resize(Shape{n, hidden_});
    dh_next_.resize(Shape{n, hidden_});
    dc_next_.resize(Shape{n, hidden_});
    dh_next_.fill(T(0));
    dc_next_.fill(T(0));
    if (grads) {
      weight_hh_.grad.resize(weight_hh_.value.shape());
      weight_hh_.grad.fill(T(0));
      bias_hh_.grad.resize(bias_hh_.value.shape());
      bias_hh_.grad.fill(T(0));
    }
    step_grad_norms_.assign(static_cast<std::size_t>(steps), 0.0);
    for (index_t t = steps - 1; t >= 0; --t) {
      auto dh = Map(dh_.data(), n, hidden_);
      dh = Map(dh_next_.data(), n, hidden_);
      if (options_.return_sequences)
        dh += CStridedMap(dy.data() + t * hidden_, n, hidden_, Eigen::OuterStride<>(steps * hidden_));
      else if (t == steps - 1)
        dh += CMap(dy.data(), n, hidden_);
      step_grad_norms_[static_cast<std::size_t>(t)] = static_cast<double>(dh.norm());
      const T* h_prev = t ? hs_.data() + (t - 1) * n * hidden_ : zeros_.data();
      const T* c_prev = t ? cs_.data() + (t - 1) * n * hidden_ : zeros_.data();
      // The cell writes d(input part) for this step, d(recurrent part), the
      // direct part of dh_{t-1} into dh_next_ and dc_{t-1} into dc_next_.
      step_backward(t, n, steps, h_prev, c_prev,
                    StridedMap(d_input_.data() + t * gh, n, gh, Eigen::OuterStride<>(steps * gh)));
      const auto d_rec = CMap(d_rec_.data(), n, gh);
      if (grads) {
        W(weight_hh_.grad).noalias() += d_rec.transpose() * CMap(h_prev, n, hidden_);
        bias_hh_.grad.flat() += d_rec.colwise().sum().transpose().array();
      }
      if (options_.truncate > 0 && t % options_.truncate == 0) {
        dh_next_.fill(T(0));  // the segment boundary: no gradient into step t - 1
        dc_next_.fill(T(0));
      } else {
        Map(dh_next_.data(), n, hidden_).noalias() += d_rec * W(weight_hh_);
      }
    }
    const auto d_in = CMap(d_input_.data(), n * steps, gh);
    if (grads) {
      weight_ih_.grad.resize(weight_ih_.value.shape());
      W(weight_ih_.grad).noalias() = d_in.transpose() * CMap(x.data(), n * steps, input_);
      bias_ih_.grad.resize(bias_ih_.value.shape());
      bias_ih_.grad.flat() = d_in.colwise().sum().transpose().array();
    }
    if (dx) {
      dx->resize(x.shape());
      Map(dx->data(), n * steps, input_).noalias() = d_in * W(weight_ih_);
    }
  }

 protected:
  using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using MapM = Eigen::Map<Matrix>;
  using CMapM = Eigen::Map<const Matrix>;
  using SMap = Eigen::Map<Matrix, 0, Eigen::OuterStride<>>;
  using CSMap = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>;
  static MapM Map(T* p, index_t r, index_t c) { return MapM(p, r, c); }
  static CMapM CMap(const T* p, index_t r, index_t c) { return CMapM(p, r, c); }
  static SMap StridedMap(T* p, index_t r, index_t c, Eigen::OuterStride<> s) { return SMap(p, r, c, s); }
  static CSMap CStridedMap(const T* p, index_t r, index_t c, Eigen::OuterStride<> s) { return CSMap(p, r, c, s); }
  static MapM W(Tensor<T>& t) { return MapM(t.data(), t.dim(0), t.dim(1)); }
  static MapM W(Parameter<T>& p) { return W(p.value); }
  static auto sigmoid(T v) { return T(1) / (T(1) + std::exp(-v)); }

  Recurrent(const char* kind, index_t input_size, index_t hidden_size, int gates, Options options)
      : input_(input_size),
        hidden_(hidden_size),
        gates_(gates),
        options_(options),
        weight_ih_("weight_ih", Shape{gates * std::max<index_t>(hidden_size, 0), std::max<index_t>(input_size, 0)}),
        weight_hh_("weight_hh", Shape{gates * std::max<index_t>(hidden_size, 0), std::max<index_t>(hidden_size, 0)}),
        bias_ih_("bias_ih", Shape{gates * std::max<index_t>(hidden_size, 0)}),
        bias_hh_("bias_hh", Shape{gates * std::max<index_t>(hidden_size, 0)}) {
    if (input_size <= 0 || hidden_size <= 0)
      throw Error(fmt::format("{}: sizes must be positive, got input={} hidden={}", kind, input_size, hidden_size));
    if (options.truncate < 0) throw Error(fmt::format("{}: truncate must be >= 0, got {}", kind, options.truncate));
  }

  // One step forward. pre: x_t W_ih^T + b_ih (N, G*H); rec: h_{t-1} W_hh^T +
  // b_hh (N, G*H). Writes the gate values, c_t (LSTM; others may ignore) and h_t.
  virtual void step_forward(SMap pre, MapM rec, const T* c_prev, const T* h_prev, T* acts, T* c, T* h, index_t n) = 0;
  // One step backward from dh_ (and dc_next_ for the LSTM): writes d_input
  // (N, G*H), d_rec_, and sets dh_next_ to the part of dh_{t-1} not through
  // W_hh (GRU: z * dh) and dc_next_ to dc_{t-1}.
  virtual void step_backward(index_t t, index_t n, index_t steps, const T* h_prev, const T* c_prev, SMap d_input) = 0;

  index_t input_, hidden_;
  int gates_;
  Options options_;
  Parameter<T> weight_ih_, weight_hh_, bias_ih_, bias_hh_;
  Tensor<T> projected_, acts_, hs_, cs_, hh_, zeros_;
  Tensor<T> d_input_, d_rec_, dh_, dc_, dh_next_, dc_next_;
  std::vector<double> step_grad_norms_;
};

// h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)  (torch.nn.RNN, tanh)
template <class T>
class SimpleRNN : public Recurrent<T> {
 public:
  using Options = typename Recurrent<T>::Options;
  SimpleRNN(index_t input_size, index_t hidden_size, Options options = {})
      : Recurrent<T>("simple_rnn", input_size, hidden_size, 1, options) {}
  std::string kind() const override { return "simple_rnn"; }

 protected:
  using typename Recurrent<T>::SMap;
  using typename Recurrent<T>::MapM;
  void step_forward(SMap pre, MapM rec, const T*, const T*, T* acts, T* c, T* h, index_t n) override {
    const index_t H = this->hidden_;
    auto out = this->Map(h, n, H);
    out = (pre + rec).array().tanh();
    this->Map(acts, n, H) = out;
    this->Map(c, n, H).setZero();
  }
  void step_backward(index_t t, index_t n, index_t, const T*, const T*, SMap d_input) override {
    const index_t H = this->hidden_;
    const auto h = this->CMap(this->hs_.data() + t * n * H, n, H).array();
    auto d = this->Map(this->d_rec_.data(), n, H);
    d = (this->CMap(this->dh_.data(), n, H).array() * (T(1) - h * h)).matrix();
    d_input = d;
    this->dh_next_.fill(T(0));
  }
};

// torch.nn.LSTM: gates i, f, g, o;  c_t = f c_{t-1} + i g;  h_t = o tanh(c_t).
template <class T>
class LSTM : public Recurrent<T> {
 public:
  using Options = typename Recurrent<T>::Options;
  LSTM(index_t input_size, index_t hidden_size, Options options = {})
      : Recurrent<T>("lstm", input_size, hidden_size, 4, options) {}
  std::string kind() const override { return "lstm"; }
  // (T, N, H): the cell states c_1 .. c_T of the last forward.
  const Tensor<T>& cell_states() const { return this->cs_; }

 protected:
  using typename Recurrent<T>::SMap;
  using typename Recurrent<T>::MapM;
  void step_forward(SMap pre, MapM rec, const T* c_prev, const T*, T* acts, T* c, T* h, index_t n) override {
    const index_t H = this->hidden_;
    auto a = this->Map(acts, n, 4 * H);
    a = pre + rec;
    a.leftCols(2 * H) = a.leftCols(2 * H).unaryExpr([](T v) { return Recurrent<T>::sigmoid(v); });
    a.middleCols(2 * H, H) = a.middleCols(2 * H, H).array().tanh().matrix();
    a.rightCols(H) = a.rightCols(H).unaryExpr([](T v) { return Recurrent<T>::sigmoid(v); });
    auto cell = this->Map(c, n, H);
    cell = (a.middleCols(H, H).array() * this->CMap(c_prev, n, H).array() +
            a.leftCols(H).array() * a.middleCols(2 * H, H).array())
               .matrix();
    this->Map(h, n, H) = (a.rightCols(H).array() * cell.array().tanh()).matrix();
  }
  void step_backward(index_t t, index_t n, index_t, const T*, const T* c_prev, SMap d_input) override {
    const index_t H = this->hidden_;
    const auto a = this->CMap(this->acts_.data() + t * n * 4 * H, n, 4 * H);
    const auto i = a.leftCols(H).array(), f = a.middleCols(H, H).array(), g = a.middleCols(2 * H, H).array(),
               o = a.rightCols(H).array();
    const auto tc = this->CMap(this->cs_.data() + t * n * H, n, H).array().tanh().eval();
    const auto dh = this->CMap(this->dh_.data(), n, H).array();
    auto dc = this->Map(this->dc_.data(), n, H).array();
    dc = dh * o * (T(1) - tc * tc) + this->CMap(this->dc_next_.data(), n, H).array();
    auto d = this->Map(this->d_rec_.data(), n, 4 * H);
    d.leftCols(H) = (dc * g * i * (T(1) - i)).matrix();
    d.middleCols(H, H) = (dc * this->CMap(c_prev, n, H).array() * f * (T(1) - f)).matrix();
    d.middleCols(2 * H, H) = (dc * i * (T(1) - g * g)).matrix();
    d.rightCols(H) = (dh * tc * o * (T(1) - o)).matrix();
    d_input = d;
    this->Map(this->dc_next_.data(), n, H) = (dc * f).matrix();
    this->dh_next_.fill(T(0));
  }
};

// torch.nn.GRU: gates r, z, n;  n = tanh(x W_in + b_in + r (h W_hn + b_hn));
// h_t = (1 - z) n + z h_{t-1}.
template <class T>
class GRU : public Recurrent<T> {
 public:
  using Options = typename Recurrent<T>::Options;
  GRU(index_t input_size, index_t hidden_size, Options options = {})
      : Recurrent<T>("gru", input_size, hidden_size, 3, options) {}
  std::string kind() const override { return "gru"; }

 protected:
  using typename Recurrent<T>::SMap;
  using typename Recurrent<T>::MapM;
  void step_forward(SMap pre, MapM rec, const T*, const T* h_prev, T* acts, T* c, T* h, index_t n) override {
    const index_t H = this->hidden_;
    auto a = this->Map(acts, n, 3 * H);
    a.leftCols(2 * H) =
        (pre.leftCols(2 * H) + rec.leftCols(2 * H)).unaryExpr([](T v) { return Recurrent<T>::sigmoid(v); });
    a.rightCols(H) = (pre.rightCols(H).array() + a.leftCols(H).array() * rec.rightCols(H).array()).tanh().matrix();
    const auto z = a.middleCols(H, H).array();
    this->Map(h, n, H) = ((T(1) - z) * a.rightCols(H).array() + z * this->CMap(h_prev, n, H).array()).matrix();
    this->Map(c, n, H).setZero();
  }
  void step_backward(index_t t, index_t n, index_t, const T* h_prev, const T*, SMap d_input) override {
    const index_t H = this->hidden_;
    const auto a = this->CMap(this->acts_.data() + t * n * 3 * H, n, 3 * H);
    const auto r = a.leftCols(H).array(), z = a.middleCols(H, H).array(), cand = a.rightCols(H).array();
    const auto hn = this->CMap(this->hh_.data() + t * n * 3 * H, n, 3 * H).rightCols(H).array();
    const auto dh = this->CMap(this->dh_.data(), n, H).array();
    const auto dn = (dh * (T(1) - z) * (T(1) - cand * cand)).eval();
    d_input.leftCols(H) = (dn * hn * r * (T(1) - r)).matrix();
    d_input.middleCols(H, H) = (dh * (this->CMap(h_prev, n, H).array() - cand) * z * (T(1) - z)).matrix();
    d_input.rightCols(H) = dn.matrix();
    auto d = this->Map(this->d_rec_.data(), n, 3 * H);
    d.leftCols(2 * H) = d_input.leftCols(2 * H);
    d.rightCols(H) = (dn * r).matrix();
    this->Map(this->dh_next_.data(), n, H) = (dh * z).matrix();
  }
};

GLASSBOX_PRECOMPILED_INSTANCE(class Recurrent<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class SimpleRNN<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class LSTM<float>)
GLASSBOX_PRECOMPILED_INSTANCE(class GRU<float>)
}  // namespace glassbox::nn
