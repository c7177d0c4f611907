#pragma once
// layer_table: one line per layer from the newest records of ActivationStats
// and GradientFlow, the table the MNIST example prints after every epoch.

#include <fmt/format.h>

#include <string>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/inspect/activation_stats.hpp"
#include "glassbox/inspect/gradient_flow.hpp"

namespace glassbox::inspect {

template <class T>
std::string layer_table(const ActivationStats<T>& stats, const GradientFlow<T>& flow) {
  std::string s = fmt::format("{:<14}{:>10}{:>10}{:>8}{:>8}{:>11}{:>11}{:>11}  {}\n", "layer", "act mean", "act std",
                              "zeros", "dead", "|dL/dy|", "|dL/dW|", "update/W", "gradient");
  for (const auto& series : stats.all()) {
    if (series.records.empty()) continue;
    const ActivationRecord& a = series.records.back();
    s += fmt::format("{:<14}{:>10.4f}{:>10.4f}{:>7.1f}%{:>7.1f}%", series.name, a.mean, a.std, 100 * a.zero_fraction,
                     100 * a.dead_fraction);
    std::string grad = "          -", weight = "          -", update = "          -";
    GradientHealth health = GradientHealth::ok;
    for (const auto& g : flow.layers())
      if (g.name == series.name && !g.records.empty()) {
        grad = fmt::format("{:>11.3e}", g.records.back().norm);
        health = g.records.back().health;
      }
    // The layer's first parameter (its weight, for every built-in layer).
    for (const auto& p : flow.parameters())
      if (p.layer_index == series.layer_index && !p.records.empty()) {
        weight = fmt::format("{:>11.3e}", p.records.back().grad_norm);
        update = fmt::format("{:>11.3e}", p.records.back().update_ratio);
        if (p.records.back().health != GradientHealth::ok) health = p.records.back().health;
        break;
      }
    s += fmt::format("{}{}{}  {}\n", grad, weight, update, health_name(health));
  }
  return s;
}

GLASSBOX_PRECOMPILED_INSTANCE(std::string layer_table<float>(const ActivationStats<float>&, const GradientFlow<float>&))
}  // namespace glassbox::inspect
