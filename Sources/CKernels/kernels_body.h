// The body of every kernel, included by kernels.c once per variant with IPA_SUFFIX set (and, for
// the wide variant, inside a `#pragma clang attribute` that gives every function the target
// features). Written on 16-lane vectors so that the operation order, and so every rounding, is
// the same as the 16-lane Swift code this replaced, whatever the machine's vector width.
//
// Rules kept throughout: `a * b + c` is two roundings (contraction is off in kernels.c); a fused
// multiply-add is written `FMA(a, b, c)` = a·b + c once rounded, exactly where the original fused.

#define IPA_CAT_(a, b) a##b
#define IPA_CAT(a, b) IPA_CAT_(a, b)
#define FN(name) IPA_CAT(name, IPA_SUFFIX)
#define FMA(a, b, c) __builtin_elementwise_fma((a), (b), (c))

static inline __attribute__((always_inline)) v16f FN(load)(const float *p) {
  v16f v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

static inline __attribute__((always_inline)) void FN(store)(float *p, v16f v) { __builtin_memcpy(p, &v, sizeof v); }

/// `mask ? a : b` lane by lane (mask lanes are all ones or all zeros).
static inline __attribute__((always_inline)) v16f FN(select)(v16i mask, v16f a, v16f b) {
  return (v16f)(((v16i)a & mask) | ((v16i)b & ~mask));
}

static inline __attribute__((always_inline)) v16f FN(pow2)(v16i e) { return (v16f)((e + 127) << 23); }

/// Sleef `expf_u10`: 0 below −104, +inf above 100.
static inline __attribute__((always_inline)) v16f FN(vexp)(v16f d) {
  const v16f magic = 12582912.0f;
  v16f shifted = d * 1.4426950408889634f + magic;
  v16f q = shifted - magic;
  v16i qi = (v16i)shifted - 0x4B400000;
  v16f s = FMA(q, (v16f)-0.693145751953125f, d);
  s = FMA(q, (v16f)-1.428606765330187045e-6f, s);
  v16f u = 0.000198527617612853646278381f;
  u = FMA(u, s, (v16f)0.00139304355252534151077271f);
  u = FMA(u, s, (v16f)0.00833336077630519866943359f);
  u = FMA(u, s, (v16f)0.0416664853692054748535156f);
  u = FMA(u, s, (v16f)0.166666671633720397949219f);
  u = FMA(u, s, (v16f)0.5f);
  u = 1.0f + FMA(s * s, u, s);
  v16i half = qi >> 1;
  u = u * FN(pow2)(half) * FN(pow2)(qi - half);
  u = FN(select)(d < -104.0f, (v16f)0.0f, u);
  u = FN(select)(d > 100.0f, (v16f)__builtin_inff(), u);
  return u;
}

static inline __attribute__((always_inline)) v16f FN(vsigmoid)(v16f x) { return 1.0f / (FN(vexp)(0.0f - x) + 1.0f); }

static inline __attribute__((always_inline)) v16f FN(vsilu)(v16f x) { return x / (1.0f + FN(vexp)(-x)); }

/// ATen's `Vectorized<float>::erf`.
static inline __attribute__((always_inline)) v16f FN(verf)(v16f x) {
  v16u sign = (v16u)x & 0x80000000u;
  v16f a = (v16f)((v16u)x & 0x7FFFFFFFu);
  v16f one = 1.0f;
  v16f t = one / FMA((v16f)0.3275911f, a, one);
  v16f r = FMA((v16f)1.061405429f, t, (v16f)-1.453152027f);
  r = FMA(r, t, (v16f)1.421413741f);
  r = FMA(r, t, (v16f)-0.284496736f);
  r = FMA(r, t, (v16f)0.254829592f);
  v16f e = FN(vexp)(0.0f - x * x);
  v16f y = FMA((0.0f - e) * t, r, one);
  return (v16f)((v16u)y ^ sign);
}

static inline __attribute__((always_inline)) v16f FN(vgelu)(v16f x) { return x * 0.5f * (1.0f + FN(verf)(x * 0.7071067811865475244f)); }

static inline __attribute__((always_inline)) v16f FN(vquick_gelu)(v16f x) { return x * FN(vsigmoid)(1.702f * x); }

static inline __attribute__((always_inline)) v16f FN(vunary)(ipa_unary op, v16f x) {
  switch (op) {
    case IPA_EXP: return FN(vexp)(x);
    case IPA_SIGMOID: return FN(vsigmoid)(x);
    case IPA_SILU: return FN(vsilu)(x);
    case IPA_GELU: return FN(vgelu)(x);
    case IPA_QUICK_GELU: return FN(vquick_gelu)(x);
  }
  return x;
}

// MARK: - Conversions

static void FN(half_to_float)(const uint16_t *src, float *dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v16h h;
    __builtin_memcpy(&h, src + i, sizeof h);
    FN(store)(dst + i, __builtin_convertvector(h, v16f));
  }
  for (; i < n; i++) {
    _Float16 h;
    __builtin_memcpy(&h, src + i, sizeof h);
    dst[i] = (float)h;
  }
}

static void FN(float_to_half)(const float *src, uint16_t *dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v16h h = __builtin_convertvector(FN(load)(src + i), v16h);
    __builtin_memcpy(dst + i, &h, sizeof h);
  }
  for (; i < n; i++) {
    _Float16 h = (_Float16)src[i];
    __builtin_memcpy(dst + i, &h, sizeof h);
  }
}

static void FN(bfloat16_to_float)(const uint16_t *src, float *dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v16s s;
    __builtin_memcpy(&s, src + i, sizeof s);
    v16u w = __builtin_convertvector(s, v16u) << 16;
    __builtin_memcpy(dst + i, &w, sizeof w);
  }
  for (; i < n; i++) {
    uint32_t w = (uint32_t)src[i] << 16;
    __builtin_memcpy(dst + i, &w, sizeof w);
  }
}

static inline __attribute__((always_inline)) uint16_t FN(bf16_bits)(float x) {
  uint32_t bits;
  __builtin_memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((bits >> 16) | 0x40);
  uint32_t rounding = ((bits >> 16) & 1) + 0x7FFF;
  return (uint16_t)((bits + rounding) >> 16);
}

static void FN(float_to_bfloat16)(const float *src, uint16_t *dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v16u bits;
    __builtin_memcpy(&bits, src + i, sizeof bits);
    v16u rounded = (bits + (((bits >> 16) & 1u) + 0x7FFFu)) >> 16;
    v16u quiet = (bits >> 16) | 0x40u;
    v16i nan = (v16i)((bits & 0x7FFFFFFFu) > 0x7F800000u);
    v16u out = (v16u)(((v16i)quiet & nan) | ((v16i)rounded & ~nan));
    v16s narrow = __builtin_convertvector(out, v16s);
    __builtin_memcpy(dst + i, &narrow, sizeof narrow);
  }
  for (; i < n; i++) dst[i] = FN(bf16_bits)(src[i]);
}

// MARK: - Elementwise

static void FN(unary_map)(ipa_unary op, const float *src, float *dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) FN(store)(dst + i, FN(vunary)(op, FN(load)(src + i)));
  if (i < n) {
    v16f tail = 0.0f;
    for (size_t j = 0; j < n - i; j++) tail[j] = src[i + j];
    v16f y = FN(vunary)(op, tail);
    for (size_t j = 0; j < n - i; j++) dst[i + j] = y[j];
  }
}

static void FN(binary_map)(ipa_binary op, const float *a, const float *b, float *dst, size_t n) {
  size_t i = 0;
  switch (op) {
    case IPA_ADD:
      for (; i + 16 <= n; i += 16) FN(store)(dst + i, FN(load)(a + i) + FN(load)(b + i));
      for (; i < n; i++) dst[i] = a[i] + b[i];
      break;
    case IPA_SUB:
      for (; i + 16 <= n; i += 16) FN(store)(dst + i, FN(load)(a + i) - FN(load)(b + i));
      for (; i < n; i++) dst[i] = a[i] - b[i];
      break;
    case IPA_MUL:
      for (; i + 16 <= n; i += 16) FN(store)(dst + i, FN(load)(a + i) * FN(load)(b + i));
      for (; i < n; i++) dst[i] = a[i] * b[i];
      break;
  }
}

static void FN(scale)(const float *src, float s, float *dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) FN(store)(dst + i, FN(load)(src + i) * s);
  for (; i < n; i++) dst[i] = src[i] * s;
}

static void FN(affine)(const float *src, float s, float t, float *dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) FN(store)(dst + i, FN(load)(src + i) * s + t);
  for (; i < n; i++) dst[i] = src[i] * s + t;
}

static void FN(divide)(const float *src, float s, float *dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) FN(store)(dst + i, FN(load)(src + i) / s);
  for (; i < n; i++) dst[i] = src[i] / s;
}

static void FN(clamp)(const float *src, float lo, float hi, float *dst, size_t n) {
  size_t i = 0;
  v16f vlo = lo, vhi = hi;
  for (; i + 16 <= n; i += 16) {
    v16f x = FN(load)(src + i);
    x = FN(select)(vlo > x, vlo, x);
    x = FN(select)(vhi < x, vhi, x);
    FN(store)(dst + i, x);
  }
  for (; i < n; i++) {
    float x = src[i];
    if (lo > x) x = lo;
    if (hi < x) x = hi;
    dst[i] = x;
  }
}

static void FN(geglu)(const float *h, const float *g, float *dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) FN(store)(dst + i, FN(load)(h + i) * FN(vgelu)(FN(load)(g + i)));
  for (; i < n; i++) dst[i] = h[i] * FN(vgelu)((v16f)g[i])[0];
}

// MARK: - Backward passes (adapter training)

/// ATen's GELU backward (`approximate="none"`): `dy · (Φ(x) + x · φ(x))`, `Φ(x) = ½(1 + erf(x/√2))`,
/// `φ(x) = e^(−x²/2)/√(2π)`.
static void FN(gelu_backward)(const float *dy, const float *x, float *dx, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v16f v = FN(load)(x + i);
    v16f cdf = 0.5f * (1.0f + FN(verf)(v * 0.7071067811865475244f));
    v16f pdf = 0.3989422804014327f * FN(vexp)(v * v * -0.5f);
    FN(store)(dx + i, FN(load)(dy + i) * (cdf + v * pdf));
  }
  for (; i < n; i++) {
    v16f v = (v16f)x[i];
    v16f cdf = 0.5f * (1.0f + FN(verf)(v * 0.7071067811865475244f));
    v16f pdf = 0.3989422804014327f * FN(vexp)(v * v * -0.5f);
    dx[i] = dy[i] * (cdf[0] + x[i] * pdf[0]);
  }
}

/// ATen's SiLU backward: `dy · σ(x) · (1 + x · (1 − σ(x)))`.
static void FN(silu_backward)(const float *dy, const float *x, float *dx, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v16f v = FN(load)(x + i);
    v16f s = 1.0f / (1.0f + FN(vexp)(0.0f - v));
    FN(store)(dx + i, FN(load)(dy + i) * s * (1.0f + v * (1.0f - s)));
  }
  for (; i < n; i++) {
    v16f v = (v16f)x[i];
    v16f s = 1.0f / (1.0f + FN(vexp)(0.0f - v));
    dx[i] = dy[i] * s[0] * (1.0f + x[i] * (1.0f - s[0]));
  }
}

/// Per channel over `count` rows: sumA[c] += Σ a[c], sumAB[c] += Σ a[c]·b[c] (fused).
static void FN(accumulate_products)(const float *a, const float *b, size_t count, size_t c, float *sumA, float *sumAB) {
  for (size_t p = 0; p < count; p++) {
    const float *ra = a + p * c, *rb = b + p * c;
    size_t ch = 0;
    for (; ch + 16 <= c; ch += 16) {
      v16f va = FN(load)(ra + ch);
      FN(store)(sumA + ch, FN(load)(sumA + ch) + va);
      FN(store)(sumAB + ch, FMA(va, FN(load)(rb + ch), FN(load)(sumAB + ch)));
    }
    for (; ch < c; ch++) {
      sumA[ch] += ra[ch];
      sumAB[ch] = __builtin_fmaf(ra[ch], rb[ch], sumAB[ch]);
    }
  }
}

/// dst = a·alpha[c] + b·beta[c] + kappa[c] per channel of each of `pixels` rows (ATen's group-norm
/// backward order: `c1·dy + c2·x + c3`).
static void FN(affine2_channels)(
    const float *a, const float *b, float *dst, size_t pixels, size_t c, const float *alpha, const float *beta,
    const float *kappa) {
  for (size_t p = 0; p < pixels; p++) {
    const float *ra = a + p * c, *rb = b + p * c;
    float *o = dst + p * c;
    size_t ch = 0;
    for (; ch + 16 <= c; ch += 16) {
      FN(store)(o + ch, FN(load)(ra + ch) * FN(load)(alpha + ch) + FN(load)(rb + ch) * FN(load)(beta + ch) + FN(load)(kappa + ch));
    }
    for (; ch < c; ch++) o[ch] = ra[ch] * alpha[ch] + rb[ch] * beta[ch] + kappa[ch];
  }
}

// MARK: - Normalisation

static void FN(accumulate_rows)(const float *rows, size_t count, size_t c, const float *centre, float *acc) {
  for (size_t p = 0; p < count; p++) {
    const float *row = rows + p * c;
    size_t ch = 0;
    if (centre) {
      for (; ch + 16 <= c; ch += 16) {
        v16f d = FN(load)(row + ch) - FN(load)(centre + ch);
        FN(store)(acc + ch, FMA(d, d, FN(load)(acc + ch)));
      }
      for (; ch < c; ch++) {
        float d = row[ch] - centre[ch];
        acc[ch] += d * d;
      }
    } else {
      for (; ch + 16 <= c; ch += 16) FN(store)(acc + ch, FN(load)(acc + ch) + FN(load)(row + ch));
      for (; ch < c; ch++) acc[ch] += row[ch];
    }
  }
}

static void FN(affine_channels)(
    const float *src, float *dst, size_t pixels, size_t c, const float *scale, const float *shift, int silu) {
  for (size_t p = 0; p < pixels; p++) {
    const float *row = src + p * c;
    float *o = dst + p * c;
    size_t ch = 0;
    for (; ch + 16 <= c; ch += 16) {
      v16f y = FMA(FN(load)(row + ch), FN(load)(scale + ch), FN(load)(shift + ch));
      if (silu) y = FN(vsilu)(y);
      FN(store)(o + ch, y);
    }
    for (; ch < c; ch++) {
      float y = __builtin_fmaf(row[ch], scale[ch], shift[ch]);
      if (silu) y = FN(vsilu)((v16f)y)[0];
      o[ch] = y;
    }
  }
}

// MARK: - Softmax

static void FN(softmax_row)(float *row, size_t count, size_t total, float scale) {
  size_t i = 0;
  v16f vmax = -__builtin_inff();
  for (; i + 16 <= count; i += 16) {
    v16f x = FN(load)(row + i);
    vmax = FN(select)(x > vmax, x, vmax);
  }
  // Largest lane: the two halves compared lane-wise, then the 8 lanes in order.
  v16f hi = vmax.s89abcdef01234567;
  float h8[8];
  for (int k = 0; k < 8; k++) h8[k] = hi[k] > vmax[k] ? hi[k] : vmax[k];
  float m = h8[0];
  for (int k = 1; k < 8; k++)
    if (h8[k] > m) m = h8[k];
  for (; i < count; i++) m = row[i] >= m ? row[i] : m;  // Swift's max(m, x)

  i = 0;
  v16f vsum = 0.0f;
  v16f vm = m;
  for (; i + 16 <= count; i += 16) {
    v16f e = FN(vexp)(FN(load)(row + i) - vm);
    FN(store)(row + i, e);
    vsum += e;
  }
  float sum = -0.0f;
  for (int k = 0; k < 16; k++) sum += vsum[k];
  for (; i < count; i++) {
    float e = FN(vexp)((v16f)(row[i] - m))[0];
    row[i] = e;
    sum += e;
  }
  float inv = scale / sum;
  i = 0;
  for (; i + 16 <= count; i += 16) FN(store)(row + i, FN(load)(row + i) * inv);
  for (; i < count; i++) row[i] *= inv;
  for (size_t k = count; k < total; k++) row[k] = 0;
}

#undef FN
#undef FMA
