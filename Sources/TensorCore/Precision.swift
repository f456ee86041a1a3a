/// Arithmetic used by the heavy kernels (convolutions and matrix products).
///
/// `.float32` is the reference mode, used by every parity test. `.bfloat16` feeds the kernels
/// bfloat16 inputs and weights and accumulates in Float32 (AVX512-BF16 through oneDNN); it is
/// about twice as fast and close to, but not bit-equal with, the Float32 result.
public enum ComputePrecision: String, Sendable, CaseIterable {
  case float32 = "fp32"
  case bfloat16 = "bf16"

  var dnnlType: DType { self == .float32 ? .float32 : .bfloat16 }
}
