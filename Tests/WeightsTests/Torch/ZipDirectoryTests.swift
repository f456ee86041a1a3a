import Foundation
import TensorCore
import Testing

@testable import Weights

@Suite("Zip central directory of torch checkpoints")
struct ZipDirectoryTests {
  static let pickle = Pickle.dict([("w", Pickle.tensor(key: "0", numel: 4, shape: [2, 2], stride: [2, 1]))])
  static let storages = ["0": floatBytes([1, -2, 3.5, 0.25])]

  @Test("CRC-32 matches the standard check value")
  func crc() {
    let check = Array("123456789".utf8).withUnsafeBytes { CRC32.checksum($0) }
    #expect(check == 0xCBF4_3926)
    #expect([UInt8]().withUnsafeBytes { CRC32.checksum($0) } == 0)
  }

  @Test("torch's own zips: data offsets are 64-byte aligned and sizes come from the central directory")
  func torchLayout() throws {
    let bytes = try TorchFixtures.bytes("ip-adapter-plus.bin")
    try bytes.withUnsafeBytes { raw in
      let dir = try ZipDirectory.read(raw, path: "x")
      #expect(dir.entries.first?.name == "ip-adapter-plus/data.pkl")
      #expect(dir.entry("ip-adapter-plus/byteorder") != nil)
      #expect(dir.entry("ip-adapter-plus/.data/serialization_id") != nil)
      for e in dir.entries {
        #expect(e.method == 0 && e.compressedSize == e.uncompressedSize)
        #expect(e.flags & 0x08 != 0, "torch writes data descriptors")
        if e.name.contains("/data/") { #expect(e.dataOffset % 64 == 0, "\(e.name)") }
      }
    }
  }

  @Test("zip64 records and zip64 extended information are read (as torch writes for files > 4 GB)")
  func zip64() throws {
    for zip64 in [false, true] {
      let bytes = TestZip.checkpoint(pickle: Self.pickle, storages: Self.storages, zip64: zip64)
      let parsed = try parseCheckpoint(bytes)
      let record = try #require(parsed.records["w"])
      #expect(Array(bytes[record.dataOffset..<(record.dataOffset + 16)]) == Self.storages["0"]!)
      #expect(record.dataOffset % 64 == 0)
      // Through a file as well.
      let dir = try TempDirectory()
      let ck = try TorchCheckpoint(path: dir.write("z.pt", bytes))
      #expect(try ck.tensor("w").scalars() == [1, -2, 3.5, 0.25])
    }
  }

  @Test("damaged zip structures give corruptZip naming the problem")
  func damaged() throws {
    let good = TestZip.checkpoint(pickle: Self.pickle, storages: Self.storages, zip64: true)
    func corrupt(_ bytes: [UInt8]) -> String? {
      do {
        _ = try parseCheckpoint(bytes)
        return nil
      } catch {
        if case .corruptZip(_, let reason) = error { return reason }
        return "other: \(error)"
      }
    }
    #expect(corrupt(Array(good.dropLast(1)))?.contains("end-of-central-directory") == true)
    #expect(corrupt(good + [0])?.contains("end-of-central-directory") == true)
    #expect(corrupt(Array("PK\u{3}\u{4}".utf8))?.contains("too short") == true)
    // Point the zip64 locator elsewhere.
    let end = good.count - 22
    var locator = good
    locator[end - 20 + 8] ^= 0x40
    #expect(corrupt(locator)?.contains("zip64") == true)
    // Break the first central directory signature.
    let central = try #require(Self.find(good, [0x50, 0x4B, 0x01, 0x02]))
    var sig = good
    sig[central] = 0
    #expect(corrupt(sig)?.contains("central directory entry 0") == true)
    // Break the first local header signature.
    var local = good
    local[0] = 0
    #expect(throws: TorchCheckpointError.self) { try parseCheckpoint(local) }
    // A non-zip64 archive whose count claims more entries than fit.
    let plain = TestZip.checkpoint(pickle: Self.pickle, storages: Self.storages)
    var count = plain
    count[plain.count - 22 + 10] = 0xF0
    count[plain.count - 22 + 8] = 0xF0
    #expect(corrupt(count)?.contains("entries cannot fit") == true)
    // Duplicate names.
    let dup = TestZip.build([.init(name: "a/data.pkl", data: Pickle.dict([])), .init(name: "a/data.pkl", data: [1])])
    #expect(corrupt(dup)?.contains("appears twice") == true)
  }

  @Test("records torch never writes compressed or encrypted are refused; CRC and byte order checked")
  func records() throws {
    func items(method: UInt16 = 0, flags: UInt16 = 0x0808, crc: UInt32? = nil) -> [TestZip.Item] {
      [
        .init(name: "archive/data.pkl", data: Self.pickle, method: method, flags: flags, crc: crc),
        .init(name: "archive/data/0", data: Self.storages["0"]!),
      ]
    }
    #expect(
      throws: TorchCheckpointError.unsupportedZipEntry(path: "<memory>", entry: "archive/data.pkl", reason: "is compressed (method 8)")
    ) { try parseCheckpoint(TestZip.build(items(method: 8))) }
    #expect(
      throws: TorchCheckpointError.unsupportedZipEntry(path: "<memory>", entry: "archive/data.pkl", reason: "is encrypted")
    ) { try parseCheckpoint(TestZip.build(items(flags: 0x0809))) }
    let error = #expect(throws: TorchCheckpointError.self) { try parseCheckpoint(TestZip.build(items(crc: 0x1234_5678))) }
    guard case .checksumMismatch(_, "archive/data.pkl", 0x1234_5678, _)? = error else {
      Issue.record("\(String(describing: error))")
      return
    }
    #expect(throws: TorchCheckpointError.unsupportedByteOrder(path: "<memory>", byteOrder: "big")) {
      try parseCheckpoint(TestZip.checkpoint(pickle: Self.pickle, storages: Self.storages, byteOrder: "big"))
    }
    // A zip that is not a torch checkpoint.
    #expect(throws: TorchCheckpointError.missingDataPickle(path: "<memory>", expected: "<archive>/data.pkl")) {
      try parseCheckpoint(TestZip.build([.init(name: "readme.txt", data: [1, 2])]))
    }
    #expect(throws: TorchCheckpointError.missingDataPickle(path: "<memory>", expected: "model/data.pkl")) {
      try parseCheckpoint(TestZip.build([.init(name: "model/weights.bin", data: [1, 2])]))
    }
    // A compressed tensor record is refused when the tensor is resolved.
    let compressedStorage = TestZip.build([
      .init(name: "archive/data.pkl", data: Self.pickle), .init(name: "archive/data/0", data: Self.storages["0"]!, method: 8),
    ])
    #expect(
      throws: TorchCheckpointError.unsupportedZipEntry(path: "<memory>", entry: "archive/data/0", reason: "is compressed (method 8)")
    ) { try parseCheckpoint(compressedStorage) }
  }

  static func find(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    for i in 0...(haystack.count - needle.count) where Array(haystack[i..<(i + needle.count)]) == needle { return i }
    return nil
  }
}

@Suite("Checkpoint format detection and openCheckpoint")
struct CheckpointFormatTests {
  @Test("the container is chosen by content, not by extension")
  func byContent() throws {
    let dir = try TempDirectory()
    let bin = try TorchFixtures.bytes("ip-adapter-plus.bin")
    let st = try TorchFixtures.bytes("ip-adapter-plus.safetensors")
    let cases: [(String, [UInt8], CheckpointFormat)] = [
      ("model.bin", bin, .torchZip), ("model.safetensors", bin, .torchZip), ("model.ckpt", st, .safetensors),
      ("model.bin.2", st, .safetensors),
    ]
    for (name, bytes, format) in cases {
      let path = try dir.write(name, bytes)
      #expect(try CheckpointFormat.detect(path: path) == format, "\(name)")
      let archive = try openCheckpoint(path: path)
      switch format {
      case .torchZip: #expect(archive is TorchCheckpoint, "\(name)")
      default: #expect(archive is SafeTensorsFile, "\(name)")
      }
      #expect(archive.keys.contains("image_proj.latents"))
      #expect(try archive.tensor("ip_adapter.1.to_k_ip.weight").dtype == .float16)
    }
  }

  @Test("legacy torch files are refused with advice to convert")
  func legacy() throws {
    let path = TorchFixtures.path("legacy.pt")
    #expect(try CheckpointFormat.detect(path: path) == .torchLegacyPickle)
    for open in [{ _ = try TorchCheckpoint(path: path) }, { _ = try openCheckpoint(path: path) }] as [() throws -> Void] {
      let error = #expect(throws: TorchCheckpointError.self) { try open() }
      guard case .legacyFormat(let p, _)? = error else {
        Issue.record("\(String(describing: error))")
        continue
      }
      #expect(p == path)
      #expect(error!.description.contains("safetensors"))
      #expect(error!.description.contains("not supported"))
    }
    // The tar layout of PyTorch < 0.4: "ustar" at offset 257.
    var tar = [UInt8](repeating: 0, count: 512)
    tar.replaceSubrange(257..<262, with: Array("ustar".utf8))
    let dir = try TempDirectory()
    let tarPath = try dir.write("old.tar.pt", tar)
    #expect(try CheckpointFormat.detect(path: tarPath) == .torchLegacyTar)
    #expect(throws: TorchCheckpointError.legacyFormat(path: tarPath, kind: CheckpointFormat.legacyTarDescription)) {
      try openCheckpoint(path: tarPath)
    }
  }

  @Test("other files get a typed error describing what they are")
  func unrecognized() throws {
    let dir = try TempDirectory()
    let html = try dir.write("model.bin", Array("<html>rate limited</html>".utf8))
    #expect(throws: TorchCheckpointError.unrecognizedFormat(path: html, found: "text (an HTML error page or JSON instead of the checkpoint?)")) {
      try openCheckpoint(path: html)
    }
    let empty = try dir.write("empty.ckpt", [])
    #expect(throws: TorchCheckpointError.unrecognizedFormat(path: empty, found: "nothing (the file is empty)")) {
      try openCheckpoint(path: empty)
    }
    let pickle = try dir.write("plain.pkl", Pickle.dict([]))
    #expect(throws: TorchCheckpointError.notAZip(path: pickle, found: "a plain Python pickle (not written by torch.save)")) {
      try TorchCheckpoint(path: pickle)
    }
    #expect(throws: TorchCheckpointError.self) { try TorchCheckpoint(path: TorchFixtures.path("ip-adapter-plus.safetensors")) }
    #expect(throws: TorchCheckpointError.self) { try TorchCheckpoint(path: dir.path("missing.bin")) }
    #expect(throws: TorchCheckpointError.notARegularFile(path: dir.url.path)) { try TorchCheckpoint(path: dir.url.path) }
  }
}
