import Foundation
import Imaging
import TensorCore
import Testing

/// Test images and Pillow/transformers/diffusers goldens written by
/// `tools/reference/gen_imaging_fixtures.py` into `Tests/Fixtures/imaging/`.
enum ImagingFixtures {
  static let directory: String = {
    let here = URL(fileURLWithPath: #filePath)  // Tests/ImagingTests/ImagingFixtures.swift
    return here.deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("Fixtures/imaging").path
  }()

  static func path(_ name: String) -> String { directory + "/" + name }

  static func bytes(_ name: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path(name))))
  }

  static func image(_ name: String) throws -> Image { try Image(contentsOfFile: path(name)) }

  /// `goldens.json` (parsed per call: `[String: Any]` is not Sendable).
  static func manifest() -> [String: Any] {
    guard let data = try? Data(contentsOf: URL(fileURLWithPath: path("goldens.json"))),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else { return [:] }
    return object
  }

  /// The entries of one golden section.
  static func section(_ name: String) -> [Golden] {
    (manifest()[name] as? [[String: Any]] ?? []).map(Golden.init)
  }

  /// Case labels of a section, for `@Test(arguments:)`; each test looks its entry up by label.
  static func labels(_ name: String) -> [String] { section(name).map(\.label) }

  static func entry(_ section: String, _ label: String) throws -> Golden {
    try #require(Self.section(section).first { $0.label == label }, "no golden \(label) in \(section)")
  }
}

/// One golden buffer: shape, dtype, FNV-1a 64 of its little-endian bytes, and either the full
/// buffer (`raw`) or every `sampleStride`-th element (`samples`).
struct Golden {
  let fields: [String: Any]

  init(_ fields: [String: Any]) { self.fields = fields }

  var shape: [Int] { fields["shape"] as? [Int] ?? [] }
  var hash: String { fields["fnv1a64"] as? String ?? "" }
  var rawFile: String? { fields["raw"] as? String }
  var samplesFile: String? { fields["samples"] as? String }
  var sampleStride: Int { fields["sample_stride"] as? Int ?? 1 }
  func string(_ key: String) -> String? { fields[key] as? String }
  func int(_ key: String) -> Int? { fields[key] as? Int }
  func double(_ key: String) -> Double? { fields[key] as? Double }
  func doubles(_ key: String) -> [Double]? { fields[key] as? [Double] }
  func object(_ key: String) -> [String: Any]? { fields[key] as? [String: Any] }

  /// The golden's unique name (also the stem of its raw/samples file).
  var label: String { fields["name"] as? String ?? hash }

  /// The stored values (all of them, or the samples) as bytes / floats.
  func storedBytes() throws -> [UInt8] { try ImagingFixtures.bytes(rawFile ?? samplesFile!) }
  func storedFloats() throws -> [Float] {
    let b = try storedBytes()
    return b.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
  }
}

/// FNV-1a 64 of raw bytes, as 16 lowercase hex digits (same as the Python generator).
func fnv1a64(_ bytes: UnsafeRawBufferPointer) -> String {
  var h: UInt64 = 0xCBF2_9CE4_8422_2325
  for b in bytes {
    h ^= UInt64(b)
    h = h &* 0x100_0000_01B3
  }
  let hex = String(h, radix: 16)
  return String(repeating: "0", count: 16 - hex.count) + hex
}

/// Compares 8-bit pixels with a golden: bit-exact (hash), and if the full buffer is stored,
/// reports the first mismatch and the count.
func expectPixels(_ image: Image, equal golden: Golden, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
  let shape = [image.height, image.width] + (image.channels == 1 && golden.shape.count == 2 ? [] : [image.channels])
  #expect(shape == golden.shape, "\(what): shape", sourceLocation: sourceLocation)
  guard shape == golden.shape else { return }
  let hash = image.pixels.withUnsafeBytes { fnv1a64($0) }
  if hash == golden.hash { return }
  var detail = "hash \(hash) != \(golden.hash)"
  if golden.rawFile != nil {
    let expected = try golden.storedBytes()
    let diffs = zip(image.pixels, expected).enumerated().filter { $0.element.0 != $0.element.1 }
    if let first = diffs.first {
      let c = image.channels
      let i = first.offset
      detail += "; \(diffs.count) samples differ, first at (x \(i / c % image.width), y \(i / c / image.width), c \(i % c)): \(first.element.0) vs \(first.element.1), max |d| \(diffs.map { abs(Int($0.element.0) - Int($0.element.1)) }.max()!)"
    }
  }
  Issue.record("\(what): not bit-exact: \(detail)", sourceLocation: sourceLocation)
}

/// Max |a - b| between a tensor and a float golden (over all values, or over the stored samples),
/// and whether the whole tensor is bit-identical (hash).
func compareFloats(_ tensor: Tensor, _ golden: Golden) throws -> (maxError: Float, bitExact: Bool) {
  let values = tensor.scalars()
  let expected = try golden.storedFloats()
  let stride = golden.rawFile != nil ? 1 : golden.sampleStride
  var maxError: Float = 0
  for (j, e) in expected.enumerated() {
    let a = values[j * stride]
    maxError = max(maxError, a.isNaN || e.isNaN ? .infinity : abs(a - e))
  }
  let hash = values.withUnsafeBytes { fnv1a64($0) }
  return (maxError, hash == golden.hash)
}
