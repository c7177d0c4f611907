// The seed CNN trained data-parallel on MPI: the same model, optimizer, data,
// recorders and run directory as mnist_cnn (seed_cnn_run.hpp), over any
// number of processes, on one host or many.
//
//   mpirun -np 2 mnist_cnn_dist [MNIST_DIR] [EPOCHS] [RUN_DIR] [BATCH_PER_RANK]
//   (data/mnist, 5, runs/seed_cnn_dist-<date>-<time>, 32 / ranks: a global batch of 32 as the seed CNN's)
//
// Every rank loads the data set and builds the model; dist::DataParallel
// gives every rank rank 0's parameters, shards each global batch, and
// averages the gradients with non-blocking allreduces that overlap backward.
// ActivationStats and GradientFlow are merged over the ranks: each record
// describes the global batch, as one process's would, and each parameter's
// record also holds every rank's own gradient norm before averaging. Rank 0
// alone runs the callbacks (progress, the per-layer table, saliency, parameter histograms,
// TensorBoard) and writes RUN_DIR as mnist_cnn does, plus checkpoint.gbck
// with the run's shape. Test accuracy is evaluated sharded over the ranks.
// Each rank runs cores / ranks-on-its-host threads unless
// GLASSBOX_NUM_THREADS says otherwise.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <glassbox/dist/data_parallel.hpp>
#include <glassbox/dist/environment.hpp>
#include <memory>
#include <string>

#include "seed_cnn_run.hpp"

int main(int argc, char** argv) {
  using namespace glassbox;
  dist::Environment mpi(argc, argv);  // first: ends MPI (or the failed job) last
  int rank = -1;
  try {
    dist::Communicator world;
    rank = world.rank();
    const bool lead = rank == 0;
    const std::string dir = argc > 1 ? argv[1] : "data/mnist";
    const int epochs = argc > 2 ? std::atoi(argv[2]) : 5;
    std::string run = argc > 3 ? argv[3] : "";
    if (run.empty()) {  // rank 0's clock names the run
      std::int64_t now = std::time(nullptr);
      world.broadcast(&now, 1);
      run = "runs/seed_cnn_dist-" + seed_cnn::timestamp(static_cast<std::time_t>(now));
    }
    const index_t batch = argc > 4 ? std::atol(argv[4]) : std::max(1, 32 / world.size());

    io::Mnist<float> data = io::load_mnist<float>(dir);
    Sequential<float> model = seed_cnn::model();
    if (lead) {
      std::printf(
          "MNIST from %s: %td training and %td test images; %d ranks x %d thread(s), batch %td per rank "
          "(global %td)\n%s",
          dir.c_str(), data.train_images.dim(0), data.test_images.dim(0), world.size(), num_threads(), batch,
          batch * world.size(), model.summary().c_str());
      std::fflush(stdout);
    }
    seed_cnn::Watch watch(model, data.test_images,
                          data.test_labels);  // NanWatch on every rank: a NaN stops the job, naming its rank

    optim::Adam<float> adam(model.parameters(), 1e-3f);
    nn::SoftmaxCrossEntropy<float> loss;
    dist::DataParallel<float> replicas(world);
    replicas.merge_records(watch.stats);
    replicas.merge_records(watch.flow);
    train::FitOptions<float> options;
    options.epochs = epochs;
    options.batch_size = batch;
    options.seed = 7;
    options.validation_x = &data.test_images;
    options.validation_y = &data.test_labels;
    options.replicas = &replicas;
    // Callbacks run on rank 0 only: so do these, and the TensorBoard writer.
    train::LambdaCallback per_rank;
    per_rank.epoch_end = [&](const train::EpochLogs&) {
      const inspect::ParameterGradientRecord& dense = watch.flow.parameter("dense_1.weight").records.back();
      std::printf("  dense_1.weight gradient norm %.4g averaged; before averaging, by rank:", dense.grad_norm);
      for (const double n : dense.rank_grad_norms) std::printf(" %.4g", n);
      std::printf("\n");
      std::fflush(stdout);
    };
    std::unique_ptr<viz::TensorBoardWriter> tensorboard;
    std::unique_ptr<viz::TensorBoardLogger<float>> tensorboard_logger;
    if (lead) {
      tensorboard = std::make_unique<viz::TensorBoardWriter>(run + "/tensorboard");
      tensorboard_logger =
          std::make_unique<viz::TensorBoardLogger<float>>(*tensorboard, model, &watch.stats, &watch.flow, &adam);
      options.callbacks = watch.callbacks();
      options.callbacks.push_back(&per_rank);
      options.callbacks.push_back(tensorboard_logger.get());
    }

    std::vector<seed_cnn::Embedding> maps;  // on rank 0: the penultimate layer before training, then after
    if (lead) maps.push_back(seed_cnn::capture_embedding(model, data.test_images, "before training", false));
    const auto start = std::chrono::steady_clock::now();
    const train::History history = train::fit(model, adam, loss, data.train_images, data.train_labels, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const train::Evaluation test = train::evaluate(model, loss, data.test_images, data.test_labels, 256, &replicas);

    // How long each rank waited for gradients after its backward, as a share of training.
    double waited = replicas.wait_seconds();
    double longest = waited;
    world.max(&longest, 1);
    world.sum(&waited, 1);
    if (!lead) return 0;
    for (const train::EpochLogs& e : history.epochs)
      std::printf("epoch %d: loss %.4f, accuracy %.2f%%, validation accuracy %.2f%% (%.1f s)\n", e.epoch + 1, e.loss,
                  100.0 * e.accuracy, 100.0 * e.val_accuracy, e.seconds);
    const double samples = static_cast<double>(data.train_images.dim(0)) * static_cast<double>(history.epochs.size());
    std::printf(
        "Training took %.1f s on %d ranks: %.0f samples/s; waiting for gradients %.1f%% of it (mean over "
        "ranks; longest %.1f%%), %zu bytes in %zu bucket(s) per step\n",
        seconds, world.size(), samples / seconds, 100.0 * waited / world.size() / seconds, 100.0 * longest / seconds,
        replicas.gradient_bytes(), replicas.bucket_count());
    std::printf("Test loss %.4f, test accuracy %.2f%%\n", test.loss, 100.0 * test.accuracy);
    seed_cnn::check_integrated_gradients(model, data.test_images);
    const seed_cnn::Errors errors = seed_cnn::analyze_errors(model, data.test_images, data.test_labels);

    // With the run's shape: a resumed run that would batch differently is refused (README).
    std::filesystem::create_directories(run);
    io::save_checkpoint(model, run + "/checkpoint.gbck", &adam, static_cast<long long>(history.epochs.size()),
                        io::RunShape{world.size(), batch * world.size()});
    maps.push_back(seed_cnn::capture_embedding(model, data.test_images, "after training", true));
    for (seed_cnn::Embedding& map : maps) seed_cnn::map_embedding(map);
    const seed_cnn::Paths paths = seed_cnn::decision_paths(model, data.test_images, data.test_labels);
    seed_cnn::write_run(run, fmt::format("glassbox: the seed CNN on MNIST, data-parallel on {} ranks", world.size()),
                        model, watch, history, errors, maps, paths, data.test_images, data.test_labels, *tensorboard);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mnist_cnn_dist (rank %d): %s\n", rank, e.what());
    mpi.fail();
    return 1;
  }
}
