#pragma once
// Optional precompiled float instances, to cut compile times.
//
// glassbox is header-only: every translation unit instantiates (and, at -O3,
// optimises) the templates it uses, which is most of the ~23 s an example like
// mnist_cnn.cpp takes to compile. Each header names its commonly used float
// instances with GLASSBOX_PRECOMPILED_INSTANCE:
//   - by default the macro expands to nothing (pure header-only use);
//   - with GLASSBOX_PRECOMPILED defined it becomes an explicit instantiation
//     declaration (`extern template ...`), so the translation unit leaves those
//     instances to src/instances*.cpp, compiled once (CMake target
//     glassbox::precompiled, or add those files to your own target);
//   - src/instances*.cpp define GLASSBOX_INSTANTIATE to turn it into the
//     explicit instantiation definitions themselves.
// Inline members can still be inlined either way; only the out-of-line copies
// move, so the generated code and its speed are the same.

#if defined(GLASSBOX_PRECOMPILED) && defined(GLASSBOX_DISABLE_HOOKS)
#error "GLASSBOX_DISABLE_HOOKS changes Sequential: it cannot use the precompiled instances (GLASSBOX_PRECOMPILED)"
#endif

#if defined(GLASSBOX_INSTANTIATE)
#define GLASSBOX_PRECOMPILED_INSTANCE(...) template __VA_ARGS__;
#elif defined(GLASSBOX_PRECOMPILED)
#define GLASSBOX_PRECOMPILED_INSTANCE(...) extern template __VA_ARGS__;
#else
#define GLASSBOX_PRECOMPILED_INSTANCE(...)
#endif
