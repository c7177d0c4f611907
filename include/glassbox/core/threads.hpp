#pragma once
// Thread settings in one place. The default is every core, or the value of
// GLASSBOX_NUM_THREADS; set_num_threads() overrides both. Eigen's GEMM and
// glassbox's OpenMP loops share this one setting so that two pools never
// compete for the same cores.

#include <fmt/format.h>

#include <Eigen/Core>
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <exception>
#include <thread>

#include "glassbox/core/error.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace glassbox {

// Index of the calling thread inside a parallel_for loop (0 outside), below
// the loop's thread count.
inline int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

namespace detail {
inline std::atomic<int>& configured_threads() {
  static std::atomic<int> n{0};  // 0: not yet decided
  return n;
}
}  // namespace detail

// Threads from GLASSBOX_NUM_THREADS when it holds a positive integer, else all cores.
inline int default_num_threads() {
  if (const char* env = std::getenv("GLASSBOX_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n > 0 && n <= 4096) return static_cast<int>(n);
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

inline void set_num_threads(int n) {
  if (n <= 0) throw Error(fmt::format("set_num_threads: thread count must be positive, got {}", n));
  detail::configured_threads() = n;
  Eigen::setNbThreads(n);
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

inline int num_threads() {
  if (detail::configured_threads() == 0) set_num_threads(default_num_threads());
  return detail::configured_threads();
}

// Runs body(i) for every i in [0, n), independent iterations (samples,
// channels) spread statically over `threads` threads of the one OpenMP pool
// that Eigen also uses (a plain loop without OpenMP). The count is explicit
// because OpenMP's own setting is per calling thread, and callers size their
// per-thread workspaces (indexed by thread_index()) with the same number.
// Eigen runs GEMMs inside such a loop single-threaded, so pools never nest.
// An exception from any iteration is rethrown here after the loop, since one
// leaving an OpenMP region would terminate the program.
template <class Body>
void parallel_for(std::ptrdiff_t n, int threads, Body&& body) {
  if (threads <= 1 || n <= 1) {  // no parallel region: entering one costs more than small work
    for (std::ptrdiff_t i = 0; i < n; ++i) body(i);
    return;
  }
  std::exception_ptr error;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
  for (std::ptrdiff_t i = 0; i < n; ++i) {
    try {
      body(i);
    } catch (...) {
#ifdef _OPENMP
#pragma omp critical(glassbox_parallel_for_error)
#endif
      if (!error) error = std::current_exception();
    }
  }
  (void)threads;
  if (error) std::rethrow_exception(error);
}

}  // namespace glassbox
