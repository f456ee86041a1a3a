import Foundation

/// The CLIP byte-level BPE tokenizer of Stable Diffusion's text encoder.
///
/// matches: transformers CLIPTokenizer 5.23 as loaded by diffusers 0.42 (`from_pretrained` of a
/// pipeline's `tokenizer/` folder, i.e. the `tokenizers` backend): special tokens are cut out
/// first, the rest is normalised (NFC, whitespace runs → one space, lower case), split with the
/// CLIP pattern, byte-level mapped and BPE-encoded with `</w>` word ends; `callAsFunction` adds
/// bos/eos, truncates to `model_max_length` and pads as `encode_prompt` asks. There is no ftfy
/// or HTML-unescaping step (the Python-only "slow" tokenizer had one; the loaded tokenizer has
/// not). Thread-safe (the per-word cache is locked).
///
/// Known limitations: see `TextNormalization` (pinned Unicode versions, an underscored NFC API) and
/// `CLIPTokenizerConfig` (ignored config keys); `tokenizer.json` is not read.
public final class CLIPTokenizer: Sendable {
  /// Id of the beginning-of-text token (`<|startoftext|>`, 49406 for SD1.5).
  public let bosTokenId: Int
  /// Id of the end-of-text token (`<|endoftext|>`, 49407 for SD1.5).
  public let eosTokenId: Int
  /// Id used for padding (49407 for SD1.5; 0, i.e. `!`, for configs that pad with `!`).
  public let padTokenId: Int
  /// Id substituted for a byte symbol missing from the vocabulary (never needed by full CLIP).
  public let unkTokenId: Int
  /// `model_max_length`: 77 for SD1.5; `Int.max` when the folder gives none (no truncation, and
  /// padding has nothing to pad to).
  public let modelMaxLength: Int
  /// Vocabulary entries plus added tokens that are not in the vocabulary.
  public let vocabularySize: Int

  private let model: BytePairModel
  private let added: AddedTokens
  private let idToToken: [Int: String]

  /// Loads a tokenizer folder: `vocab.json` and `merges.txt` (required), `tokenizer_config.json`
  /// and `special_tokens_map.json` (optional, as for transformers).
  /// - Parameter padToken: replaces the folder's pad token (SDXL's second tokenizer pads with `!`).
  public convenience init(directory: URL, padToken: SpecialToken? = nil) throws {
    let vocabURL = directory.appendingPathComponent("vocab.json")
    let vocabulary = try Self.readVocabulary(vocabURL)
    let merges = try Self.readMerges(directory.appendingPathComponent("merges.txt"))
    var config = try CLIPTokenizerConfig(directory: directory)
    if let padToken { config.padToken = padToken }
    try self.init(vocabulary: vocabulary, merges: merges, config: config, source: vocabURL.path)
  }

  /// Highest token id accepted (2²¹ − 1; CLIP's vocabulary has 49,408 entries). Ids come from
  /// `vocab.json`, so they are bounded before anything is sized or indexed by them.
  public static let maximumTokenId = 2_097_151
  /// Longest `model_max_length` accepted (values of 10¹⁵ and more mean "no limit", as
  /// transformers' 1e30 sentinel does).
  public static let maximumModelMaxLength = 65_536

  /// Builds a tokenizer from a vocabulary (token → id), merges in rank order, and settings.
  /// Throws when a merge's parts or result are not in the vocabulary, as the reference does, and
  /// when an id is outside `0...maximumTokenId`; `source` names the vocabulary in errors.
  public init(
    vocabulary: [String: Int], merges: [(String, String)], config: CLIPTokenizerConfig = .sd15,
    source: String = "vocabulary"
  ) throws {
    for (token, id) in vocabulary where !(0...Self.maximumTokenId).contains(id) {
      throw TokenizerError.outOfRange(
        source: source, field: "id of \"\(token)\"", value: "\(id)", allowed: "0…\(Self.maximumTokenId)")
    }
    if let length = config.modelMaxLength, !(1...Self.maximumModelMaxLength).contains(length) {
      throw TokenizerError.outOfRange(
        source: "tokenizer config", field: "model_max_length", value: "\(length)",
        allowed: "1…\(Self.maximumModelMaxLength), or 1e15 and more for no limit")
    }
    let added = AddedTokens(config.addedTokens, vocabulary: vocabulary)
    self.added = added
    func lookup(_ token: SpecialToken) -> Int {
      added.contentToId[token.content] ?? vocabulary[token.content] ?? vocabulary.count
    }
    bosTokenId = lookup(config.bosToken)
    eosTokenId = lookup(config.eosToken)
    padTokenId = lookup(config.padToken)
    unkTokenId = lookup(config.unkToken)
    modelMaxLength = config.modelMaxLength ?? Int.max
    var reverse: [Int: String] = [:]
    reverse.reserveCapacity(vocabulary.count)
    for (token, id) in vocabulary {
      if let other = reverse.updateValue(token, forKey: id) {
        throw TokenizerError.duplicateTokenId(id: id, tokens: [other, token].sorted())
      }
    }
    for (id, content) in added.idToContent { reverse[id] = content }
    idToToken = reverse
    vocabularySize = vocabulary.count + added.idToContent.keys.filter { $0 >= vocabulary.count }.count
    model = try BytePairModel(
      vocabulary: vocabulary, merges: merges,
      unkId: added.contentToId[config.unkToken.content] ?? vocabulary[config.unkToken.content])
  }

  /// The SD1.5 tokenizer (`openai/clip-vit-large-patch14`) bundled with this package.
  public static func bundledSD15() throws -> CLIPTokenizer {
    guard let url = Bundle.module.url(forResource: "clip-vit-large-patch14", withExtension: nil) else {
      throw TokenizerError.bundledResourcesMissing
    }
    return try CLIPTokenizer(directory: url)
  }

  /// SDXL's second tokenizer (`stabilityai/stable-diffusion-xl-base-1.0/tokenizer_2`): the same
  /// vocabulary and merges as `bundledSD15()`, padding with `!` (id 0).
  public static func bundledSDXLSecond() throws -> CLIPTokenizer {
    guard let url = Bundle.module.url(forResource: "clip-vit-large-patch14", withExtension: nil) else {
      throw TokenizerError.bundledResourcesMissing
    }
    return try CLIPTokenizer(directory: url, padToken: SpecialToken("!"))
  }

  // MARK: Encoding

  /// The prompt's token ids without bos/eos, untruncated (`tokenizer(text,
  /// add_special_tokens=False).input_ids`).
  public func encode(_ text: String) -> [Int] {
    var ids: [Int] = []
    let scalars = Array(text.unicodeScalars)
    for segment in AddedTokens.split(scalars[...], on: added.raw) {
      switch segment {
      case .token(let id):
        ids.append(id)
      case .text(let raw):
        let normalized = TextNormalization.normalize(Array(raw))
        for part in AddedTokens.split(normalized[...], on: added.normalized) {
          switch part {
          case .token(let id):
            ids.append(id)
          case .text(let text):
            for word in TextNormalization.preTokenize(Array(text)) {
              var bytes: [UInt8] = []
              for scalar in word { UTF8.encode(scalar) { bytes.append($0) } }
              model.encodeWord(bytes, into: &ids)
            }
          }
        }
      }
    }
    return ids
  }

  /// bos + ids + eos, cut to `modelMaxLength` (keeping bos and eos) and, with `padding`, padded
  /// to it with `padTokenId` — diffusers' `padding="max_length", truncation=True` call.
  public func callAsFunction(_ text: String, padding: Bool = true) -> TokenizedText {
    let content = encode(text)
    let budget = max(0, modelMaxLength == Int.max ? Int.max : modelMaxLength - 2)
    let truncated = content.count > budget
    var ids = [bosTokenId]
    ids.append(contentsOf: content.prefix(budget))
    ids.append(eosTokenId)
    var mask = [Int](repeating: 1, count: ids.count)
    if padding, modelMaxLength != Int.max, ids.count < modelMaxLength {
      let extra = modelMaxLength - ids.count
      ids.append(contentsOf: repeatElement(padTokenId, count: extra))
      mask.append(contentsOf: repeatElement(0, count: extra))
    }
    guard truncated else { return TokenizedText(ids: ids, attentionMask: mask, truncated: false) }
    let removed = decode(Array(content[budget...]))
    return TokenizedText(
      ids: ids, attentionMask: mask, truncated: true, removedText: removed,
      warning: TokenizedText.truncationWarning(removedText: removed, maxLength: modelMaxLength))
  }

  // MARK: Decoding and lookup

  /// Text of token ids, as `tokenizer.decode(ids)` gives it: special tokens kept, byte symbols
  /// turned back into UTF-8 (invalid sequences → U+FFFD), `</w>` → space, outer whitespace
  /// stripped. Unknown ids are skipped.
  public func decode(_ ids: [Int]) -> String {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(ids.count * 8)
    for id in ids {
      guard let token = idToToken[id] else { continue }
      // Byte symbols when every scalar is one; otherwise (an added token) the token's own UTF-8.
      let start = bytes.count
      for scalar in token.unicodeScalars {
        guard let b = ByteLevel.scalarToByte[scalar.value] else {
          bytes.removeSubrange(start...)
          bytes.append(contentsOf: token.utf8)
          break
        }
        bytes.append(b)
      }
    }
    // "</w>" → " " on the bytes: a String search would miss "</w>" followed by a combining mark
    // (one Character). Same result as on the decoded text: ASCII never joins an invalid sequence.
    let marker = Array(BytePairModel.endOfWord.utf8)
    var spaced: [UInt8] = []
    spaced.reserveCapacity(bytes.count)
    var i = 0
    while i < bytes.count {
      if bytes[i] == marker[0], bytes[i...].starts(with: marker) {
        spaced.append(0x20)
        i += marker.count
      } else {
        spaced.append(bytes[i])
        i += 1
      }
    }
    return Self.stripPythonWhitespace(String(decoding: spaced, as: UTF8.self))
  }

  /// The vocabulary (or added-token) text of an id.
  public func token(forId id: Int) -> String? { idToToken[id] }

  /// The id of a vocabulary or added token, by exact text.
  public func id(forToken token: String) -> Int? {
    added.contentToId[token] ?? model.vocabulary[token]
  }

  /// Python's `str.strip()`: White_Space plus the separators U+001C…U+001F.
  static func stripPythonWhitespace(_ text: String) -> String {
    let scalars = text.unicodeScalars
    func isSpace(_ s: Unicode.Scalar) -> Bool {
      (0x1C...0x1F).contains(s.value) || s.properties.isWhitespace
    }
    guard let first = scalars.firstIndex(where: { !isSpace($0) }),
      let last = scalars.lastIndex(where: { !isSpace($0) })
    else { return "" }
    if first == scalars.startIndex, scalars.index(after: last) == scalars.endIndex { return text }
    return String(scalars[first...last])
  }
}
