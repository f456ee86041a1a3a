import CKernels

/// Element type of a tensor's storage.
///
/// Compute is Float32; Float16 and BFloat16 are storage types (checkpoints ship fp16) that are
/// converted on load or inside a kernel. BFloat16 is also the compute type of the `bf16` precision
/// mode, where oneDNN convolutions and matmuls read bf16 and accumulate in fp32.
public enum DType: String, Sendable, CaseIterable, CustomStringConvertible {
  case float32 = "F32"
  case float16 = "F16"
  case bfloat16 = "BF16"

  /// Size of one element in bytes.
  public var byteSize: Int {
    switch self {
    case .float32: 4
    case .float16, .bfloat16: 2
    }
  }

  public var description: String { rawValue }
}

/// Bulk conversions between the storage types: the C kernels (F16C / AVX2 when the CPU has them,
/// chosen at run time), spread over threads for large arrays.
public enum Convert {
  /// Widens `count` IEEE half values to Float32.
  public static func halfToFloat(
    _ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int
  ) {
    // Blocks of 64 Ki values on all threads: loading a checkpoint converts gigabytes, and the page
    // faults of the fresh destination are as costly as the conversion itself.
    Parallel.forBlocks(count, blockSize: 65_536, costPerElement: 6) { block in
      ipa_half_to_float(src + block.lowerBound, dst + block.lowerBound, block.count)
    }
  }

  /// Narrows Float32 to IEEE half with round-to-nearest-even (as torch's `.half()`).
  public static func floatToHalf(
    _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int
  ) {
    ipa_float_to_half(src, dst, count)
  }

  /// Widens bfloat16 (the upper 16 bits of a Float32) to Float32. Exact.
  public static func bfloat16ToFloat(
    _ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int
  ) {
    ipa_bfloat16_to_float(src, dst, count)
  }

  /// Narrows Float32 to bfloat16 with round-to-nearest-even; NaN stays NaN (as torch).
  public static func floatToBFloat16(
    _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int
  ) {
    Parallel.forBlocks(count, blockSize: 65_536, costPerElement: 6) { block in
      ipa_float_to_bfloat16(src + block.lowerBound, dst + block.lowerBound, block.count)
    }
  }

  /// The bfloat16 bit pattern of one Float32 value, rounded to nearest even.
  @inline(__always)
  public static func bfloat16Bits(_ x: Float) -> UInt16 {
    let bits = x.bitPattern
    if x.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x40) }
    let rounding = ((bits >> 16) & 1) &+ 0x7FFF
    return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
  }
}
