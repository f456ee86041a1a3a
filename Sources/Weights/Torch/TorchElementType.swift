import TensorCore

/// The element type of a tensor stored in a PyTorch checkpoint, named like the safetensors element
/// types where one exists ("F32", "F16", "BF16", "I64", …) so `TensorInfo.storedType` reads the
/// same for both containers.
///
/// matches: the storage classes of `torch.storage._dtype_to_storage_type_map()` (`FloatStorage`,
/// `HalfStorage`, …) that `_rebuild_tensor_v2` pickles name, plus the dtypes `torch.storage._new_dtypes()`
/// that `_rebuild_tensor_v3` names explicitly (uint16/32/64, float8 variants), as of torch 2.13.
/// Limitations: only F32/F16/BF16 map to a `DType` the engine computes with; the sub-byte dtypes
/// (`torch.uint1`…`torch.int7`, `float4_e2m1fn_x2`) and `complex32` are not recognised.
public enum TorchElementType: String, Sendable, CaseIterable, CustomStringConvertible {
  case f64 = "F64"
  case f32 = "F32"
  case f16 = "F16"
  case bf16 = "BF16"
  case i64 = "I64"
  case i32 = "I32"
  case i16 = "I16"
  case i8 = "I8"
  case u8 = "U8"
  case bool = "BOOL"
  case u16 = "U16"
  case u32 = "U32"
  case u64 = "U64"
  case c64 = "C64"
  case c128 = "C128"
  case f8E4M3 = "F8_E4M3"
  case f8E5M2 = "F8_E5M2"
  case f8E4M3FNUZ = "F8_E4M3FNUZ"
  case f8E5M2FNUZ = "F8_E5M2FNUZ"
  case f8E8M0 = "F8_E8M0"
  case qi8 = "QI8"
  case qu8 = "QU8"
  case qi32 = "QI32"
  case qu4x2 = "QU4x2"
  case qu2x4 = "QU2x4"

  /// Bytes per element.
  public var byteSize: Int {
    switch self {
    case .f64, .i64, .u64, .c64: 8
    case .c128: 16
    case .f32, .i32, .u32, .qi32: 4
    case .f16, .bf16, .i16, .u16: 2
    case .i8, .u8, .bool, .f8E4M3, .f8E5M2, .f8E4M3FNUZ, .f8E5M2FNUZ, .f8E8M0, .qi8, .qu8, .qu4x2,
      .qu2x4:
      1
    }
  }

  /// The compute dtype for F32/F16/BF16, nil otherwise.
  public var dtype: DType? { DType(rawValue: rawValue) }

  /// True for the integer and BOOL types (readable with `TorchCheckpoint.int64Values`).
  public var isInteger: Bool {
    switch self {
    case .i64, .i32, .i16, .i8, .u8, .bool, .u16, .u32, .u64: true
    default: false
    }
  }

  public var description: String { rawValue }

  /// The element type of a legacy typed-storage class name (`FloatStorage` → F32). `UntypedStorage`
  /// is bytes (U8), as `torch.serialization` pickles it.
  static func storageClass(_ name: String) -> TorchElementType? {
    switch name {
    case "DoubleStorage": .f64
    case "FloatStorage": .f32
    case "HalfStorage": .f16
    case "BFloat16Storage": .bf16
    case "LongStorage": .i64
    case "IntStorage": .i32
    case "ShortStorage": .i16
    case "CharStorage": .i8
    case "ByteStorage", "UntypedStorage": .u8
    case "BoolStorage": .bool
    case "ComplexFloatStorage": .c64
    case "ComplexDoubleStorage": .c128
    case "QInt8Storage": .qi8
    case "QUInt8Storage": .qu8
    case "QInt32Storage": .qi32
    case "QUInt4x2Storage": .qu4x2
    case "QUInt2x4Storage": .qu2x4
    default: nil
    }
  }

  /// The element type of a `torch.<name>` dtype global (`float16`, `half`, `uint16`, …).
  static func torchDType(_ name: String) -> TorchElementType? {
    switch name {
    case "float64", "double": .f64
    case "float32", "float": .f32
    case "float16", "half": .f16
    case "bfloat16": .bf16
    case "int64", "long": .i64
    case "int32", "int": .i32
    case "int16", "short": .i16
    case "int8": .i8
    case "uint8": .u8
    case "bool": .bool
    case "uint16": .u16
    case "uint32": .u32
    case "uint64": .u64
    case "complex64", "cfloat": .c64
    case "complex128", "cdouble": .c128
    case "float8_e4m3fn": .f8E4M3
    case "float8_e5m2": .f8E5M2
    case "float8_e4m3fnuz": .f8E4M3FNUZ
    case "float8_e5m2fnuz": .f8E5M2FNUZ
    case "float8_e8m0fnu": .f8E8M0
    case "qint8": .qi8
    case "quint8": .qu8
    case "qint32": .qi32
    case "quint4x2": .qu4x2
    case "quint2x4": .qu2x4
    default: nil
    }
  }
}
