// Precompiled float instances, part 2: recorders, attribution and reports
// (see glassbox/core/precompiled.hpp). What they build on is instantiated in
// instances_nn.cpp, so it is included first as extern declarations; the macro
// is then switched to definitions for the headers of this part.
#ifndef GLASSBOX_PRECOMPILED
#define GLASSBOX_PRECOMPILED
#endif
#include "glassbox/core/parameter.hpp"
#include "glassbox/core/tensor.hpp"
#include "glassbox/io/idx.hpp"
#include "glassbox/io/mnist.hpp"
#include "glassbox/model/graph.hpp"
#include "glassbox/model/hooks.hpp"
#include "glassbox/model/sequential.hpp"
#include "glassbox/nn/activations.hpp"
#include "glassbox/nn/avg_pool2d.hpp"
#include "glassbox/nn/batch_norm.hpp"
#include "glassbox/nn/bce_with_logits_loss.hpp"
#include "glassbox/nn/conv2d.hpp"
#include "glassbox/nn/cross_entropy_loss.hpp"
#include "glassbox/nn/dense.hpp"
#include "glassbox/nn/dropout.hpp"
#include "glassbox/nn/flatten.hpp"
#include "glassbox/nn/layer.hpp"
#include "glassbox/nn/loss.hpp"
#include "glassbox/nn/max_pool2d.hpp"
#include "glassbox/nn/mse_loss.hpp"
#include "glassbox/nn/pool2d.hpp"
#include "glassbox/nn/recurrent.hpp"
#include "glassbox/nn/residual.hpp"
#include "glassbox/nn/softmax.hpp"
#include "glassbox/optim/adam.hpp"
#include "glassbox/optim/optimizer.hpp"
#include "glassbox/optim/sgd.hpp"
#include "glassbox/train/fit.hpp"

#undef GLASSBOX_PRECOMPILED_INSTANCE
#define GLASSBOX_PRECOMPILED_INSTANCE(...) template __VA_ARGS__;

#include "glassbox/inspect/activation_capture.hpp"
#include "glassbox/inspect/activation_stats.hpp"
#include "glassbox/inspect/attribution.hpp"
#include "glassbox/inspect/decision_boundary.hpp"
#include "glassbox/inspect/error_analysis.hpp"
#include "glassbox/inspect/gradient_flow.hpp"
#include "glassbox/inspect/layer_table.hpp"
#include "glassbox/inspect/nan_watch.hpp"
#include "glassbox/inspect/parameter_histograms.hpp"
#include "glassbox/inspect/patching.hpp"
#include "glassbox/inspect/saliency.hpp"
#include "glassbox/viz/dot.hpp"
#include "glassbox/viz/html_report.hpp"
#include "glassbox/viz/tensorboard.hpp"
