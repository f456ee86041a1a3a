import Foundation
import Testing

@testable import Tokenizers

/// Exact parity with transformers 5.23's CLIPTokenizer (as diffusers 0.42 loads it) on the
/// prompts of tools/reference/gen_tokenizer_fixtures.py.
@Suite struct GoldenTests {
  static let fixtures: [(golden: String, folder: String?)] = [
    ("sd15", nil), ("tiny", "tiny"), ("tiny-pad-bang", "tiny-pad-bang"),
  ]

  @Test("ids, padding, truncation and decoding match the reference", arguments: [0, 1, 2])
  func goldens(_ index: Int) throws {
    let (name, folder) = Self.fixtures[index]
    let golden = try TokenizerFixtures.golden(name)
    let tokenizer = try folder.map { try CLIPTokenizer(directory: TokenizerFixtures.folder($0)) }
      ?? TokenizerFixtures.sd15
    #expect(tokenizer.bosTokenId == golden.bos_token_id)
    #expect(tokenizer.eosTokenId == golden.eos_token_id)
    #expect(tokenizer.padTokenId == golden.pad_token_id)
    #expect(tokenizer.unkTokenId == golden.unk_token_id)
    #expect(tokenizer.modelMaxLength == golden.model_max_length)
    #expect(tokenizer.vocabularySize == golden.vocab_size)
    #expect(golden.cases.count >= 40)
    for c in golden.cases {
      let p = c.prompt.debugDescription
      #expect(tokenizer.encode(c.prompt) == Array(c.ids.dropFirst().dropLast()), "\(name) \(p)")
      #expect(c.ids.map { tokenizer.token(forId: $0) } == c.tokens, "\(name) \(p)")
      let call = tokenizer(c.prompt)
      #expect(call.ids == c.padded_ids, "\(name) \(p)")
      #expect(call.attentionMask == c.attention_mask, "\(name) \(p)")
      #expect(call.truncated == c.truncated, "\(name) \(p)")
      #expect(call.removedText == c.removed_text, "\(name) \(p)")
      #expect(call.warning == c.warning, "\(name) \(p)")
      #expect(tokenizer.decode(c.ids) == c.decoded, "\(name) \(p)")
      if !c.truncated {
        #expect(tokenizer(c.prompt, padding: false).ids == c.ids, "\(name) \(p)")
      }
    }
  }
}
