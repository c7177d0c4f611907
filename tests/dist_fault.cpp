// Faults in data-parallel training, run by tests/dist_fault.sh under mpirun
// with two ranks:
//   dist_fault MNIST_DIR throw        rank 1 throws from a forward hook at its 5th step
//   dist_fault MNIST_DIR nan          rank 1's 5th batch holds a NaN, which NanWatch stops
//   dist_fault MNIST_DIR kill PATH    rank 0 saves a checkpoint to PATH after every step,
//                                     and is killed (SIGKILL) at a random moment
//   dist_fault --check PATH           loads PATH (no MPI job needed)
//   dist_fault --no-mpi               a Communicator before MPI is initialised: an error
//   dist_fault --no-thread-support    a Communicator after plain MPI_Init: an error
// In the first two, rank 0 must stop with an error naming rank 1 rather than
// wait for it; in the third, the checkpoint must load whatever the moment.

#include <csignal>
#include <cstdio>
#include <cstring>
#include <glassbox/dist/data_parallel.hpp>
#include <glassbox/dist/environment.hpp>
#include <glassbox/glassbox.hpp>
#include <random>
#include <string>
#include <thread>

using namespace glassbox;

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--check") == 0) try {
      const io::Checkpoint<float> c = io::load_checkpoint<float>(argv[2]);
      std::printf("checkpoint loads: %lld training steps\n", c.model.training_steps());
      return 0;
    } catch (const std::exception& e) {
      std::printf("checkpoint does not load: %s\n", e.what());
      return 1;
    }
  if (argc == 2 && (std::strcmp(argv[1], "--no-mpi") == 0 || std::strcmp(argv[1], "--no-thread-support") == 0)) {
    const bool init = std::strcmp(argv[1], "--no-thread-support") == 0;
    if (init) MPI_Init(&argc, &argv);
    int code = 1;
    try {
      dist::Communicator world;
      std::printf("no error\n");
    } catch (const Error& e) {
      std::printf("refused: %s\n", e.what());
      code = 0;
    }
    if (init) MPI_Finalize();
    return code;
  }
  dist::Environment mpi(argc, argv);
  int rank = -1;
  try {
    if (argc < 3) throw Error("usage: dist_fault MNIST_DIR throw|nan|kill [CHECKPOINT]");
    const std::string mode = argv[2];
    dist::Communicator world;
    rank = world.rank();
    io::Mnist<float> data = io::load_mnist<float>(argv[1]);
    Sequential<float> model(Shape{1, 28, 28}, 1);
    model.add<nn::Flatten<float>>();
    model.add<nn::Dense<float>>(784, 10);
    inspect::NanWatch<float> nan_watch(model);
    HookHandle trap =
        model.add_modifying_forward_pre_hook(0, [&](const ForwardPreEvent<float>& event, Tensor<float>& x) {
          if (rank != 1 || event.mode != Mode::train || event.step != 4) return;
          if (mode == "throw") throw Error("a deliberate fault at step 5");
          if (mode == "nan") x[7] = std::numeric_limits<float>::quiet_NaN();
        });
    optim::Adam<float> adam(model.parameters(), 1e-3f);
    dist::DataParallel<float> replicas(world);
    train::FitOptions<float> options;
    options.epochs = mode == "kill" ? 1000 : 1;  // until killed
    options.batch_size = 16;
    options.verbosity = train::Verbosity::silent;
    options.replicas = &replicas;
    train::LambdaCallback save;
    save.batch_end = [&](const train::BatchLogs&) { io::save_checkpoint(model, argv[3], &adam); };
    if (mode == "kill") {
      if (argc < 4) throw Error("dist_fault: kill needs a checkpoint path");
      options.callbacks = {&save};  // on rank 0 only
      if (rank == 0) {
        std::mt19937 random(std::random_device{}());
        const int after_ms = 300 + static_cast<int>(random() % 700);
        std::thread([after_ms] {
          std::this_thread::sleep_for(std::chrono::milliseconds(after_ms));
          std::raise(SIGKILL);
        }).detach();
      }
    }
    train::fit(model, adam, nn::SoftmaxCrossEntropy<float>(), data.train_images, data.train_labels, options);
    std::printf("rank %d: training finished\n", rank);
  } catch (const std::exception& e) {
    std::printf("rank %d: stopped: %s\n", rank, e.what());
    mpi.fail();
    return 1;
  }
}
