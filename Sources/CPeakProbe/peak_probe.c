// The FMA throughput probe. The timed loop is inline assembly — 12 independent chains of
// `vfmadd231ps` on registers and one counter — so what it measures does not depend on how the
// package is compiled (SwiftPM builds C at -O0 in debug configurations, and no flags are set).
#include "peak_probe.h"

#if defined(__x86_64__)

static void splat(float *lanes, int count, float value) {
  for (int i = 0; i < count; i++) lanes[i] = value;
}

// One probe per vector width R ("zmm" or "ymm", LANES floats): 12 accumulators x = x·m + c.
#define IPA_DEFINE_PROBE(NAME, TARGET, R, LANES)                                                       \
  __attribute__((target(TARGET))) static double NAME(int64_t iterations) {                             \
    float one[LANES], m[LANES], c[LANES];                                                               \
    splat(one, LANES, 1.0f);                                                                            \
    splat(m, LANES, 0.999999f);                                                                         \
    splat(c, LANES, 1e-7f);                                                                             \
    int64_t n = iterations;                                                                             \
    __asm__ volatile(                                                                                   \
        "vmovups (%[one]), %%" R "0\n\t"                                                                \
        "vmovaps %%" R "0, %%" R "1\n\t vmovaps %%" R "0, %%" R "2\n\t vmovaps %%" R "0, %%" R "3\n\t"  \
        "vmovaps %%" R "0, %%" R "4\n\t vmovaps %%" R "0, %%" R "5\n\t vmovaps %%" R "0, %%" R "6\n\t"  \
        "vmovaps %%" R "0, %%" R "7\n\t vmovaps %%" R "0, %%" R "8\n\t vmovaps %%" R "0, %%" R "9\n\t"  \
        "vmovaps %%" R "0, %%" R "10\n\t vmovaps %%" R "0, %%" R "11\n\t"                              \
        "vmovups (%[m]), %%" R "12\n\t vmovups (%[c]), %%" R "13\n\t"                                  \
        "test %[n], %[n]\n\t jle 2f\n"                                                                  \
        "1:\n\t"                                                                                        \
        "vfmadd213ps %%" R "13, %%" R "12, %%" R "0\n\t vfmadd213ps %%" R "13, %%" R "12, %%" R "1\n\t"   \
        "vfmadd213ps %%" R "13, %%" R "12, %%" R "2\n\t vfmadd213ps %%" R "13, %%" R "12, %%" R "3\n\t"   \
        "vfmadd213ps %%" R "13, %%" R "12, %%" R "4\n\t vfmadd213ps %%" R "13, %%" R "12, %%" R "5\n\t"   \
        "vfmadd213ps %%" R "13, %%" R "12, %%" R "6\n\t vfmadd213ps %%" R "13, %%" R "12, %%" R "7\n\t"   \
        "vfmadd213ps %%" R "13, %%" R "12, %%" R "8\n\t vfmadd213ps %%" R "13, %%" R "12, %%" R "9\n\t"   \
        "vfmadd213ps %%" R "13, %%" R "12, %%" R "10\n\t vfmadd213ps %%" R "13, %%" R "12, %%" R "11\n\t" \
        "dec %[n]\n\t jnz 1b\n"                                                                         \
        "2:\n\t"                                                                                        \
        "vzeroupper\n\t"                                                                                \
        : [n] "+r"(n)                                                                                   \
        : [one] "r"(one), [m] "r"(m), [c] "r"(c)                                                        \
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",     \
          "xmm11", "xmm12", "xmm13", "memory", "cc");                                                   \
    return (double)iterations * 12.0 * LANES * 2.0;                                                     \
  }

IPA_DEFINE_PROBE(probe512, "avx512f", "zmm", 16)
IPA_DEFINE_PROBE(probe256, "avx2,fma", "ymm", 8)

double ipa_fma_probe_avx512(int64_t iterations) {
  if (!__builtin_cpu_supports("avx512f")) return 0;
  return probe512(iterations);
}

double ipa_fma_probe_avx2(int64_t iterations) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
  return probe256(iterations);
}

#else

double ipa_fma_probe_avx512(int64_t iterations) {
  (void)iterations;
  return 0;
}

double ipa_fma_probe_avx2(int64_t iterations) {
  (void)iterations;
  return 0;
}

#endif
