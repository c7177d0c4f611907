// Analyses of what a trained model decides (inspect/): error analysis.
#include <cmath>

#include "glassbox/inspect/error_analysis.hpp"
#include "support.hpp"

using namespace glassbox;
using namespace glassbox::inspect;
using Catch::Matchers::Contains;

TEST_CASE("analyze_errors: confusion matrix and per-class metrics as classification_report defines them",
          "[analysis]") {
  // Class 3 occurs once and is never predicted: its precision is 0 by convention.
  const std::vector<index_t> truth{0, 0, 0, 1, 1, 2, 2, 2, 2, 3};
  const std::vector<index_t> predicted{0, 0, 1, 1, 2, 2, 2, 0, 2, 0};
  const ErrorAnalysis e = analyze_errors(predicted, truth, 4);
  const std::vector<index_t> confusion{2, 1, 0, 0,  //
                                       0, 1, 1, 0,  //
                                       1, 0, 3, 0,  //
                                       1, 0, 0, 0};
  CHECK(e.confusion == confusion);
  CHECK(e.count(2, 0) == 1);
  CHECK(e.accuracy == 0.6);
  CHECK(e.samples == 10);
  const double precision[] = {0.5, 0.5, 0.75, 0}, recall[] = {2.0 / 3, 0.5, 0.75, 0};
  const index_t support[] = {3, 2, 4, 1}, predicted_as[] = {4, 2, 4, 0};
  for (std::size_t c = 0; c < 4; ++c) {
    INFO("class " << c);
    const ClassMetrics& m = e.per_class[c];
    CHECK(m.precision == Approx(precision[c]).margin(1e-15));
    CHECK(m.recall == Approx(recall[c]).margin(1e-15));
    const double f1 = precision[c] + recall[c] > 0 ? 2 * precision[c] * recall[c] / (precision[c] + recall[c]) : 0;
    CHECK(m.f1 == Approx(f1).margin(1e-15));
    CHECK(m.support == support[c]);
    CHECK(m.predicted == predicted_as[c]);
  }
  CHECK(e.macro.precision == Approx(0.4375));
  CHECK(e.macro.recall == Approx((2.0 / 3 + 0.5 + 0.75) / 4));
  CHECK(e.macro.f1 == Approx((4.0 / 7 + 0.5 + 0.75) / 4));
  CHECK(e.weighted.precision == Approx(0.55));
  CHECK(e.weighted.recall == Approx(0.6));  // the support-weighted recall is the accuracy
  CHECK(e.weighted.f1 == Approx((3 * 4.0 / 7 + 2 * 0.5 + 4 * 0.75) / 10));
  CHECK(e.misclassified == std::vector<index_t>{2, 4, 7, 9});
  // Every error cell once, ties in row-major order.
  REQUIRE(e.confused_pairs.size() == 4);
  CHECK(e.confused_pairs[0].truth == 0);
  CHECK(e.confused_pairs[0].predicted == 1);
  CHECK(e.confused_pairs[3].truth == 3);
  CHECK(e.confused_pairs[3].count == 1);

  const std::string text = e.to_text({"zero", "one", "two", "three"});
  CHECK_THAT(text, Contains("confusion matrix (rows: true class, columns: predicted class)"));
  CHECK_THAT(text, Contains("\n zero     2     1     0     0\n"));
  CHECK_THAT(text, Contains("\n       three     0.0000     0.0000     0.0000          1\n"));
  CHECK_THAT(text, Contains("\n    accuracy                           0.6000         10\n"));
  CHECK_THAT(text, Contains("\n   macro avg     0.4375     0.4792     0.4554         10\n"));
  CHECK_THAT(text, Contains("most confused (true -> predicted): zero -> one (1), one -> two (1)"));
  CHECK_THROWS_WITH(e.to_text({"a", "b"}), Contains("2 class names for 4 classes"));
  const std::string json = e.to_json();
  CHECK_THAT(json, Contains("\"confusion\":[[2,1,0,0],[0,1,1,0],[1,0,3,0],[1,0,0,0]]"));
  CHECK_THAT(json, Contains("\"misclassified\":[2,4,7,9]"));
  CHECK(test::JsonChecker(json).valid());
}

TEST_CASE("analyze_errors: from a model's outputs and labels, with the most frequent confusion first", "[analysis]") {
  Tensor<double> outputs(Shape{5, 3}, {0.1, 0.8, 0.1,  //
                                       0.9, 0.0, 0.1,  //
                                       0.2, 0.3, 0.5,  //
                                       0.2, 0.1, 0.7,  //
                                       0.6, 0.3, 0.1});
  const Tensor<double> labels(Shape{5}, {1, 2, 2, 0, 2});
  const ErrorAnalysis e = analyze_errors(outputs, labels);
  CHECK(e.classes == 3);
  CHECK(e.misclassified == std::vector<index_t>{1, 3, 4});
  REQUIRE(e.confused_pairs.size() == 2);
  CHECK(e.confused_pairs[0].truth == 2);  // 2 -> 0 twice, before 0 -> 2 once
  CHECK(e.confused_pairs[0].predicted == 0);
  CHECK(e.confused_pairs[0].count == 2);

  CHECK_THROWS_WITH(analyze_errors(outputs, Tensor<double>(Shape{5}, {1, 2, 2, 0, 1.5})),
                    Contains("label 1.5 of sample 4 is not a class in [0, 3)"));
  CHECK_THROWS_WITH(analyze_errors(outputs, Tensor<double>(Shape{5}, {1, 2, 3, 0, 1})), Contains("label 3"));
  CHECK_THROWS_WITH(analyze_errors(outputs, Tensor<double>(Shape{4}, {1, 2, 2, 0})), Contains("4 labels for 5"));
  CHECK_THROWS_WITH(analyze_errors(Tensor<double>(Shape{5}), labels), Contains("(N, classes)"));
  CHECK_THROWS_WITH(analyze_errors({0, 1}, {0}, 2), Contains("2 predictions for 1 labels"));
  CHECK_THROWS_WITH(analyze_errors({0, 5}, {0, 1}, 2), Contains("sample 1: class 5 is outside [0, 2)"));
  CHECK_THROWS_WITH(analyze_errors({}, {}, max_error_analysis_classes + 1), Contains("classes must be in"));
  const ErrorAnalysis none = analyze_errors({}, {}, 2);  // no samples: zeros, no division by zero
  CHECK(none.accuracy == 0);
  CHECK(none.macro.f1 == 0);
}
