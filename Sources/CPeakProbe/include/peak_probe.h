// Measures the machine's sustained fused-multiply-add throughput (the benchmark's "peak").
#pragma once
#include <stdint.h>

/// Runs `iterations` rounds of 12 independent 512-bit FMA chains (AVX-512) on the calling
/// thread and returns the number of floating-point operations performed (2 per lane per FMA).
/// Returns 0 when the CPU lacks AVX-512F.
double ipa_fma_probe_avx512(int64_t iterations);

/// Same with 256-bit FMA (AVX2/FMA3).
double ipa_fma_probe_avx2(int64_t iterations);
