import Foundation
import Testing

@testable import Tokenizers

/// Bad tokenizer folders fail with a typed error naming the file, as the reference fails.
@Suite struct TokenizerErrorTests {
  static let allFiles = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]

  /// A copy of the tiny fixture folder with `file` replaced by `contents` (or removed when nil).
  func folder(replacing file: String, with contents: String?) throws -> URL {
    let url = try TokenizerFixtures.scratchCopy(of: "tiny", files: Self.allFiles)
    let target = url.appendingPathComponent(file)
    try FileManager.default.removeItem(at: target)
    try contents?.write(to: target, atomically: true, encoding: .utf8)
    return url
  }

  func loadError(_ folder: URL) -> TokenizerError? {
    defer { try? FileManager.default.removeItem(at: folder) }
    do {
      _ = try CLIPTokenizer(directory: folder)
      return nil
    } catch let error as TokenizerError {
      return error
    } catch {
      Issue.record("untyped error \(error)")
      return nil
    }
  }

  @Test func missingVocabFile() throws {
    let error = loadError(try folder(replacing: "vocab.json", with: nil))
    guard case .missingFile(let path) = error else { Issue.record("got \(String(describing: error))"); return }
    #expect(path.hasSuffix("/vocab.json"))
    #expect(error!.description.contains("vocab.json"))
  }

  @Test func missingMergesFile() throws {
    let error = loadError(try folder(replacing: "merges.txt", with: nil))
    guard case .missingFile(let path) = error else { Issue.record("got \(String(describing: error))"); return }
    #expect(path.hasSuffix("/merges.txt"))
  }

  @Test func malformedVocabJSON() throws {
    for bad in [#"{"a": 0, "b": "#, #"["a", "b"]"#, #"{"a": "zero"}"#] {
      let error = loadError(try folder(replacing: "vocab.json", with: bad))
      guard case .malformedJSON(let path, _) = error else {
        Issue.record("\(bad): got \(String(describing: error))")
        continue
      }
      #expect(path.hasSuffix("/vocab.json"))
    }
  }

  @Test func malformedConfigJSON() throws {
    for file in ["tokenizer_config.json", "special_tokens_map.json"] {
      let error = loadError(try folder(replacing: file, with: "{\"model_max_length\": 77,"))
      guard case .malformedJSON(let path, _) = error else {
        Issue.record("\(file): got \(String(describing: error))")
        continue
      }
      #expect(path.hasSuffix("/" + file))
      #expect(error!.description.contains(file))
    }
  }

  @Test func mergesLineWithOneToken() throws {
    let error = loadError(try folder(replacing: "merges.txt", with: "#version: 0.2\ni n\nth\n"))
    #expect(error == .malformedMerges(path: error.map(path) ?? "", line: 3, text: "th"))
    #expect(error.map(path)?.hasSuffix("/merges.txt") == true)
  }

  @Test func mergesLineWithThreeTokensOrBlank() throws {
    for (text, line) in [("#version: 0.2\nt h e\n", 2), ("#version: 0.2\ni n\n\nt h\n", 3)] {
      let error = loadError(try folder(replacing: "merges.txt", with: text))
      guard case .malformedMerges(_, let at, _) = error else {
        Issue.record("got \(String(describing: error))")
        continue
      }
      #expect(at == line)
    }
  }

  @Test func mergesAcceptCRLFAndNoHeader() throws {
    for text in ["#version: 0.2\r\ni n\r\nt h\r\n", "i n\nt h"] {
      let url = try folder(replacing: "merges.txt", with: text)
      defer { try? FileManager.default.removeItem(at: url) }
      let tokenizer = try CLIPTokenizer(directory: url)
      #expect(tokenizer.encode("thin in") == [513, 72, 333, 72, 333])  // reference ids
    }
  }

  @Test func mergeTokenNotInVocabulary() throws {
    let error = loadError(try folder(replacing: "merges.txt", with: "#version: 0.2\ni n\nq zz\n"))
    #expect(error == .mergeTokenNotInVocabulary(token: "zz", mergeIndex: 1))
  }

  private func path(_ error: TokenizerError) -> String {
    if case .malformedMerges(let path, _, _) = error { return path }
    return ""
  }
}
