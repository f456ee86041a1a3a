import TensorCore

/// Converts `TensorProto`s (initializers, `Constant` values, tensor attributes) to executor values.
///
/// Every dimension and element count is checked before anything is allocated: dimensions must be
/// non-negative, the element count must fit the limits, and `raw_data` must hold exactly
/// count × element-size bytes (typed fields exactly count values).
enum TensorDecoding {
  /// Largest float tensor (elements) a model may hold in one initializer.
  static let maxFloatElements = 1 << 31
  /// Largest integer tensor (elements): integers are shapes and indices, never weights.
  static let maxIntElements = 1 << 24

  static func value(_ t: ONNXTensorProto, bytes: UnsafeRawBufferPointer, file: String) throws -> ONNXValue {
    do {
      return try decode(t, bytes: bytes)
    } catch let e as OpFailure {
      if t.isExternal {
        throw ONNXError.externalData(file: file, tensor: t.name, location: t.externalLocation ?? "?")
      }
      throw ONNXError.invalidGraph(file: file, reason: "tensor '\(t.name)': \(e.reason)")
    }
  }

  static func decode(_ t: ONNXTensorProto, bytes: UnsafeRawBufferPointer) throws -> ONNXValue {
    if t.isExternal { throw OpFailure("external data") }
    var count = 1
    var shape: [Int] = []
    for d in t.dims {
      guard d >= 0, d <= Int64(maxFloatElements) else { throw OpFailure("dimension \(d) is out of range") }
      let (product, overflow) = count.multipliedReportingOverflow(by: Int(d))
      guard !overflow, product <= maxFloatElements else { throw OpFailure("shape \(t.dims) holds too many elements") }
      count = product
      shape.append(Int(d))
    }
    guard let type = t.dataType else { throw OpFailure("unknown element type \(t.dataTypeCode)") }
    let raw: UnsafeRawBufferPointer? = t.rawData.map { UnsafeRawBufferPointer(rebasing: bytes[$0]) }
    if let raw, let size = type.rawByteSize, raw.count != count * size {
      throw OpFailure("raw_data holds \(raw.count) bytes, shape \(shape) of \(type) needs \(count * size)")
    }

    if raw == nil {
      // Typed fields: the value count is checked before anything of the tensor's size is allocated.
      let n: Int
      switch type {
      case .float: n = t.floatData.count
      case .double: n = t.doubleData.count
      case .int64: n = t.int64Data.count
      case .uint32, .uint64: n = t.uint64Data.count
      default: n = t.int32Data.count
      }
      guard n == count else { throw OpFailure("holds \(n) values, shape \(shape) needs \(count)") }
    }

    switch type {
    case .float, .float16, .bfloat16, .double:
      var out = Tensor(uninitializedShape: shape, pooled: false)
      out.withUnsafeMutableFloats { dst in
        if let raw {
          switch type {
          case .float:
            if count > 0 { dst.baseAddress!.withMemoryRebound(to: UInt8.self, capacity: count * 4) { UnsafeMutableRawPointer($0).copyMemory(from: raw.baseAddress!, byteCount: count * 4) } }
          case .float16, .bfloat16:
            for i in 0..<count {
              let bits = UInt16(raw[2 * i]) | UInt16(raw[2 * i + 1]) << 8
              dst[i] = type == .float16 ? Float(Float16(bitPattern: bits)) : Float(bitPattern: UInt32(bits) << 16)
            }
          default:
            for i in 0..<count { dst[i] = Float(Double(bitPattern: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self).littleEndian)) }
          }
        } else {
          switch type {
          case .float:
            for i in 0..<count { dst[i] = t.floatData[i] }
          case .float16, .bfloat16:
            for i in 0..<count {
              let bits = UInt16(truncatingIfNeeded: t.int32Data[i])
              dst[i] = type == .float16 ? Float(Float16(bitPattern: bits)) : Float(bitPattern: UInt32(bits) << 16)
            }
          default:
            for i in 0..<count { dst[i] = Float(t.doubleData[i]) }
          }
        }
      }
      return .float(FloatValue(shape: shape, data: out))
    case .int64, .int32, .int16, .int8, .uint8, .uint16, .uint32, .uint64, .bool:
      guard count <= maxIntElements else { throw OpFailure("an integer tensor of \(count) elements is above the limit") }
      var values = [Int64](repeating: 0, count: count)
      if let raw {
        for i in 0..<count {
          switch type {
          case .int64, .uint64: values[i] = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
          case .int32: values[i] = Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
          case .uint32: values[i] = Int64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
          case .int16: values[i] = Int64(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
          case .uint16: values[i] = Int64(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
          case .int8: values[i] = Int64(Int8(bitPattern: raw[i]))
          default: values[i] = Int64(raw[i])
          }
        }
      } else {
        let source: [Int64]
        switch type {
        case .int64: source = t.int64Data
        case .uint32, .uint64: source = t.uint64Data
        default: source = t.int32Data
        }
        values = source
      }
      if type == .bool { values = values.map { $0 != 0 ? 1 : 0 } }
      return .int(IntValue(shape: shape, values: values, type: type))
    default:
      throw OpFailure("element type \(type) is not supported")
    }
  }
}
