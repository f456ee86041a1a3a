import Foundation

/// The GPT-2/CLIP byte ↔ printable-character table: printable Latin-1 bytes (`!`…`~`, `¡`…`¬`,
/// `®`…`ÿ`) stand for themselves, the other 68 bytes for U+0100, U+0101, … in byte order.
///
/// matches: `bytes_to_unicode` of OpenAI CLIP / transformers, and `tokenizers`' ByteLevel.
enum ByteLevel {
  static let byteToScalar: [Unicode.Scalar] = {
    var table = [Unicode.Scalar](repeating: " ", count: 256)
    var next: UInt32 = 256
    for b in 0..<256 {
      let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
      if printable {
        table[b] = Unicode.Scalar(UInt32(b))!
      } else {
        table[b] = Unicode.Scalar(next)!
        next += 1
      }
    }
    return table
  }()

  static let scalarToByte: [UInt32: UInt8] = {
    var map: [UInt32: UInt8] = [:]
    for (b, s) in byteToScalar.enumerated() { map[s.value] = UInt8(b) }
    return map
  }()

  /// The byte-level spelling of UTF-8 bytes.
  static func encode<S: Sequence<UInt8>>(_ bytes: S) -> String {
    var view = String.UnicodeScalarView()
    for b in bytes { view.append(byteToScalar[Int(b)]) }
    return String(view)
  }
}

/// Byte-pair encoding of one pre-tokenized word into vocabulary ids, with `</w>` marking the end
/// of the word and the merge ranks of `merges.txt`.
///
/// matches: `tokenizers` BPE as CLIPTokenizer 5.23 configures it (no dropout, no continuing-subword
/// prefix, end-of-word suffix `</w>`, `fuse_unk=false`): the symbols start as the word's byte
/// characters (the last one with `</w>`); a symbol missing from the vocabulary becomes one unk id
/// each; then the adjacent pair with the lowest merge rank (leftmost on ties) is merged until none
/// is left. Results are cached per word (up to 10 000 words, like the reference).
final class BytePairModel: Sendable {
  struct Merge {
    var rank: Int32
    var id: Int32
  }

  let vocabulary: [String: Int]
  let unkId: Int?
  private let merges: [UInt64: Merge]
  private let byteIds: [Int32]  // per byte: id of its symbol, -1 when absent
  private let byteEndIds: [Int32]  // per byte: id of its symbol + "</w>", -1 when absent
  private let cache = WordCache()
  static let cacheCapacity = 10_000
  static let endOfWord = "</w>"

  init(vocabulary: [String: Int], merges: [(String, String)], unkId: Int?) throws {
    self.vocabulary = vocabulary
    self.unkId = unkId
    // Ranks and ids are stored as Int32: the tokenizer bounds ids by `maximumTokenId`.
    guard merges.count < Int(Int32.max) else {
      throw TokenizerError.outOfRange(
        source: "merges", field: "number of merges", value: "\(merges.count)", allowed: "fewer than 2³¹")
    }
    var table: [UInt64: Merge] = [:]
    table.reserveCapacity(merges.count)
    for (index, (left, right)) in merges.enumerated() {
      guard let a = vocabulary[left] else {
        throw TokenizerError.mergeTokenNotInVocabulary(token: left, mergeIndex: index)
      }
      guard let b = vocabulary[right] else {
        throw TokenizerError.mergeTokenNotInVocabulary(token: right, mergeIndex: index)
      }
      guard let joined = vocabulary[left + right] else {
        throw TokenizerError.mergeTokenNotInVocabulary(token: left + right, mergeIndex: index)
      }
      // A repeated pair keeps its last rank, as the reference's map does.
      table[Self.key(Int32(a), Int32(b))] = Merge(rank: Int32(index), id: Int32(joined))
    }
    self.merges = table
    byteIds = ByteLevel.byteToScalar.map { Int32(vocabulary[String($0)] ?? -1) }
    byteEndIds = ByteLevel.byteToScalar.map { Int32(vocabulary[String($0) + Self.endOfWord] ?? -1) }
  }

  @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 {
    UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
  }

  /// Appends the ids of one word (its UTF-8 bytes) to `output`.
  func encodeWord(_ bytes: [UInt8], into output: inout [Int]) {
    if let cached = cache[bytes] {
      output.append(contentsOf: cached.lazy.map { Int($0) })
      return
    }
    let ids = merge(bytes)
    cache.insert(ids, for: bytes, capacity: Self.cacheCapacity)
    output.append(contentsOf: ids.lazy.map { Int($0) })
  }

  private func merge(_ bytes: [UInt8]) -> [Int32] {
    var symbols: [Int32] = []
    symbols.reserveCapacity(bytes.count)
    for (i, b) in bytes.enumerated() {
      let id = i == bytes.count - 1 ? byteEndIds[Int(b)] : byteIds[Int(b)]
      if id >= 0 {
        symbols.append(id)
      } else if let unkId {
        symbols.append(Int32(unkId))
      }
    }
    while symbols.count > 1 {
      var best = Merge(rank: .max, id: -1)
      var position = -1
      for i in 0..<(symbols.count - 1) {
        if let m = merges[Self.key(symbols[i], symbols[i + 1])], m.rank < best.rank {
          best = m
          position = i
        }
      }
      if position < 0 { break }
      symbols[position] = best.id
      symbols.remove(at: position + 1)
    }
    return symbols
  }
}

/// The per-word result cache of `BytePairModel`, shared by every thread that tokenises with one
/// tokenizer. Guarded by an `NSLock` (a pthread mutex, which ThreadSanitizer understands; the
/// stdlib `Mutex` waits on futexes it cannot see, so concurrent tokenisation was reported as a
/// race). `@unchecked Sendable`: every access to `words` holds `lock`.
private final class WordCache: @unchecked Sendable {
  private var words: [[UInt8]: [Int32]] = [:]
  private let lock = NSLock()

  subscript(bytes: [UInt8]) -> [Int32]? {
    lock.lock()
    defer { lock.unlock() }
    return words[bytes]
  }

  /// Keeps `ids` unless the cache already holds `capacity` words.
  func insert(_ ids: [Int32], for bytes: [UInt8], capacity: Int) {
    lock.lock()
    defer { lock.unlock() }
    if words.count < capacity { words[bytes] = ids }
  }
}
