import Foundation

/// Streaming SHA-256 and SHA-1 (FIPS 180-4), the two digests the hub names blobs by: an LFS file's etag is the
/// sha256 of its content, a small (git-stored) file's etag is its git blob id, sha1("blob <size>\0" + content).
///
/// matches: hashlib.sha256 / hashlib.sha1 (and `git hash-object`). Limitations: plain Swift (Foundation only,
/// no CryptoKit on Linux), about 0.3–0.5 GB/s; not constant-time, which does not matter for content addressing.
public struct Digest: Sendable {
  /// Which algorithm a ``Digest`` computes.
  public enum Algorithm: Sendable { case sha256, sha1 }

  private let algorithm: Algorithm
  private var state: [UInt32]
  private var buffer = [UInt8]()
  private var length: UInt64 = 0

  public init(_ algorithm: Algorithm) {
    self.algorithm = algorithm
    switch algorithm {
    case .sha256:
      state = [
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19,
      ]
    case .sha1:
      state = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0]
    }
    buffer.reserveCapacity(64)
  }

  /// Feeds bytes.
  public mutating func update(_ bytes: UnsafeRawBufferPointer) {
    guard var p = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
    var n = bytes.count
    length &+= UInt64(n)
    if !buffer.isEmpty {
      let take = min(64 - buffer.count, n)
      buffer.append(contentsOf: UnsafeBufferPointer(start: p, count: take))
      p += take
      n -= take
      if buffer.count == 64 {
        buffer.withUnsafeBufferPointer { compress($0.baseAddress!, blocks: 1) }
        buffer.removeAll(keepingCapacity: true)
      }
    }
    let blocks = n / 64
    if blocks > 0 {
      compress(p, blocks: blocks)
      p += blocks * 64
      n -= blocks * 64
    }
    if n > 0 { buffer.append(contentsOf: UnsafeBufferPointer(start: p, count: n)) }
  }

  /// Feeds bytes.
  public mutating func update(_ data: Data) {
    data.withUnsafeBytes { update($0) }
  }

  /// The digest as lowercase hex (the state is consumed: call once).
  public mutating func finalizeHex() -> String {
    let bitLength = length &* 8
    var tail: [UInt8] = [0x80]
    while (buffer.count + tail.count) % 64 != 56 { tail.append(0) }
    for i in (0..<8).reversed() { tail.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
    let saved = length
    tail.withUnsafeBytes { update($0) }
    length = saved
    precondition(buffer.isEmpty)
    return state.map { word in
      let s = String(word, radix: 16)
      return String(repeating: "0", count: 8 - s.count) + s
    }.joined()
  }

  /// The hex digest of a whole byte string.
  public static func hex(_ algorithm: Algorithm, _ data: Data) -> String {
    var d = Digest(algorithm)
    d.update(data)
    return d.finalizeHex()
  }

  /// The hex sha256 of a file from byte `offset` on (0: the whole file), read in 4 MiB chunks.
  public static func sha256(ofFile path: String, from offset: UInt64 = 0) throws -> String {
    var d = Digest(.sha256)
    try Self.forEachChunk(ofFile: path, from: offset) { d.update($0) }
    return d.finalizeHex()
  }

  /// The git blob id of a file: sha1 over "blob <size>\0" followed by the content.
  public static func gitBlobSHA1(ofFile path: String) throws -> String {
    let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber
    var d = Digest(.sha1)
    d.update(Data("blob \(size?.int64Value ?? 0)\0".utf8))
    try Self.forEachChunk(ofFile: path) { d.update($0) }
    return d.finalizeHex()
  }

  static func forEachChunk(ofFile path: String, from offset: UInt64 = 0, _ body: (UnsafeRawBufferPointer) -> Void) throws {
    guard let handle = FileHandle(forReadingAtPath: path) else {
      throw CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: path])
    }
    defer { try? handle.close() }
    if offset > 0 { try handle.seek(toOffset: offset) }
    while let chunk = try handle.read(upToCount: 4 << 20), !chunk.isEmpty {
      chunk.withUnsafeBytes { body($0) }
    }
  }

  private mutating func compress(_ p: UnsafePointer<UInt8>, blocks: Int) {
    switch algorithm {
    case .sha256: state.withUnsafeMutableBufferPointer { Self.sha256Blocks($0, p, blocks) }
    case .sha1: state.withUnsafeMutableBufferPointer { Self.sha1Blocks($0, p, blocks) }
    }
  }

  private static let k256: [UInt32] = [
    0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
    0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
    0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
    0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
    0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
    0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
    0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
    0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
  ]

  @inline(__always) private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }

  @inline(__always) private static func loadBE(_ p: UnsafePointer<UInt8>, _ i: Int) -> UInt32 {
    UInt32(p[i]) << 24 | UInt32(p[i + 1]) << 16 | UInt32(p[i + 2]) << 8 | UInt32(p[i + 3])
  }

  private static func sha256Blocks(_ h: UnsafeMutableBufferPointer<UInt32>, _ data: UnsafePointer<UInt8>, _ blocks: Int) {
    withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
      k256.withUnsafeBufferPointer { k in
        for b in 0..<blocks {
          let p = data + b * 64
          for i in 0..<16 { w[i] = loadBE(p, i * 4) }
          for i in 16..<64 {
            let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
            let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
            w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
          }
          var (a, bb, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
          for i in 0..<64 {
            let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
            let ch = (e & f) ^ (~e & g)
            let t1 = hh &+ s1 &+ ch &+ k[i] &+ w[i]
            let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
            let maj = (a & bb) ^ (a & c) ^ (bb & c)
            let t2 = s0 &+ maj
            hh = g; g = f; f = e; e = d &+ t1; d = c; c = bb; bb = a; a = t1 &+ t2
          }
          h[0] &+= a; h[1] &+= bb; h[2] &+= c; h[3] &+= d; h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
        }
      }
    }
  }

  private static func sha1Blocks(_ h: UnsafeMutableBufferPointer<UInt32>, _ data: UnsafePointer<UInt8>, _ blocks: Int) {
    withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 80) { w in
      for b in 0..<blocks {
        let p = data + b * 64
        for i in 0..<16 { w[i] = loadBE(p, i * 4) }
        for i in 16..<80 {
          let x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
          w[i] = (x << 1) | (x >> 31)
        }
        var (a, bb, c, d, e) = (h[0], h[1], h[2], h[3], h[4])
        for i in 0..<80 {
          let f: UInt32
          let k: UInt32
          switch i {
          case 0..<20: f = (bb & c) | (~bb & d); k = 0x5A82_7999
          case 20..<40: f = bb ^ c ^ d; k = 0x6ED9_EBA1
          case 40..<60: f = (bb & c) | (bb & d) | (c & d); k = 0x8F1B_BCDC
          default: f = bb ^ c ^ d; k = 0xCA62_C1D6
          }
          let t = ((a << 5) | (a >> 27)) &+ f &+ e &+ k &+ w[i]
          e = d; d = c; c = (bb << 30) | (bb >> 2); bb = a; a = t
        }
        h[0] &+= a; h[1] &+= bb; h[2] &+= c; h[3] &+= d; h[4] &+= e
      }
    }
  }
}
