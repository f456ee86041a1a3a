import TensorCore

/// Every element type a safetensors header may name, in the declaration order of the reference
/// Rust `Dtype` enum (huggingface/safetensors `safetensors/src/tensor.rs`, v0.8.0).
///
/// That order matters: writers sort tensors by *descending* position in it (then by name), so
/// `writeRank` reproduces Python `safetensors.torch.save_file` byte for byte. Only F32, F16 and
/// BF16 map to a `DType` the engine computes with; the others can be listed and read as raw bytes.
/// Limitation: F4/F6 are sub-byte types; tensors of them are accepted only when their total bit
/// count is a whole number of bytes (as in the reference).
public enum SafeTensorsElementType: String, CaseIterable, Sendable, CustomStringConvertible {
  case bool = "BOOL"
  case f4 = "F4"
  case f6E2M3 = "F6_E2M3"
  case f6E3M2 = "F6_E3M2"
  case u8 = "U8"
  case i8 = "I8"
  case f8E5M2 = "F8_E5M2"
  case f8E4M3 = "F8_E4M3"
  case f8E8M0 = "F8_E8M0"
  case f8E4M3FNUZ = "F8_E4M3FNUZ"
  case f8E5M2FNUZ = "F8_E5M2FNUZ"
  case i16 = "I16"
  case u16 = "U16"
  case f16 = "F16"
  case bf16 = "BF16"
  case i32 = "I32"
  case u32 = "U32"
  case f32 = "F32"
  case c64 = "C64"
  case f64 = "F64"
  case i64 = "I64"
  case u64 = "U64"

  /// Size of one element in bits (4 and 6 for the sub-byte float formats).
  public var bitSize: Int {
    switch self {
    case .f4: 4
    case .f6E2M3, .f6E3M2: 6
    case .bool, .u8, .i8, .f8E5M2, .f8E4M3, .f8E8M0, .f8E4M3FNUZ, .f8E5M2FNUZ: 8
    case .i16, .u16, .f16, .bf16: 16
    case .i32, .u32, .f32: 32
    case .c64, .f64, .i64, .u64: 64
    }
  }

  /// The compute dtype for F32/F16/BF16, nil for every other stored type.
  public var dtype: DType? { DType(rawValue: rawValue) }

  /// The stored type of a TensorCore dtype.
  public init(_ dtype: DType) {
    switch dtype {
    case .float32: self = .f32
    case .float16: self = .f16
    case .bfloat16: self = .bf16
    }
  }

  /// Position in the reference enum; writers emit higher ranks first.
  public var writeRank: Int { Self.allCases.firstIndex(of: self)! }

  /// True for the signed/unsigned integer and BOOL types (readable with `int64Values`).
  public var isInteger: Bool {
    switch self {
    case .bool, .u8, .i8, .i16, .u16, .i32, .u32, .i64, .u64: true
    default: false
    }
  }

  public var description: String { rawValue }
}
