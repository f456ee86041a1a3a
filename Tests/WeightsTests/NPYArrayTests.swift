import Foundation
import TensorCore
import Testing
import Weights

/// The `.npy` reader (face embeddings): what numpy.save writes is read exactly; everything else is
/// refused with the reason, never trusted.
@Suite struct NPYArrayTests {
  /// An NPY file as numpy.save writes it (version 1.0 unless the header needs 2.0).
  static func npy(descr: String = "<f4", fortran: Bool = false, shape: String, data: [UInt8], version: UInt8 = 1) -> [UInt8] {
    var header = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shape), }"
    let prefix = version == 1 ? 10 : 12
    while (prefix + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    let n = header.utf8.count
    var bytes: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version, 0]
    bytes += version == 1 ? [UInt8(n & 0xFF), UInt8(n >> 8)] : [UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), 0, 0]
    return bytes + Array(header.utf8) + data
  }

  static func float32Bytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
  }

  @Test func float32VectorAndMatrixAreReadExactly() throws {
    let values: [Float] = [0.5, -1.25, 3e-8, 1e20, 0, -0.0]
    let v = try NPYArray.parse(Self.npy(shape: "(6,)", data: Self.float32Bytes(values)), path: "v.npy")
    #expect(v.shape == [6] && v.scalars() == values)
    let m = try NPYArray.parse(Self.npy(shape: "(2, 3)", data: Self.float32Bytes(values), version: 2), path: "m.npy")
    #expect(m.shape == [2, 3] && m.scalars() == values)
  }

  @Test func float64AndFloat16AreConverted() throws {
    let doubles: [Double] = [0.1, -2.5, 1e-300]
    let d = try NPYArray.parse(
      Self.npy(descr: "<f8", shape: "(3,)", data: doubles.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }),
      path: "d.npy")
    #expect(d.scalars() == doubles.map { Float($0) })
    let halves: [Float16] = [1.5, -0.25, 65504]
    let h = try NPYArray.parse(
      Self.npy(descr: "<f2", shape: "(1, 3)", data: halves.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }),
      path: "h.npy")
    #expect(h.shape == [1, 3] && h.scalars() == halves.map { Float($0) })
  }

  @Test(arguments: [
    (npy(shape: "(2,)", data: float32Bytes([1])), "needs 8 data bytes, the file has 4"),
    (npy(descr: ">f4", shape: "(1,)", data: float32Bytes([1])), "element type '>f4'"),
    (npy(descr: "<i8", shape: "(1,)", data: [UInt8](repeating: 0, count: 8)), "element type '<i8'"),
    (npy(fortran: true, shape: "(1, 1)", data: float32Bytes([1])), "Fortran-order"),
    (npy(shape: "(99999999999, 99999999999)", data: []), "more than"),
    (npy(shape: "(1, 1, 1, 1, 1)", data: float32Bytes([1])), "5 dimensions"),
    (npy(shape: "(-1,)", data: []), "shape (-1,)"),
    ([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x58, 1, 0, 0, 0] as [UInt8], "no \\x93NUMPY magic"),
    ([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, 0xFF, 0x7F] as [UInt8], "does not fit"),
    ([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 9, 0, 0, 0] as [UInt8], "version 9"),
  ] as [([UInt8], String)])
  func malformedFilesAreRefusedWithTheReason(bytes: [UInt8], reason: String) throws {
    let error = #expect(throws: NPYError.self) { _ = try NPYArray.parse(bytes, path: "bad.npy") }
    #expect(error?.description.contains(reason) == true, "\(String(describing: error))")
    #expect(error?.description.hasPrefix("bad.npy") == true)
  }
}
