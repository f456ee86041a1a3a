import Foundation
import Tokenizers

/// `tokenizer`: CLIP tokenizer folders and prompts. The first byte chooses:
/// - even: the rest is `vocab.json`, `merges.txt`, `tokenizer_config.json`,
///   `special_tokens_map.json`, then up to 3 prompts, separated by `partSeparator`. The files
///   present are written to a scratch folder (absent optional files are absent, as in a real
///   folder), loaded with `CLIPTokenizer(directory:)`; the prompts are tokenized (`encode`, the
///   padded/truncated call checked against it, `decode`, id/token lookups), then three fixed
///   prompts (padded and unpadded calls);
/// - odd: the rest is one prompt (UTF-8, invalid sequences repaired as `String(decoding:)` does)
///   for the bundled SD1.5 tokenizer.
enum TokenizerTarget {
  static let fileNames = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]
  /// Tokenized with every fuzzed folder (the truncation path is reached by long fuzzed prompts).
  static let fixedPrompts = ["a photo of a cat", "<|startoftext|>A  Photo\tof <|endoftext|> cats!!", "naïve café 東京 🙂 don't"]

  nonisolated(unsafe) static var bundled: CLIPTokenizer? = nil

  static func run(_ input: [UInt8]) throws {
    guard let mode = input.first else { return }
    if mode & 1 == 1 {
      if bundled == nil { bundled = try CLIPTokenizer.bundledSD15() }
      exercise(bundled!, prompts: [String(decoding: input.dropFirst(), as: UTF8.self)])
      return
    }
    let parts = splitParts(input.dropFirst())
    let folder = Scratch.makeFolder("tok")
    for (i, name) in fileNames.enumerated() {
      if i < parts.count {
        Scratch.write(parts[i], name: "tok/" + name)
      } else {
        Scratch.remove("tok/" + name)
      }
    }
    let prompts = parts.dropFirst(fileNames.count).prefix(3).map { String(decoding: $0, as: UTF8.self) }
    let tokenizer = try CLIPTokenizer(directory: URL(fileURLWithPath: folder, isDirectory: true))
    exercise(tokenizer, prompts: prompts)
    for prompt in fixedPrompts {
      let padded = tokenizer(prompt)
      check(padded.ids.count == padded.attentionMask.count, "ids and mask differ in length")
      _ = tokenizer(prompt, padding: false)
    }
  }

  static func exercise(_ tokenizer: CLIPTokenizer, prompts: [String]) {
    for prompt in prompts {
      let ids = tokenizer.encode(prompt)
      _ = tokenizer.decode(ids)
      let padded = tokenizer(prompt)
      check(padded.ids.count == padded.attentionMask.count, "ids and mask differ in length")
      // The padded call is bos + the prompt's ids (cut to the length) + eos, then padding.
      let kept = padded.attentionMask.reduce(0, +)
      check(kept >= 2 && padded.ids.first == tokenizer.bosTokenId, "padded ids do not start with bos")
      check(padded.ids[kept - 1] == tokenizer.eosTokenId, "padded ids do not end with eos")
      check(padded.ids[1..<(kept - 1)].elementsEqual(ids.prefix(kept - 2)), "padded ids differ from encode")
      check(padded.truncated == (ids.count > kept - 2), "truncation flag differs from the lengths")
      for id in ids.prefix(8) {
        if let token = tokenizer.token(forId: id) { _ = tokenizer.id(forToken: token) }
      }
    }
    _ = tokenizer.decode([tokenizer.bosTokenId, tokenizer.eosTokenId, tokenizer.padTokenId, -1, Int.max])
  }
}
