import Foundation
import TensorCore

/// Why a `.npy` file could not be read.
public enum NPYError: Error, CustomStringConvertible, Equatable {
  case unreadable(path: String, reason: String)
  case malformed(path: String, reason: String)
  case unsupported(path: String, reason: String)

  public var description: String {
    switch self {
    case .unreadable(let path, let reason): "\(path): cannot read it (\(reason))"
    case .malformed(let path, let reason): "\(path) is not a valid .npy file: \(reason)"
    case .unsupported(let path, let reason): "\(path): \(reason)"
    }
  }
}

/// A NumPy `.npy` array of floats (what `numpy.save` writes, e.g. insightface's
/// `face.normed_embedding`), read into a Float32 tensor.
///
/// matches: the NPY format 1.0/2.0/3.0 (`numpy.lib.format`): magic `\x93NUMPY`, version, header
/// length, a Python-literal header `{'descr': '<f4', 'fortran_order': False, 'shape': (512,)}`.
/// Limitations: little-endian `f2`/`f4`/`f8` only (`<` or `|`/`=` on this little-endian machine),
/// C order only, at most 4 dimensions and `maxElements` elements; no object arrays or pickles.
public enum NPYArray {
  /// Largest file read (face embeddings are a few KB).
  public static let maxFileBytes = 64 << 20

  public static func read(path: String, maxElements: Int = 1 << 24) throws -> Tensor {
    guard let handle = FileHandle(forReadingAtPath: path) else { throw NPYError.unreadable(path: path, reason: "no such file") }
    defer { try? handle.close() }
    let data: Data
    do {
      data = try handle.read(upToCount: maxFileBytes + 1) ?? Data()
    } catch {
      throw NPYError.unreadable(path: path, reason: "\(error)")
    }
    guard data.count <= maxFileBytes else {
      throw NPYError.unsupported(path: path, reason: "larger than \(maxFileBytes >> 20) MiB")
    }
    return try parse([UInt8](data), path: path, maxElements: maxElements)
  }

  /// Parses the bytes of a `.npy` file.
  public static func parse(_ bytes: [UInt8], path: String, maxElements: Int = 1 << 24) throws -> Tensor {
    let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]
    guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
      throw NPYError.malformed(path: path, reason: "no \\x93NUMPY magic")
    }
    let major = bytes[6]
    var headerLength: Int
    var offset: Int
    switch major {
    case 1:
      headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
      offset = 10
    case 2, 3:
      guard bytes.count >= 12 else { throw NPYError.malformed(path: path, reason: "truncated header length") }
      headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
      offset = 12
    default:
      throw NPYError.unsupported(path: path, reason: "NPY format version \(major) (1, 2 and 3 are read)")
    }
    guard headerLength <= 1 << 16, offset + headerLength <= bytes.count else {
      throw NPYError.malformed(path: path, reason: "header of \(headerLength) bytes does not fit the \(bytes.count)-byte file")
    }
    guard let header = String(bytes: bytes[offset..<(offset + headerLength)], encoding: .utf8) else {
      throw NPYError.malformed(path: path, reason: "header is not text")
    }
    offset += headerLength
    let descr = try field("descr", in: header, path: path)
    let fortran = try field("fortran_order", in: header, path: path)
    let shapeText = try field("shape", in: header, path: path)
    guard fortran == "False" else {
      throw NPYError.unsupported(path: path, reason: "Fortran-order arrays are not read (save with numpy.ascontiguousarray)")
    }
    let size: Int
    switch descr {
    case "'<f4'", "'=f4'": size = 4
    case "'<f8'", "'=f8'": size = 8
    case "'<f2'", "'=f2'": size = 2
    default:
      throw NPYError.unsupported(path: path, reason: "element type \(descr) (float16/32/64, little-endian, are read)")
    }
    // `(512,)`, `(1, 512)`, `()`.
    guard shapeText.hasPrefix("("), shapeText.hasSuffix(")") else {
      throw NPYError.malformed(path: path, reason: "shape \(shapeText) is not a tuple")
    }
    var shape: [Int] = []
    for part in shapeText.dropFirst().dropLast().split(separator: ",") {
      let t = part.trimmingCharacters(in: .whitespaces)
      if t.isEmpty { continue }
      guard t.count <= 12, let v = Int(t), v >= 0 else { throw NPYError.malformed(path: path, reason: "shape \(shapeText)") }
      shape.append(v)
    }
    guard shape.count <= 4 else { throw NPYError.unsupported(path: path, reason: "\(shape.count) dimensions (at most 4)") }
    var count = 1
    for d in shape {
      let (m, overflow) = count.multipliedReportingOverflow(by: d)
      guard !overflow, m <= maxElements else {
        throw NPYError.unsupported(path: path, reason: "shape \(shape) holds more than \(maxElements) elements")
      }
      count = m
    }
    guard bytes.count - offset == count * size else {
      throw NPYError.malformed(path: path, reason: "shape \(shape) needs \(count * size) data bytes, the file has \(bytes.count - offset)")
    }
    var out = Tensor(uninitializedShape: shape, pooled: false)
    bytes.withUnsafeBytes { raw in
      let src = raw.baseAddress! + offset
      out.withUnsafeMutableFloats { dst in
        for i in 0..<count {
          switch size {
          case 4: dst[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
          case 8: dst[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))))
          default:
            dst[i] = Float(Float16(bitPattern: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))))
          }
        }
      }
    }
    return out
  }

  /// The literal after `'name':` in the header dict, up to the next top-level `,` or `}`.
  static func field(_ name: String, in header: String, path: String) throws -> String {
    guard let key = header.range(of: "'\(name)'") else {
      throw NPYError.malformed(path: path, reason: "header has no '\(name)'")
    }
    var rest = header[key.upperBound...].drop { $0 == " " }
    guard rest.first == ":" else { throw NPYError.malformed(path: path, reason: "header '\(name)' has no value") }
    rest = rest.dropFirst().drop { $0 == " " }
    var depth = 0
    var value = ""
    for ch in rest {
      if ch == "(" { depth += 1 }
      if ch == ")" { depth -= 1 }
      if depth == 0 && (ch == "," || ch == "}") { break }
      value.append(ch)
      if depth < 0 || value.count > 256 { throw NPYError.malformed(path: path, reason: "header '\(name)' is malformed") }
    }
    return value.trimmingCharacters(in: .whitespaces)
  }
}
