#include <cstdio>
#include <glassbox/glassbox.hpp>

int main() {
  using namespace glassbox;
  Sequential<float> model(Shape{3});
  model.add<nn::Dense<float>>(3, 2);
  const Tensor<float> x(Shape{1, 3}, {1.f, 2.f, 3.f});
  const Tensor<float>& y = model.forward(x);
  if (y.shape() != Shape{1, 2}) return 1;
  std::printf("consumer: ok, %td parameters\n", model.parameter_count());
  return 0;
}
