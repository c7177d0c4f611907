#pragma once
// Rng: a seeded xoshiro256** generator whose streams are identical on every
// compiler and standard library (std:: distributions are not), so seeded
// initialisation and shuffling are reproducible everywhere.

#include <array>
#include <cmath>
#include <cstdint>
#include <utility>

#include "glassbox/core/error.hpp"

namespace glassbox {

class Rng {
 public:
  explicit Rng(std::uint64_t seed = 42) { reseed(seed); }

  // The complete state, to save and restore a stream exactly (checkpoints).
  struct State {
    std::array<std::uint64_t, 4> words{};
    bool has_spare_normal = false;
    double spare_normal = 0;
  };
  State state() const { return {state_, has_spare_normal_, spare_normal_}; }
  // Throws for the all-zero state, from which xoshiro never leaves.
  void set_state(const State& s) {
    if (s.words[0] == 0 && s.words[1] == 0 && s.words[2] == 0 && s.words[3] == 0)
      throw Error("Rng: the all-zero state is invalid");
    state_ = s.words;
    has_spare_normal_ = s.has_spare_normal;
    spare_normal_ = s.spare_normal;
  }

  void reseed(std::uint64_t seed) {
    for (auto& s : state_) s = splitmix64(seed);
    has_spare_normal_ = false;
  }

  std::uint64_t next_u64() {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Skips `count` draws of next_u64.
  void discard(std::uint64_t count) {
    for (std::uint64_t i = 0; i < count; ++i) next_u64();
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  double uniform(double low, double high) { return low + (high - low) * uniform(); }

  // Standard normal by Box-Muller (exact, unlike ratio approximations).
  double normal() {
    if (has_spare_normal_) {
      has_spare_normal_ = false;
      return spare_normal_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double angle = 6.283185307179586 * u2;
    spare_normal_ = radius * std::sin(angle);
    has_spare_normal_ = true;
    return radius * std::cos(angle);
  }
  double normal(double mean, double stddev) { return mean + stddev * normal(); }

  // Uniform integer in [0, n), unbiased (rejection of the short tail).
  std::uint64_t below(std::uint64_t n) {
    const std::uint64_t limit = n == 0 ? 0 : (~std::uint64_t{0} - n + 1) % n;  // 2^64 mod n
    std::uint64_t x = next_u64();
    while (x < limit) x = next_u64();
    return n == 0 ? 0 : x % n;
  }

  // Fisher-Yates shuffle of a random-access range.
  template <class It>
  void shuffle(It first, It last) {
    const auto n = static_cast<std::uint64_t>(last - first);
    for (std::uint64_t i = n; i > 1; --i) {
      using std::swap;
      swap(first[static_cast<std::ptrdiff_t>(i - 1)], first[static_cast<std::ptrdiff_t>(below(i))]);
    }
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix64(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  std::array<std::uint64_t, 4> state_{};
  double spare_normal_ = 0.0;
  bool has_spare_normal_ = false;
};

}  // namespace glassbox
