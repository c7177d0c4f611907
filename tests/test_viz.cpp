// viz/: colormaps, heatmaps and grids, PNG files read back through libpng,
// and the model's DOT diagram (rendered to SVG when Graphviz is installed).
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "glassbox/viz/diagram.hpp"
#include "glassbox/viz/dot.hpp"
#include "glassbox/viz/html_report.hpp"
#include "glassbox/viz/png.hpp"
#include "glassbox/viz/projector.hpp"
#include "glassbox/viz/tensorboard.hpp"
#include "support.hpp"

using namespace glassbox;
using namespace glassbox::viz;
using Catch::Matchers::Contains;

namespace {
Rgb hex(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("glassbox_test_viz_" + name)).string();
}

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Whether a temporary file of an atomic write of `path` was left behind.
bool temporary_left(const std::string& path) {
  const std::filesystem::path p(path);
  for (const auto& entry : std::filesystem::directory_iterator(p.parent_path()))
    if (entry.path().filename().string().rfind(p.filename().string() + ".tmp", 0) == 0) return true;
  return false;
}
}  // namespace

TEST_CASE("colormaps: published end and middle colours, clamped", "[viz]") {
  CHECK(color_at(Colormap::viridis, 0) == hex(0x440154));
  CHECK(color_at(Colormap::viridis, 1) == hex(0xfde725));
  CHECK(color_at(Colormap::viridis, 5.0 / 9) == hex(0x1f9e89));
  CHECK(color_at(Colormap::diverging, 0.5) == hex(0xf7f7f7));  // zero is white
  CHECK(color_at(Colormap::diverging, 0) == hex(0x053061));    // negative blue
  CHECK(color_at(Colormap::diverging, 1) == hex(0x67001f));    // positive red
  CHECK(color_at(Colormap::gray, 0.5) == Rgb{128, 128, 128});
  CHECK(color_at(Colormap::viridis, -3) == color_at(Colormap::viridis, 0));
  CHECK(color_at(Colormap::viridis, 7) == color_at(Colormap::viridis, 1));
  CHECK(color_at(Colormap::viridis, NAN) == color_at(Colormap::viridis, 0));
  // Halfway between two keys: the mean of their channels, rounded.
  const Rgb mid = color_at(Colormap::viridis, 0.5 / 9);
  CHECK(mid == Rgb{(0x44 + 0x48 + 1) / 2, (0x01 + 0x28 + 1) / 2, (0x54 + 0x78) / 2});
}

TEST_CASE("heatmaps: magnitudes on viridis, signed values centred on white", "[viz]") {
  const Tensor<float> maps(Shape{2, 1, 2, 3}, {0, 1, 2, 3, 4, 8, -2, 0, 1, 2, -1, 0});
  const Plane<float> first = plane(maps, 0), second = plane(maps, 1);
  CHECK(range_of(first, false).high == 8.0);
  const Image magnitude = heatmap(first, false);
  REQUIRE((magnitude.width == 3 && magnitude.height == 2));
  CHECK(magnitude.at(0, 0) == color_at(Colormap::viridis, 0));
  CHECK(magnitude.at(2, 1) == color_at(Colormap::viridis, 1));
  CHECK(magnitude.at(1, 1) == color_at(Colormap::viridis, 0.5));
  const Image signed_map = heatmap(second, true);  // range [-2, 2]
  CHECK(signed_map.at(1, 0) == hex(0xf7f7f7));
  CHECK(signed_map.at(0, 0) == color_at(Colormap::diverging, 0));
  CHECK(signed_map.at(2, 0) == color_at(Colormap::diverging, 0.75));
  const Image ink = grayscale(plane(Tensor<float>(Shape{1, 2}, {0, 1})));
  CHECK(ink.at(0, 0) == Rgb{255, 255, 255});
  CHECK(ink.at(1, 0) == Rgb{0, 0, 0});
  CHECK_THROWS_WITH(plane(maps, 2), Contains("sample 2 channel 0 is outside (2, 1, 2, 3)"));
  CHECK_THROWS_WITH(heatmap(first, Colormap::viridis, Range{1, 1}), Contains("empty range"));
}

TEST_CASE("overlay, enlarge, tile and the colour bar place every pixel", "[viz]") {
  Image a(2, 1, {0, 0, 0}), b(2, 1, {200, 100, 50});
  const Image blend = overlay(a, b, 0.25);
  CHECK(blend.at(1, 0) == Rgb{50, 25, 13});
  CHECK_THROWS_WITH(overlay(a, Image(3, 1)), Contains("differ"));

  const Image big = enlarge(b, 3);
  CHECK((big.width == 6 && big.height == 3));
  CHECK(big.at(5, 2) == b.at(1, 0));

  const Image grid = tile({a, b, Image(1, 2, {9, 9, 9})}, 2, 1, {255, 0, 0});
  CHECK((grid.width == 2 + 1 + 2 && grid.height == 2 + 1 + 2));
  CHECK(grid.at(0, 0) == Rgb{0, 0, 0});       // a, top left
  CHECK(grid.at(3, 0) == Rgb{200, 100, 50});  // b, second column
  CHECK(grid.at(2, 0) == Rgb{255, 0, 0});     // the gap
  CHECK(grid.at(0, 4) == Rgb{9, 9, 9});       // third image, second row
  CHECK(grid.at(1, 4) == Rgb{255, 0, 0});     // beside the narrower image

  const Image barred = with_colour_bar(Image(20, 30, {1, 2, 3}), Colormap::viridis, Range{0, 0.5});
  CHECK(barred.height == 30);
  CHECK(barred.at(0, 0) == Rgb{1, 2, 3});
  CHECK(barred.at(24, 0) == color_at(Colormap::viridis, 1));  // the bar: high at the top
  CHECK(barred.at(24, 29) == color_at(Colormap::viridis, 0));
  int ink = 0;  // the labels "0.5" and "0"
  for (index_t y = 0; y < barred.height; ++y)
    for (index_t x = 31; x < barred.width; ++x) ink += barred.at(x, y) == Rgb{0, 0, 0};
  CHECK(ink == 12 + 1 + 11 + 12);  // "0" is 12 pixels, "." 1, "5" 11, then "0" again
}

TEST_CASE("PNG files round-trip through libpng and are written atomically", "[viz]") {
  Image image(5, 3);
  for (index_t y = 0; y < 3; ++y)
    for (index_t x = 0; x < 5; ++x) image.set(x, y, color_at(Colormap::viridis, (x + 5.0 * y) / 14));
  const std::string path = temp_path("round_trip.png");
  write_png(path, image);
  CHECK(read_file(path).substr(0, 8) == "\x89PNG\r\n\x1a\n");
  CHECK_FALSE(temporary_left(path));
  const Image back = read_png(path);
  CHECK((back.width == 5 && back.height == 3));
  CHECK(back.pixels == image.pixels);
  std::remove(path.c_str());

  const std::string not_png = temp_path("not.png");
  write_text_file(not_png, "hello");
  CHECK_THROWS_WITH(read_png(not_png), Contains(not_png));
  std::remove(not_png.c_str());
  CHECK_THROWS_WITH(write_png("/nonexistent-dir/x.png", image), Contains("/nonexistent-dir/x.png"));
  CHECK_THROWS_WITH(encode_png(Image()), Contains("no pixels"));
}

TEST_CASE("the DOT diagram lists every layer with shape, parameters and live statistics", "[viz]") {
  Sequential<float> model(Shape{1, 28, 28}, 1);
  nn::Conv2D<float>::Options relu;
  relu.activation = nn::Activation::relu;
  model.add<nn::Conv2D<float>>(1, 32, nn::Size2{3, 3}, relu);
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(5408, 10);
  const std::string plain = to_dot(model);
  CHECK_THAT(plain, Contains("digraph model {"));
  CHECK_THAT(plain, Contains("input [label=\"input\\n(N, 1, 28, 28)\""));
  CHECK_THAT(plain, Contains("conv2d_1 (conv2d)\\n(N, 32, 26, 26)\\n320 parameters"));
  CHECK_THAT(plain, Contains("dense_1 (dense)\\n(N, 10)\\n54090 parameters"));
  CHECK_THAT(plain, Contains("input -> layer0;"));
  CHECK_THAT(plain, Contains("layer2 -> layer3;"));

  inspect::ActivationStats<float> stats(model);
  inspect::GradientFlow<float> flow(model);
  Rng rng(1);
  Tensor<float> x(Shape{4, 1, 28, 28}), y(Shape{4}, {1, 2, 3, 4});
  for (float& v : x) v = static_cast<float>(rng.uniform());
  nn::SoftmaxCrossEntropy<float> loss;
  Tensor<float> grad;
  loss.forward(model.forward(x, Mode::train), y, &grad);
  model.backward(grad);
  const std::string live = to_dot(model, Shape{}, &stats, &flow);
  CHECK_THAT(live, Contains("mean "));
  CHECK_THAT(live, Contains("zeros "));
  CHECK_THAT(live, Contains("|dL/dy| "));

  Sequential<float> shapeless;
  shapeless.add<nn::Dense<float>>(3, 2);
  CHECK_THROWS_WITH(to_dot(shapeless), Contains("pass the input batch shape"));
  CHECK_THAT(to_dot(shapeless, Shape{1, 3}), Contains("(N, 2)\\n8 parameters"));
  shapeless.add(std::make_unique<nn::ReLU<float>>(), "say \"hi\"");  // quotes in a name are escaped
  CHECK_THAT(to_dot(shapeless, Shape{1, 3}), Contains("label=\"say \\\"hi\\\" (relu)"));

  const std::string dot_path = temp_path("model.dot"), svg_path = temp_path("model.svg");
  write_dot(dot_path, model);
  CHECK(read_file(dot_path) == plain);
  if (have_graphviz()) {  // scripts/test.sh installs it
    REQUIRE(render_svg(dot_path, svg_path));
    CHECK_THAT(read_file(svg_path), Contains("<svg"));
    CHECK_THAT(read_file(svg_path), Contains("conv2d_1"));
  } else {
    CHECK_FALSE(render_svg(dot_path, svg_path));
  }
  std::remove(dot_path.c_str());
  std::remove(svg_path.c_str());
}

TEST_CASE("the SVG diagram: a box per layer with shapes and statistics, residual blocks as branches", "[viz]") {
  Sequential<float> model(Shape{1, 28, 28}, 1);
  nn::Conv2D<float>::Options relu;
  relu.activation = nn::Activation::relu;
  model.add<nn::Conv2D<float>>(1, 4, nn::Size2{3, 3}, relu);
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add(std::make_unique<nn::Dense<float>>(676, 10), "<b>&");  // hostile names stay text

  const std::string plain = to_svg_diagram(model);
  CHECK(plain.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(test::balanced_markup(plain));
  CHECK(occurrences(plain, "<g class=\"node\"") == 5);  // the input and 4 layers
  CHECK_THAT(plain, Contains("<g class=\"node\" data-layer=\"conv2d_1\">"));
  CHECK_THAT(plain, Contains(">conv2d_1 (conv2d)</text>"));
  CHECK_THAT(plain, Contains(">(N, 4, 26, 26), 40 parameters</text>"));
  CHECK_THAT(plain, Contains(">(N, 1, 28, 28)</text>"));  // the input
  CHECK_THAT(plain, Contains("&lt;b&gt;&amp; (dense)"));
  CHECK_THAT(plain, !Contains("<b>"));
  CHECK_THAT(plain, Contains("<polygon"));                     // the pooling layer narrows
  CHECK(occurrences(plain, "stroke-dasharray=\"5 3\"") == 1);  // the flatten layer only reshapes
  CHECK(occurrences(plain, "marker-end=\"url(#arrow)\"") == 4);
  CHECK_THAT(plain, !Contains("mean "));

  inspect::ActivationStats<float> stats(model);
  inspect::GradientFlow<float> flow(model);
  Rng rng(1);
  Tensor<float> x(Shape{4, 1, 28, 28}), y(Shape{4}, {1, 2, 3, 4});
  for (float& v : x) v = static_cast<float>(rng.uniform());
  nn::SoftmaxCrossEntropy<float> loss;
  Tensor<float> grad;
  loss.forward(model.forward(x, Mode::train), y, &grad);
  model.backward(grad);
  const std::string live = to_svg_diagram(model, Shape{}, &stats, &flow);
  CHECK(test::balanced_markup(live));
  const inspect::ActivationRecord& conv = stats.series("conv2d_1").records.back();
  CHECK_THAT(live, Contains(fmt::format(">mean {:.3g}, zeros {:.1f}%, dead {:.1f}%</text>", conv.mean,
                                        100 * conv.zero_fraction, 100 * conv.dead_fraction)));
  CHECK_THAT(live,
             Contains(fmt::format(">|dL/dy| {:.3g} (step 0)</text>", flow.layer("conv2d_1").records.back().norm)));

  // Residual blocks: the body down the middle, the shortcut beside it, "+" where they meet.
  Sequential<float> net(Shape{4}, 2);
  nn::Residual<float> identity;
  identity.add<nn::Dense<float>>(4, 4);
  identity.add<nn::ReLU<float>>();
  net.add(std::make_unique<nn::Residual<float>>(std::move(identity)));
  nn::Residual<float> projected;
  projected.add<nn::Dense<float>>(4, 6);
  projected.set_shortcut<nn::Dense<float>>(4, 6);
  net.add(std::make_unique<nn::Residual<float>>(std::move(projected)));
  const std::string blocks = to_svg_diagram(net);
  CHECK(test::balanced_markup(blocks));
  CHECK(occurrences(blocks, "<g class=\"block\"") == 2);
  CHECK_THAT(blocks, Contains("<g class=\"block\" data-layer=\"residual_1\">"));
  CHECK_THAT(blocks, Contains("data-layer=\"residual_1.dense_1\""));
  CHECK_THAT(blocks, Contains("data-layer=\"residual_1.relu_1\""));
  CHECK_THAT(blocks, !Contains("data-layer=\"residual_1.shortcut\""));  // an identity is a line
  CHECK(occurrences(blocks, ">identity</text>") == 1);
  CHECK_THAT(blocks, Contains("data-layer=\"residual_2.shortcut\""));  // a projection is a box
  CHECK_THAT(blocks, Contains(">residual_2.shortcut (dense)</text>"));
  CHECK(occurrences(blocks, ">+</text>") == 2);
  CHECK(occurrences(blocks, "<g class=\"node\"") == 1 + 2 + 2);  // input, block 1's body, block 2's body and shortcut

  // Lines too long for a box break after a comma; what still does not fit is cut.
  CHECK(viz::detail::fitted({"(N, 32, 14, 14), 544 parameters", "x"}, 26) ==
        std::vector<std::string>{"(N, 32, 14, 14),", "544 parameters", "x"});
  CHECK(viz::detail::fitted({"residual_2.shortcut_projection (conv2d)"}, 12) ==
        std::vector<std::string>{"residual_2.~"});

  Sequential<float> shapeless;
  shapeless.add<nn::Dense<float>>(3, 2);
  CHECK_THROWS_WITH(to_svg_diagram(shapeless), Contains("pass the input batch shape"));
  CHECK_THAT(to_svg_diagram(shapeless, Shape{1, 3}), Contains(">(N, 2), 8 parameters</text>"));
}

TEST_CASE("CRC32C matches the published test vectors", "[viz][tensorboard]") {
  const std::string zeros(32, '\0'), digits = "123456789";
  CHECK(crc32c(zeros.data(), zeros.size()) == 0x8A9136AAu);
  CHECK(crc32c(digits.data(), digits.size()) == 0xE3069283u);
  const std::uint32_t crc = 0xE3069283u;
  CHECK(masked_crc32c(digits.data(), digits.size()) == ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
}

namespace {
// A reader for the tests: TFRecord framing (CRCs checked) and protocol
// buffer fields, enough to read the events back.
struct Field {
  int number = 0, wire = 0;
  std::uint64_t varint = 0;
  double f64 = 0;
  float f32 = 0;
  std::string bytes;
};

std::vector<Field> decode(const std::string& message) {
  std::vector<Field> fields;
  std::size_t i = 0;
  auto varint = [&] {
    std::uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      REQUIRE(i < message.size());
      const auto b = static_cast<unsigned char>(message[i++]);
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
  };
  while (i < message.size()) {
    Field f;
    const std::uint64_t key = varint();
    f.number = static_cast<int>(key >> 3);
    f.wire = static_cast<int>(key & 7);
    if (f.wire == 0)
      f.varint = varint();
    else if (f.wire == 1) {
      std::memcpy(&f.f64, message.data() + i, 8);
      i += 8;
    } else if (f.wire == 5) {
      std::memcpy(&f.f32, message.data() + i, 4);
      i += 4;
    } else {
      REQUIRE(f.wire == 2);
      const auto n = static_cast<std::size_t>(varint());
      f.bytes = message.substr(i, n);
      i += n;
    }
    fields.push_back(f);
  }
  REQUIRE(i == message.size());
  return fields;
}

const Field& field(const std::vector<Field>& fields, int number) {
  for (const Field& f : fields)
    if (f.number == number) return f;
  FAIL("no field " << number);
  return fields.front();
}

std::vector<std::string> read_records(const std::string& path) {
  const std::string file = read_file(path);
  std::vector<std::string> records;
  for (std::size_t i = 0; i < file.size();) {
    REQUIRE(i + 12 <= file.size());
    std::uint64_t length = 0;
    std::uint32_t length_crc = 0, data_crc = 0;
    std::memcpy(&length, file.data() + i, 8);
    std::memcpy(&length_crc, file.data() + i + 8, 4);
    CHECK(length_crc == masked_crc32c(file.data() + i, 8));
    REQUIRE(i + 12 + length + 4 <= file.size());  // a truncated record fails here
    const std::string data = file.substr(i + 12, length);
    std::memcpy(&data_crc, file.data() + i + 12 + length, 4);
    CHECK(data_crc == masked_crc32c(data.data(), data.size()));
    records.push_back(data);
    i += 12 + length + 4;
  }
  return records;
}

std::vector<double> packed_doubles(const std::string& bytes) {
  std::vector<double> v(bytes.size() / 8);
  std::memcpy(v.data(), bytes.data(), v.size() * 8);
  return v;
}
}  // namespace

TEST_CASE("TensorBoardWriter: framed, checksummed Event records that decode back", "[viz][tensorboard]") {
  const std::string dir = temp_path("runs");
  std::filesystem::remove_all(dir);
  std::string path;
  Image picture(4, 2, {10, 20, 30});
  {
    TensorBoardWriter writer(dir);
    path = writer.path();
    CHECK_THAT(path, Contains("/events.out.tfevents."));
    writer.add_scalar("train/loss", 0.25, 7);
    writer.add_histogram("weights/w", Tensor<double>(Shape{5}, {1, 2, 2, 3, NAN}), 8, 2);
    writer.add_image("saliency/0", picture, 9);
  }
  const std::vector<std::string> records = read_records(path);
  REQUIRE(records.size() == 4);
  const std::vector<Field> version = decode(records[0]);
  CHECK(field(version, 3).bytes == "brain.Event:2");
  CHECK(field(version, 1).f64 > 1.7e9);  // wall time, seconds since 1970

  const std::vector<Field> scalar = decode(records[1]);
  CHECK(field(scalar, 2).varint == 7);
  const std::vector<Field> value = decode(field(decode(field(scalar, 5).bytes), 1).bytes);
  CHECK(field(value, 1).bytes == "train/loss");
  CHECK(field(value, 2).f32 == 0.25f);

  const std::vector<Field> histo =
      decode(field(decode(field(decode(field(decode(records[2]), 5).bytes), 1).bytes), 5).bytes);
  CHECK(field(histo, 1).f64 == 1.0);  // min
  CHECK(field(histo, 2).f64 == 3.0);  // max
  CHECK(field(histo, 3).f64 == 4.0);  // the NaN is left out
  CHECK(field(histo, 4).f64 == 8.0);
  CHECK(field(histo, 5).f64 == 18.0);
  CHECK(packed_doubles(field(histo, 6).bytes) == std::vector<double>{2.0, std::numeric_limits<double>::max()});
  CHECK(packed_doubles(field(histo, 7).bytes) == std::vector<double>{1.0, 3.0});  // [1, 2) and [2, 3]

  const std::vector<Field> image =
      decode(field(decode(field(decode(field(decode(records[3]), 5).bytes), 1).bytes), 4).bytes);
  CHECK(field(image, 1).varint == 2);
  CHECK(field(image, 2).varint == 4);
  CHECK(field(image, 3).varint == 3);
  const std::string png_path = temp_path("from_event.png");
  write_text_file(png_path, field(image, 4).bytes);
  CHECK(read_png(png_path).pixels == picture.pixels);
  std::remove(png_path.c_str());
  std::filesystem::remove_all(dir);
}

TEST_CASE("TensorBoardLogger logs losses, weights, activations and gradient norms through fit", "[viz][tensorboard]") {
  Sequential<float> model(Shape{4}, 2);
  model.add<nn::Dense<float>>(4, 3);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dense<float>>(3, 2);
  Rng rng(3);
  Tensor<float> x(Shape{16, 4}), y(Shape{16});
  for (float& v : x) v = static_cast<float>(rng.uniform(-1, 1));
  for (index_t n = 0; n < 16; ++n) y[n] = x[n * 4] > 0;
  const std::string dir = temp_path("fit_runs");
  std::filesystem::remove_all(dir);
  std::string path;
  {
    inspect::ActivationStatsOptions every_step;
    every_step.schedule.every = 1;
    inspect::ActivationStats<float> stats(model, every_step);
    inspect::GradientFlow<float> flow(model);
    TensorBoardWriter writer(dir);
    path = writer.path();
    TensorBoardLoggerOptions options;
    options.every = 2;
    optim::SGD<float> sgd(model.parameters(), 0.1f);
    TensorBoardLogger<float> logger(writer, model, &stats, &flow, &sgd, options);
    nn::SoftmaxCrossEntropy<float> ce;
    train::FitOptions<float> fit = test::quiet_fit<float>(2, 4);
    fit.callbacks = {&logger};
    train::fit(model, sgd, ce, x, y, fit);
  }
  std::map<std::string, int> tags;
  for (const std::string& record : read_records(path)) {
    const std::vector<Field> event = decode(record);
    for (const Field& f : event)
      if (f.number == 5) ++tags[field(decode(field(decode(f.bytes), 1).bytes), 1).bytes];
  }
  CHECK(tags["train/batch_loss"] == 4);  // 8 steps, every 2nd
  CHECK(tags["epoch/loss"] == 2);
  CHECK(tags["epoch/accuracy"] == 2);
  CHECK(tags.count("epoch/val_loss") == 0);  // no validation data
  CHECK(tags["weights/dense_1.weight"] == 2);
  CHECK(tags["weights/dense_2.bias"] == 2);
  CHECK(tags["gradients/dense_1.weight"] == 2);
  CHECK(tags["epoch/learning_rate"] == 2);
  CHECK(tags["activations/relu_1"] == 2);
  CHECK(tags["gradient_norm/dense_2"] == 2);
  std::filesystem::remove_all(dir);
}

TEST_CASE("HtmlReport: one self-contained page with the sections it was given", "[viz][html]") {
  CHECK(base64("Man") == "TWFu");
  CHECK(base64("Ma") == "TWE=");
  CHECK(base64("M") == "TQ==");
  CHECK(base64("") == "");

  Sequential<float> model(Shape{4}, 2);
  model.add<nn::Dense<float>>(4, 3);
  model.add(std::make_unique<nn::ReLU<float>>(), "</script><b>");  // hostile names stay text
  model.add<nn::Dense<float>>(3, 2);
  inspect::ActivationStatsOptions every_step;
  every_step.schedule.every = 1;
  inspect::ActivationStats<float> stats(model, every_step);
  inspect::GradientFlow<float> flow(model, {});
  Rng rng(3);
  Tensor<float> x(Shape{16, 4}), y(Shape{16});
  for (float& v : x) v = static_cast<float>(rng.uniform(-1, 1));
  for (index_t n = 0; n < 16; ++n) y[n] = x[n * 4] > 0;
  optim::SGD<float> sgd(model.parameters(), 0.1f);
  nn::SoftmaxCrossEntropy<float> ce;
  train::FitOptions<float> options = test::quiet_fit<float>(2, 8);
  options.validation_x = &x;
  options.validation_y = &y;
  inspect::ParameterHistograms<float> params(model);
  options.callbacks = {&params};
  const train::History history = train::fit(model, sgd, ce, x, y, options);

  HtmlReport empty("nothing yet");
  CHECK_THAT(empty.html(), Contains("<h1>nothing yet</h1>"));
  CHECK_THAT(empty.html(), !Contains("<section"));

  HtmlReport report("run <1>");
  report.add_model(model, &stats, &flow);
  report.add_history(history);
  report.add_activation_stats(stats);
  report.add_gradient_flow(flow);
  report.add_parameter_histograms(params);
  report.add_pictures("filters", {{"a red pixel", Image(1, 1, {255, 0, 0})}}, "what <they> show");
  report.add_picture_series("boundary", {{"before", Image(2, 1)}, {"after <1>", Image(2, 1, {0, 0, 0})}}, "moving");
  CHECK_THROWS_WITH(report.add_picture_series("none", {}), Contains("'none' has no frames"));
  report.add_error_analysis(inspect::analyze_errors({0, 1, 1, 1}, {0, 1, 0, 1}, 2), {"no", "<yes>"},
                            {{"sample 2", Image(1, 1, {0, 0, 255})}}, "the errors");
  report.add_table("pruning", {"sparsity", "accuracy"}, {{"90%", "97.76% <best>"}});
  CHECK_THROWS_WITH(report.add_table("bad", {"a", "b"}, {{"1"}}), Contains("'bad': a row of 1 cells under 2 headings"));
  // Embeddings: one scale for both axes, integers in [0, 4000]; the y axis points up on the page.
  Eigen::MatrixXd map(3, 2);
  map << 0, 0, 2, 1, 1, 0.5;
  report.add_embedding("layer <x>", {{"t-SNE", map}}, {0, 1, 1}, {"zero"}, {0, 0, 1}, {10, 11, 12}, "maps");
  CHECK_THROWS_WITH(report.add_embedding("short", {{"a", map}}, {0, 1}),
                    Contains("view 'a' has 3 points for 2 labels"));
  CHECK_THROWS_WITH(report.add_embedding("odd", {{"a", map}}, {0, 1, 1}, {}, {0}), Contains("predicted classes (1)"));
  const std::string html = report.html();
  CHECK_THAT(html, Contains("\"embeddings\":[{\"heading\":\"layer \\u003cx>\",\"description\":\"maps\","
                            "\"classes\":[\"zero\",\"1\"],\"labels\":[0,1,1],\"predicted\":[0,0,1],\"ids\":[10,11,12],"
                            "\"views\":[{\"caption\":\"t-SNE\",\"x\":[0,4000,2000],\"y\":[0,2000,1000]}]}]"));
  CHECK_THAT(html, Contains("<h3>pruning</h3><div class=\"scroll\"><table class=\"results\"><tr><th>sparsity</th>"
                            "<th>accuracy</th></tr><tr><td>90%</td><td>97.76% &lt;best&gt;</td></tr></table></div>"));
  CHECK_THAT(html, Contains("<h1>run &lt;1&gt;</h1>"));
  // Errors: each cell shaded by its share of the row, its numbers on hover; the gallery under it.
  CHECK_THAT(html, Contains("<p class=\"note\">3 of 4 samples right (75.00%)."));
  CHECK_THAT(html, Contains("<tr><th>true \\ predicted</th><th>no</th><th>&lt;yes&gt;</th></tr>"));
  CHECK_THAT(html, Contains("data-tip=\"true no, predicted &lt;yes&gt;: 1 (50.00% of the row)\">1</td>"));
  CHECK_THAT(html, Contains("<td style=\"background: rgba(33,102,172, 1.000)\" data-tip=\"true &lt;yes&gt;, "
                            "predicted &lt;yes&gt;: 2 (100.00% of the row)\">2</td>"));
  CHECK_THAT(html, Contains("<tr><td>macro avg</td><td>0.8333</td><td>0.7500</td><td>0.7333</td><td>4</td></tr>"));
  CHECK_THAT(html, Contains("Most confused (true &#8594; predicted): no &#8594; &lt;yes&gt; (1).</p>"));
  CHECK_THAT(html, Contains("<h3>Misclassified</h3><p class=\"note\">the errors</p><div class=\"pictures\""));
  CHECK_THAT(html, Contains("<figcaption>sample 2</figcaption>"));
  // A series: every frame inline, the newest shown (at twice a small frame's size), a slider to pick.
  CHECK_THAT(html, Contains("<img alt=\"before\" width=\"4\" height=\"2\" hidden src=\"data:image/png;base64,"));
  CHECK_THAT(html, Contains("<img alt=\"after &lt;1&gt;\" width=\"4\" height=\"2\" src="));
  CHECK_THAT(html, Contains("<figcaption>after &lt;1&gt;</figcaption><label>frame <input type=\"range\" "
                            "class=\"frame-slider\" min=\"0\" max=\"1\" value=\"1\"></label>"));
  for (const char* section :
       {"model", "training", "activations", "gradients", "parameters", "embeddings", "errors", "pictures", "tables"})
    CHECK_THAT(html, Contains(fmt::format("<section id=\"{}\">", section)));
  CHECK_THAT(html, Contains("data:image/png;base64," + base64(encode_png(Image(1, 1, {255, 0, 0})))));
  // The diagram is glassbox's own SVG, whether or not Graphviz is installed.
  CHECK_THAT(html, Contains("<div class=\"diagram\">" + to_svg_diagram(model, Shape{}, &stats, &flow) + "</div>"));
  CHECK_THAT(html, Contains("<figure><img alt=\"a red pixel\" width=\"1\" height=\"1\""));
  CHECK_THAT(html, Contains("<figcaption>a red pixel</figcaption>"));
  CHECK_THAT(html, Contains("<p class=\"note\">what &lt;they&gt; show</p>"));
  // The exact zeros of each histogram, for the "exclude exact zeros" toggle.
  CHECK_THAT(html, Contains(fmt::format("\"zeros\":{},", stats.series("dense_1").records.back().histogram.zeros)));
  CHECK_THAT(html, Contains("\"parameter\":\"dense_1.weight\",\"records\":[{\"steps_taken\":0,\"epochs_done\":0,"));
  CHECK_THAT(html, !Contains("subsampled"));  // 4 steps: every one is shown
  CHECK_THAT(html, Contains("\"val_accuracy\":"));
  CHECK_THAT(html, Contains("\"layer\":\"dense_1\""));
  CHECK_THAT(html, Contains("&lt;/script&gt;&lt;b&gt;"));  // in the summary table
  CHECK_THAT(html, Contains("\\u003c/script>\\u003cb>"));  // in the inline JSON
  CHECK_THAT(html, !Contains("</script><b>"));
  // Self-contained: nothing fetched from anywhere.
  CHECK_THAT(html, !Contains("src=\"http"));
  CHECK_THAT(html, !Contains("<link"));
  std::size_t scripts = 0;  // the error catcher, the data and the charts: nothing else closes a script
  for (std::size_t at = html.find("</script>"); at != std::string::npos; at = html.find("</script>", at + 1)) ++scripts;
  CHECK(scripts == 3);
  const std::string path = temp_path("report.html");
  report.write(path);
  CHECK(read_file(path) == html);
  std::remove(path.c_str());
}

TEST_CASE("HtmlReport keeps long runs small: charts over steps show an even subsample, and say so", "[viz][html]") {
  CHECK(viz::detail::evenly_spaced(5, 10) == std::vector<std::size_t>{0, 1, 2, 3, 4});
  CHECK(viz::detail::evenly_spaced(10, 10).size() == 10);
  CHECK(viz::detail::evenly_spaced(31, 4) == std::vector<std::size_t>{0, 10, 20, 30});
  CHECK(viz::detail::evenly_spaced(1875, 200).back() == 1874);

  Sequential<float> model(Shape{4}, 2);
  model.add<nn::Dense<float>>(4, 3);
  model.add<nn::ReLU<float>>();
  inspect::ActivationStatsOptions every_step;
  every_step.schedule.every = 1;
  inspect::ActivationStats<float> stats(model, every_step);
  inspect::GradientFlow<float> flow(model, {});
  Rng rng(5);
  Tensor<float> x(Shape{64, 4}), y(Shape{64});
  for (float& v : x) v = static_cast<float>(rng.uniform(-1, 1));
  for (index_t n = 0; n < 64; ++n) y[n] = x[n * 4] > 0;
  optim::SGD<float> sgd(model.parameters(), 0.1f);
  nn::SoftmaxCrossEntropy<float> ce;
  auto page_after = [&](int epochs) {
    train::FitOptions<float> options = test::quiet_fit<float>(epochs, 4);  // 16 steps per epoch
    train::fit(model, sgd, ce, x, y, options);
    HtmlReportOptions small;
    small.max_steps = 10;
    HtmlReport report("long run", small);
    report.add_activation_stats(stats);
    report.add_gradient_flow(flow);
    return report.html();
  };
  const std::string short_run = page_after(2);  // 32 records per layer
  CHECK_THAT(short_run, Contains("Showing 10 of the 32 recorded steps"));
  CHECK_THAT(short_run, Contains("activation_stats.json holds every record kept"));
  CHECK_THAT(short_run, Contains("gradient_flow.json holds every record kept"));
  CHECK_THAT(short_run, !Contains("dropped"));
  // Steps 0, 3, 7, ..., 31: the first and the newest kept.
  CHECK_THAT(short_run, Contains("\"steps\":[0,3,7,10,14,17,21,24,28,31]"));
  CHECK(occurrences(short_run, "{\"step\":") == 2 * 10);  // 2 layers, 10 records each
  const std::string long_run = page_after(18);            // 320 records per layer
  CHECK_THAT(long_run, Contains("Showing 10 of the 320 recorded steps"));
  CHECK(occurrences(long_run, "{\"step\":") == 2 * 10);
  CHECK(long_run.size() < short_run.size() + 400);  // ten times the records, the same page

  // A recorder over capacity: the page says what it dropped.
  inspect::ActivationStatsOptions small_ring = every_step;
  small_ring.capacity = 20;
  inspect::ActivationStats<float> newest(model, small_ring);
  train::fit(model, sgd, ce, x, y, test::quiet_fit<float>(2, 4));
  HtmlReport ring("ring");
  ring.add_activation_stats(newest);
  CHECK_THAT(ring.html(), Contains("kept the newest 20 records of each layer and dropped 12 older ones"));
  CHECK_THAT(ring.html(), !Contains("Showing"));

  HtmlReportOptions none;
  none.max_steps = 1;
  CHECK_THROWS_WITH(HtmlReport("x", none), Contains("max_steps"));
}

TEST_CASE("ProjectorWriter: tensors, metadata, sprite and config as TensorBoard's projector reads them",
          "[viz][tensorboard]") {
  const std::string dir = temp_path("projector");
  std::filesystem::remove_all(dir);
  viz::ProjectorWriter projector(dir);
  Tensor<float> values(Shape{5, 3});
  for (index_t k = 0; k < 15; ++k) values.data()[k] = static_cast<float>(k) / 4;
  Tensor<float> digits(Shape{5, 1, 2, 3}, 0.0f);
  digits.data()[6 * 4 + 5] = 1;  // image 4, bottom right: ink
  projector.add("layer_a", values, {"label", "predicted"}, {{"0", "0"}, {"1", "7"}, {"2", "2"}, {"3", "3"}, {"4", "4"}},
                &digits);
  projector.add("layer_b", values, {}, {{"a"}, {"b"}, {"c"}, {"d"}, {"e"}});
  CHECK(read_file(dir + "/projector_config.pbtxt") ==
        "embeddings {\n  tensor_name: \"layer_a\"\n  tensor_path: \"layer_a/tensors.tsv\"\n"
        "  metadata_path: \"layer_a/metadata.tsv\"\n  sprite {\n    image_path: \"layer_a/sprite.png\"\n"
        "    single_image_dim: 3\n    single_image_dim: 2\n  }\n}\n"
        "embeddings {\n  tensor_name: \"layer_b\"\n  tensor_path: \"layer_b/tensors.tsv\"\n"
        "  metadata_path: \"layer_b/metadata.tsv\"\n}\n");
  const std::string tensors = read_file(dir + "/layer_a/tensors.tsv");
  CHECK(tensors.rfind("0\t0.25\t0.5\n0.75\t1\t1.25\n", 0) == 0);
  CHECK(std::count(tensors.begin(), tensors.end(), '\n') == 5);
  CHECK(read_file(dir + "/layer_a/metadata.tsv") == "label\tpredicted\n0\t0\n1\t7\n2\t2\n3\t3\n4\t4\n");
  CHECK(read_file(dir + "/layer_b/metadata.tsv") == "a\nb\nc\nd\ne\n");  // one column: no header
  // 5 images: 3 a side, square, row by row; image 4 sits in row 1, column 1.
  const Image sprite = read_png(dir + "/layer_a/sprite.png");
  CHECK(sprite.width == 9);
  CHECK(sprite.height == 6);
  CHECK(sprite.at(3 + 2, 2 + 1).r == 0);    // its ink
  CHECK(sprite.at(3 + 1, 2 + 1).r == 255);  // paper
  CHECK_THROWS_WITH(projector.add("layer_a", values), Contains("'layer_a' was added already"));
  CHECK_THROWS_WITH(projector.add("../up", values), Contains("the name '../up' must be"));
  CHECK_THROWS_WITH(projector.add("c", values, {}, {{"a"}}), Contains("'c': 1 metadata rows for 5 samples"));
  CHECK_THROWS_WITH(projector.add("d", values, {"x", "y"}, {{"a"}, {"b"}, {"c"}, {"d"}, {"e"}}),
                    Contains("metadata row 0 has 1 cells, not 2"));
  CHECK_THROWS_WITH(projector.add("e", values, {}, {{"a\tb"}, {"b"}, {"c"}, {"d"}, {"e"}}),
                    Contains("tab or line break"));
  Tensor<float> wrong_count(Shape{4, 2, 3}, 0.0f);
  CHECK_THROWS_WITH(projector.add("f", values, {}, {}, &wrong_count), Contains("must be (5, H, W)"));
  values.data()[4] = std::nanf("");
  CHECK_THROWS_WITH(projector.add("g", values), Contains("'g': sample 1 holds a non-finite value"));
  CHECK_FALSE(std::filesystem::exists(dir + "/g"));
  std::filesystem::remove_all(dir);
}
