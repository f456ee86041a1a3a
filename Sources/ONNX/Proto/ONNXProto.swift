/// The parts of an ONNX `ModelProto` the executor reads, decoded from the protobuf wire format.
///
/// Field numbers follow `onnx/onnx.proto` (IR version 3–10). Fields the executor does not use
/// (doc strings, metadata, training info, functions, quantization annotations) are skipped.
/// Tensor payloads are not copied here: an initializer keeps the byte range of its `raw_data`
/// inside the file, or the decoded typed values.
///
/// matches: onnx.proto `ModelProto`, `GraphProto`, `NodeProto`, `AttributeProto`, `TensorProto`,
/// `ValueInfoProto` (tensor types only).
public struct ONNXModelProto: Sendable {
  public var irVersion: Int64 = 0
  public var producerName = ""
  public var producerVersion = ""
  /// Operator-set versions by domain ("" is the default ONNX domain).
  public var opsetImports: [String: Int64] = [:]
  public var graph = ONNXGraphProto()
}

public struct ONNXGraphProto: Sendable {
  public var name = ""
  public var nodes: [ONNXNodeProto] = []
  public var initializers: [ONNXTensorProto] = []
  public var inputs: [ONNXValueInfo] = []
  public var outputs: [ONNXValueInfo] = []
  /// True when the graph carries sparse initializers (not supported).
  public var hasSparseInitializers = false
}

public struct ONNXNodeProto: Sendable {
  public var name = ""
  public var opType = ""
  public var domain = ""
  public var inputs: [String] = []
  public var outputs: [String] = []
  public var attributes: [String: ONNXAttribute] = [:]
}

/// An attribute value of a node.
public enum ONNXAttribute: Sendable {
  case float(Float)
  case int(Int64)
  case string(String)
  case tensor(ONNXTensorProto)
  case floats([Float])
  case ints([Int64])
  case strings([String])
  /// Graphs, sparse tensors, type protos: present but not supported by this executor.
  case unsupported(kind: String)

  var kindName: String {
    switch self {
    case .float: "float"
    case .int: "int"
    case .string: "string"
    case .tensor: "tensor"
    case .floats: "floats"
    case .ints: "ints"
    case .strings: "strings"
    case .unsupported(let kind): kind
    }
  }
}

/// ONNX `TensorProto.DataType` values the executor knows by name.
public enum ONNXDataType: Int32, Sendable, CustomStringConvertible {
  case undefined = 0, float = 1, uint8 = 2, int8 = 3, uint16 = 4, int16 = 5, int32 = 6, int64 = 7
  case string = 8, bool = 9, float16 = 10, double = 11, uint32 = 12, uint64 = 13
  case complex64 = 14, complex128 = 15, bfloat16 = 16

  public var description: String {
    switch self {
    case .undefined: "undefined"
    case .float: "float32"
    case .uint8: "uint8"
    case .int8: "int8"
    case .uint16: "uint16"
    case .int16: "int16"
    case .int32: "int32"
    case .int64: "int64"
    case .string: "string"
    case .bool: "bool"
    case .float16: "float16"
    case .double: "float64"
    case .uint32: "uint32"
    case .uint64: "uint64"
    case .complex64: "complex64"
    case .complex128: "complex128"
    case .bfloat16: "bfloat16"
    }
  }

  /// Bytes per element in `raw_data` (nil for strings and unknown types).
  var rawByteSize: Int? {
    switch self {
    case .float, .int32, .uint32: 4
    case .uint8, .int8, .bool: 1
    case .uint16, .int16, .float16, .bfloat16: 2
    case .int64, .double, .uint64, .complex64: 8
    case .complex128: 16
    case .string, .undefined: nil
    }
  }
}

/// A tensor stored in the model (an initializer or a `Constant`/attribute value).
public struct ONNXTensorProto: Sendable {
  public var name = ""
  public var dims: [Int64] = []
  public var dataTypeCode: Int32 = 0
  /// Byte range of `raw_data` inside the decoded buffer (nil when the typed fields are used).
  public var rawData: Range<Int>?
  public var floatData: [Float] = []
  public var int32Data: [Int64] = []
  public var int64Data: [Int64] = []
  public var doubleData: [Double] = []
  public var uint64Data: [Int64] = []
  /// `data_location == EXTERNAL` or `external_data` entries present.
  public var isExternal = false
  public var externalLocation: String?

  public var dataType: ONNXDataType? { ONNXDataType(rawValue: dataTypeCode) }
}

/// A graph input or output: name, element type and (possibly symbolic) shape.
public struct ONNXValueInfo: Sendable {
  public var name = ""
  public var elementType: Int32 = 0
  /// Dimensions: a value, or nil for a symbolic/unknown dimension. Nil shape = unknown rank.
  public var shape: [Int64?]?
}

/// Decoding limits: every count read from the file is checked against these before it allocates.
public struct ONNXDecodeLimits: Sendable {
  public var maxNodes = 1_000_000
  public var maxInitializers = 1_000_000
  public var maxRank = 16
  public var maxValuesPerField = 1 << 28
  public var maxNodeIO = 4096
  public static let `default` = ONNXDecodeLimits()
}

enum ONNXProtoDecoder {
  typealias R = ProtobufReader

  static func model(_ bytes: UnsafeRawBufferPointer, limits: ONNXDecodeLimits) throws(ONNXDecodeFailure) -> ONNXModelProto {
    var m = ONNXModelProto()
    var r = R(bytes)
    var sawGraph = false
    do {
      while let f = try r.nextField() {
        switch (f.number, f.wireType) {
        case (1, .varint): m.irVersion = Int64(bitPattern: f.value)
        case (2, .lengthDelimited): m.producerName = r.string(f)
        case (3, .lengthDelimited): m.producerVersion = r.string(f)
        case (7, .lengthDelimited):
          m.graph = try graph(r.subReader(f), limits: limits)
          sawGraph = true
        case (8, .lengthDelimited):
          var s = r.subReader(f)
          var domain = ""
          var version: Int64 = 0
          while let g = try s.nextField() {
            switch (g.number, g.wireType) {
            case (1, .lengthDelimited): domain = s.string(g)
            case (2, .varint): version = Int64(bitPattern: g.value)
            default: break
            }
          }
          m.opsetImports[domain] = version
        default: break
        }
      }
    } catch let e as ProtobufError {
      throw .wire(e)
    } catch let e as ONNXDecodeFailure {
      throw e
    } catch {
      throw .wire(.truncated(at: 0))
    }
    guard sawGraph else { throw .missing("the model has no graph (field 7): not an ONNX model") }
    return m
  }

  static func graph(_ reader: R, limits: ONNXDecodeLimits) throws -> ONNXGraphProto {
    var r = reader
    var g = ONNXGraphProto()
    while let f = try r.nextField() {
      switch (f.number, f.wireType) {
      case (1, .lengthDelimited):
        guard g.nodes.count < limits.maxNodes else { throw ONNXDecodeFailure.limit("more than \(limits.maxNodes) nodes") }
        g.nodes.append(try node(r.subReader(f), limits: limits))
      case (2, .lengthDelimited): g.name = r.string(f)
      case (5, .lengthDelimited):
        guard g.initializers.count < limits.maxInitializers else {
          throw ONNXDecodeFailure.limit("more than \(limits.maxInitializers) initializers")
        }
        g.initializers.append(try tensor(r.subReader(f), limits: limits))
      case (11, .lengthDelimited): g.inputs.append(try valueInfo(r.subReader(f), limits: limits))
      case (12, .lengthDelimited): g.outputs.append(try valueInfo(r.subReader(f), limits: limits))
      case (15, .lengthDelimited): g.hasSparseInitializers = true
      default: break
      }
    }
    return g
  }

  static func node(_ reader: R, limits: ONNXDecodeLimits) throws -> ONNXNodeProto {
    var r = reader
    var n = ONNXNodeProto()
    while let f = try r.nextField() {
      switch (f.number, f.wireType) {
      case (1, .lengthDelimited):
        guard n.inputs.count < limits.maxNodeIO else { throw ONNXDecodeFailure.limit("a node with more than \(limits.maxNodeIO) inputs") }
        n.inputs.append(r.string(f))
      case (2, .lengthDelimited):
        guard n.outputs.count < limits.maxNodeIO else { throw ONNXDecodeFailure.limit("a node with more than \(limits.maxNodeIO) outputs") }
        n.outputs.append(r.string(f))
      case (3, .lengthDelimited): n.name = r.string(f)
      case (4, .lengthDelimited): n.opType = r.string(f)
      case (7, .lengthDelimited): n.domain = r.string(f)
      case (5, .lengthDelimited):
        let (name, value) = try attribute(r.subReader(f), limits: limits)
        n.attributes[name] = value
      default: break
      }
    }
    return n
  }

  static func attribute(_ reader: R, limits: ONNXDecodeLimits) throws -> (String, ONNXAttribute) {
    var r = reader
    var name = ""
    var type: UInt64 = 0
    var f32: Float?
    var i64: Int64?
    var s: String?
    var t: ONNXTensorProto?
    var floats: [Float] = []
    var ints: [Int64] = []
    var strings: [String] = []
    var other: String?
    while let f = try r.nextField() {
      switch (f.number, f.wireType) {
      case (1, .lengthDelimited): name = r.string(f)
      case (20, .varint): type = f.value
      case (2, .fixed32): f32 = Float(bitPattern: UInt32(truncatingIfNeeded: f.value))
      case (3, .varint): i64 = Int64(bitPattern: f.value)
      case (4, .lengthDelimited): s = r.string(f)
      case (5, .lengthDelimited): t = try tensor(r.subReader(f), limits: limits)
      case (6, .lengthDelimited): other = "graph"
      case (7, _): try r.appendFloats(f, to: &floats, limit: limits.maxValuesPerField)
      case (8, _): try r.appendInts(f, to: &ints, limit: limits.maxValuesPerField)
      case (9, .lengthDelimited):
        guard strings.count < limits.maxNodeIO else { throw ONNXDecodeFailure.limit("an attribute with more than \(limits.maxNodeIO) strings") }
        strings.append(r.string(f))
      case (10, .lengthDelimited): other = "tensors"
      case (11, .lengthDelimited): other = "graphs"
      case (22, .lengthDelimited), (23, .lengthDelimited): other = "sparse tensor"
      case (14, .lengthDelimited), (15, .lengthDelimited): other = "type proto"
      case (21, .lengthDelimited): other = "reference to a function attribute"
      default: break
      }
    }
    let value: ONNXAttribute
    switch type {
    case 1: value = .float(f32 ?? 0)
    case 2: value = .int(i64 ?? 0)
    case 3: value = .string(s ?? "")
    case 4:
      guard let t else { throw ONNXDecodeFailure.missing("attribute '\(name)' is a tensor attribute without a tensor") }
      value = .tensor(t)
    case 6: value = .floats(floats)
    case 7: value = .ints(ints)
    case 8: value = .strings(strings)
    case 0:
      // IR < 3 files may omit the type: infer it from the field that is present.
      if let other { value = .unsupported(kind: other) }
      else if let t { value = .tensor(t) }
      else if let s { value = .string(s) }
      else if let f32 { value = .float(f32) }
      else if let i64 { value = .int(i64) }
      else if !floats.isEmpty { value = .floats(floats) }
      else if !strings.isEmpty { value = .strings(strings) }
      else { value = .ints(ints) }
    default:
      value = .unsupported(kind: other ?? "attribute type \(type)")
    }
    return (name, value)
  }

  static func tensor(_ reader: R, limits: ONNXDecodeLimits) throws -> ONNXTensorProto {
    var r = reader
    var t = ONNXTensorProto()
    while let f = try r.nextField() {
      switch (f.number, f.wireType) {
      case (1, _):
        try r.appendInts(f, to: &t.dims, limit: limits.maxRank)
      case (2, .varint): t.dataTypeCode = Int32(truncatingIfNeeded: Int64(bitPattern: f.value))
      case (4, _): try r.appendFloats(f, to: &t.floatData, limit: limits.maxValuesPerField)
      case (5, _): try r.appendInts(f, to: &t.int32Data, limit: limits.maxValuesPerField)
      case (7, _): try r.appendInts(f, to: &t.int64Data, limit: limits.maxValuesPerField)
      case (8, .lengthDelimited): t.name = r.string(f)
      case (9, .lengthDelimited): t.rawData = f.range
      case (10, _): try r.appendDoubles(f, to: &t.doubleData, limit: limits.maxValuesPerField)
      case (11, _): try r.appendInts(f, to: &t.uint64Data, limit: limits.maxValuesPerField)
      case (3, .lengthDelimited): throw ONNXDecodeFailure.unsupported("segmented tensor '\(t.name)'")
      case (13, .lengthDelimited):
        t.isExternal = true
        var s = r.subReader(f)
        var key = ""
        var value = ""
        while let g = try s.nextField() {
          if g.number == 1, g.wireType == .lengthDelimited { key = s.string(g) }
          if g.number == 2, g.wireType == .lengthDelimited { value = s.string(g) }
        }
        if key == "location" { t.externalLocation = value }
      case (14, .varint): if f.value == 1 { t.isExternal = true }
      default: break
      }
    }
    return t
  }

  static func valueInfo(_ reader: R, limits: ONNXDecodeLimits) throws -> ONNXValueInfo {
    var r = reader
    var v = ONNXValueInfo()
    while let f = try r.nextField() {
      switch (f.number, f.wireType) {
      case (1, .lengthDelimited): v.name = r.string(f)
      case (2, .lengthDelimited):
        // TypeProto: only tensor_type (1) is read.
        var tr = r.subReader(f)
        while let g = try tr.nextField() {
          guard g.number == 1, g.wireType == .lengthDelimited else { continue }
          var tt = tr.subReader(g)
          while let h = try tt.nextField() {
            if h.number == 1, h.wireType == .varint { v.elementType = Int32(truncatingIfNeeded: Int64(bitPattern: h.value)) }
            if h.number == 2, h.wireType == .lengthDelimited {
              var dims: [Int64?] = []
              var sr = tt.subReader(h)
              while let d = try sr.nextField() {
                guard d.number == 1, d.wireType == .lengthDelimited else { continue }
                guard dims.count < limits.maxRank else { throw ONNXDecodeFailure.limit("a value of rank above \(limits.maxRank)") }
                var dr = sr.subReader(d)
                var value: Int64?
                while let e = try dr.nextField() {
                  if e.number == 1, e.wireType == .varint { value = Int64(bitPattern: e.value) }
                }
                dims.append(value)
              }
              v.shape = dims
            }
          }
        }
      default: break
      }
    }
    return v
  }
}

/// Why decoding stopped (wrapped into `ONNXError.malformed` with the file name).
enum ONNXDecodeFailure: Error, CustomStringConvertible {
  case wire(ProtobufError)
  case limit(String)
  case missing(String)
  case unsupported(String)

  var description: String {
    switch self {
    case .wire(let e): e.description
    case .limit(let s): "over a decoding limit: \(s)"
    case .missing(let s): s
    case .unsupported(let s): "unsupported: \(s)"
    }
  }
}
