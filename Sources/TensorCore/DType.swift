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

/// Bulk conversions between the storage types, vectorised (F16C / AVX2 with x86-64-v3).
public enum Convert {
  /// Widens `count` IEEE half values to Float32.
  public static func halfToFloat(
    _ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int
  ) {
    // Blocks of 64 Ki values on all threads: loading a checkpoint converts gigabytes, and the page
    // faults of the fresh destination are as costly as the conversion itself.
    Parallel.forBlocks(count, blockSize: 65_536, costPerElement: 6) { block in
      var i = block.lowerBound
      while i + 16 <= block.upperBound {
        let v = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<Float16>.self)
        UnsafeMutableRawPointer(dst + i).storeBytes(of: SIMD16<Float>(v), as: SIMD16<Float>.self)
        i += 16
      }
      while i < block.upperBound {
        dst[i] = Float(Float16(bitPattern: src[i]))
        i += 1
      }
    }
  }

  /// Narrows Float32 to IEEE half with round-to-nearest-even (as torch's `.half()`).
  public static func floatToHalf(
    _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int
  ) {
    var i = 0
    while i + 16 <= count {
      let v = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<Float>.self)
      UnsafeMutableRawPointer(dst + i).storeBytes(of: SIMD16<Float16>(v), as: SIMD16<Float16>.self)
      i += 16
    }
    while i < count {
      dst[i] = Float16(src[i]).bitPattern
      i += 1
    }
  }

  /// Widens bfloat16 (the upper 16 bits of a Float32) to Float32. Exact.
  public static func bfloat16ToFloat(
    _ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int
  ) {
    let out = UnsafeMutableRawPointer(dst).assumingMemoryBound(to: UInt32.self)
    var i = 0
    while i + 16 <= count {
      let v = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<UInt16>.self)
      UnsafeMutableRawPointer(out + i).storeBytes(
        of: SIMD16<UInt32>(truncatingIfNeeded: v) &<< 16, as: SIMD16<UInt32>.self)
      i += 16
    }
    while i < count {
      out[i] = UInt32(src[i]) << 16
      i += 1
    }
  }

  /// Narrows Float32 to bfloat16 with round-to-nearest-even; NaN stays NaN (as torch).
  public static func floatToBFloat16(
    _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int
  ) {
    let one = SIMD16<UInt32>(repeating: 1)
    let half = SIMD16<UInt32>(repeating: 0x7FFF)
    let magnitude = SIMD16<UInt32>(repeating: 0x7FFF_FFFF)
    let infinity = SIMD16<UInt32>(repeating: 0x7F80_0000)
    Parallel.forBlocks(count, blockSize: 65_536, costPerElement: 6) { block in
      var i = block.lowerBound
      while i + 16 <= block.upperBound {
        let bits = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<UInt32>.self)
        let rounded = (bits &+ (((bits &>> 16) & one) &+ half)) &>> 16
        let quietNaN = (bits &>> 16) | SIMD16(repeating: 0x40)
        let out = rounded.replacing(with: quietNaN, where: (bits & magnitude) .> infinity)
        UnsafeMutableRawPointer(dst + i).storeBytes(
          of: SIMD16<UInt16>(truncatingIfNeeded: out), as: SIMD16<UInt16>.self)
        i += 16
      }
      while i < block.upperBound {
        dst[i] = bfloat16Bits(src[i])
        i += 1
      }
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
