// The engine's elementwise kernels: conversions between the storage types, activations, the
// pieces of GroupNorm/LayerNorm, softmax rows. Written in C so that each one is compiled twice —
// for the x86-64 baseline and for AVX2 + FMA + F16C (per-function `target` attributes) — and the
// best variant is chosen once at run time from the CPU's features. No compiler flags are needed:
// the package builds as a dependency without `unsafeFlags`, and still runs the wide kernels.
//
// Every kernel follows the operation order of the Swift/ATen code it replaces lane for lane (16
// lanes, `fma` where that code fused, no other contraction), so results are identical on every
// variant and to PyTorch's CPU kernels where those were matched before.
#ifndef IPA_KERNELS_H
#define IPA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Which variant runs: 0 = baseline x86-64, 1 = AVX2 + FMA + F16C. Set at the first call (or by
/// `ipa_kernels_force_variant` for tests).
int ipa_kernels_variant(void);
/// Forces a variant (0 or 1; 1 only when the CPU has the features); returns the one in use.
int ipa_kernels_force_variant(int variant);

// MARK: Storage conversions

/// IEEE half → float (exact).
void ipa_half_to_float(const uint16_t *src, float *dst, size_t count);
/// float → IEEE half, round to nearest even.
void ipa_float_to_half(const float *src, uint16_t *dst, size_t count);
/// bfloat16 → float (exact).
void ipa_bfloat16_to_float(const uint16_t *src, float *dst, size_t count);
/// float → bfloat16, round to nearest even; NaN stays a (quiet) NaN.
void ipa_float_to_bfloat16(const float *src, uint16_t *dst, size_t count);

// MARK: Elementwise (dst may alias a source)

typedef enum ipa_unary {
  IPA_EXP = 0,
  IPA_SIGMOID = 1,
  IPA_SILU = 2,
  IPA_GELU = 3,
  IPA_QUICK_GELU = 4,
} ipa_unary;

/// dst[i] = f(src[i]) for one of the activations (Sleef `expf_u10`, ATen's erf and operator
/// orders; see kernels_body.h).
void ipa_unary_map(ipa_unary op, const float *src, float *dst, size_t count);

typedef enum ipa_binary {
  IPA_ADD = 0,
  IPA_SUB = 1,
  IPA_MUL = 2,
} ipa_binary;

/// dst[i] = a[i] op b[i].
void ipa_binary_map(ipa_binary op, const float *a, const float *b, float *dst, size_t count);

/// dst[i] = src[i]·s.
void ipa_scale(const float *src, float s, float *dst, size_t count);
/// dst[i] = src[i]·s + t (two roundings).
void ipa_affine(const float *src, float s, float t, float *dst, size_t count);
/// dst[i] = src[i] / s (a true division).
void ipa_divide(const float *src, float s, float *dst, size_t count);
/// dst[i] = min(max(src[i], lo), hi) (NaN-oblivious compare-and-blend).
void ipa_clamp(const float *src, float lo, float hi, float *dst, size_t count);
/// dst[i] = hidden[i] · gelu(gate[i]) (GEGLU).
void ipa_geglu(const float *hidden, const float *gate, float *dst, size_t count);

// MARK: Backward passes (adapter training)

/// dx[i] = dy[i] · (Φ(x[i]) + x[i]·φ(x[i])) (exact-erf GELU's derivative, ATen's order).
void ipa_gelu_backward(const float *dy, const float *x, float *dx, size_t count);
/// dx[i] = dy[i] · σ(x[i]) · (1 + x[i]·(1 − σ(x[i]))) (SiLU's derivative, ATen's order).
void ipa_silu_backward(const float *dy, const float *x, float *dx, size_t count);
/// Per channel over `count` rows of `channels`: sumA[c] += Σ a[c], sumAB[c] += Σ a[c]·b[c].
void ipa_accumulate_products(const float *a, const float *b, size_t count, size_t channels, float *sumA, float *sumAB);
/// dst = a·alpha[c] + b·beta[c] + kappa[c] per channel of each of `pixels` rows.
void ipa_affine2_channels(
    const float *a, const float *b, float *dst, size_t pixels, size_t channels, const float *alpha, const float *beta,
    const float *kappa);

// MARK: Normalisation pieces

/// acc[c] += Σ over `rows` rows of `row[c]` (centre == NULL) or of `(row[c] − centre[c])²`
/// (fused multiply-add), rows of `channels` floats laid out back to back.
void ipa_accumulate_rows(const float *rows, size_t count, size_t channels, const float *centre, float *acc);
/// dst = fma(src, scale[c], shift[c]) per channel of each of `pixels` rows (then SiLU when `silu`).
void ipa_affine_channels(
    const float *src, float *dst, size_t pixels, size_t channels, const float *scale, const float *shift, int silu);

// MARK: Attention

/// In-place softmax of row[0..<count] multiplied by `scale`; row[count..<total] set to 0.
void ipa_softmax_row(float *row, size_t count, size_t total, float scale);
/// e^x of one value (the vector algorithm on one lane).
float ipa_exp1(float x);

#ifdef __cplusplus
}
#endif

#endif
