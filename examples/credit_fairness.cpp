// The article's finance case on real data: who gets credit, why, and is it
// fair? The UCI Statlog German credit data (1,000 applicants, 20 attributes,
// "good" or "bad" risk; scripts/fetch_german_credit.sh takes it from Debian's
// weka package) in an MLP, then:
//   - permutation importance per attribute (the one-hot columns of a nominal
//     attribute shuffled together), on the test set;
//   - group fairness of the decision "good risk" (credit granted) by sex
//     (from personal_status) and by age (25 or younger, older): per group
//     accuracy, selection rate, TPR and FPR, and the demographic parity and
//     equalized odds differences (Fairlearn's definitions).
//
//   credit_fairness [DATA_DIR] [RUN_DIR] [EPOCHS]   (data/german-credit, runs/credit, 20)
//
// The nominal attributes become one-hot columns and the numeric ones are
// standardised with the training rows' statistics: 63 inputs. A seeded split
// keeps 700 applicants for training and 300 for the test. RUN_DIR gets
// report.html (the training curves and the tables) and fairness.json.

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <glassbox/glassbox.hpp>
#include <glassbox/inspect/fairness.hpp>
#include <glassbox/io/arff.hpp>
#include <glassbox/viz/html_report.hpp>
#include <numeric>
#include <string>
#include <vector>

int main(int argc, char** argv) try {
  using namespace glassbox;
  const std::string dir = argc > 1 ? argv[1] : "data/german-credit";
  const std::string run = argc > 2 ? argv[2] : "runs/credit";
  const int epochs = argc > 3 ? std::atoi(argv[3]) : 20;
  if (epochs < 1) throw Error(fmt::format("credit_fairness: EPOCHS must be at least 1, got {}", argv[3]));

  const io::Table credit = io::read_arff(dir + "/credit-g.arff");
  const std::size_t outcome = credit.column("class"), status = credit.column("personal_status"),
                    age = credit.column("age");
  const index_t good = 0;  // class {good, bad}: a good risk is granted credit, the positive decision
  std::vector<std::size_t> order(credit.rows.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  Rng(7).shuffle(order.begin(), order.end());
  const std::vector<std::size_t> train_rows(order.begin(), order.begin() + 700),
      test_rows(order.begin() + 700, order.end());
  const io::TableEncoder encoder(credit, {"class"}, train_rows);
  auto labels_of = [&](const std::vector<std::size_t>& rows) {
    Tensor<float> y(Shape{static_cast<index_t>(rows.size())});
    for (std::size_t i = 0; i < rows.size(); ++i)
      y[static_cast<index_t>(i)] = static_cast<float>(credit.rows[rows[i]][outcome]);
    return y;
  };
  const Tensor<float> x_train = encoder.features<float>(credit, train_rows), y_train = labels_of(train_rows);
  const Tensor<float> x_test = encoder.features<float>(credit, test_rows), y_test = labels_of(test_rows);
  index_t good_in_test = 0;
  for (const float v : y_test) good_in_test += static_cast<index_t>(v) == good;
  std::printf("German credit (%s): %zu applicants, %zu attributes -> %td inputs; %zu for training, %zu for the test\n",
              credit.relation.c_str(), credit.rows.size(), encoder.column_names().size(), encoder.width(),
              train_rows.size(), test_rows.size());

  Sequential<float> model(Shape{encoder.width()}, 3);
  model.add<nn::Dense<float>>(encoder.width(), 16);
  model.add<nn::ReLU<float>>();
  model.add<nn::Dropout<float>>(0.3);
  model.add<nn::Dense<float>>(16, 2);
  optim::Adam<float> adam(model.parameters(), 1e-3f);
  nn::SoftmaxCrossEntropy<float> loss;
  train::FitOptions<float> fit;
  fit.epochs = epochs;
  fit.batch_size = 32;
  fit.seed = 5;
  fit.verbosity = train::Verbosity::silent;
  fit.validation_x = &x_test;
  fit.validation_y = &y_test;
  const train::History history = train::fit(model, adam, loss, x_train, y_train, fit);
  const train::Evaluation test = train::evaluate(model, loss, x_test, y_test);
  std::printf("Test accuracy %.1f%% after %d epochs (always saying \"good\": %.1f%%)\n", 100 * test.accuracy, epochs,
              100.0 * static_cast<double>(good_in_test) / static_cast<double>(test_rows.size()));

  // Which attributes the decisions rest on.
  inspect::PermutationImportanceOptions shuffles;
  shuffles.repeats = 10;
  shuffles.seed = 1;
  shuffles.groups = encoder.groups();
  const inspect::PermutationImportance importance =
      inspect::permutation_importance(model, x_test, y_test, inspect::accuracy_metric<float>(), shuffles);
  std::vector<inspect::FeatureImportance> ranked = importance.features;
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.mean > b.mean; });
  std::printf("Permutation importance (test accuracy lost when an attribute is shuffled, 10 shuffles):\n");
  std::vector<std::vector<std::string>> importance_rows;
  for (const inspect::FeatureImportance& f : ranked) {
    const std::string& name = encoder.column_names()[static_cast<std::size_t>(f.feature)];
    importance_rows.push_back({name, fmt::format("{:+.2f}", 100 * f.mean), fmt::format("{:.2f}", 100 * f.stddev)});
    if (importance_rows.size() <= 8)
      std::printf("  %-24s %+6.2f%% +- %.2f\n", name.c_str(), 100 * f.mean, 100 * f.stddev);
  }

  // Is the decision "good risk" fair across sex and age?
  const std::vector<index_t> predicted = inspect::predicted_classes(model.predict(x_test));
  std::vector<index_t> truth;
  std::vector<std::string> sex, age_band;
  for (const std::size_t r : test_rows) {
    truth.push_back(static_cast<index_t>(credit.rows[r][outcome]));
    sex.push_back(credit.text(r, status).rfind("female", 0) == 0 ? "female" : "male");
    age_band.push_back(credit.rows[r][age] <= 25 ? "25 or younger" : "over 25");
  }
  viz::HtmlReport report("glassbox: who gets credit? German credit, an MLP and group fairness");
  report.add_history(history);
  report.add_table("Permutation importance on the test set", {"attribute", "accuracy lost (%)", "std over 10 shuffles"},
                   importance_rows);
  std::string json = "{";
  for (const auto& [attribute, groups] :
       {std::pair{std::string("sex"), sex}, std::pair{std::string("age"), age_band}}) {
    const inspect::GroupFairness f = inspect::group_metrics(predicted, truth, groups, good);
    std::printf("Fairness of \"good risk\" by %s:\n%s", attribute.c_str(), f.to_text(attribute).c_str());
    std::vector<std::vector<std::string>> rows;
    for (const inspect::GroupMetrics& g : f.groups)
      rows.push_back({g.group, std::to_string(g.samples), fmt::format("{:.3f}", g.accuracy),
                      fmt::format("{:.3f}", g.selection_rate), fmt::format("{:.3f}", g.true_positive_rate),
                      fmt::format("{:.3f}", g.false_positive_rate)});
    rows.push_back({"difference (max - min)", "", "", fmt::format("{:.3f}", f.demographic_parity_difference),
                    fmt::format("{:.3f}", f.equal_opportunity_difference), ""});
    report.add_table(
        fmt::format("Granting credit by {}: equalized odds difference {:.3f}, demographic parity ratio {:.3f}",
                    attribute, f.equalized_odds_difference, f.demographic_parity_ratio),
        {attribute, "test applicants", "accuracy", "granted (selection rate)", "TPR", "FPR"}, rows);
    json += fmt::format("{}\"{}\":{}", json.size() > 1 ? "," : "", attribute, f.to_json());
  }
  std::filesystem::create_directories(run);
  write_text_file(run + "/fairness.json", json + "}\n");
  report.write(run + "/report.html");
  std::printf("Written: %s/report.html, fairness.json\n", run.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "credit_fairness: %s\n", e.what());
  return 1;
}
