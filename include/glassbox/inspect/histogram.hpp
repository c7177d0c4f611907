#pragma once
// Histogram: counts of values in equal bins, as the recorders keep them
// (ActivationStats per layer output, ParameterHistograms per parameter), and
// the kernel that fills one.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "glassbox/core/shape.hpp"
#include "glassbox/core/threads.hpp"

namespace glassbox::inspect {

struct Histogram {
  double low = 0;  // bins split [low, high] evenly; the last bin includes high
  double high = 0;
  std::vector<std::uint64_t> counts;
  std::uint64_t below = 0;  // finite values outside a fixed range
  std::uint64_t above = 0;
  // Exact zeros among the binned values (also counted in the bin that holds
  // 0): after a ReLU they would hide every other bar, so a view can leave them out.
  std::uint64_t zeros = 0;
};

// Keeps a record's histogram (and the ring of `capacity` of them) bounded.
constexpr int max_histogram_bins = 4096;

namespace detail {

// Bins the n values into h: over `range` when given, otherwise over [min,
// max] of the finite values (a NaN min: there are none, nothing is binned).
// Slots are computed 16 values at a time in a vectorisable loop: 0 below the
// range, 1..bins the bins, bins + 1 above, bins + 2 non-finite. Each of the
// 16 positions has its own tally, so that repeated slots (all the zeros after
// a ReLU) do not make each increment wait for the one before; the increments
// (about 2.5 cycles each) are most of the cost.
template <class T>
void fill_histogram(const T* values, index_t n, int bins, const std::optional<std::pair<double, double>>& range,
                    double min, double max, Histogram& h) {
  if (bins <= 0) return;
  h.counts.assign(static_cast<std::size_t>(bins), 0);
  if (range) {
    h.low = range->first;
    h.high = range->second;
  } else if (!std::isnan(min)) {
    h.low = min;
    h.high = max > min ? max : min + 1;  // one value: one bin of width 1/bins above it
  } else {
    return;  // no finite value to bin
  }
  constexpr int lanes = 16;
  const int slots = bins + 3;
  const T low = static_cast<T>(h.low), scale = static_cast<T>(bins / (h.high - h.low));
  const T bins_t = static_cast<T>(bins);
  // Selects rather than branches, so that the loop below vectorises (a branch
  // on the sign of each value is mispredicted half the time after a ReLU).
  auto slot_of = [low, scale, bins_t](T v) {
    T q = (v - low) * scale;
    q = q < T(0) ? T(-1) : q;
    q = q >= bins_t ? (q == bins_t ? bins_t - 1 : bins_t) : q;
    q = std::abs(v) <= std::numeric_limits<T>::max() ? q : bins_t + 1;
    return static_cast<int>(q) + 1;
  };
  // Large samples are split over the threads; the sample's halves were
  // gathered by the same threads, so each bins what is in its own cache.
  const int parts = n >= 8192 ? num_threads() : 1;
  std::vector<std::vector<std::uint64_t>> part_totals(static_cast<std::size_t>(parts));
  parallel_for(parts, parts, [&](std::ptrdiff_t part) {
    std::vector<std::uint32_t> lane_tallies(static_cast<std::size_t>(lanes * slots));
    std::uint32_t* __restrict tally = lane_tallies.data();  // __restrict: the stores do not move `values`
    std::vector<std::uint64_t>& total = part_totals[static_cast<std::size_t>(part)];
    total.assign(static_cast<std::size_t>(slots) + 1, 0);  // the last slot: the exact zeros
    const index_t first = n * part / parts / lanes * lanes;
    const index_t last = part + 1 == parts ? n : n * (part + 1) / parts / lanes * lanes;
    std::uint64_t zeros = 0;
    for (index_t i = first; i < last; ++i) zeros += values[i] == T(0);
    total.back() = zeros;
    // 32-bit tallies are cheaper to increment; they are flushed well before they could wrap.
    constexpr index_t block = index_t{1} << 31;
    for (index_t begin = first; begin < last; begin += block) {
      const index_t end = std::min(last, begin + block);
      index_t i = begin;
      for (; i + lanes <= end; i += lanes) {
        int slot[lanes];
#ifdef _OPENMP
#pragma omp simd
#endif
        for (int j = 0; j < lanes; ++j) slot[j] = slot_of(values[i + j]) + j * slots;
        for (int j = 0; j < lanes; ++j) ++tally[slot[j]];
      }
      for (; i < end; ++i) ++tally[slot_of(values[i])];
      for (int lane = 0; lane < lanes; ++lane)
        for (int slot = 0; slot < slots; ++slot) {
          total[static_cast<std::size_t>(slot)] += tally[lane * slots + slot];
          tally[lane * slots + slot] = 0;
        }
    }
  });
  std::vector<std::uint64_t>& total = part_totals[0];
  for (int part = 1; part < parts; ++part)
    for (std::size_t slot = 0; slot < total.size(); ++slot)
      total[slot] += part_totals[static_cast<std::size_t>(part)][slot];
  std::copy(total.begin() + 1, total.begin() + 1 + bins, h.counts.begin());
  h.below = total[0];
  h.above = total[static_cast<std::size_t>(bins) + 1];
  h.zeros = total.back();
  if (!range) {  // an adaptive range holds every finite value: outside it is rounding
    h.counts.front() += h.below;
    h.counts.back() += h.above;
    h.below = h.above = 0;
  }
}

}  // namespace detail
}  // namespace glassbox::inspect
