import Foundation
import Testing

@testable import Tokenizers

/// Fixture locations and the golden files written by tools/reference/gen_tokenizer_fixtures.py.
enum TokenizerFixtures {
  static let directory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/tokenizer")

  /// The bundled SD1.5 tokenizer, loaded once for all tests.
  static let sd15: CLIPTokenizer = {
    do { return try CLIPTokenizer.bundledSD15() } catch { fatalError("bundled tokenizer: \(error)") }
  }()

  static func folder(_ name: String) -> URL { directory.appendingPathComponent(name) }

  static func golden(_ name: String) throws -> GoldenFile {
    let data = try Data(contentsOf: directory.appendingPathComponent("\(name).json"))
    return try JSONDecoder().decode(GoldenFile.self, from: data)
  }

  /// A scratch folder holding copies of `files` from `source`, for the bad-input tests.
  static func scratchCopy(of source: String, files: [String]) throws -> URL {
    let scratch = FileManager.default.temporaryDirectory
      .appendingPathComponent("tokenizer-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    for file in files {
      try FileManager.default.copyItem(
        at: folder(source).appendingPathComponent(file), to: scratch.appendingPathComponent(file))
    }
    return scratch
  }
}

struct GoldenFile: Decodable {
  var model_max_length: Int
  var bos_token_id: Int
  var eos_token_id: Int
  var pad_token_id: Int
  var unk_token_id: Int
  var vocab_size: Int
  var cases: [GoldenCase]
}

struct GoldenCase: Decodable {
  var prompt: String
  var ids: [Int]
  var tokens: [String]
  var padded_ids: [Int]
  var attention_mask: [Int]
  var truncated: Bool
  var removed_text: String?
  var warning: String?
  var decoded: String
}
