import Foundation
import Testing

@testable import Weights

/// The unpickler's allocation budget: a small pickle cannot make the reader allocate gigabytes by
/// re-using one memoised value, while real checkpoints stay far below the budget.
@Suite struct UnpicklerBudgetTests {
  /// `_codecs.encode(<memo 0>, "latin1")` repeated `count` times over one memoised string of
  /// `size` characters (each call copies it).
  static func encodeAmplifier(stringBytes size: Int, calls count: Int) -> [UInt8] {
    var p = Pickle.proto2
    p += Pickle.unicode(String(repeating: "a", count: size)) + [0x71, 0x00]  // BINPUT 0
    p += Pickle.global("_codecs", "encode") + [0x71, 0x01]  // BINPUT 1
    p += Pickle.shortUnicode("latin1") + [0x71, 0x02, 0x30]  // BINPUT 2, POP
    for _ in 0..<count {
      // BINGET 1, BINGET 0, BINGET 2, TUPLE2, REDUCE, POP
      p += [0x68, 0x01, 0x68, 0x00, 0x68, 0x02, 0x86, 0x52, 0x30]
    }
    return p + Pickle.emptyDict + Pickle.stop
  }

  @Test("100,000 _codecs.encode calls on one memoised 80 KB string are refused before 8 GB are allocated")
  func encodeAmplificationIsRefused() throws {
    let pickle = Self.encodeAmplifier(stringBytes: 80_000, calls: 100_000)
    #expect(pickle.count < 1_000_000)
    let error = #expect(throws: TorchCheckpointError.self) { try unpickle(pickle) }
    guard case .pickleTooComplex(_, let reason)? = error else {
      Issue.record("expected pickleTooComplex, got \(String(describing: error))")
      return
    }
    #expect(reason.contains("would allocate more than"))
    // Through the whole reader (a torch zip) as well.
    let zip = TestZip.checkpoint(pickle: pickle)
    #expect(throws: TorchCheckpointError.self) { try parseCheckpoint(zip) }
  }

  @Test("torch.Size and set() over one memoised 10,000-item list, called repeatedly, are refused")
  func containerCopyAmplificationIsRefused() throws {
    for callee in [("torch", "Size"), ("builtins", "set")] {
      var p = Pickle.proto2 + [0x5D, 0x71, 0x00, 0x28]  // EMPTY_LIST, BINPUT 0, MARK
      p += [UInt8](repeating: 0x88, count: 10_000) + [0x65, 0x30]  // NEWTRUE × 10,000, APPENDS, POP
      p += Pickle.global(callee.0, callee.1) + [0x71, 0x01, 0x30]
      for _ in 0..<20_000 { p += [0x68, 0x01, 0x68, 0x00, 0x85, 0x52, 0x30] }  // BINGET 1, (BINGET 0,), REDUCE, POP
      p += Pickle.emptyDict + Pickle.stop
      let error = #expect(throws: TorchCheckpointError.self, "\(callee)") { try unpickle(p) }
      guard case .pickleTooComplex? = error else {
        Issue.record("\(callee): expected pickleTooComplex, got \(String(describing: error))")
        continue
      }
    }
  }

  @Test("real checkpoints use under a quarter of the budget", arguments: TorchFixtures.goodFiles)
  func realCheckpointsStayWellInsideTheBudget(_ name: String) throws {
    let records = try zipRecords(try TorchFixtures.bytes(name))
    let pickle = try #require(records.first { $0.name.hasSuffix("/data.pkl") }).data
    let used = try pickle.withUnsafeBytes { raw in
      let unpickler = RestrictedUnpickler(bytes: raw, path: name)
      defer { unpickler.releaseGraph() }
      _ = try unpickler.load()
      return unpickler.allocatedBytes
    }
    #expect(used > 0)
    #expect(used <= RestrictedUnpickler.allocationBudget(forPickleBytes: pickle.count) / 4, "\(name): \(used) bytes")
    #expect(used <= 16 * pickle.count + (1 << 18), "\(name): \(used) bytes for a \(pickle.count)-byte pickle")
  }
}
