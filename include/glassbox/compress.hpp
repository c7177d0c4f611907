#pragma once
// glassbox compression helpers: pruning (unstructured and structured),
// int8 quantization with a real int8 inference path, and distillation. Kept
// out of glassbox.hpp so that programs that do not compress models do not
// compile them.

#include "glassbox/compress/distill.hpp"
#include "glassbox/compress/fake_quantization.hpp"
#include "glassbox/compress/int8_gemm.hpp"
#include "glassbox/compress/prune.hpp"
#include "glassbox/compress/quantize.hpp"
#include "glassbox/compress/quantized_model.hpp"
#include "glassbox/compress/structured_prune.hpp"
