import Foundation
import Testing

@testable import Tokenizers

/// Tokenizer files from strangers: ids and lengths are bounded before they size or index anything.
@Suite struct HostileTokenizerTests {
  /// A folder with a minimal vocabulary (byte symbols for "a", "b", the special tokens), the
  /// given extra vocabulary entries and config.
  static func folder(idOfA: String = "0", config: String? = nil) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hostile-tokenizer-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let vocab = #"{"a": "# + idOfA + #", "b": 1, "a</w>": 2, "b</w>": 3, "ab</w>": 4, "<|startoftext|>": 5, "<|endoftext|>": 6}"#
    try Data(vocab.utf8).write(to: dir.appendingPathComponent("vocab.json"))
    try Data("#version: 0.2\na b</w>\n".utf8).write(to: dir.appendingPathComponent("merges.txt"))
    if let config { try Data(config.utf8).write(to: dir.appendingPathComponent("tokenizer_config.json")) }
    return dir
  }

  @Test("a vocab.json id above 2³¹ (and a negative one) is an error naming the file and token")
  func hugeTokenIds() throws {
    // "a" is a merge part: its id used to be narrowed to Int32 (a trap above 2³¹).
    for id in ["3000000000", "-7", "9223372036854775807"] {
      let dir = try Self.folder(idOfA: id)
      defer { try? FileManager.default.removeItem(at: dir) }
      let error = #expect(throws: TokenizerError.self) { try CLIPTokenizer(directory: dir) }
      guard case .outOfRange(let source, let field, let value, _)? = error else {
        Issue.record("id \(id): \(String(describing: error))")
        continue
      }
      #expect(source.hasSuffix("vocab.json"))
      #expect(field.contains("\"a\""))
      #expect(value == id)
    }
  }

  @Test("model_max_length 1e14 is refused; the 1e30 sentinel means no limit; 77 works")
  func modelMaxLength() throws {
    let huge = try Self.folder(config: #"{"model_max_length": 1e14}"#)
    defer { try? FileManager.default.removeItem(at: huge) }
    let error = #expect(throws: TokenizerError.self) { try CLIPTokenizer(directory: huge) }
    guard case .outOfRange(let source, "model_max_length", _, _)? = error else {
      Issue.record("\(String(describing: error))")
      return
    }
    #expect(source.hasSuffix("tokenizer_config.json"))
    for bad in ["0", "-3", "77.5", "100000"] {
      let dir = try Self.folder(config: #"{"model_max_length": "# + bad + "}")
      defer { try? FileManager.default.removeItem(at: dir) }
      #expect(throws: TokenizerError.self, "\(bad)") { try CLIPTokenizer(directory: dir) }
    }
    let sentinel = try Self.folder(config: #"{"model_max_length": 1e30}"#)
    defer { try? FileManager.default.removeItem(at: sentinel) }
    #expect(try CLIPTokenizer(directory: sentinel).modelMaxLength == Int.max)
    let normal = try Self.folder(config: #"{"model_max_length": 77}"#)
    defer { try? FileManager.default.removeItem(at: normal) }
    let tokenizer = try CLIPTokenizer(directory: normal)
    #expect(tokenizer("ab").ids == [5, 4, 6] + Array(repeating: 6, count: 74))
  }

  @Test("a model_max_length passed in code is range-checked too")
  func modelMaxLengthInCode() {
    let config = CLIPTokenizerConfig(modelMaxLength: 1 << 40)
    #expect(throws: TokenizerError.self) {
      try CLIPTokenizer(vocabulary: ["a": 0, "<|startoftext|>": 1, "<|endoftext|>": 2], merges: [], config: config)
    }
  }
}
