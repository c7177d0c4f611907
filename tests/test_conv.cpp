// Convolution and pooling (nn/conv2d.hpp, max_pool2d.hpp, avg_pool2d.hpp,
// flatten.hpp): gradient checks, PyTorch parity, shapes and errors.
#include "support.hpp"

using namespace glassbox;
using Catch::Matchers::Contains;
using nn::Padding;
using nn::Size2;
using test::check_layer_gradients;
using test::check_layer_parity;
using test::random_tensor;

template class glassbox::nn::Conv2D<float>;
template class glassbox::nn::MaxPool2D<float>;
template class glassbox::nn::AvgPool2D<float>;
template class glassbox::nn::GlobalAvgPool2D<float>;
template class glassbox::nn::Flatten<float>;

namespace {

template <class T>
typename nn::Conv2D<T>::Options conv_options(Size2 stride, Padding padding, Size2 pad, Size2 dilation, bool bias) {
  typename nn::Conv2D<T>::Options o;
  o.stride = stride;
  o.padding = padding;
  o.pad = pad;
  o.dilation = dilation;
  o.bias = bias;
  return o;
}

// The Conv2D variants of golden/conv.txt.
template <class T>
nn::Conv2D<T> conv_variant(const std::string& name) {
  if (name == "conv_valid") return nn::Conv2D<T>(3, 4, {3, 3});
  if (name == "conv_stride_pad")
    return nn::Conv2D<T>(3, 4, {3, 2}, conv_options<T>({2, 1}, Padding::explicit_, {1, 2}, {1, 1}, true));
  if (name == "conv_same_dilated")
    return nn::Conv2D<T>(3, 4, {3, 3}, conv_options<T>({1, 1}, Padding::same, {0, 0}, {2, 2}, true));
  if (name == "conv_1x1_nobias")
    return nn::Conv2D<T>(3, 4, {1, 1}, conv_options<T>({1, 1}, Padding::valid, {0, 0}, {1, 1}, false));
  auto fused = conv_options<T>({1, 1}, Padding::explicit_, {1, 1}, {1, 1}, true);
  fused.activation = nn::Activation::relu;
  return nn::Conv2D<T>(3, 4, {3, 3}, fused);
}

const char* const conv_names[] = {"conv_valid", "conv_stride_pad", "conv_same_dilated", "conv_1x1_nobias", "conv_relu"};

}  // namespace

TEST_CASE("Gradient check: Conv2D in every configuration (double)") {
  Rng rng(17);
  const Tensor<double> x = random_tensor(Shape{2, 3, 7, 6}, rng);
  for (const char* name : conv_names) {
    nn::Conv2D<double> conv = conv_variant<double>(name);
    conv.set_name(name);
    check_layer_gradients(conv, x);
  }
  SECTION("same padding with stride 2 (asymmetric pads)") {
    nn::Conv2D<double> conv(3, 2, {4, 3}, conv_options<double>({2, 2}, Padding::same, {0, 0}, {1, 1}, true));
    CHECK(conv.output_shape(x.shape()) == Shape{2, 2, 4, 3});
    check_layer_gradients(conv, x);
  }
}

TEST_CASE("Gradient check: pooling and flatten (double)") {
  Rng rng(5);
  const Tensor<double> x = random_tensor(Shape{2, 3, 7, 6}, rng);
  nn::MaxPool2D<double> max_pool({2, 2});
  check_layer_gradients(max_pool, x);
  nn::MaxPool2D<double> max_pool_padded({3, 3}, {{2, 2}, Padding::explicit_, {1, 1}});
  check_layer_gradients(max_pool_padded, x);
  nn::AvgPool2D<double> avg_pool({2, 2});
  check_layer_gradients(avg_pool, x);
  nn::AvgPool2D<double> avg_pool_same({3, 3}, {{2, 2}, Padding::same, {0, 0}}, false);
  check_layer_gradients(avg_pool_same, x);
  nn::GlobalAvgPool2D<double> global;
  check_layer_gradients(global, x);
  nn::Flatten<double> flatten;
  check_layer_gradients(flatten, x);
}

TEMPLATE_TEST_CASE("PyTorch parity: Conv2D (OIHW weights) and pooling", "", float, double) {
  using T = TestType;
  for (const char* name : conv_names) {
    nn::Conv2D<T> conv = conv_variant<T>(name);
    check_layer_parity(conv, "conv", name);
  }
  nn::MaxPool2D<T> max_pool({2, 2});
  check_layer_parity(max_pool, "conv", "max_pool");
  nn::MaxPool2D<T> max_pool_padded({3, 3}, {{2, 2}, Padding::explicit_, {1, 1}});
  check_layer_parity(max_pool_padded, "conv", "max_pool_stride_pad");
  nn::AvgPool2D<T> avg_pool({2, 2});
  check_layer_parity(avg_pool, "conv", "avg_pool");
  nn::AvgPool2D<T> avg_pool_padded({3, 3}, {{2, 2}, Padding::explicit_, {1, 1}});
  check_layer_parity(avg_pool_padded, "conv", "avg_pool_pad");
  nn::AvgPool2D<T> avg_pool_exclude({3, 3}, {{2, 2}, Padding::explicit_, {1, 1}}, false);
  check_layer_parity(avg_pool_exclude, "conv", "avg_pool_pad_exclude");
  nn::GlobalAvgPool2D<T> global;
  check_layer_parity(global, "conv", "global_avg_pool");
  nn::Flatten<T> flatten;
  check_layer_parity(flatten, "conv", "flatten");
}

TEST_CASE("MaxPool2D 2x2: every row length, ties and NaN as PyTorch (first maximum, last NaN)") {
  Rng rng(8);
  for (index_t width : {5, 7, 16, 26, 34}) {   // 2, 3, 8, 13 and 17 outputs per row: short rows and blocks of 8
    const index_t height = width % 2 ? 7 : 6;  // an odd last row in no window, too
    Tensor<float> x(Shape{2, 3, height, width});
    for (float& v : x) v = static_cast<float>(rng.below(3));  // many ties
    for (int k = 0; k < 6; ++k) x[static_cast<index_t>(rng.below(static_cast<std::uint64_t>(x.size())))] = NAN;
    nn::MaxPool2D<float> pool({2, 2});
    Tensor<float> y, dx;
    pool.forward(x, y, Mode::train);
    const index_t oh = height / 2, ow = width / 2;
    REQUIRE(y.shape() == Shape{2, 3, oh, ow});
    Tensor<float> dy(y.shape());
    for (index_t k = 0; k < dy.size(); ++k) dy[k] = static_cast<float>(k + 1);
    dx = Tensor<float>(x.shape(), 5.0f);  // a reused buffer: every value must be overwritten
    pool.backward(x, y, dy, &dx);
    Tensor<float> expected_dx(x.shape());
    for (index_t plane = 0; plane < 6; ++plane)
      for (index_t oy = 0; oy < oh; ++oy)
        for (index_t ox = 0; ox < ow; ++ox) {
          index_t best = -1;  // scan order; a larger value or a NaN takes the window
          for (index_t i = 2 * oy; i < 2 * oy + 2; ++i)
            for (index_t j = 2 * ox; j < 2 * ox + 2; ++j) {
              const index_t k = (plane * height + i) * width + j;
              if (best < 0 || x[k] > x[best] || std::isnan(x[k])) best = k;
            }
          const index_t o = (plane * oh + oy) * ow + ox;
          INFO("width " << width << ", output " << o);
          CHECK((y[o] == x[best] || (std::isnan(y[o]) && std::isnan(x[best]))));
          expected_dx[best] += dy[o];
        }
    CHECK((dx.flat() == expected_dx.flat()).all());
  }
}

namespace {

// A valid, stride-1 convolution by plain double loops: y, and from dy the
// gradients dW, db and dx (through the fused ReLU where asked).
struct PlainConv {
  Tensor<double> y, dw, db, dx;
};
PlainConv plain_conv(const Tensor<double>& x, const Tensor<double>& w, const Tensor<double>* b, bool relu,
                     const Tensor<double>& dy) {
  const index_t n = x.dim(0), in = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const index_t out = w.dim(0), kh = w.dim(2), kw = w.dim(3), oh = h - kh + 1, ow = wd - kw + 1;
  PlainConv r{Tensor<double>(Shape{n, out, oh, ow}), Tensor<double>(w.shape()), Tensor<double>(Shape{out}),
              Tensor<double>(x.shape())};
  auto X = [&](index_t s, index_t c, index_t i, index_t j) { return x[((s * in + c) * h + i) * wd + j]; };
  auto W = [&](index_t o, index_t c, index_t i, index_t j) { return w[((o * in + c) * kh + i) * kw + j]; };
  for (index_t s = 0; s < n; ++s)
    for (index_t o = 0; o < out; ++o)
      for (index_t i = 0; i < oh; ++i)
        for (index_t j = 0; j < ow; ++j) {
          double sum = b ? (*b)[o] : 0.0;
          for (index_t c = 0; c < in; ++c)
            for (index_t ki = 0; ki < kh; ++ki)
              for (index_t kj = 0; kj < kw; ++kj) sum += W(o, c, ki, kj) * X(s, c, i + ki, j + kj);
          const index_t at = ((s * out + o) * oh + i) * ow + j;
          r.y[at] = relu ? std::max(sum, 0.0) : sum;
          const double g = relu && sum <= 0 ? 0.0 : dy[at];
          r.db[o] += g;
          for (index_t c = 0; c < in; ++c)
            for (index_t ki = 0; ki < kh; ++ki)
              for (index_t kj = 0; kj < kw; ++kj) {
                r.dw[((o * in + c) * kh + ki) * kw + kj] += g * X(s, c, i + ki, j + kj);
                r.dx[((s * in + c) * h + i + ki) * wd + j + kj] += g * W(o, c, ki, kj);
              }
        }
  return r;
}

template <class T>
void check_against_plain_loops(index_t in, index_t out, Size2 kernel, index_t h, index_t w, bool relu, bool bias,
                               double tolerance, bool direct) {
  INFO(in << " -> " << out << " channels, " << kernel.h << "x" << kernel.w << " on " << h << "x" << w
          << (relu ? ", relu" : "") << (bias ? ", bias" : ""));
  CHECK(nn::detail::DirectConv::applies(in, kernel.h, kernel.w, w - kernel.w + 1, true, true) == direct);
  Rng rng(static_cast<std::uint64_t>(in * 100 + out * 10 + h + w));
  typename nn::Conv2D<T>::Options options;
  options.bias = bias;
  options.activation = relu ? nn::Activation::relu : nn::Activation::none;
  nn::Conv2D<T> conv(in, out, kernel, options);
  conv.weight().value = test::cast<T>(random_tensor(conv.weight().value.shape(), rng));
  if (bias) conv.bias().value = test::cast<T>(random_tensor(Shape{out}, rng, -0.3, 0.3));
  const Tensor<double> x = random_tensor(Shape{3, in, h, w}, rng);
  const Tensor<double> dy = random_tensor(Shape{3, out, h - kernel.h + 1, w - kernel.w + 1}, rng);
  Tensor<double> wd(conv.weight().value.shape()), bd(Shape{out});
  for (index_t i = 0; i < wd.size(); ++i) wd[i] = static_cast<double>(conv.weight().value[i]);
  if (bias)
    for (index_t i = 0; i < out; ++i) bd[i] = static_cast<double>(conv.bias().value[i]);
  const Tensor<T> xt = test::cast<T>(x), dyt = test::cast<T>(dy);
  const Tensor<double> xr = [&] {  // the reference sees the same (rounded) inputs
    Tensor<double> r(x.shape());
    for (index_t i = 0; i < r.size(); ++i) r[i] = static_cast<double>(xt[i]);
    return r;
  }();
  Tensor<double> dyr(dy.shape());
  for (index_t i = 0; i < dyr.size(); ++i) dyr[i] = static_cast<double>(dyt[i]);
  const PlainConv expected = plain_conv(xr, wd, bias ? &bd : nullptr, relu, dyr);
  Tensor<T> y, dx;
  conv.forward(xt, y, Mode::train);
  conv.backward(xt, y, dyt, &dx);
  CHECK(test::relative_error(y, expected.y) < tolerance);
  CHECK(test::relative_error(conv.weight().grad, expected.dw) < tolerance);
  if (bias) CHECK(test::relative_error(conv.bias().grad, expected.db) < tolerance);
  CHECK(test::relative_error(dx, expected.dx) < tolerance);
  if (relu) CHECK(y.flat().minCoeff() == T(0));  // the ReLU did cut
}

}  // namespace

TEMPLATE_TEST_CASE("Conv2D: the direct kernels for small patches and the GEMM path agree with plain loops", "[direct]",
                   float, double) {
  const double tolerance = std::is_same_v<TestType, float> ? 1e-5 : 1e-12;
  // The direct kernels (nn/conv_direct.hpp): patches of at most 32 values, rows of 16 outputs or more.
  check_against_plain_loops<TestType>(1, 32, {3, 3}, 28, 28, true, true, tolerance, true);  // the seed CNN's layer
  check_against_plain_loops<TestType>(1, 5, {3, 3}, 10, 21, true, true, tolerance,
                                      true);  // channels 4 + 1, rows 16 + 3
  check_against_plain_loops<TestType>(3, 6, {3, 3}, 12, 20, false, false, tolerance, true);  // 27 taps: 3 blocks of 9
  check_against_plain_loops<TestType>(2, 3, {5, 3}, 9, 20, true, false, tolerance, true);    // 30 taps: 3 blocks of 10
  check_against_plain_loops<TestType>(1, 4, {1, 8}, 3, 23, false, true, tolerance, true);    // rows of exactly 16
  // The GEMM path: deeper patches, or rows shorter than the direct kernels' block.
  check_against_plain_loops<TestType>(4, 6, {3, 3}, 11, 20, true, true, tolerance, false);  // 36 taps
  check_against_plain_loops<TestType>(1, 5, {3, 3}, 9, 17, true, true, tolerance, false);   // rows of 15
}

TEST_CASE("Gradient check: Conv2D through the direct kernels (double)", "[direct]") {
  Rng rng(23);
  nn::Conv2D<double> plain(2, 5, {3, 3});
  plain.set_name("plain");
  check_layer_gradients(plain, random_tensor(Shape{2, 2, 5, 18}, rng));  // rows of 16
  nn::Conv2D<double>::Options relu;
  relu.activation = nn::Activation::relu;
  nn::Conv2D<double> fused(1, 3, {2, 3}, relu);
  fused.set_name("fused");
  check_layer_gradients(fused, random_tensor(Shape{2, 1, 4, 19}, rng));  // rows of 17
}

TEST_CASE("Conv2D results do not depend on the thread count") {
  Rng rng(3);
  const Tensor<double> x = random_tensor(Shape{5, 3, 7, 6}, rng);
  const Tensor<double> dy = random_tensor(Shape{5, 4, 5, 4}, rng);
  auto run = [&](int threads) {
    set_num_threads(threads);
    nn::Conv2D<double> conv(3, 4, {3, 3});
    Rng init(1);
    conv.reset_parameters(init);
    Tensor<double> y, dx;
    conv.forward(x, y, Mode::train);
    conv.backward(x, y, dy, &dx);
    return std::vector<Tensor<double>>{y, dx, conv.weight().grad, conv.bias().grad};
  };
  const auto one = run(1), two = run(2);
  set_num_threads(default_num_threads());
  for (std::size_t i = 0; i < one.size(); ++i) CHECK(test::relative_error(one[i], two[i]) < 1e-14);
}

TEST_CASE("The seed CNN: summary and shape errors name the layer") {
  Sequential<float> model(Shape{1, 28, 28});
  nn::Conv2D<float>::Options relu;
  relu.activation = nn::Activation::relu;
  model.add<nn::Conv2D<float>>(1, 32, Size2{3, 3}, relu);
  model.add<nn::MaxPool2D<float>>(Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(5408, 10);
  const std::string s = model.summary();
  CHECK_THAT(s, Contains("conv2d_1 (conv2d)"));
  CHECK_THAT(s, Contains("(None, 32, 26, 26)"));
  CHECK_THAT(s, Contains("320"));  // 32 * 9 + 32
  CHECK_THAT(s, Contains("(None, 32, 13, 13)"));
  CHECK_THAT(s, Contains("(None, 5408)"));
  CHECK_THAT(s, Contains("Total params: 54410"));

  Sequential<float> model2;
  model2.add<nn::Conv2D<float>>(1, 8, Size2{3, 3});
  CHECK_THROWS_WITH(model2.forward(Tensor<float>(Shape{2, 3, 28, 28})),
                    Contains("conv2d_1: input has 3 channels, layer expects 1"));
  CHECK_THROWS_WITH(model2.forward(Tensor<float>(Shape{2, 784})), Contains("conv2d_1: expects an NCHW input"));
  CHECK_THROWS_WITH(model2.forward(Tensor<float>(Shape{2, 1, 2, 2})),
                    Contains("conv2d_1: input of 2x2 (padded 2x2) is smaller than the 3x3 window"));
  CHECK_THROWS_WITH(nn::Conv2D<float>(1, 0, {3, 3}), Contains("conv2d: channels must be positive"));
  CHECK_THROWS_WITH(nn::MaxPool2D<float>({2, 0}), Contains("max_pool2d: kernel 2x0"));
  CHECK_THROWS_WITH(nn::MaxPool2D<float>({2, 2}, {{1, 1}, Padding::explicit_, {2, 2}}),
                    Contains("padding 2x2 exceeds half the 2x2 kernel"));
}

namespace {

// Whether two tensors hold the same values, bit for bit (NaN equals NaN).
template <class T>
bool same_values(const Tensor<T>& a, const Tensor<T>& b) {
  if (a.shape() != b.shape()) return false;
  for (index_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i] || (a[i] != a[i] && b[i] != b[i]))) return false;
  return true;
}

// Conv2D -> MaxPool2D(2x2) in a model, the pair run as one pass (no hooks)
// against the same model run layer by layer (a hook on the convolution):
// the outputs equal bit for bit, the gradients to rounding.
template <class T>
void check_fused_pair(index_t in, index_t out, Size2 kernel, index_t h, index_t w, bool relu, bool bias, bool fuses) {
  INFO(in << " -> " << out << " channels, " << kernel.h << "x" << kernel.w << " on " << h << "x" << w
          << (relu ? ", relu" : "") << (bias ? ", bias" : ""));
  const double tolerance = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  auto make = [&] {
    Sequential<T> model(Shape{in, h, w}, 7);
    typename nn::Conv2D<T>::Options options;
    options.bias = bias;
    options.activation = relu ? nn::Activation::relu : nn::Activation::none;
    model.template add<nn::Conv2D<T>>(in, out, kernel, options);
    if (bias) model.layer(0).parameters()[1]->value = test::cast<T>(random_tensor(Shape{out}, model.rng(), -0.3, 0.3));
    model.template add<nn::MaxPool2D<T>>(Size2{2, 2});
    return model;
  };
  Sequential<T> fused = make(), apart = make();
  HookHandle watch = apart.add_forward_hook(0, [](const ForwardEvent<T>&) {});
  CHECK(fused.layer(0).fuses_next(Shape{3, in, h, w}, fused.layer(1)) == fuses);
  Rng rng(static_cast<std::uint64_t>(in * 100 + out * 10 + h + w));
  const Tensor<T> x = test::cast<T>(random_tensor(Shape{3, in, h, w}, rng));
  const Tensor<T> y = fused.forward(x, Mode::train);
  CHECK(same_values(y, apart.forward(x, Mode::train)));
  const Tensor<T> dy = test::cast<T>(random_tensor(y.shape(), rng));
  fused.backward(dy, true);
  apart.backward(dy, true);
  CHECK(test::relative_error(fused.input_grad(), apart.input_grad()) < tolerance);
  for (std::size_t p = 0; p < fused.parameters().size(); ++p)
    CHECK(test::relative_error(fused.parameters()[p]->grad, apart.parameters()[p]->grad) < tolerance);
  // The convolution's own output, computed when asked for, and the pooling's
  // state from it: backward from either layer goes on as apart.
  CHECK(same_values(fused.output(0), apart.output(0)));
  fused.forward(x, Mode::train);
  fused.backward(dy, true);
  const Tensor<T> fused_grad = fused.input_grad();
  fused.forward(x, Mode::train);
  HookHandle late = fused.add_backward_hook(1, [](const BackwardEvent<T>&) {});  // after the fused forward
  fused.backward(dy, true);
  CHECK(test::relative_error(fused.input_grad(), fused_grad) < tolerance);
  if (relu) CHECK(y.flat().minCoeff() == T(0));
}

}  // namespace

TEMPLATE_TEST_CASE("Conv2D and the MaxPool2D after it run as one pass with the same results", "[direct]", float,
                   double) {
  check_fused_pair<TestType>(1, 32, {3, 3}, 28, 28, true, true, true);  // the seed CNN's layers
  check_fused_pair<TestType>(3, 5, {3, 3}, 13, 29, true, false, true);  // 2 + 2 + 1 channels, rows of 13, odd sizes
  check_fused_pair<TestType>(2, 3, {2, 3}, 6, 18, false, true, true);   // rows of exactly 8 windows
  check_fused_pair<TestType>(1, 4, {3, 3}, 10, 35, true, true, true);   // rows of 16 windows
  check_fused_pair<TestType>(3, 6, {3, 3}, 9, 24, true, true, true);    // 27 taps: 3 gradient blocks of 9
  check_fused_pair<TestType>(2, 3, {5, 3}, 9, 20, false, true, true);   // 30 taps: 9 + 9 + 9 + 3
  check_fused_pair<TestType>(1, 3, {3, 3}, 10, 17, true, true, false);  // rows of 7 windows: apart
  check_fused_pair<TestType>(4, 6, {3, 3}, 10, 22, true, true, false);  // 36 taps: the GEMM path, apart
}
