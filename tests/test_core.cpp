// core/: Shape, Tensor, Rng, Parameter, thread settings; nn/init.hpp.
#include <algorithm>
#include <cstdlib>
#include <numeric>

#include "support.hpp"

using namespace glassbox;
using Catch::Matchers::Contains;

TEST_CASE("Shape: size, batch dimension and printing") {
  const Shape s{32, 1, 28, 28};
  CHECK(s.rank() == 4);
  CHECK(s.size() == 32 * 784);
  CHECK(s.sample() == Shape{1, 28, 28});
  CHECK(Shape{784}.batched(32) == Shape{32, 784});
  CHECK(s.str() == "(32, 1, 28, 28)");
  CHECK(Shape{}.size() == 1);
  CHECK_THROWS_WITH((Shape{1, 2, 3, 4, 5, 6, 7}), Contains("rank 7 exceeds the maximum of 6"));
  CHECK_THROWS_WITH((Shape{2, -1}), Contains("dimension 1 is negative"));
  const index_t huge = index_t{1} << 32;
  CHECK_THROWS_WITH((Shape{huge, huge}), Contains("(4294967296, 4294967296) has too many elements"));
  CHECK_THROWS_WITH((Shape{huge}.batched(huge)), Contains("too many elements"));
}

TEST_CASE("Tensor: views share memory, reshape keeps elements, resize keeps capacity") {
  Tensor<float> t(Shape{2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(t.matrix().rows() == 2);
  CHECK(t.matrix()(1, 2) == 6.f);  // row-major: one sample contiguous
  t.matrix()(0, 1) = 20.f;
  CHECK(t[1] == 20.f);
  t.reshape(Shape{3, 2});
  CHECK(t.matrix()(1, 0) == 3.f);
  CHECK_THROWS_WITH(t.reshape(Shape{4, 2}), Contains("cannot view (3, 2) (6 elements) as (4, 2) (8 elements)"));
  CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 16 == 0);

  const float* before = t.data();
  t.resize(Shape{1, 4});  // smaller: no reallocation
  CHECK(t.data() == before);
  CHECK(t.size() == 4);
  CHECK_THROWS_WITH((Tensor<float>(Shape{2, 2}, {1.f, 2.f, 3.f})), Contains("needs 4 values, got 3"));
}

TEST_CASE("gather_rows assembles a batch from chosen samples") {
  const Tensor<double> src(Shape{3, 2}, {0, 1, 10, 11, 20, 21});
  Tensor<double> dst;
  const std::vector<int> rows{2, 0};
  gather_rows(src, rows.begin(), rows.end(), dst);
  CHECK(dst.shape() == Shape{2, 2});
  CHECK(std::vector<double>(dst.begin(), dst.end()) == std::vector<double>{20, 21, 0, 1});
  const std::vector<int> bad{3};
  CHECK_THROWS_WITH(gather_rows(src, bad.begin(), bad.end(), dst), Contains("row 3 out of range [0, 3)"));
}

TEST_CASE("Rng: seeded streams repeat, distributions have the right moments") {
  Rng a(7), b(7), c(8);
  for (int i = 0; i < 5; ++i) {
    const auto va = a.next_u64();
    CHECK(va == b.next_u64());
    CHECK(va != c.next_u64());
  }
  Rng rng(1);
  const int n = 200000;
  double sum = 0, sum_sq = 0, usum = 0;
  for (int i = 0; i < n; ++i) {
    const double z = rng.normal();
    sum += z;
    sum_sq += z * z;
    const double u = rng.uniform();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    usum += u;
  }
  CHECK(std::abs(sum / n) < 0.01);
  CHECK(std::abs(sum_sq / n - 1.0) < 0.01);
  CHECK(std::abs(usum / n - 0.5) < 0.005);

  std::vector<int> perm(100);
  std::iota(perm.begin(), perm.end(), 0);
  rng.shuffle(perm.begin(), perm.end());
  std::vector<int> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted[0] == 0);
  CHECK(sorted[99] == 99);
  CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
  CHECK(perm != sorted);  // 1/100! chance of a false failure
  for (int i = 0; i < 1000; ++i) REQUIRE(rng.below(3) < 3);
}

TEST_CASE("Initializers match the Glorot and He definitions") {
  Rng rng(5);
  const index_t fan_in = 400, fan_out = 200;
  Tensor<double> w(Shape{fan_out, fan_in});
  auto variance = [&] { return w.flat().square().mean() - w.flat().mean() * w.flat().mean(); };

  nn::initialize(w, nn::Init::glorot_uniform, fan_in, fan_out, rng);
  const double limit = std::sqrt(6.0 / (fan_in + fan_out));
  CHECK(w.flat().abs().maxCoeff() <= limit);
  CHECK(w.flat().abs().maxCoeff() > 0.99 * limit);
  CHECK(variance() == Approx(2.0 / (fan_in + fan_out)).epsilon(0.03));

  nn::initialize(w, nn::Init::he_normal, fan_in, fan_out, rng);
  CHECK(variance() == Approx(2.0 / fan_in).epsilon(0.03));
  nn::initialize(w, nn::Init::glorot_normal, fan_in, fan_out, rng);
  CHECK(variance() == Approx(2.0 / (fan_in + fan_out)).epsilon(0.03));
  nn::initialize(w, nn::Init::he_uniform, fan_in, fan_out, rng);
  CHECK(w.flat().abs().maxCoeff() <= std::sqrt(6.0 / fan_in));
  CHECK(variance() == Approx(2.0 / fan_in).epsilon(0.03));
  nn::initialize(w, nn::Init::zeros, fan_in, fan_out, rng);
  CHECK(w.flat().abs().maxCoeff() == 0.0);
}

TEST_CASE("Parameter masks zero pruned entries and check their shape") {
  Parameter<float> p("weight", Shape{2, 2});
  p.value = Tensor<float>(Shape{2, 2}, {1, 2, 3, 4});
  p.set_mask(Tensor<float>(Shape{2, 2}, {1, 0, 0, 1}));
  CHECK(std::vector<float>(p.value.begin(), p.value.end()) == std::vector<float>{1, 0, 0, 4});
  CHECK_THROWS_WITH(p.set_mask(Tensor<float>(Shape{4}, 1.f)), Contains("weight: mask shape (4) does not match"));
}

TEST_CASE("parallel_for visits every index once and rethrows an iteration's exception") {
  std::vector<int> visits(1000, 0);
  parallel_for(1000, 2, [&](index_t i) { ++visits[static_cast<std::size_t>(i)]; });
  CHECK(std::all_of(visits.begin(), visits.end(), [](int v) { return v == 1; }));
  CHECK_THROWS_WITH(parallel_for(100, 2,
                                 [](index_t i) {
                                   if (i == 77) throw Error("iteration 77 failed");
                                 }),
                    "iteration 77 failed");
}

TEST_CASE("Thread count: configurable, validated, read from GLASSBOX_NUM_THREADS") {
  CHECK(num_threads() >= 1);
  set_num_threads(1);
  CHECK(num_threads() == 1);
  CHECK(Eigen::nbThreads() == 1);
  CHECK_THROWS_WITH(set_num_threads(0), Contains("must be positive"));
  setenv("GLASSBOX_NUM_THREADS", "3", 1);
  CHECK(default_num_threads() == 3);
  setenv("GLASSBOX_NUM_THREADS", "lots", 1);
  CHECK(default_num_threads() >= 1);
  unsetenv("GLASSBOX_NUM_THREADS");
}
