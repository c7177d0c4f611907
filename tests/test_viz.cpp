// viz/: colormaps, heatmaps and grids, PNG files read back through libpng,
// and the model's DOT diagram (rendered to SVG when Graphviz is installed).
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "glassbox/viz/dot.hpp"
#include "glassbox/viz/html_report.hpp"
#include "glassbox/viz/png.hpp"
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
  const train::History history = train::fit(model, sgd, ce, x, y, options);

  HtmlReport empty("nothing yet");
  CHECK_THAT(empty.html(), Contains("<h1>nothing yet</h1>"));
  CHECK_THAT(empty.html(), !Contains("<section"));

  HtmlReport report("run <1>");
  report.add_model(model, &stats, &flow);
  report.add_history(history);
  report.add_activation_stats(stats);
  report.add_gradient_flow(flow);
  report.add_pictures("filters", {{"a red pixel", Image(1, 1, {255, 0, 0})}});
  report.add_table("pruning", {"sparsity", "accuracy"}, {{"90%", "97.76% <best>"}});
  CHECK_THROWS_WITH(report.add_table("bad", {"a", "b"}, {{"1"}}), Contains("'bad': a row of 1 cells under 2 headings"));
  const std::string html = report.html();
  CHECK_THAT(html, Contains("<h3>pruning</h3><table class=\"results\"><tr><th>sparsity</th><th>accuracy</th></tr>"
                            "<tr><td>90%</td><td>97.76% &lt;best&gt;</td></tr></table>"));
  CHECK_THAT(html, Contains("<h1>run &lt;1&gt;</h1>"));
  for (const char* section : {"model", "training", "activations", "gradients", "pictures", "tables"})
    CHECK_THAT(html, Contains(fmt::format("<section id=\"{}\">", section)));
  CHECK_THAT(html, Contains("data:image/png;base64," + base64(encode_png(Image(1, 1, {255, 0, 0})))));
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
