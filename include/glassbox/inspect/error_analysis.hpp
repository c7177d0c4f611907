#pragma once
// Where a classifier goes wrong: from predicted and true classes, the
// confusion matrix (rows: true class, columns: predicted class), per-class
// precision, recall, F1 and support with their macro and support-weighted
// averages, the most-confused pairs and the misclassified samples.
//
//   const Tensor<float> logits = model.predict(test_images);
//   const inspect::ErrorAnalysis errors = inspect::analyze_errors(logits, test_labels);
//   std::printf("%s", errors.to_text().c_str());
//
// The definitions are scikit-learn's classification_report: precision =
// TP / (TP + FP), 0 for a class never predicted; recall = TP / (TP + FN), 0
// for a class that never occurs; F1 = 2PR / (P + R), 0 when both are 0.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/core/tensor.hpp"
#include "glassbox/core/text_output.hpp"
#include "glassbox/inspect/saliency.hpp"

namespace glassbox::inspect {

struct ClassMetrics {
  double precision = 0, recall = 0, f1 = 0;
  index_t support = 0;    // samples of this class (for the averages: all samples)
  index_t predicted = 0;  // samples predicted as this class
};

struct ConfusedPair {
  index_t truth = 0, predicted = 0, count = 0;
};

// The largest number of classes analyze_errors accepts: the confusion matrix
// holds classes^2 counts.
constexpr index_t max_error_analysis_classes = 4096;

struct ErrorAnalysis {
  index_t classes = 0;
  index_t samples = 0;
  std::vector<index_t> confusion;  // row-major, confusion[truth * classes + predicted]
  std::vector<ClassMetrics> per_class;
  double accuracy = 0;
  ClassMetrics macro;                        // the unweighted mean over classes
  ClassMetrics weighted;                     // the mean weighted by support
  std::vector<ConfusedPair> confused_pairs;  // every non-zero off-diagonal cell, the most frequent first
  std::vector<index_t> misclassified;        // sample indices, ascending

  index_t count(index_t truth, index_t predicted) const {
    return confusion[static_cast<std::size_t>(truth * classes + predicted)];
  }

  // The confusion matrix, the per-class table and the most-confused pairs,
  // with class_names (one per class) or the class numbers.
  std::string to_text(const std::vector<std::string>& class_names = {}, std::size_t top_pairs = 5) const {
    const std::vector<std::string> names = names_or_numbers(class_names);
    std::size_t width = 5;
    for (const std::string& n : names) width = std::max(width, n.size());
    for (const index_t c : confusion) width = std::max(width, fmt::format("{}", c).size());
    std::string s = "confusion matrix (rows: true class, columns: predicted class)\n";
    s += fmt::format("{:>{}}", "", width);
    for (const std::string& n : names) s += fmt::format(" {:>{}}", n, width);
    s += "\n";
    for (index_t t = 0; t < classes; ++t) {
      s += fmt::format("{:>{}}", names[static_cast<std::size_t>(t)], width);
      for (index_t p = 0; p < classes; ++p) s += fmt::format(" {:>{}}", count(t, p), width);
      s += "\n";
    }
    s += fmt::format("\n{:>{}}  precision     recall         f1    support\n", "", std::max<std::size_t>(width, 12));
    auto row = [&](const std::string& name, const ClassMetrics& m) {
      return fmt::format("{:>{}}  {:>9.4f}  {:>9.4f}  {:>9.4f}  {:>9}\n", name, std::max<std::size_t>(width, 12),
                         m.precision, m.recall, m.f1, m.support);
    };
    for (index_t c = 0; c < classes; ++c)
      s += row(names[static_cast<std::size_t>(c)], per_class[static_cast<std::size_t>(c)]);
    s += fmt::format("{:>{}}  {:>9}  {:>9}  {:>9.4f}  {:>9}\n", "accuracy", std::max<std::size_t>(width, 12), "", "",
                     accuracy, samples);
    s += row("macro avg", macro);
    s += row("weighted avg", weighted);
    if (!confused_pairs.empty()) {
      s += "most confused (true -> predicted):";
      for (std::size_t i = 0; i < std::min(top_pairs, confused_pairs.size()); ++i) {
        const ConfusedPair& pair = confused_pairs[i];
        s += fmt::format("{} {} -> {} ({})", i ? "," : "", names[static_cast<std::size_t>(pair.truth)],
                         names[static_cast<std::size_t>(pair.predicted)], pair.count);
      }
      s += "\n";
    }
    return s;
  }

  std::string to_json() const {
    auto metrics = [](const ClassMetrics& m) {
      return fmt::format("{{\"precision\":{},\"recall\":{},\"f1\":{},\"support\":{},\"predicted\":{}}}",
                         json_number(m.precision), json_number(m.recall), json_number(m.f1), m.support, m.predicted);
    };
    std::string s = fmt::format("{{\"classes\":{},\"samples\":{},\"accuracy\":{},\"confusion\":[", classes, samples,
                                json_number(accuracy));
    for (index_t t = 0; t < classes; ++t) {
      s += t ? ",[" : "[";
      for (index_t p = 0; p < classes; ++p) s += fmt::format("{}{}", p ? "," : "", count(t, p));
      s += "]";
    }
    s += "],\"per_class\":[";
    for (std::size_t c = 0; c < per_class.size(); ++c) s += (c ? "," : "") + metrics(per_class[c]);
    s += fmt::format("],\"macro\":{},\"weighted\":{},\"confused_pairs\":[", metrics(macro), metrics(weighted));
    for (std::size_t i = 0; i < confused_pairs.size(); ++i)
      s += fmt::format("{}{{\"true\":{},\"predicted\":{},\"count\":{}}}", i ? "," : "", confused_pairs[i].truth,
                       confused_pairs[i].predicted, confused_pairs[i].count);
    return s + fmt::format("],\"misclassified\":[{}]}}\n", fmt::join(misclassified, ","));
  }
  void write_json(const std::string& path) const { write_text_file(path, to_json()); }

  std::vector<std::string> names_or_numbers(const std::vector<std::string>& class_names) const {
    if (class_names.empty()) {
      std::vector<std::string> numbers;
      for (index_t c = 0; c < classes; ++c) numbers.push_back(fmt::format("{}", c));
      return numbers;
    }
    if (static_cast<index_t>(class_names.size()) != classes)
      throw Error(fmt::format("ErrorAnalysis: {} class names for {} classes", class_names.size(), classes));
    return class_names;
  }
};

// truth[n] and predicted[n] in [0, classes).
inline ErrorAnalysis analyze_errors(const std::vector<index_t>& predicted, const std::vector<index_t>& truth,
                                    index_t classes) {
  if (classes < 1 || classes > max_error_analysis_classes)
    throw Error(fmt::format("analyze_errors: classes must be in [1, {}], got {}", max_error_analysis_classes, classes));
  if (predicted.size() != truth.size())
    throw Error(fmt::format("analyze_errors: {} predictions for {} labels", predicted.size(), truth.size()));
  ErrorAnalysis e;
  e.classes = classes;
  e.samples = static_cast<index_t>(truth.size());
  e.confusion.assign(static_cast<std::size_t>(classes * classes), 0);
  for (std::size_t n = 0; n < truth.size(); ++n) {
    for (const index_t c : {truth[n], predicted[n]})
      if (c < 0 || c >= classes)
        throw Error(fmt::format("analyze_errors: sample {}: class {} is outside [0, {})", n, c, classes));
    ++e.confusion[static_cast<std::size_t>(truth[n] * classes + predicted[n])];
    if (truth[n] != predicted[n]) e.misclassified.push_back(static_cast<index_t>(n));
  }
  index_t correct = 0;
  e.per_class.resize(static_cast<std::size_t>(classes));
  for (index_t c = 0; c < classes; ++c) {
    ClassMetrics& m = e.per_class[static_cast<std::size_t>(c)];
    for (index_t other = 0; other < classes; ++other) {
      m.support += e.count(c, other);
      m.predicted += e.count(other, c);
    }
    const double hits = static_cast<double>(e.count(c, c));
    correct += e.count(c, c);
    m.precision = m.predicted ? hits / static_cast<double>(m.predicted) : 0.0;
    m.recall = m.support ? hits / static_cast<double>(m.support) : 0.0;
    m.f1 = m.precision + m.recall > 0 ? 2 * m.precision * m.recall / (m.precision + m.recall) : 0.0;
    const double n = static_cast<double>(classes), w = static_cast<double>(m.support);
    e.macro.precision += m.precision / n;
    e.macro.recall += m.recall / n;
    e.macro.f1 += m.f1 / n;
    e.weighted.precision += m.precision * w;
    e.weighted.recall += m.recall * w;
    e.weighted.f1 += m.f1 * w;
  }
  e.macro.support = e.weighted.support = e.macro.predicted = e.weighted.predicted = e.samples;
  if (e.samples > 0) {
    const double total = static_cast<double>(e.samples);
    e.accuracy = static_cast<double>(correct) / total;
    e.weighted.precision /= total;
    e.weighted.recall /= total;
    e.weighted.f1 /= total;
  }
  for (index_t t = 0; t < classes; ++t)
    for (index_t p = 0; p < classes; ++p)
      if (t != p && e.count(t, p) > 0) e.confused_pairs.push_back({t, p, e.count(t, p)});
  std::stable_sort(e.confused_pairs.begin(), e.confused_pairs.end(),
                   [](const ConfusedPair& a, const ConfusedPair& b) { return a.count > b.count; });
  return e;
}

// From a model's outputs (N, classes), each sample's class the highest, and
// labels (N) holding class numbers.
template <class T>
ErrorAnalysis analyze_errors(const Tensor<T>& outputs, const Tensor<T>& labels) {
  if (outputs.rank() != 2)
    throw Error(fmt::format("analyze_errors: outputs must be (N, classes), got {}", outputs.shape().str()));
  if (labels.size() != outputs.dim(0))
    throw Error(fmt::format("analyze_errors: {} labels for {} outputs", labels.size(), outputs.dim(0)));
  std::vector<index_t> truth;
  truth.reserve(static_cast<std::size_t>(labels.size()));
  for (index_t n = 0; n < labels.size(); ++n) {
    const T label = labels.data()[n];
    if (!(label >= 0 && label < static_cast<T>(outputs.dim(1))) || label != std::floor(label))
      throw Error(fmt::format("analyze_errors: label {} of sample {} is not a class in [0, {})",
                              static_cast<double>(label), n, outputs.dim(1)));
    truth.push_back(static_cast<index_t>(label));
  }
  return analyze_errors(predicted_classes(outputs), truth, outputs.dim(1));
}

GLASSBOX_PRECOMPILED_INSTANCE(ErrorAnalysis analyze_errors<float>(const Tensor<float>&, const Tensor<float>&))
}  // namespace glassbox::inspect
