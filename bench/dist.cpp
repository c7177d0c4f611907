// Benchmark: the seed CNN trained data-parallel (dist::DataParallel) on
// synthetic MNIST-shaped data. bench/dist.sh runs it on 1 and 2 ranks and as
// one process without MPI collectives, and prints the scaling.
//
//   mpirun -np R bench_dist [BATCH_PER_RANK] [SAMPLES]     (32, 8192)
//   bench_dist --plain [BATCH] [SAMPLES]                    one process, plain fit
//
// Prints "glassbox dist ranks R threads T batch B samples/s S wait W": the
// best of 3 timed epochs after a warm-up epoch, and the share of rank 0's
// training time spent waiting for gradient averaging after backward.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <glassbox/dist/data_parallel.hpp>
#include <glassbox/dist/environment.hpp>

#include "bench_util.hpp"

using namespace glassbox;

int main(int argc, char** argv) {
  dist::Environment mpi(argc, argv);
  try {
    const bool plain = argc > 1 && std::strcmp(argv[1], "--plain") == 0;
    const int first = plain ? 2 : 1;
    const index_t batch = argc > first ? std::atol(argv[first]) : 32;
    const index_t n = argc > first + 1 ? std::atol(argv[first + 1]) : 8192;
    dist::Communicator world;
    Rng rng(0);
    Tensor<float> x(Shape{n, 1, 28, 28}), y(Shape{n});
    for (float& v : x) v = static_cast<float>(rng.uniform());
    for (float& v : y) v = static_cast<float>(rng.below(10));

    Sequential<float> model = bench::seed_cnn();
    optim::Adam<float> adam(model.parameters(), 1e-3f);
    nn::SoftmaxCrossEntropy<float> loss;
    dist::DataParallel<float> replicas(world);
    train::FitOptions<float> options;
    options.epochs = 4;
    options.batch_size = batch;
    options.verbosity = train::Verbosity::silent;
    if (!plain) options.replicas = &replicas;
    double best = 1e300, wait_share = 0;
    double waited = 0;
    train::LambdaCallback timing;  // rank 0's epochs; the first is a warm-up
    timing.epoch_end = [&](const train::EpochLogs& e) {
      if (e.epoch > 0 && e.seconds < best) {
        best = e.seconds;
        wait_share = (replicas.wait_seconds() - waited) / e.seconds;
      }
      waited = replicas.wait_seconds();
    };
    options.callbacks = {&timing};
    train::fit(model, adam, loss, x, y, options);
    if (world.rank() == 0)
      std::printf("glassbox dist ranks %d threads %d batch %td samples/s %.0f wait %.3f\n", plain ? 1 : world.size(),
                  num_threads(), batch, static_cast<double>(n) / best, plain ? 0.0 : wait_share);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_dist: %s\n", e.what());
    mpi.fail();
    return 1;
  }
}
