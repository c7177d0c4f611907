// Model compression on the seed CNN, and what each step costs in accuracy:
//   1. the teacher: the seed CNN, Adam 1e-3, batch 32, EPOCHS epochs;
//   2. magnitude pruning (one global threshold over the conv and dense
//      weights) at 50/80/90/95%, without and with one epoch of fine-tuning,
//      against random pruning and against one more epoch unpruned;
//   3. structured pruning: the weakest conv filters removed by L1 norm, the
//      layer and the dense layer after it physically shrunk;
//   4. int8 post-training quantization: accuracy, file size and inference
//      speed of the real int8 path against fp32, per-layer sensitivity and SQNR,
//      and one epoch of quantization-aware training;
//   5. distillation: a Dense 784-64-10 student trained with and without the
//      teacher's softened outputs.
// Tables go to stdout, OUT_DIR/compress.json and OUT_DIR/report.html; the
// int8 model to OUT_DIR/seed_cnn.gbq8.
//
//   compress [MNIST_DIR] [EPOCHS] [OUT_DIR]   (data/mnist, 1, runs/compress)

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <glassbox/compress.hpp>
#include <glassbox/glassbox.hpp>
#include <glassbox/viz/html_report.hpp>
#include <string>
#include <vector>

namespace {
using namespace glassbox;

// The seed CNN: Conv2D(32, 3x3, relu) -> MaxPool 2x2 -> Flatten -> Dense(10);
// the softmax is fused into the loss.
Sequential<float> seed_cnn(index_t filters = 32) {
  Sequential<float> model(Shape{1, 28, 28}, 1);
  nn::Conv2D<float>::Options relu;
  relu.activation = nn::Activation::relu;
  model.add<nn::Conv2D<float>>(1, filters, nn::Size2{3, 3}, relu);
  model.add<nn::MaxPool2D<float>>(nn::Size2{2, 2});
  model.add<nn::Flatten<float>>();
  model.add<nn::Dense<float>>(filters * 13 * 13, 10);
  return model;
}

std::vector<Tensor<float>> weights_of(Sequential<float>& model) {
  std::vector<Tensor<float>> w;
  for (const Parameter<float>* p : model.parameters()) w.push_back(p->value);
  return w;
}

// Puts saved weights back and drops every mask.
void restore(Sequential<float>& model, const std::vector<Tensor<float>>& saved) {
  const std::vector<Parameter<float>*> params = model.parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {
    params[i]->clear_mask();
    params[i]->value = saved[i];
  }
}

struct Data {
  const Tensor<float>& x;
  const Tensor<float>& y;
};

train::FitOptions<float> quiet(int epochs, std::uint64_t seed) {
  train::FitOptions<float> o;
  o.epochs = epochs;
  o.batch_size = 32;
  o.seed = seed;
  o.verbosity = train::Verbosity::silent;
  return o;
}

double accuracy(Sequential<float>& model, const Data& test) {
  nn::SoftmaxCrossEntropy<float> ce;
  return train::evaluate(model, ce, test.x, test.y).accuracy;
}

void fine_tune(Sequential<float>& model, const Data& train_set, int epochs, std::uint64_t seed) {
  optim::Adam<float> adam(model.parameters(), 1e-3f);
  nn::SoftmaxCrossEntropy<float> ce;
  train::fit(model, adam, ce, train_set.x, train_set.y, quiet(epochs, seed));
}

// Median samples/s of `run` over a batch-256 pass of x, 5 repeats.
template <class Run>
double samples_per_second(const Tensor<float>& x, Run&& run) {
  std::vector<double> rates;
  Tensor<float> batch;
  for (int r = 0; r < 5; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (index_t s = 0; s < x.dim(0); s += 256) {
      copy_rows(x, s, std::min<index_t>(256, x.dim(0) - s), batch);
      run(batch);
    }
    rates.push_back(double(x.dim(0)) / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(rates.begin(), rates.begin() + 2, rates.end());
  return rates[2];
}

double int8_accuracy(quant::QuantizedModel& int8, const Data& test) {
  nn::SoftmaxCrossEntropy<float> ce;
  const nn::Tally t = ce.tally(int8.predict(test.x), test.y);
  return double(t.correct) / double(t.total);
}

std::string verdict(bool met) { return met ? "met" : "MISSED"; }
std::string percent(double fraction) { return fmt::format("{:.2f}%", 100 * fraction); }

}  // namespace

int main(int argc, char** argv) try {
  const std::string dir = argc > 1 ? argv[1] : "data/mnist";
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 1;
  const std::string out = argc > 3 ? argv[3] : "runs/compress";
  if (epochs <= 0) throw Error(fmt::format("compress: EPOCHS must be positive, got {}", argv[2]));
  const io::Mnist<float> data = io::load_mnist<float>(dir);
  const Data train_set{data.train_images, data.train_labels}, test_set{data.test_images, data.test_labels};
  std::printf("MNIST from %s: %td training and %td test images, %d thread(s), int8 GEMM: %s\n", dir.c_str(),
              data.train_images.dim(0), data.test_images.dim(0), num_threads(),
              quant::detail::int8_kernel_name());
  std::string json = "{\n";

  // 1. The teacher.
  Sequential<float> teacher = seed_cnn();
  fine_tune(teacher, train_set, epochs, 7);
  const double base = accuracy(teacher, test_set);
  const std::vector<Tensor<float>> trained = weights_of(teacher);
  std::printf("\nTeacher: the seed CNN after %d epoch(s): test accuracy %.2f%%, %td parameters\n", epochs, 100 * base,
              teacher.parameter_count());
  json += fmt::format("  \"teacher\": {{\"epochs\": {}, \"accuracy\": {}, \"parameters\": {}}},\n", epochs, base,
                      teacher.parameter_count());

  // 2. Unstructured pruning.
  std::printf("\nMagnitude pruning (global L1 over conv2d_1.weight and dense_1.weight):\n");
  std::printf("%-10s%14s%22s%18s%14s\n", "sparsity", "pruned", "+1 epoch fine-tune", "random pruning", "size");
  json += "  \"pruning\": [\n";
  viz::HtmlReport page("glassbox: compressing the seed CNN");
  std::vector<std::vector<std::string>> rows;
  double at90 = 0, control = 0;
  // 0%: the control, since fine-tuning is also one more epoch of training.
  const std::vector<double> sparsities{0.0, 0.5, 0.8, 0.9, 0.95};
  for (std::size_t i = 0; i < sparsities.size(); ++i) {
    const double s = sparsities[i];
    Rng rng(11);
    prune::random(prune::weights(teacher), s, rng, prune::Scope::global);
    const double random_accuracy = accuracy(teacher, test_set);
    restore(teacher, trained);
    prune::magnitude(prune::weights(teacher), s, prune::Scope::global);
    const double pruned = accuracy(teacher, test_set);
    fine_tune(teacher, train_set, 1, 8);
    const double tuned = accuracy(teacher, test_set);
    const prune::Report r = prune::report(teacher);
    if (s == 0.9) at90 = tuned;
    if (s == 0.0) control = tuned;
    std::printf("%8.0f%%%13.2f%%%21.2f%%%17.2f%%%10.1f KB\n", 100 * s, 100 * pruned, 100 * tuned, 100 * random_accuracy,
                double(r.effective_bytes) / 1024);
    json +=
        fmt::format("    {{\"sparsity\": {}, \"accuracy\": {}, \"fine_tuned\": {}, \"random\": {}, \"bytes\": {}}}{}\n",
                    s, pruned, tuned, random_accuracy, r.effective_bytes, i + 1 < sparsities.size() ? "," : "");
    if (s == 0.9) std::printf("%s", r.str().c_str());
    rows.push_back({fmt::format("{:.0f}%", 100 * s), percent(pruned), percent(tuned), percent(random_accuracy),
                    fmt::format("{:.1f} KB", double(r.effective_bytes) / 1024)});
    restore(teacher, trained);
  }
  json += "  ],\n";
  page.add_table("Magnitude pruning (global L1), test accuracy",
                 {"sparsity", "pruned", "+1 epoch fine-tune", "random pruning", "sparse size"}, rows);
  rows.clear();
  // Against the better of the unpruned model and the unpruned model trained one epoch more.
  const double unpruned = std::max(base, control);
  std::printf("target: 90%% pruned + 1 epoch of fine-tuning within 0.5 points of unpruned: %.2f%% vs %.2f%% -> %s\n",
              100 * at90, 100 * unpruned, verdict(at90 >= unpruned - 0.005).c_str());

  // 3. Structured pruning: a smaller, faster model.
  std::printf("\nStructured pruning of conv2d_1 filters (L1 norm), dense_1 shrunk to match:\n");
  std::printf("%-10s%12s%12s%22s%16s\n", "filters", "params", "pruned", "+1 epoch fine-tune", "samples/s");
  const double full_speed = samples_per_second(data.test_images, [&](const Tensor<float>& b) { teacher.forward(b); });
  std::printf("%-10d%12td%11.2f%%%21s%16.0f\n", 32, teacher.parameter_count(), 100 * base, "-", full_speed);
  json += "  \"structured\": [\n";
  rows.push_back(
      {"32", fmt::format("{}", teacher.parameter_count()), percent(base), "-", fmt::format("{:.0f}", full_speed)});
  for (const index_t remove : {8, 16}) {
    Sequential<float> smaller = seed_cnn();
    restore(smaller, trained);
    prune::structured(smaller, "conv2d_1", remove);
    const double pruned = accuracy(smaller, test_set);
    fine_tune(smaller, train_set, 1, 9);
    const double tuned = accuracy(smaller, test_set);
    const double speed = samples_per_second(data.test_images, [&](const Tensor<float>& b) { smaller.forward(b); });
    std::printf("%-10td%12td%11.2f%%%20.2f%%%16.0f\n", 32 - remove, smaller.parameter_count(), 100 * pruned,
                100 * tuned, speed);
    rows.push_back({fmt::format("{}", 32 - remove), fmt::format("{}", smaller.parameter_count()), percent(pruned),
                    percent(tuned), fmt::format("{:.0f}", speed)});
    json += fmt::format(
        "    {{\"filters\": {}, \"parameters\": {}, \"accuracy\": {}, \"fine_tuned\": {}, "
        "\"samples_per_second\": {}, \"full_samples_per_second\": {}}}{}\n",
        32 - remove, smaller.parameter_count(), pruned, tuned, speed, full_speed, remove == 8 ? "," : "");
  }
  json += "  ],\n";
  page.add_table("Structured pruning of conv2d_1 filters (L1 norm)",
                 {"filters", "parameters", "pruned", "+1 epoch fine-tune", "inference samples/s"}, rows);
  rows.clear();

  // 4. int8 post-training quantization.
  Tensor<float> calibration;
  copy_rows(data.train_images, 0, std::min<index_t>(1000, data.train_images.dim(0)), calibration);
  const quant::Plan plan = quant::calibrate(teacher, calibration);
  quant::QuantizedModel int8(teacher, plan);
  std::filesystem::create_directories(out);
  int8.save(out + "/seed_cnn.gbq8");
  const auto int8_bytes = std::filesystem::file_size(out + "/seed_cnn.gbq8");
  const auto fp32_bytes = static_cast<std::uintmax_t>(teacher.parameter_count()) * sizeof(float);
  double fake = 0;
  {
    quant::FakeQuantization<float> fq(teacher, plan);
    fake = accuracy(teacher, test_set);
  }
  const double int8_acc = int8_accuracy(int8, test_set);
  // Quantization-aware training: one more epoch with int8 forwards (on a copy of the teacher).
  double qat_acc = 0;
  {
    Sequential<float> copy = seed_cnn();
    restore(copy, trained);
    quant::Plan qat_plan;
    {
      quant::QuantizationAwareTraining<float> qat(copy, quant::calibrate(copy, calibration));
      fine_tune(copy, train_set, 1, 13);
      qat_plan = qat.plan();
    }
    quant::QuantizedModel qat_int8(copy, qat_plan);
    qat_acc = int8_accuracy(qat_int8, test_set);
  }
  const double fp32_speed = samples_per_second(data.test_images, [&](const Tensor<float>& b) { teacher.forward(b); });
  const double int8_speed = samples_per_second(data.test_images, [&](const Tensor<float>& b) { int8.forward(b); });
  std::printf("\nint8 post-training quantization (calibrated on %td training images, min/max):\n", calibration.dim(0));
  std::printf("%-22s%12s%16s%14s\n", "", "accuracy", "size", "samples/s");
  std::printf("%-22s%11.2f%%%12.1f KB%14.0f\n", "fp32", 100 * base, double(fp32_bytes) / 1024, fp32_speed);
  std::printf("%-22s%11.2f%%%16s%14s\n", "fake-quantized fp32", 100 * fake, "-", "-");
  std::printf("%-22s%11.2f%%%12.1f KB%14.0f\n", "int8 (QuantizedModel)", 100 * int8_acc, double(int8_bytes) / 1024,
              int8_speed);
  std::printf("%-22s%11.2f%%%16s%14s\n", "int8 after 1 epoch QAT", 100 * qat_acc, "-", "-");
  std::printf("int8 / fp32: size %.2fx smaller, speed %.2fx\n", double(fp32_bytes) / double(int8_bytes),
              int8_speed / fp32_speed);
  std::printf("target: int8 loses at most 0.3 points: %.2f%% vs %.2f%% -> %s\n", 100 * int8_acc, 100 * base,
              verdict(int8_acc >= base - 0.003).c_str());
  double reference = 0;
  nn::SoftmaxCrossEntropy<float> ce;
  const auto sensitivity = quant::sensitivity(teacher, plan, ce, data.test_images, data.test_labels, &reference);
  const auto errors = quant::error_report(teacher, plan, calibration);
  std::printf("%-12s%16s%18s%14s%12s%14s\n", "layer", "alone: accuracy", "weight SQNR (dB)", "act. SQNR", "in scale",
              "out scale/zp");
  for (std::size_t l = 0; l < plan.layers.size(); ++l) {
    const quant::LayerQuant& q = plan.layers[l];
    std::printf("%-12s%15.2f%%%18.1f%14.1f%12.5f%14s\n", q.name.c_str(), 100 * sensitivity[l].accuracy,
                errors[l].weight_sqnr_db, errors[l].activation_sqnr_db, q.input.scale,
                q.float_output ? "float" : fmt::format("{:.4f}/{}", q.output.scale, q.output.zero_point).c_str());
  }
  page.add_table(
      "int8 post-training quantization", {"model", "test accuracy", "size", "inference samples/s"},
      {{"fp32", percent(base), fmt::format("{:.1f} KB", double(fp32_bytes) / 1024), fmt::format("{:.0f}", fp32_speed)},
       {"fake-quantized fp32", percent(fake), "-", "-"},
       {"int8 (QuantizedModel)", percent(int8_acc), fmt::format("{:.1f} KB", double(int8_bytes) / 1024),
        fmt::format("{:.0f}", int8_speed)},
       {"int8 after 1 epoch of quantization-aware training", percent(qat_acc), "-", "-"}});
  for (std::size_t l = 0; l < plan.layers.size(); ++l)
    rows.push_back({plan.layers[l].name, percent(sensitivity[l].accuracy),
                    fmt::format("{:.1f}", errors[l].weight_sqnr_db),
                    fmt::format("{:.1f}", errors[l].activation_sqnr_db)});
  page.add_table("int8 per layer",
                 {"layer", "accuracy, this layer alone in int8", "weight SQNR (dB)", "activation SQNR (dB)"}, rows);
  json += fmt::format(
      "  \"int8\": {{\"accuracy\": {}, \"qat_accuracy\": {}, \"fake_quantized_accuracy\": {}, \"fp32_accuracy\": {}, "
      "\"bytes\": {}, \"fp32_bytes\": {}, \"samples_per_second\": {}, \"fp32_samples_per_second\": {}}},\n",
      int8_acc, qat_acc, fake, base, int8_bytes, fp32_bytes, int8_speed, fp32_speed);

  // 5. Distillation into a Dense 784-64-10 student.
  auto student = [] {
    Sequential<float> s(Shape{1, 28, 28}, 3);
    s.add<nn::Flatten<float>>();
    s.add<nn::Dense<float>>(784, 64);
    s.add<nn::ReLU<float>>();
    s.add<nn::Dense<float>>(64, 10);
    return s;
  };
  Sequential<float> alone = student();
  fine_tune(alone, train_set, epochs, 12);
  const double alone_accuracy = accuracy(alone, test_set);
  const Tensor<float> soft_targets = distill::targets(data.train_labels, teacher.predict(data.train_images));
  Sequential<float> taught = student();
  optim::Adam<float> adam(taught.parameters(), 1e-3f);
  const distill::DistillationLoss<float> kd(0.7f, 4.0f);
  train::fit(taught, adam, kd, data.train_images, soft_targets, quiet(epochs, 12));
  const double taught_accuracy = accuracy(taught, test_set);
  std::printf("\nDistillation into Dense 784-64-10 (%td parameters, %d epoch(s), same seed):\n",
              taught.parameter_count(), epochs);
  std::printf("  student alone (cross-entropy):            %.2f%%\n", 100 * alone_accuracy);
  std::printf("  student taught (alpha 0.7, T 4):          %.2f%%\n", 100 * taught_accuracy);
  std::printf("  teacher (seed CNN, %td parameters):     %.2f%%\n", teacher.parameter_count(), 100 * base);
  json += fmt::format("  \"distillation\": {{\"alone\": {}, \"taught\": {}, \"alpha\": 0.7, \"temperature\": 4}}\n}}\n",
                      alone_accuracy, taught_accuracy);
  page.add_table("Distillation into Dense 784-64-10", {"student", "test accuracy"},
                 {{"alone (cross-entropy)", percent(alone_accuracy)},
                  {"taught (alpha 0.7, T 4)", percent(taught_accuracy)},
                  {"teacher (seed CNN)", percent(base)}});
  write_text_file(out + "/compress.json", json);
  page.write(out + "/report.html");
  std::printf("\nWritten: %s/compress.json, %s/report.html, %s/seed_cnn.gbq8\n", out.c_str(), out.c_str(), out.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "compress: %s\n", e.what());
  return 1;
}
