#pragma once
// dist::Environment: MPI for the length of main().
//
//   int main(int argc, char** argv) {
//     glassbox::dist::Environment mpi(argc, argv);  // first, so it is destroyed last
//     try { ... } catch (const std::exception& e) { print(e); mpi.fail(); return 1; }
//   }
//
// It initialises MPI with MPI_THREAD_FUNNELED (glassbox's OpenMP threads never
// call MPI). Unless GLASSBOX_NUM_THREADS says otherwise, it gives each rank
// an equal share of its host's cores, so that ranks on one host do not fight
// over them. On destruction it finalises MPI, or, when this process has seen
// a failure (its own or another rank's, see dist::Communicator) or is
// unwinding an exception, aborts the job: finalising would wait for the rank
// that failed. A rank that failed itself first gives the others a few seconds
// to report the failure.

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>

#include "glassbox/core/threads.hpp"
#include "glassbox/dist/communicator.hpp"

namespace glassbox::dist {

class Environment {
 public:
  Environment(int& argc, char**& argv) { init(&argc, &argv); }
  Environment() { init(nullptr, nullptr); }
  ~Environment() {
    if (!owner_) return;
    if (detail::job_failed() || std::uncaught_exceptions() > 0) {
      std::fflush(nullptr);
      if (detail::failed_here()) std::this_thread::sleep_for(std::chrono::seconds(3));
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Finalize();
  }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

  // Marks this process as failed, so that the job is aborted at exit rather
  // than left waiting for it (fit does this itself for errors in training).
  void fail() { detail::job_failed() = true; }

  // Ranks on this host.
  int local_size() const { return local_size_; }

 private:
  void init(int* argc, char*** argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) throw Error("dist::Environment: MPI is already initialised");
    int provided = MPI_THREAD_SINGLE;
    detail::check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owner_ = true;
    if (provided < MPI_THREAD_FUNNELED) {
      MPI_Finalize();
      owner_ = false;
      throw Error("dist::Environment: this MPI library gives no thread support (MPI_THREAD_FUNNELED)");
    }
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
    MPI_Comm_size(local, &local_size_);
    MPI_Comm_free(&local);
    if (!std::getenv("GLASSBOX_NUM_THREADS")) {
      const int cores = default_num_threads();
      set_num_threads(std::max(1, cores / local_size_));
    }
  }

  bool owner_ = false;
  int local_size_ = 1;
};

}  // namespace glassbox::dist
