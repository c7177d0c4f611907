// The optional component: data-parallel training on MPI (glassbox::dist).
// Built, not run: starting MPI is the job of mpirun (tests/test_dist.cpp).
#include <cstdio>
#include <glassbox/dist/data_parallel.hpp>
#include <glassbox/dist/environment.hpp>
#include <glassbox/glassbox.hpp>

int main(int argc, char** argv) {
  glassbox::dist::Environment mpi(argc, argv);
  glassbox::dist::Communicator world;
  glassbox::dist::DataParallel<float> replicas(world);
  std::printf("consumer dist: rank %d of %d\n", replicas.rank(), replicas.size());
}
