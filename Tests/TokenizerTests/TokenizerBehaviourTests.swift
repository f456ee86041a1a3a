import Foundation
import Testing

@testable import Tokenizers

/// Padding, truncation, special ids and the programmatic API, beyond the golden prompts.
@Suite struct TokenizerBehaviourTests {
  let sd15 = TokenizerFixtures.sd15

  @Test func bundledSD15Settings() {
    #expect(sd15.bosTokenId == 49406)
    #expect(sd15.eosTokenId == 49407)
    #expect(sd15.padTokenId == 49407)
    #expect(sd15.unkTokenId == 49407)
    #expect(sd15.modelMaxLength == 77)
    #expect(sd15.vocabularySize == 49408)
    #expect(sd15.token(forId: 49406) == "<|startoftext|>")
    #expect(sd15.id(forToken: "cat</w>") == 2368)
    // The prompt every Stable Diffusion port checks first.
    #expect(sd15("a photo of a cat", padding: false).ids == [49406, 320, 1125, 539, 320, 2368, 49407])
  }

  @Test func paddingFillsToModelMaxLength() {
    let out = sd15("a photo of a cat")
    #expect(out.ids.count == 77)
    #expect(out.ids[6] == 49407)
    #expect(out.ids[7...].allSatisfy { $0 == sd15.padTokenId })
    #expect(out.attentionMask == Array(repeating: 1, count: 7) + Array(repeating: 0, count: 70))
    #expect(!out.truncated && out.removedText == nil && out.warning == nil)
    let unpadded = sd15("a photo of a cat", padding: false)
    #expect(unpadded.ids == Array(out.ids.prefix(7)))
    #expect(unpadded.attentionMask == Array(repeating: 1, count: 7))
    #expect(sd15("").ids == [49406, 49407] + Array(repeating: 49407, count: 75))
  }

  @Test func truncationKeepsBosAndEos() {
    let exact = sd15(String(repeating: "a ", count: 75), padding: false)
    #expect(exact.ids.count == 77 && !exact.truncated)
    let over = sd15(String(repeating: "a ", count: 76), padding: false)
    #expect(over.ids.count == 77)
    #expect(over.ids.first == 49406 && over.ids.last == 49407 && over.ids[75] == 320)
    #expect(over.truncated)
    #expect(over.removedText == "a")
    #expect(
      over.warning == "The following part of your input was truncated because CLIP can only handle"
        + " sequences up to 77 tokens: ['a']")
    let long = sd15(String(repeating: "very ", count: 200))
    #expect(long.ids.count == 77 && long.truncated && long.attentionMask.allSatisfy { $0 == 1 })
  }

  @Test func padTokenComesFromTheConfig() throws {
    let bang = try CLIPTokenizer(directory: TokenizerFixtures.folder("tiny-pad-bang"))
    #expect(bang.padTokenId == 0)
    #expect(bang.token(forId: 0) == "!")
    let out = bang("hi")
    let used = bang("hi", padding: false).ids.count
    #expect(out.ids.count == 77 && out.ids[used...].allSatisfy { $0 == 0 })
    #expect(out.ids[used - 1] == bang.eosTokenId)
    // "!" is an added token there, so it is cut out before BPE ("!" rather than "!</w>").
    #expect(bang.encode("hi!").last == 0)
    let tiny = try CLIPTokenizer(directory: TokenizerFixtures.folder("tiny"))
    #expect(tiny.padTokenId == 999 && tiny.bosTokenId == 998 && tiny.vocabularySize == 1000)
    #expect(tiny.encode("hi!").last == 256)
  }

  @Test func buildsFromVocabularyAndMerges() throws {
    let symbols = ByteLevel.byteToScalar.map { String($0) }
    var vocabulary: [String: Int] = [:]
    for (i, s) in (symbols + symbols.map { $0 + "</w>" }).enumerated() { vocabulary[s] = i }
    for token in ["he", "ll", "hell", "hello</w>", "<|startoftext|>", "<|endoftext|>"] {
      vocabulary[token] = vocabulary.count
    }
    let merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o</w>")]
    let tokenizer = try CLIPTokenizer(vocabulary: vocabulary, merges: merges)
    #expect(tokenizer.encode("Hello") == [vocabulary["hello</w>"]!])
    #expect(tokenizer.encode("hell") == [vocabulary["he"]!, vocabulary["l"]!, vocabulary["l</w>"]!])
    #expect(tokenizer.bosTokenId == vocabulary["<|startoftext|>"])
    #expect(tokenizer("hello").ids.count == 77)
    #expect(tokenizer.decode(tokenizer("hello, hell", padding: false).ids)
      == "<|startoftext|>hello , hell <|endoftext|>")
  }

  /// Reference: vocab {a, b</w>, <|startoftext|>, <|endoftext|>, a</w>, ab</w>}, merge "a b</w>",
  /// no config files: "ac" → [2, 0, 3, 3], "é" → [2, 3, 3, 3] (one unk per missing byte symbol),
  /// model_max_length 1e30 (no truncation, nothing to pad to).
  @Test func unknownSymbolsAndMissingConfigs() throws {
    let folder = try TokenizerFixtures.scratchCopy(of: "tiny", files: [])
    defer { try? FileManager.default.removeItem(at: folder) }
    let vocab = #"{"a": 0, "b</w>": 1, "<|startoftext|>": 2, "<|endoftext|>": 3, "a</w>": 4, "ab</w>": 5}"#
    try vocab.write(to: folder.appendingPathComponent("vocab.json"), atomically: true, encoding: .utf8)
    try "#version: 0.2\na b</w>\n".write(
      to: folder.appendingPathComponent("merges.txt"), atomically: true, encoding: .utf8)
    let tokenizer = try CLIPTokenizer(directory: folder)
    #expect(tokenizer("ab").ids == [2, 5, 3])
    #expect(tokenizer("ac").ids == [2, 0, 3, 3])
    #expect(tokenizer("xyz").ids == [2, 3, 3, 3, 3])
    #expect(tokenizer("é").ids == [2, 3, 3, 3])
    #expect(tokenizer("a b").ids == [2, 4, 1, 3])
    #expect(tokenizer.modelMaxLength == Int.max && tokenizer.padTokenId == 3)
  }

  @Test func concurrentEncodingMatchesSerial() async throws {
    let prompts = try TokenizerFixtures.golden("sd15").cases.map(\.prompt)
    let serial = prompts.map { sd15($0).ids }
    let tokenizer = try CLIPTokenizer(directory: TokenizerFixtures.folder("tiny"))
    let tinySerial = prompts.map { tokenizer($0).ids }
    try await withThrowingTaskGroup(of: Bool.self) { group in
      for _ in 0..<8 {
        group.addTask {
          prompts.map { sd15($0).ids } == serial && prompts.map { tokenizer($0).ids } == tinySerial
        }
      }
      for try await ok in group { #expect(ok) }
    }
  }
}
