import Foundation

/// A token the tokenizer matches as a whole before BPE (an "added token" in `tokenizers` terms):
/// the bos/eos/unk/pad tokens and any entry of `added_tokens_decoder`.
///
/// matches: transformers CLIPTokenizer 5.23 as loaded by diffusers — `normalized` tokens are
/// searched for in the normalised (NFC, whitespace-collapsed, lower-cased) text, the others in the
/// raw text. Limitation: `lstrip`, `rstrip` and `single_word` are not supported (they are `false`
/// in every Stable Diffusion tokenizer folder) and are ignored when present.
public struct SpecialToken: Hashable, Sendable {
  /// The token's text, e.g. `<|endoftext|>`.
  public var content: String
  /// Whether it is matched after normalisation (`true`) or in the raw input (`false`).
  public var normalized: Bool

  public init(_ content: String, normalized: Bool = false) {
    self.content = content
    self.normalized = normalized
  }
}

/// The settings of a CLIP tokenizer folder beyond its vocabulary: special tokens, the order in
/// which they are registered, and `model_max_length`.
///
/// matches: transformers CLIPTokenizer 5.23 as loaded by diffusers (`from_pretrained` of a
/// `tokenizer/` folder): without `added_tokens_decoder` in `tokenizer_config.json`, the values of
/// `special_tokens_map.json` override the config's; string values become non-normalised tokens,
/// `{"content": …, "normalized": …}` objects keep their flag; missing ones take CLIPTokenizer's
/// defaults (`<|startoftext|>`, `<|endoftext|>` for eos/unk/pad). Tokens are registered in the order
/// `added_tokens_decoder` (by index), bos, eos, unk, sep, pad, cls, mask; when two share one text, the
/// later one's flags win. Limitations: `additional_special_tokens`/`extra_special_tokens` are
/// ignored; `do_lower_case` and the like are ignored (CLIPTokenizer always lower-cases);
/// a `tokenizer.json` in the folder is not read (it holds the same vocabulary and merges).
public struct CLIPTokenizerConfig: Sendable {
  public var bosToken: SpecialToken
  public var eosToken: SpecialToken
  public var unkToken: SpecialToken
  public var padToken: SpecialToken
  /// Added tokens in registration order (duplicates allowed; the last occurrence's flags win).
  public var addedTokens: [SpecialToken]
  /// `model_max_length`; `nil` when the folder gives none (transformers then uses 1e30, i.e. no
  /// limit).
  public var modelMaxLength: Int?

  /// The Stable Diffusion 1.5 settings: bos `<|startoftext|>` (normalised), eos/unk/pad
  /// `<|endoftext|>` (not normalised, as the pad string makes it), length 77.
  public static let sd15 = CLIPTokenizerConfig(
    bos: SpecialToken(CLIPTokenizerConfig.defaultBos, normalized: true),
    eos: SpecialToken(CLIPTokenizerConfig.defaultEos, normalized: true),
    unk: SpecialToken(CLIPTokenizerConfig.defaultEos, normalized: true),
    pad: SpecialToken(CLIPTokenizerConfig.defaultEos), modelMaxLength: 77)

  /// CLIPTokenizer's default bos text.
  public static let defaultBos = "<|startoftext|>"
  /// CLIPTokenizer's default eos, unk and pad text.
  public static let defaultEos = "<|endoftext|>"
  static let defaults: [String: String] = [
    "bos_token": defaultBos, "eos_token": defaultEos, "unk_token": defaultEos, "pad_token": defaultEos,
  ]
  static let attributeOrder = [
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
  ]

  /// A config from explicit tokens; `addedTokens` defaults to bos, eos, unk, pad in that order.
  public init(
    bos: SpecialToken = SpecialToken(defaultBos), eos: SpecialToken = SpecialToken(defaultEos),
    unk: SpecialToken = SpecialToken(defaultEos), pad: SpecialToken = SpecialToken(defaultEos),
    addedTokens: [SpecialToken]? = nil, modelMaxLength: Int? = 77
  ) {
    bosToken = bos
    eosToken = eos
    unkToken = unk
    padToken = pad
    self.addedTokens = addedTokens ?? [bos, eos, unk, pad]
    self.modelMaxLength = modelMaxLength
  }

  /// Reads `tokenizer_config.json` and `special_tokens_map.json` of a tokenizer folder. Both are
  /// optional, as for transformers; a file that exists but is not a JSON object is an error.
  public init(directory: URL) throws {
    let config = try Self.readObject(directory.appendingPathComponent("tokenizer_config.json"))
    let mapURL = directory.appendingPathComponent("special_tokens_map.json")
    var values: [String: Any] = config ?? [:]
    var registered: [SpecialToken] = []
    if let decoder = values["added_tokens_decoder"] {
      let path = directory.appendingPathComponent("tokenizer_config.json").path
      guard let entries = decoder as? [String: Any] else {
        throw TokenizerError.malformedJSON(path: path, reason: "added_tokens_decoder is not an object")
      }
      let sorted = try entries.map { key, value -> (Int, SpecialToken) in
        guard let index = Int(key), let token = Self.token(value, special: false) else {
          throw TokenizerError.malformedJSON(path: path, reason: "bad added_tokens_decoder entry \(key)")
        }
        return (index, token)
      }.sorted { $0.0 < $1.0 }
      registered = sorted.map(\.1)
    } else if let map = try Self.readObject(mapURL) {
      for (key, value) in map where Self.attributeOrder.contains(key) {
        // special_tokens_map.json objects are built with special=True: normalized defaults to false.
        if let object = value as? [String: Any] { values[key] = Self.token(object, special: true) } else {
          values[key] = value
        }
      }
    }
    /// The token named by `key`: config/map value, else CLIPTokenizer's default for it.
    func resolve(_ key: String) -> SpecialToken? {
      guard let value = values[key] ?? Self.defaults[key],
        let token = value as? SpecialToken ?? Self.token(value, special: false)
      else { return nil }
      // A named token that already is an added token takes that entry's flags.
      return registered.last { $0.content == token.content } ?? token
    }
    let known = Set(registered.map(\.content))
    let named = Self.attributeOrder.compactMap(resolve)
    addedTokens = registered + named.filter { !known.contains($0.content) }
    bosToken = resolve("bos_token") ?? SpecialToken(Self.defaultBos)
    eosToken = resolve("eos_token") ?? SpecialToken(Self.defaultEos)
    unkToken = resolve("unk_token") ?? SpecialToken(Self.defaultEos)
    padToken = resolve("pad_token") ?? SpecialToken(Self.defaultEos)
    modelMaxLength = try Self.modelMaxLength(
      values["model_max_length"], path: directory.appendingPathComponent("tokenizer_config.json").path)
  }

  /// A string (non-normalised) or an AddedToken object (`normalized` given, else `!special`).
  static func token(_ value: Any, special: Bool) -> SpecialToken? {
    if let string = value as? String { return SpecialToken(string) }
    guard let object = value as? [String: Any], let content = object["content"] as? String else {
      return nil
    }
    let isSpecial = (object["special"] as? Bool) ?? special
    return SpecialToken(content, normalized: (object["normalized"] as? Bool) ?? !isSpecial)
  }

  /// `model_max_length` as an Int, or nil when absent, not a number, or 10¹⁵ and more (the 1e30
  /// "no limit" sentinel of transformers). Anything else outside
  /// `1...CLIPTokenizer.maximumModelMaxLength` is an error naming the file.
  static func modelMaxLength(_ value: Any?, path: String) throws -> Int? {
    // JSON booleans arrive as a boolean subclass of NSNumber (`0 is Bool` is true on Linux).
    guard let number = value as? NSNumber, !(value.map { "\(type(of: $0))".contains("Boolean") } ?? false)
    else { return nil }
    let double = number.doubleValue
    if double.isFinite, double >= 1e15 { return nil }
    guard double.isFinite, double >= 1, double <= Double(CLIPTokenizer.maximumModelMaxLength),
      double == double.rounded()
    else {
      throw TokenizerError.outOfRange(
        source: path, field: "model_max_length", value: "\(number)",
        allowed: "1…\(CLIPTokenizer.maximumModelMaxLength), or 1e15 and more for no limit")
    }
    return Int(double)
  }

  static func readObject(_ url: URL) throws -> [String: Any]? {
    guard FileManager.default.fileExists(atPath: url.path) else { return nil }
    let data = try CLIPTokenizer.readFile(url)
    let object: Any
    do { object = try JSONSerialization.jsonObject(with: data) } catch {
      throw TokenizerError.malformedJSON(path: url.path, reason: "\(error)")
    }
    guard let dictionary = object as? [String: Any] else {
      throw TokenizerError.malformedJSON(path: url.path, reason: "the top level is not an object")
    }
    return dictionary
  }
}
