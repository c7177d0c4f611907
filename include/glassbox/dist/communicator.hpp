#pragma once
// dist::Communicator: a process's place in an MPI job (rank, size) and the
// collectives glassbox needs, each of which fails instead of hanging when
// another rank has failed.
//
// Requires MPI initialised with at least MPI_THREAD_FUNNELED (glassbox runs
// OpenMP threads; only the thread that made the Communicator calls MPI):
// dist::Environment does that. The Communicator works on its own duplicates
// of the given communicator, so its messages never mix with the caller's.
//
// Failures. A rank that leaves training with an error calls fail(what): every
// other rank, waiting in any collective of a Communicator made from the same
// communicator, then throws glassbox::Error "rank R failed: what" instead of
// waiting forever. (A rank that dies outright is mpirun's to notice: it ends
// the whole job.) After a failure the job cannot go on: dist::Environment
// ends it with MPI_Abort instead of MPI_Finalize, which would wait for the
// failed rank.

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "glassbox/core/error.hpp"

namespace glassbox::dist {

namespace detail {
// Whether this process has seen a failure (its own, or another rank's): MPI
// must then be aborted, not finalised.
inline std::atomic<bool>& job_failed() {
  static std::atomic<bool> failed{false};
  return failed;
}

// Whether this process is the one that failed (and told the others).
inline std::atomic<bool>& failed_here() {
  static std::atomic<bool> failed{false};
  return failed;
}

inline void check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw Error(fmt::format("{}: {}", call, std::string(text, static_cast<std::size_t>(length))));
}

template <class V>
MPI_Datatype datatype() {
  if constexpr (std::is_same_v<V, float>)
    return MPI_FLOAT;
  else if constexpr (std::is_same_v<V, double>)
    return MPI_DOUBLE;
  else if constexpr (std::is_same_v<V, std::uint64_t>)
    return MPI_UINT64_T;
  else if constexpr (std::is_same_v<V, std::int64_t>)
    return MPI_INT64_T;
  else if constexpr (std::is_same_v<V, int>)
    return MPI_INT;
  else if constexpr (std::is_same_v<V, char>)
    return MPI_CHAR;
  else
    static_assert(!sizeof(V), "dist: no MPI datatype for this type");
}
}  // namespace detail

class Communicator {
 public:
  explicit Communicator(MPI_Comm comm = MPI_COMM_WORLD) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized)
      throw Error("dist::Communicator: MPI is not initialised (create a dist::Environment first)");
    int provided = MPI_THREAD_SINGLE;
    MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_FUNNELED)
      throw Error(
          "dist::Communicator: MPI was initialised without thread support (MPI_Init); glassbox runs OpenMP "
          "threads, so initialise it with MPI_Init_thread and at least MPI_THREAD_FUNNELED (dist::Environment does)");
    detail::check(MPI_Comm_dup(comm, &data_), "MPI_Comm_dup");
    detail::check(MPI_Comm_dup(comm, &control_), "MPI_Comm_dup");
    // Errors become glassbox::Error (detail::check) rather than aborting the job.
    MPI_Comm_set_errhandler(data_, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(control_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(data_, &rank_);
    MPI_Comm_size(data_, &size_);
  }
  ~Communicator() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized || detail::job_failed()) return;  // a failed job is aborted, not tidied up
    MPI_Comm_free(&data_);
    MPI_Comm_free(&control_);
  }
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm comm() const { return data_; }

  // Waits for a request, watching for other ranks' failures meanwhile.
  void wait(MPI_Request& request, const char* what) {
    for (int spins = 0;; ++spins) {
      int done = 0;
      detail::check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), what);
      if (done) return;
      throw_if_peer_failed();
      if (spins > 64) std::this_thread::yield();  // ranks may share cores
    }
  }
  // Drives MPI's progress on pending requests without waiting (Open MPI
  // moves non-blocking collectives on only inside MPI calls).
  void progress(MPI_Request& request) {
    int done = 0;
    detail::check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
  }

  // Starts summing `count` values in place over all ranks.
  template <class V>
  MPI_Request start_sum(V* values, std::size_t count) {
    MPI_Request request = MPI_REQUEST_NULL;
    detail::check(
        MPI_Iallreduce(MPI_IN_PLACE, values, int_count(count), detail::datatype<V>(), MPI_SUM, data_, &request),
        "MPI_Iallreduce");
    return request;
  }
  template <class V>
  void sum(V* values, std::size_t count) {
    MPI_Request request = start_sum(values, count);
    wait(request, "MPI_Iallreduce");
  }
  template <class V>
  void max(V* values, std::size_t count) {
    reduce(values, count, MPI_MAX);
  }
  void bit_or(std::uint64_t* values, std::size_t count) { reduce(values, count, MPI_BOR); }
  // Rank `root`'s values, on every rank (in pieces of at most INT_MAX).
  template <class V>
  void broadcast(V* values, std::size_t count, int root = 0) {
    std::size_t done = 0;
    do {
      const std::size_t piece = std::min<std::size_t>(count - done, INT_MAX);
      MPI_Request request = MPI_REQUEST_NULL;
      detail::check(MPI_Ibcast(values + done, static_cast<int>(piece), detail::datatype<V>(), root, data_, &request),
                    "MPI_Ibcast");
      wait(request, "MPI_Ibcast");
      done += piece;
    } while (done < count);
  }
  // Every rank's values, in rank order.
  template <class V>
  std::vector<V> gather_all(const V* values, std::size_t count) {
    std::vector<V> all(count * static_cast<std::size_t>(size_));
    MPI_Request request = MPI_REQUEST_NULL;
    detail::check(MPI_Iallgather(values, int_count(count), detail::datatype<V>(), all.data(), int_count(count),
                                 detail::datatype<V>(), data_, &request),
                  "MPI_Iallgather");
    wait(request, "MPI_Iallgather");
    return all;
  }
  void barrier() {
    MPI_Request request = MPI_REQUEST_NULL;
    detail::check(MPI_Ibarrier(data_, &request), "MPI_Ibarrier");
    wait(request, "MPI_Ibarrier");
  }

  // Tells every other rank that this one failed with `what`. Once per
  // process; a rank that is failing because another did stays quiet.
  void fail(const std::string& what) noexcept {
    if (detail::job_failed().exchange(true)) return;
    detail::failed_here() = true;
    // Kept until the process ends: the sends below may still read it after
    // this returns (their requests are freed, not waited for).
    static std::string message;
    message = what.substr(0, max_message);
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      // Small messages go out eagerly: no need to wait for the receiver.
      MPI_Request request = MPI_REQUEST_NULL;
      if (MPI_Isend(message.data(), static_cast<int>(message.size()), MPI_CHAR, r, failure_tag, control_, &request) ==
          MPI_SUCCESS)
        MPI_Request_free(&request);
    }
  }

  // Throws "rank R failed: ..." if another rank has called fail().
  void throw_if_peer_failed() {
    int arrived = 0;
    MPI_Status status;
    detail::check(MPI_Iprobe(MPI_ANY_SOURCE, failure_tag, control_, &arrived, &status), "MPI_Iprobe");
    if (!arrived) return;
    int length = 0;
    MPI_Get_count(&status, MPI_CHAR, &length);
    std::string message(static_cast<std::size_t>(std::clamp(length, 0, max_message)), '\0');
    MPI_Recv(message.data(), static_cast<int>(message.size()), MPI_CHAR, status.MPI_SOURCE, failure_tag, control_,
             MPI_STATUS_IGNORE);
    detail::job_failed() = true;
    throw Error(fmt::format("rank {} failed: {}", status.MPI_SOURCE, message));
  }

 private:
  template <class V>
  void reduce(V* values, std::size_t count, MPI_Op op) {
    MPI_Request request = MPI_REQUEST_NULL;
    detail::check(MPI_Iallreduce(MPI_IN_PLACE, values, int_count(count), detail::datatype<V>(), op, data_, &request),
                  "MPI_Iallreduce");
    wait(request, "MPI_Iallreduce");
  }

  static int int_count(std::size_t count) {
    if (count > static_cast<std::size_t>(INT_MAX))
      throw Error(fmt::format("dist: {} values in one message (at most {})", count, INT_MAX));
    return static_cast<int>(count);
  }

  static constexpr int failure_tag = 7;
  static constexpr int max_message = 1024;
  MPI_Comm data_ = MPI_COMM_NULL;
  MPI_Comm control_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace glassbox::dist
