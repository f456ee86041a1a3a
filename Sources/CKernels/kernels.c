// Two compilations of kernels_body.h — the x86-64 baseline and AVX2 + FMA + F16C — and the run-time
// choice between them. No flags are needed to build this file: the wide variant gets its target
// features from a `#pragma clang attribute`, and is only called when the CPU has them.
#include "ipa_kernels.h"

#include <stdatomic.h>

// Contraction would turn `a * b + c` into a fused multiply-add on the wide variant only and make
// the variants differ; every fused operation is written out where it is meant.
#pragma clang fp contract(off)
// The 16-lane vectors are only passed between static functions of one variant of this file (all
// of them compiled with the same target features), so the ABI note of -Wpsabi does not apply.
#pragma clang diagnostic ignored "-Wpsabi"

typedef float v16f __attribute__((ext_vector_type(16)));
typedef int32_t v16i __attribute__((ext_vector_type(16)));
typedef uint32_t v16u __attribute__((ext_vector_type(16)));
typedef uint16_t v16s __attribute__((ext_vector_type(16)));
typedef _Float16 v16h __attribute__((ext_vector_type(16)));

#define IPA_SUFFIX _base
#include "kernels_body.h"
#undef IPA_SUFFIX

#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#define IPA_SUFFIX _avx2
#include "kernels_body.h"
#undef IPA_SUFFIX
#pragma clang attribute pop
#endif

// -1: not chosen yet; 0 baseline; 1 AVX2.
static _Atomic int chosen = -1;

static int cpu_has_avx2(void) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return 0;
#endif
}

int ipa_kernels_variant(void) {
  int v = atomic_load_explicit(&chosen, memory_order_relaxed);
  if (v < 0) {
    v = cpu_has_avx2();
    atomic_store_explicit(&chosen, v, memory_order_relaxed);
  }
  return v;
}

int ipa_kernels_force_variant(int variant) {
  int v = variant == 1 && cpu_has_avx2() ? 1 : 0;
  atomic_store_explicit(&chosen, v, memory_order_relaxed);
  return v;
}

#if defined(__x86_64__)
#define DISPATCH(name, ...) \
  do { \
    if (ipa_kernels_variant()) name##_avx2(__VA_ARGS__); else name##_base(__VA_ARGS__); \
  } while (0)
#else
#define DISPATCH(name, ...) name##_base(__VA_ARGS__)
#endif

void ipa_half_to_float(const uint16_t *src, float *dst, size_t n) { DISPATCH(half_to_float, src, dst, n); }
void ipa_float_to_half(const float *src, uint16_t *dst, size_t n) { DISPATCH(float_to_half, src, dst, n); }
void ipa_bfloat16_to_float(const uint16_t *src, float *dst, size_t n) { DISPATCH(bfloat16_to_float, src, dst, n); }
void ipa_float_to_bfloat16(const float *src, uint16_t *dst, size_t n) { DISPATCH(float_to_bfloat16, src, dst, n); }

void ipa_unary_map(ipa_unary op, const float *src, float *dst, size_t n) { DISPATCH(unary_map, op, src, dst, n); }
void ipa_binary_map(ipa_binary op, const float *a, const float *b, float *dst, size_t n) {
  DISPATCH(binary_map, op, a, b, dst, n);
}
void ipa_scale(const float *src, float s, float *dst, size_t n) { DISPATCH(scale, src, s, dst, n); }
void ipa_affine(const float *src, float s, float t, float *dst, size_t n) { DISPATCH(affine, src, s, t, dst, n); }
void ipa_divide(const float *src, float s, float *dst, size_t n) { DISPATCH(divide, src, s, dst, n); }
void ipa_clamp(const float *src, float lo, float hi, float *dst, size_t n) { DISPATCH(clamp, src, lo, hi, dst, n); }
void ipa_geglu(const float *h, const float *g, float *dst, size_t n) { DISPATCH(geglu, h, g, dst, n); }

void ipa_gelu_backward(const float *dy, const float *x, float *dx, size_t n) { DISPATCH(gelu_backward, dy, x, dx, n); }
void ipa_silu_backward(const float *dy, const float *x, float *dx, size_t n) { DISPATCH(silu_backward, dy, x, dx, n); }
void ipa_accumulate_products(const float *a, const float *b, size_t count, size_t c, float *sumA, float *sumAB) {
  DISPATCH(accumulate_products, a, b, count, c, sumA, sumAB);
}
void ipa_affine2_channels(
    const float *a, const float *b, float *dst, size_t pixels, size_t c, const float *alpha, const float *beta,
    const float *kappa) {
  DISPATCH(affine2_channels, a, b, dst, pixels, c, alpha, beta, kappa);
}

void ipa_accumulate_rows(const float *rows, size_t count, size_t c, const float *centre, float *acc) {
  DISPATCH(accumulate_rows, rows, count, c, centre, acc);
}
void ipa_affine_channels(
    const float *src, float *dst, size_t pixels, size_t c, const float *scale, const float *shift, int silu) {
  DISPATCH(affine_channels, src, dst, pixels, c, scale, shift, silu);
}

void ipa_softmax_row(float *row, size_t count, size_t total, float scale) {
  DISPATCH(softmax_row, row, count, total, scale);
}

float ipa_exp1(float x) {
  float out;
  ipa_unary_map(IPA_EXP, &x, &out, 1);
  return out;
}
