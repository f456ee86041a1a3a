import Foundation
import TensorCore
import Testing

@testable import Weights

@Suite("SafeTensorsFile reading golden files")
struct SafeTensorsReaderTests {
  @Test("every tensor of every fixture matches the values Python wrote")
  func readsFixtures() throws {
    let expected = try Fixtures.expected()
    for name in Fixtures.fileNames {
      let file = try SafeTensorsFile(path: Fixtures.path(name))
      let exp = try #require(expected[name])
      #expect(file.metadata == (exp.metadata ?? [:]), "\(name)")
      #expect(file.keys == exp.tensors.keys.sorted(), "\(name)")
      for (key, e) in exp.tensors {
        let info = try #require(file.info(key))
        #expect(info.storedType == e.dtype, "\(name) \(key)")
        #expect(info.shape == e.shape, "\(name) \(key)")
        #expect(try file.rawBytes(key) == e.rawBytes, "\(name) \(key)")
        if let bits = e.f32_bits {
          let t = try file.tensor(key)
          #expect(t.dtype.rawValue == e.dtype)
          #expect(t.shape == e.shape)
          #expect(bytesOf(t) == e.rawBytes, "\(name) \(key)")
          #expect(f32Bits(t) == bits, "\(name) \(key)")
        } else {
          let error = #expect(throws: SafeTensorsError.self) { try file.tensor(key) }
          #expect(error == .notAFloatType(path: file.path, key: key, dtype: e.dtype))
          #expect(error?.description.contains("not a float type") == true)
        }
        if let ints = e.int_values, e.dtype != "U64" {
          #expect(try file.int64Values(key) == ints.map { Int64($0)! }, "\(name) \(key)")
        }
      }
    }
  }

  @Test("I64 position_ids and the other integer types are readable as integers")
  func integerAccess() throws {
    let mixed = try SafeTensorsFile(path: Fixtures.path("mixed.safetensors"))
    #expect(try mixed.int64Values("position_ids") == [0, 1, 2, 3, 4, 5, 6, 1 << 40])
    #expect(mixed.info("position_ids")?.dtype == nil)
    #expect(throws: SafeTensorsError.notAnIntegerType(path: mixed.path, key: "scalar", dtype: "F32")) {
      try mixed.int64Values("scalar")
    }
    let ints = try SafeTensorsFile(path: Fixtures.path("integers.safetensors"))
    #expect(try ints.int64Values("mask") == [1, 0, 1])
    #expect(throws: SafeTensorsError.integerOutOfRange(path: ints.path, key: "u64", index: 1)) {
      try ints.int64Values("u64")
    }
    let f64 = try ints.withUnsafeRawBytes("f64") { raw in
      (0..<2).map {
        Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))
      }
    }
    #expect(f64 == [0.1, -2.0])
  }

  @Test("keys, info and metadata of the mixed fixture")
  func headerAccess() throws {
    let file = try SafeTensorsFile(url: Fixtures.directory.appendingPathComponent("mixed.safetensors"))
    #expect(
      file.keys == ["empty", "position_ids", "scalar", "text.weight", "unet.half", "vae.bf16", "z\u{e9}"])
    #expect(file.info("scalar") == TensorInfo(storedType: "F32", shape: []))
    #expect(file.info("empty") == TensorInfo(storedType: "F16", shape: [0, 3]))
    #expect(file.info("vae.bf16")?.dtype == .bfloat16)
    #expect(file.info("missing") == nil)
    #expect(file.metadata == ["format": "pt"])
    #expect(file.header.dataSectionOffset % 8 == 0)
    let scalar = try file.tensor("scalar")
    #expect(scalar.shape == [] && scalar.scalars() == [42.5])
    #expect(try file.tensor("empty").count == 0)
  }

  @Test("missing keys throw tensorNotFound naming file and key")
  func missingKey() throws {
    let file = try SafeTensorsFile(path: Fixtures.path("mixed.safetensors"))
    let error = #expect(throws: SafeTensorsError.self) { try file.tensor("nope") }
    #expect(error == .tensorNotFound(path: file.path, key: "nope"))
    #expect(error?.description.contains("mixed.safetensors") == true)
    #expect(throws: SafeTensorsError.tensorNotFound(path: file.path, key: "nope")) {
      try file.rawBytes("nope")
    }
  }

  @Test("float tensors are zero-copy views that keep the mapping alive until the last view dies")
  func zeroCopyLifetime() throws {
    weak var weakMapping: MemoryMappedFile?
    var tensor: Tensor?
    do {
      let file = try SafeTensorsFile(path: Fixtures.path("mixed.safetensors"))
      weakMapping = file.mapping
      let t = try file.tensor("text.weight")
      let address = try file.withUnsafeRawBytes("text.weight") { $0.baseAddress }
      #expect(t.rawPointer == address)  // a view into the mapping, not a copy
      tensor = t
    }
    #expect(weakMapping != nil)  // the file object is gone, the view keeps the mapping
    #expect(tensor?.scalars().first == 1.5)
    // Mutating a view copies it first; the read-only mapping is never written.
    var copy = try #require(tensor)
    copy.withUnsafeMutableFloats { $0[0] = 9 }
    #expect(copy.scalars().first == 9 && tensor?.scalars().first == 1.5)
    tensor = nil
    copy = Tensor.zeros([1])
    #expect(weakMapping == nil)  // unmapped with the last view
  }

  @Test("an empty file (no tensors) opens")
  func emptyArchive() throws {
    let file = try SafeTensorsFile(path: Fixtures.path("empty.safetensors"))
    #expect(file.keys.isEmpty && file.metadata.isEmpty && file.header.dataByteCount == 0)
  }

  @Test("usable through the TensorArchive protocol")
  func archiveProtocol() throws {
    let archive: any TensorArchive = try SafeTensorsFile(path: Fixtures.path("mixed.safetensors"))
    #expect(try archive.tensor("unet.half").dtype == .float16)
    #expect(archive.info("position_ids")?.storedType == "I64")
  }

  @Test("tensors whose bytes are misaligned in memory are copied, values intact")
  func misalignedData() throws {
    let dir = try TempDirectory()
    // A 9-byte header (not padded to 8) puts the data at file offset 17: F32 is misaligned.
    let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
    let data = littleEndian(UInt64(Float(2.5).bitPattern) | UInt64(Float(-1).bitPattern) << 32)
    let path = try dir.safetensors("odd.safetensors", header: header + " ", data: data, pad: false)
    let file = try SafeTensorsFile(path: path)
    #expect(file.header.dataSectionOffset % 4 != 0)
    #expect(try file.tensor("a").scalars() == [2.5, -1])
  }
}
