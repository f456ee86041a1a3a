import Foundation
import TensorCore
import Testing

@testable import Weights

@Suite("TorchCheckpoint refuses malicious and malformed pickles")
struct TorchCheckpointSafetyTests {
  @Test("malicious fixture files are refused with a typed error naming the global", arguments: TorchFixtures.maliciousFiles)
  func maliciousFixtures(_ name: String) throws {
    let expected = try #require(try TorchFixtures.expected().malicious[name])
    let path = TorchFixtures.path(name)
    let error = #expect(throws: TorchCheckpointError.self) { try TorchCheckpoint(path: path) }
    switch (expected.error, error) {
    case ("forbiddenGlobal", .forbiddenGlobal(let p, _, let module, let global)?):
      #expect(p == path)
      #expect(module == expected.module && global == expected.name)
      #expect(error!.description.contains("\(module).\(global)"))
      #expect(error!.description.contains(path))
    case ("callNotAllowed", .callNotAllowed(let p, _, let callee)?):
      #expect(p == path)
      #expect(callee == expected.callee)
      #expect(error!.description.contains(callee))
    default:
      Issue.record("\(name): expected \(expected.error), got \(String(describing: error))")
    }
    // openCheckpoint takes the same path.
    #expect(throws: TorchCheckpointError.self) { try openCheckpoint(path: path) }
  }

  static let forbidden: [(String, String)] = [
    ("os", "system"), ("posix", "system"), ("nt", "system"), ("builtins", "eval"), ("builtins", "exec"),
    ("builtins", "getattr"), ("builtins", "__import__"), ("__builtin__", "eval"), ("subprocess", "Popen"),
    ("subprocess", "check_output"), ("shutil", "rmtree"), ("webbrowser", "open"), ("runpy", "_run_code"),
    ("torch", "load"), ("torch._C", "_load_library"), ("numpy", "load"), ("collections", "defaultdict"),
    ("copyreg", "_reconstructor"), ("torch.storage", "TypedStorage"), ("torch._utils", "_rebuild_qtensor"),
    ("numpy.core.multiarray", "_reconstruct"), ("functools", "partial"), ("operator", "attrgetter"),
  ]

  @Test("GLOBAL and STACK_GLOBAL refuse every non-allowlisted name, even when never called")
  func forbiddenGlobals() {
    for (module, name) in Self.forbidden {
      for pickle in [
        Pickle.proto2 + Pickle.global(module, name) + Pickle.stop,
        [0x80, 0x04] + Pickle.stackGlobal(module, name) + Pickle.stop,
        Pickle.dict([("weight", Pickle.global(module, name) + Pickle.unicode("x") + [0x85] + Pickle.reduce)]),
      ] {
        let error = #expect(throws: TorchCheckpointError.self) { try unpickle(pickle) }
        guard case .forbiddenGlobal(_, _, let m, let n)? = error else {
          Issue.record("\(module).\(name): \(String(describing: error))")
          continue
        }
        #expect(m == module && n == name)
        // End to end through a real zip as well.
        let zip = TestZip.checkpoint(pickle: pickle)
        #expect(throws: TorchCheckpointError.forbiddenGlobal(path: "<memory>", offset: error!.offset!, module: module, name: name)) {
          try parseCheckpoint(zip)
        }
      }
    }
  }

  @Test("REDUCE, NEWOBJ and BUILD only act on allowlisted values")
  func callsRestricted() {
    let cases: [([UInt8], String)] = [
      // A storage class or dtype is allowlisted as data, not as a callable.
      (Pickle.proto2 + Pickle.global("torch", "FloatStorage") + Pickle.emptyTuple + Pickle.reduce + Pickle.stop, "torch.FloatStorage"),
      (Pickle.proto2 + Pickle.global("torch", "float16") + Pickle.emptyTuple + Pickle.reduce + Pickle.stop, "torch.float16"),
      (Pickle.proto2 + Pickle.unicode("os.system") + Pickle.emptyTuple + Pickle.reduce + Pickle.stop, "the string \"os.system\""),
      (Pickle.proto2 + Pickle.int(7) + Pickle.emptyTuple + Pickle.reduce + Pickle.stop, "the int 7"),
      (Pickle.proto2 + Pickle.global("torch", "HalfStorage") + Pickle.emptyTuple + [0x81] + Pickle.stop, "torch.HalfStorage"),
      (Pickle.proto2 + Pickle.unicode("x") + Pickle.emptyTuple + [0x81] + Pickle.stop, "the string \"x\""),
    ]
    for (pickle, callee) in cases {
      let error = #expect(throws: TorchCheckpointError.self) { try unpickle(pickle) }
      guard case .callNotAllowed(_, _, let c)? = error else {
        Issue.record("\(callee): \(String(describing: error))")
        continue
      }
      #expect(c == callee)
    }
    // BUILD on a class (which would set class attributes in Python) or on a list is refused.
    for pickle in [
      Pickle.proto2 + Pickle.global("collections", "OrderedDict") + Pickle.emptyDict + [0x62] + Pickle.stop,
      Pickle.proto2 + [0x5D] + Pickle.emptyDict + [0x62] + Pickle.stop,
    ] {
      let error = #expect(throws: TorchCheckpointError.self) { try unpickle(pickle) }
      #expect(error?.description.contains("BUILD") == true)
    }
  }

  @Test("torch dtypes without an element type here are named as unsupported, not as forbidden")
  func unsupportedDTypes() {
    for name in ["complex32", "uint4", "float4_e2m1fn_x2", "ComplexHalfStorage"] {
      #expect(throws: TorchCheckpointError.unsupportedDType(path: "<memory>", offset: 2, dtype: "torch.\(name)")) {
        try unpickle(Pickle.proto2 + Pickle.global("torch", name) + Pickle.stop)
      }
    }
    // The supported ones resolve.
    #expect(AllowedGlobal.resolve(module: "torch", name: "bfloat16") == .dtype("torch.bfloat16", .bf16))
    #expect(AllowedGlobal.resolve(module: "torch", name: "BFloat16Storage") == .storageClass("torch.BFloat16Storage", .bf16))
    #expect(AllowedGlobal.resolve(module: "torch.storage", name: "UntypedStorage") == .storageClass("torch.storage.UntypedStorage", .u8))
    #expect(AllowedGlobal.resolve(module: "torch", name: "save") == nil)
  }

  @Test("opcodes outside the supported set are refused, unknown bytes named")
  func opcodes() {
    for (op, name) in [
      (0x49, "INT"), (0x4C, "LONG"), (0x53, "STRING"), (0x56, "UNICODE"), (0x46, "FLOAT"), (0x67, "GET"),
      (0x70, "PUT"), (0x6F, "OBJ"), (0x50, "PERSID"), (0x82, "EXT1"), (0x83, "EXT2"), (0x84, "EXT4"),
      (0x97, "NEXT_BUFFER"), (0x98, "READONLY_BUFFER"),
    ] as [(UInt8, String)] {
      #expect(throws: TorchCheckpointError.unsupportedOpcode(path: "<memory>", offset: 2, opcode: name)) {
        try unpickle(Pickle.proto2 + [op] + Pickle.stop)
      }
    }
    #expect(throws: TorchCheckpointError.unsupportedOpcode(path: "<memory>", offset: 0, opcode: "PROTO 6")) {
      try unpickle([0x80, 0x06] + Pickle.stop)
    }
    for op: UInt8 in [0x00, 0x21, 0x7F, 0xFF, 0x99] {
      #expect(throws: TorchCheckpointError.unknownOpcode(path: "<memory>", offset: 2, opcode: op)) {
        try unpickle(Pickle.proto2 + [op] + Pickle.stop)
      }
    }
    // INST names its class inline: a forbidden one is reported by name.
    let inst = [0x28, 0x69] + Array("os\nsystem\n".utf8) + Pickle.stop
    #expect(throws: TorchCheckpointError.forbiddenGlobal(path: "<memory>", offset: 1, module: "os", name: "system")) {
      try unpickle(inst)
    }
  }

  @Test("lengths beyond the input are truncation errors, never allocations")
  func hugeLengths() {
    let cases: [[UInt8]] = [
      [0x58, 0xFF, 0xFF, 0xFF, 0xFF],  // BINUNICODE 4 GB
      [0x8D] + TestZip.le64(UInt64.max),  // BINUNICODE8
      [0x8D] + TestZip.le64(1 << 62),
      [0x42, 0xFF, 0xFF, 0xFF, 0x7F],  // BINBYTES
      [0x8E] + TestZip.le64(UInt64.max),  // BINBYTES8
      [0x96] + TestZip.le64(1 << 40),  // BYTEARRAY8
      [0x8B, 0xFF, 0xFF, 0xFF, 0x7F],  // LONG4 2 GB
      [0x95] + TestZip.le64(UInt64.max),  // FRAME
      [0x54, 0xFF, 0xFF, 0xFF, 0x7F],  // BINSTRING
      [0x8C, 0xFF, 0x41],  // SHORT_BINUNICODE 255 with 1 byte
      [0x63] + Array("os".utf8),  // GLOBAL without newline
    ]
    for body in cases {
      let error = #expect(throws: TorchCheckpointError.self) { try unpickle(Pickle.proto2 + body + Pickle.stop) }
      guard case .truncatedPickle? = error else {
        Issue.record("\(body.prefix(3)): \(String(describing: error))")
        continue
      }
    }
    // Negative signed lengths are invalid, not huge.
    #expect(throws: TorchCheckpointError.self) { try unpickle(Pickle.proto2 + [0x8B, 0xFF, 0xFF, 0xFF, 0xFF] + Pickle.stop) }
    #expect(throws: TorchCheckpointError.self) { try unpickle(Pickle.proto2 + [0x54, 0x00, 0x00, 0x00, 0x80] + Pickle.stop) }
  }

  @Test("stack, mark and memo misuse gives invalidPickle")
  func malformedStructure() {
    let cases: [[UInt8]] = [
      [0x2E],  // STOP on an empty stack
      [0x74, 0x2E],  // TUPLE without MARK
      [0x86, 0x2E],  // TUPLE2 on an empty stack
      [0x28, 0x4B, 0x01, 0x86, 0x2E],  // TUPLE2 reaching below the MARK
      [0x73, 0x2E],  // SETITEM on an empty stack
      [0x5D, 0x4B, 0x01, 0x4B, 0x02, 0x73, 0x2E],  // SETITEM on a list
      [0x7D, 0x4B, 0x01, 0x61, 0x2E],  // APPEND on a dict
      [0x7D, 0x28, 0x4B, 0x01, 0x75, 0x2E],  // SETITEMS with an odd count
      [0x28, 0x4B, 0x01, 0x64, 0x2E],  // DICT with an odd count
      [0x68, 0x05, 0x2E],  // BINGET of an unset memo slot
      [0x6A, 0xFF, 0xFF, 0xFF, 0xFF, 0x2E],  // LONG_BINGET
      [0x71, 0x00, 0x2E],  // BINPUT on an empty stack
      [0x94, 0x2E],  // MEMOIZE on an empty stack
      [0x4B, 0x01, 0x4B, 0x02, 0x52, 0x2E],  // REDUCE with non-tuple args
      [0x4B, 0x01, 0x51, 0x2E],  // BINPERSID of an int
      [0x28, 0x4B, 0x01, 0x2E],  // STOP inside an open MARK
      [0x4B, 0x01, 0x4B, 0x02, 0x93, 0x2E],  // STACK_GLOBAL of ints
      [0x58, 0x02, 0x00, 0x00, 0x00, 0xC3, 0x28, 0x2E],  // BINUNICODE with invalid UTF-8
      [0x31, 0x2E],  // POP_MARK without MARK
      [0x30, 0x2E],  // POP on empty
      [0x32, 0x2E],  // DUP on empty
    ]
    for body in cases {
      let error = #expect(throws: TorchCheckpointError.self) { try unpickle(Pickle.proto2 + body) }
      guard case .invalidPickle? = error else {
        Issue.record("\(body): \(String(describing: error))")
        continue
      }
    }
    // No STOP at all.
    #expect(throws: TorchCheckpointError.self) { try unpickle(Pickle.proto2 + [0x4B, 0x01]) }
    #expect(throws: TorchCheckpointError.self) { try unpickle([]) }
  }

  @Test("deep nesting, cycles and exponential sharing are bounded")
  func adversarialGraphs() throws {
    // 100,000 nested tuples.
    let tuples = Pickle.proto2 + Pickle.emptyTuple + [UInt8](repeating: 0x85, count: 100_000) + Pickle.stop
    #expect(throws: TorchCheckpointError.nestingTooDeep(path: "<memory>", limit: RestrictedUnpickler.maxTupleDepth)) {
      try unpickle(tuples)
    }
    // 100,000 nested lists (each APPENDed into the one below it) and dicts.
    let lists = Pickle.proto2 + [UInt8](repeating: 0x5D, count: 100_000) + [UInt8](repeating: 0x61, count: 99_999) + Pickle.stop
    #expect(throws: TorchCheckpointError.nestingTooDeep(path: "<memory>", limit: StateDictFlattener.maxDepth)) {
      try unpickle(lists)
    }
    var dicts = Pickle.proto2 + Pickle.emptyDict
    for _ in 0..<50_000 { dicts += Pickle.shortUnicode("a") + Pickle.emptyDict }
    dicts += [UInt8](repeating: 0x73, count: 50_000) + Pickle.stop
    #expect(throws: TorchCheckpointError.nestingTooDeep(path: "<memory>", limit: StateDictFlattener.maxDepth)) {
      try unpickle(dicts)
    }
    // A list and a dict containing themselves: no tensors, no hang, no leak of the cycle.
    let selfList = Pickle.proto2 + [0x5D, 0x71, 0x00, 0x68, 0x00, 0x61] + Pickle.stop
    let flatList = try unpickle(selfList)
    #expect(flatList.tensors.isEmpty)
    let selfDict = Pickle.proto2 + [0x7D, 0x71, 0x00] + Pickle.shortUnicode("me") + [0x68, 0x00, 0x73] + Pickle.stop
    #expect(try unpickle(selfDict).tensors.isEmpty)
    // "Billion laughs": each level a pair of references to the previous one (2^60 paths).
    var laughs = Pickle.proto2 + [0x5D]
    for _ in 0..<60 { laughs += [0x71, 0x00, 0x68, 0x00, 0x68, 0x00, 0x86] }
    laughs += Pickle.stop
    let error = #expect(throws: TorchCheckpointError.self) { try unpickle(laughs) }
    guard case .pickleTooComplex? = error else {
      Issue.record("billion laughs: \(String(describing: error))")
      return
    }
  }

  @Test("tensor rebuild arguments are validated against the storage record")
  func tensorValidation() throws {
    let storage = ["0": floatBytes([1, 2, 3, 4, 5, 6])]
    func check(_ tensor: [UInt8], storages: [String: [UInt8]] = storage) throws(TorchCheckpointError) -> TorchCheckpoint.Parsed {
      try parseCheckpoint(TestZip.checkpoint(pickle: Pickle.dict([("w", tensor)]), storages: storages))
    }
    // A good one first.
    let ok = try check(Pickle.tensor(key: "0", numel: 6, shape: [2, 3], stride: [3, 1]))
    #expect(ok.records["w"]?.layout.isRowMajor == true)
    #expect(throws: TorchCheckpointError.storageEntryMissing(path: "<memory>", key: "w", storageKey: "7", record: "archive/data/7")) {
      try check(Pickle.tensor(key: "7", numel: 6, shape: [2, 3], stride: [3, 1]))
    }
    // Path-like storage keys just name a record that does not exist.
    #expect(throws: TorchCheckpointError.self) {
      try check(Pickle.tensor(key: "../../etc/passwd", numel: 6, shape: [2, 3], stride: [3, 1]))
    }
    #expect(throws: TorchCheckpointError.storageTooSmall(path: "<memory>", key: "w", storageKey: "0", neededBytes: 28, availableBytes: 24)) {
      try check(Pickle.tensor(key: "0", numel: 7, shape: [7], stride: [1]))
    }
    #expect(throws: TorchCheckpointError.storageTooSmall(path: "<memory>", key: "w", storageKey: "0", neededBytes: 28, availableBytes: 24)) {
      try check(Pickle.tensor(key: "0", numel: 6, offset: 1, shape: [2, 3], stride: [3, 1]))
    }
    #expect(throws: TorchCheckpointError.storageTooSmall(path: "<memory>", key: "w", storageKey: "0", neededBytes: 40, availableBytes: 24)) {
      try check(Pickle.tensor(key: "0", numel: 6, shape: [2, 3], stride: [1, 4]))
    }
    // Sizes that overflow Int arithmetic.
    let huge = Int(Int32.max)
    for t in [
      Pickle.tensor(key: "0", numel: 6, shape: [huge, huge, huge], stride: [1, 1, 1]),
      Pickle.tensor(key: "0", numel: 6, shape: [2, 2], stride: [huge, huge]),
    ] {
      #expect(throws: TorchCheckpointError.self) { try check(t) }
    }
    // Malformed argument lists.
    for t in [
      Pickle.tensor(key: "0", numel: 6, shape: [2, 3], stride: [1]),
      Array(Pickle.tensor(key: "0", numel: 6, shape: [2, 3], stride: [3, 1]).dropLast(1)) + [0x85] + Pickle.reduce,
      Pickle.global("torch._utils", "_rebuild_tensor_v2") + Pickle.tuple([Pickle.int(1)]) + Pickle.reduce,
      Pickle.global("torch._utils", "_rebuild_parameter") + Pickle.tuple([Pickle.int(1)]) + Pickle.reduce,
      Pickle.tensor(key: "0", numel: 6, shape: [-1], stride: [1]),
    ] {
      let error = #expect(throws: TorchCheckpointError.self) { try check(t) }
      guard case .invalidPickle? = error else {
        Issue.record("\(String(describing: error))")
        continue
      }
    }
    // Two leaves with the same dotted key.
    let twice = Pickle.proto2 + Pickle.emptyDict + Pickle.mark
      + Pickle.unicode("a.b") + Pickle.tensor(key: "0", numel: 6, shape: [6], stride: [1])
      + Pickle.unicode("a") + Pickle.emptyDict + Pickle.mark + Pickle.unicode("b")
      + Pickle.tensor(key: "0", numel: 6, shape: [6], stride: [1]) + Pickle.setItems
      + Pickle.setItems + Pickle.stop
    #expect(throws: TorchCheckpointError.duplicateKey(path: "<memory>", key: "a.b")) {
      try parseCheckpoint(TestZip.checkpoint(pickle: twice, storages: storage))
    }
  }

  @Test("every truncation of a checkpoint gives a typed error, never a crash")
  func truncations() throws {
    for name in ["layouts.pt", "sd-shaped.ckpt"] {
      let bytes = try TorchFixtures.bytes(name)
      for length in 0..<bytes.count {
        #expect(throws: TorchCheckpointError.self, "\(name) cut at \(length)") {
          try parseCheckpoint(Array(bytes[0..<length]))
        }
      }
      // Truncations of the pickle itself, re-wrapped in a valid zip with its storages.
      let records = try zipRecords(bytes)
      let pickle = try #require(records.first { $0.name.hasSuffix("/data.pkl") }).data
      var storages: [String: [UInt8]] = [:]
      for r in records where r.name.contains("/data/") { storages[String(r.name.split(separator: "/").last!)] = r.data }
      for length in 0..<pickle.count {
        #expect(throws: TorchCheckpointError.self, "\(name) pickle cut at \(length)") {
          try parseCheckpoint(TestZip.checkpoint(pickle: Array(pickle[0..<length]), storages: storages))
        }
      }
      // A sample of truncated files on disk, through the public initializer.
      let dir = try TempDirectory()
      for length in stride(from: 0, to: bytes.count, by: 97) {
        let path = try dir.write("cut-\(length).pt", Array(bytes[0..<length]))
        #expect(throws: TorchCheckpointError.self) { try TorchCheckpoint(path: path) }
      }
    }
  }

  @Test("single-byte corruption anywhere in the file or pickle never crashes")
  func corruption() throws {
    let bytes = try TorchFixtures.bytes("layouts.pt")
    var accepted = 0
    for i in 0..<bytes.count {
      for value: UInt8 in [0x00, 0xFF, bytes[i] ^ 0x80] where value != bytes[i] {
        var damaged = bytes
        damaged[i] = value
        if (try? parseCheckpoint(damaged)) != nil { accepted += 1 }
      }
    }
    // Bytes inside tensor data or padding do not matter to the structure.
    #expect(accepted > 0)

    // The pickle mutated byte by byte and re-wrapped with a correct CRC, so the unpickler and the
    // tensor checks see every variant.
    let records = try zipRecords(bytes)
    let pickle = try #require(records.first { $0.name.hasSuffix("/data.pkl") }).data
    var storages: [String: [UInt8]] = [:]
    for r in records where r.name.contains("/data/") { storages[String(r.name.split(separator: "/").last!)] = r.data }
    for i in 0..<pickle.count {
      for value: UInt8 in [0x00, 0xFF, pickle[i] &+ 1, pickle[i] &- 1] where value != pickle[i] {
        var damaged = pickle
        damaged[i] = value
        let zip = TestZip.checkpoint(pickle: damaged, storages: storages)
        guard let parsed = try? parseCheckpoint(zip) else { continue }
        // Whatever was accepted lies inside its storage, and its storage inside the file.
        for (key, record) in parsed.records {
          let l = record.layout
          #expect(record.dataOffset + record.storageByteCount <= zip.count, "\(key)")
          if l.shape.reduce(1, *) > 0 {
            let last = l.storageOffset + Swift.zip(l.shape, l.strides).map { ($0 - 1) * $1 }.reduce(0, +)
            #expect((last + 1) * l.elementType.byteSize <= record.storageByteCount, "\(key)")
          }
          var out = [UInt8](repeating: 0, count: l.shape.reduce(1, *) * l.elementType.byteSize)
          zip.withUnsafeBytes { raw in
            out.withUnsafeMutableBytes { dst in
              if dst.count > 0 {
                TorchCheckpoint.gather(
                  from: raw.baseAddress! + record.dataOffset, layout: l, elementSize: l.elementType.byteSize,
                  into: dst.baseAddress!)
              }
            }
          }
        }
      }
    }
  }
}

extension TorchCheckpointError {
  /// The pickle offset of errors that have one.
  var offset: Int? {
    switch self {
    case .truncatedPickle(_, let o, _), .unknownOpcode(_, let o, _), .unsupportedOpcode(_, let o, _),
      .forbiddenGlobal(_, let o, _, _), .callNotAllowed(_, let o, _), .invalidPickle(_, let o, _):
      o
    default: nil
    }
  }
}

@Suite("TorchCheckpoint memory bounds")
struct TorchCheckpointMemoryBoundTests {
  @Test("a stride-0 tensor that would expand past the limit is refused at open")
  func expansionBound() throws {
    let storage = ["0": floatBytes([1])]
    let small = Pickle.dict([("w", Pickle.tensor(key: "0", numel: 1, shape: [4, 3], stride: [0, 0]))])
    let parsed = try parseCheckpoint(TestZip.checkpoint(pickle: small, storages: storage))
    #expect(parsed.records["w"]?.layout.isRowMajor == false)
    let huge = Pickle.dict([("w", Pickle.tensor(key: "0", numel: 1, shape: [1 << 20, 1 << 20], stride: [0, 0]))])
    #expect(
      throws: TorchCheckpointError.tensorTooLarge(
        path: "<memory>", key: "w", byteCount: 4 << 40, limit: TorchCheckpoint.maxExpandedBytes)
    ) {
      try parseCheckpoint(TestZip.checkpoint(pickle: huge, storages: storage))
    }
  }
}
