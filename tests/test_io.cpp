// io/: read_idx accepts every IDX element type and rejects corrupt files with
// an error naming the file and the field; load_mnist reads the shipped subset;
// the fuzzers' seeds and findings replay cleanly; export_onnx's errors.
#include <filesystem>
#include <fstream>
#include <glassbox/io/arff.hpp>
#include <glassbox/io/checkpoint.hpp>
#include <glassbox/io/onnx.hpp>

#include "support.hpp"

using namespace glassbox;
using Catch::Matchers::Contains;

namespace {

std::string temp_file(const std::string& name, const std::vector<unsigned char>& bytes) {
  const auto dir = std::filesystem::temp_directory_path() / "glassbox_test_io";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / name).string();
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path;
}

void put_u32(std::vector<unsigned char>& b, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<unsigned char>(v >> shift));
}

// Header for `type` with the given dimensions, followed by `data_bytes` bytes 0, 1, 2, ...
std::vector<unsigned char> idx_file(unsigned char type, const std::vector<std::uint32_t>& dims,
                                    std::size_t data_bytes) {
  std::vector<unsigned char> b{0, 0, type, static_cast<unsigned char>(dims.size())};
  for (auto d : dims) put_u32(b, d);
  for (std::size_t i = 0; i < data_bytes; ++i) b.push_back(static_cast<unsigned char>(i));
  return b;
}

}  // namespace

TEST_CASE("read_idx reads every element type, big-endian") {
  const auto bytes = io::read_idx<float>(temp_file("u8", idx_file(0x08, {2, 3}, 6)));
  CHECK(bytes.shape() == Shape{2, 3});
  CHECK(bytes[5] == 5.f);
  CHECK(io::read_idx<double>(temp_file("u8s", idx_file(0x08, {2}, 2)), 0.5)[1] == 0.5);

  std::vector<unsigned char> s8 = idx_file(0x09, {1}, 0);
  s8.push_back(0xFF);
  CHECK(io::read_idx<int>(temp_file("s8", s8))[0] == -1);

  std::vector<unsigned char> i16 = idx_file(0x0B, {1}, 0);
  i16.insert(i16.end(), {0xFF, 0xFE});
  CHECK(io::read_idx<int>(temp_file("i16", i16))[0] == -2);

  std::vector<unsigned char> i32 = idx_file(0x0C, {1}, 0);
  put_u32(i32, 70000);
  CHECK(io::read_idx<double>(temp_file("i32", i32))[0] == 70000.0);

  std::vector<unsigned char> f32 = idx_file(0x0D, {1}, 0);
  put_u32(f32, 0x3FC00000u);  // 1.5f
  CHECK(io::read_idx<float>(temp_file("f32", f32))[0] == 1.5f);

  std::vector<unsigned char> f64 = idx_file(0x0E, {1}, 0);
  put_u32(f64, 0xC0040000u);  // -2.5
  put_u32(f64, 0);
  CHECK(io::read_idx<double>(temp_file("f64", f64))[0] == -2.5);
}

TEST_CASE("read_idx reads an empty array whatever dimension is zero") {
  CHECK(io::read_idx<float>(temp_file("empty", idx_file(0x08, {5, 0}, 0))).shape() == Shape{5, 0});
  CHECK(io::read_idx<float>(temp_file("empty0", idx_file(0x0E, {0, 7}, 0))).shape() == Shape{0, 7});
}

TEST_CASE("read_idx rejects corrupt files before allocating, naming the file and field") {
  SECTION("missing file") {
    CHECK_THROWS_WITH(io::read_idx<float>("/nonexistent/images"), Contains("/nonexistent/images: cannot open"));
  }
  SECTION("too short for a header") {
    CHECK_THROWS_WITH(io::read_idx<float>(temp_file("short", {0, 0})),
                      Contains("too short for the IDX header (field: magic)"));
  }
  SECTION("wrong magic") {
    const std::string path = temp_file("magic", {0x1F, 0x8B, 0x08, 0x03, 0, 0, 0, 0});
    CHECK_THROWS_WITH(io::read_idx<float>(path), Contains(path + ": bad magic number 0x1F8B0803"));
  }
  SECTION("unknown element type") {
    CHECK_THROWS_WITH(io::read_idx<float>(temp_file("type", idx_file(0x07, {1}, 1))),
                      Contains("unknown element type 0x07 (field: type)"));
  }
  SECTION("too many dimensions") {
    CHECK_THROWS_WITH(io::read_idx<float>(temp_file("rank", {0, 0, 0x08, 200})),
                      Contains("200 dimensions, supported are 1 to 6 (field: dimension count)"));
    CHECK_THROWS_WITH(io::read_idx<float>(temp_file("rank0", {0, 0, 0x08, 0})), Contains("0 dimensions"));
  }
  SECTION("header cut inside the dimensions") {
    CHECK_THROWS_WITH(io::read_idx<float>(temp_file("dims", {0, 0, 0x08, 3, 0, 0, 0, 5})),
                      Contains("truncated header: 3 dimensions need 16 bytes, file has 8"));
  }
  SECTION("sizes whose product overflows 64 bits") {
    CHECK_THROWS_WITH(
        io::read_idx<float>(temp_file("overflow", idx_file(0x0E, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, 8))),
        Contains("4294967295 x 4294967295 x 4294967295 need more data than the file's 8 bytes"));
  }
  SECTION("sizes larger than the file (truncated data)") {
    CHECK_THROWS_WITH(io::read_idx<float>(temp_file("truncated", idx_file(0x08, {60000, 28, 28}, 1000))),
                      Contains("60000 x 28 x 28 need more data than the file's 1000 bytes"));
    CHECK_THROWS_WITH(io::read_idx<float>(temp_file("truncated16", idx_file(0x0B, {3}, 5))),
                      Contains("field: dimension sizes"));
  }
  SECTION("trailing bytes") {
    CHECK_THROWS_WITH(io::read_idx<float>(temp_file("trailing", idx_file(0x08, {2, 2}, 5))),
                      Contains("need 4 bytes of data but the file has 5"));
  }
}

TEST_CASE("load_mnist reads the shipped 1,000-image subset") {
  const io::Mnist<float> m = io::load_mnist<float>(test::data_path("mnist-subset"));
  CHECK(m.train_images.shape() == Shape{1000, 1, 28, 28});
  CHECK(m.train_labels.shape() == Shape{1000});
  CHECK(m.test_images.shape() == Shape{1000, 1, 28, 28});
  CHECK(m.train_images.flat().minCoeff() == 0.f);
  CHECK(m.train_images.flat().maxCoeff() == 1.f);
  CHECK(m.train_labels.flat().maxCoeff() == 9.f);
  CHECK(m.train_labels[0] == 5.f);  // the famous first MNIST digit
  CHECK(m.test_labels[0] == 7.f);
}

TEST_CASE("load_mnist explains a missing or inconsistent directory") {
  CHECK_THROWS_WITH(io::load_mnist<float>("/nonexistent"), Contains("no train-images-idx3-ubyte in '/nonexistent'"));
  const auto dir = std::filesystem::temp_directory_path() / "glassbox_test_mnist";
  std::filesystem::create_directories(dir);
  const auto images = idx_file(0x08, {2, 28, 28}, 2 * 784);
  const auto labels = idx_file(0x08, {3}, 3);
  for (const char* split : {"train", "t10k"}) {
    std::ofstream((dir / (std::string(split) + "-images-idx3-ubyte")).string(), std::ios::binary)
        .write(reinterpret_cast<const char*>(images.data()), static_cast<std::streamsize>(images.size()));
    std::ofstream((dir / (std::string(split) + "-labels-idx1-ubyte")).string(), std::ios::binary)
        .write(reinterpret_cast<const char*>(labels.data()), static_cast<std::streamsize>(labels.size()));
  }
  CHECK_THROWS_WITH(io::load_mnist<float>(dir.string()), Contains("3 labels for 2 images"));
}

namespace {

std::vector<std::string> files_in(const std::string& relative) {
  std::vector<std::string> files;
  if (!std::filesystem::is_directory(test::data_path(relative))) return files;  // git keeps no empty folders
  for (const auto& entry : std::filesystem::directory_iterator(test::data_path(relative)))
    if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

// scripts/fuzz.sh starts from the seeds and commits what it finds (once fixed)
// to regressions/: each must load or fail with glassbox::Error, never crash.
TEST_CASE("fuzz seeds load, and fuzz findings give glassbox::Error, never a crash") {
  const auto idx_seeds = files_in("fuzz/seeds/idx"), checkpoint_seeds = files_in("fuzz/seeds/checkpoint");
  CHECK(idx_seeds.size() >= 5);
  CHECK(checkpoint_seeds.size() >= 3);
  for (const std::string& f : idx_seeds) CHECK_NOTHROW(io::read_idx<float>(f));
  for (const std::string& f : checkpoint_seeds) CHECK_NOTHROW(io::load_checkpoint<float>(f));
  for (const std::string& f : files_in("fuzz/regressions/idx")) {
    INFO(f);
    try {
      io::read_idx<float>(f);
    } catch (const Error& e) {
      CHECK_THAT(e.what(), Contains(f));
    }
  }
  for (const std::string& f : files_in("fuzz/regressions/checkpoint")) {
    INFO(f);
    try {
      io::Checkpoint<float> c = io::load_checkpoint<float>(f);
      // What loads saves and loads again, as the fuzz target demands.
      io::checkpoint_from_bytes<float>(io::checkpoint_bytes(c.model, c.optimizer.get(), c.epochs_completed));
    } catch (const Error& e) {
      CHECK_THAT(e.what(), Contains(f));
    }
  }
}

TEST_CASE("export_onnx names what it cannot export") {
  Sequential<float> m(Shape{4});
  m.add<nn::Dense<float>>(4, 2);
  CHECK_THROWS_WITH(io::onnx_bytes(m, 12), Contains("opset 12") && Contains("13 to 17"));
  CHECK_THROWS_WITH(io::onnx_bytes(m, 18), Contains("opset 18"));
  Sequential<float> no_shape;
  no_shape.add<nn::Dense<float>>(4, 2);
  CHECK_THROWS_WITH(io::onnx_bytes(no_shape), Contains("no sample shape"));
  CHECK_NOTHROW(io::onnx_bytes(no_shape, 13, Shape{4}));
  CHECK_THROWS_WITH(io::onnx_bytes(no_shape, 13, Shape{5}), Contains("dense_1"));
  Sequential<float> clash(Shape{4});
  clash.add<nn::Dense<float>>(4, 2, nn::Dense<float>::Options{}).set_name("output");
  CHECK_THROWS_WITH(io::onnx_bytes(clash), Contains("clash with the graph's output tensor"));
  // The protobuf starts with ir_version = 8 (field 1, varint): bytes 08 08.
  const std::string bytes = io::onnx_bytes(m);
  REQUIRE(bytes.size() > 2);
  CHECK(bytes[0] == '\x08');
  CHECK(bytes[1] == '\x08');
  CHECK(bytes.find("dense_1.weight") != std::string::npos);
}

TEST_CASE("read_arff: attributes, quoted nominal values, missing values; TableEncoder's one-hot and z-scores") {
  const std::string path = (std::filesystem::temp_directory_path() / "glassbox_test.arff").string();
  {
    std::ofstream f(path);
    f << "% a comment\n@RELATION 'tiny set'\n\n@attribute colour { red, 'light blue', \"x,y\"}\n"
         "@attribute size NUMERIC\n@Attribute 'the class' {yes,no}\n@data\n"
         "red, 1.5, yes\n'light blue',2.5,no\n\"x,y\",?,yes\r\n  % another comment\n?,4,no\n";
  }
  const io::Table t = io::read_arff(path);
  CHECK(t.relation == "tiny set");
  REQUIRE(t.columns.size() == 3);
  CHECK(t.columns[0].values == std::vector<std::string>{"red", "light blue", "x,y"});
  CHECK_FALSE(t.columns[1].nominal());
  CHECK(t.columns[2].name == "the class");
  REQUIRE(t.rows.size() == 4);
  CHECK(t.rows[1] == std::vector<double>{1, 2.5, 1});
  CHECK(t.text(2, 0) == "x,y");
  CHECK(std::isnan(t.rows[2][1]));
  CHECK(t.text(3, 0) == "?");
  CHECK(t.column("size") == 1);
  CHECK_THROWS_WITH(t.column("weight"), Contains("no column 'weight'"));

  // Size standardised over rows 0, 1 and 3 (mean 8/3; the missing one is 0);
  // colour one-hot, a missing colour all zeros; the class left out.
  const io::TableEncoder encoder(t, {"the class"});
  CHECK(encoder.width() == 4);
  CHECK(encoder.input_names() == std::vector<std::string>{"colour=red", "colour=light blue", "colour=x,y", "size"});
  CHECK(encoder.groups() == std::vector<std::vector<index_t>>{{0, 1, 2}, {3}});
  const Tensor<double> x = encoder.features<double>(t);
  const double mean = 8.0 / 3, sd = std::sqrt((1.5 * 1.5 + 2.5 * 2.5 + 16) / 3 - mean * mean);
  CHECK(x.matrix()(0, 0) == 1);
  CHECK(x.matrix()(0, 1) == 0);
  CHECK(x.matrix()(0, 3) == Approx((1.5 - mean) / sd));
  CHECK(x.matrix()(2, 3) == 0);
  CHECK(x.matrix().row(3).head(3).sum() == 0);
  CHECK_THROWS_WITH(io::TableEncoder(t, {"nope"}), Contains("no column 'nope'"));

  auto refused = [&](const std::string& text, const std::string& why) {
    {
      std::ofstream f(path);
      f << text;
    }
    CHECK_THROWS_WITH(io::read_arff(path), Contains(why));
  };
  refused("@relation r\n@attribute a numeric\n@data\n1,2\n", ":4: 2 values, the header declares 1 attributes");
  refused("@relation r\n@attribute a {p, q}\n@data\nr\n", ":4: 'r' is not a value of attribute 'a'");
  refused("@relation r\n@attribute a numeric\n@data\n1x\n", ":4: '1x' is not a number (attribute 'a')");
  refused("@relation r\n@attribute when date\n@data\n", ":2: attribute 'when' of type 'date' is not supported");
  refused("@relation r\n@attribute a numeric\n@data\n{0 1}\n", ":4: sparse rows are not supported");
  refused("@relation r\n@attribute a {p, 'q}\n", ":2: an unclosed quote");
  refused("@relation r\n@attribute a numeric\n", "has no @data section");
  refused("hello\n", ":1: 'hello' where a header line");
  std::remove(path.c_str());
  CHECK_THROWS_WITH(io::read_arff(path), Contains("cannot open"));
}
