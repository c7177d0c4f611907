// Run as `mpirun -np 2 dist_fault MNIST_DIR`: rank 1 throws from a forward
// hook at its 5th training step. Rank 0, waiting for rank 1's gradients,
// must stop with an error naming rank 1 (tests/dist_fault.sh checks that it
// does, within seconds, and that the job exits non-zero instead of hanging).
#include <cstdio>
#include <glassbox/dist/data_parallel.hpp>
#include <glassbox/dist/environment.hpp>
#include <glassbox/glassbox.hpp>

using namespace glassbox;

int main(int argc, char** argv) {
  dist::Environment mpi(argc, argv);
  int rank = -1;
  try {
    if (argc < 2) throw Error("usage: dist_fault MNIST_DIR");
    dist::Communicator world;
    rank = world.rank();
    io::Mnist<float> data = io::load_mnist<float>(argv[1]);
    Sequential<float> model(Shape{1, 28, 28}, 1);
    model.add<nn::Flatten<float>>();
    model.add<nn::Dense<float>>(784, 10);
    HookHandle trap = model.add_forward_hook(0, [&](const ForwardEvent<float>& event) {
      if (rank == 1 && event.mode == Mode::train && event.step == 4) throw Error("a deliberate fault at step 5");
    });
    optim::Adam<float> adam(model.parameters(), 1e-3f);
    dist::DataParallel<float> replicas(world);
    train::FitOptions<float> options;
    options.epochs = 1;
    options.batch_size = 16;
    options.verbosity = train::Verbosity::silent;
    options.replicas = &replicas;
    train::fit(model, adam, nn::SoftmaxCrossEntropy<float>(), data.train_images, data.train_labels, options);
    std::printf("rank %d: training finished\n", rank);
  } catch (const std::exception& e) {
    std::printf("rank %d: stopped: %s\n", rank, e.what());
    mpi.fail();
    return 1;
  }
}
