/// One prompt tokenized for a CLIP text encoder: bos + ids + eos, cut to `model_max_length`,
/// optionally padded to it.
///
/// matches: what diffusers' `StableDiffusionPipeline.encode_prompt` gets from transformers
/// CLIPTokenizer 5.23 as loaded by diffusers — `tokenizer(prompt, padding="max_length",
/// max_length=model_max_length, truncation=True).input_ids` and `.attention_mask` — plus its
/// truncation check (`truncated`, `removedText`, and the `warning` diffusers logs; this library
/// returns it instead of printing it).
public struct TokenizedText: Equatable, Sendable {
  /// Token ids: bos, the prompt's ids, eos, then pad ids when padding was asked for.
  public var ids: [Int]
  /// 1 for bos/prompt/eos positions, 0 for padding.
  public var attentionMask: [Int]
  /// Whether prompt tokens were dropped to fit `model_max_length`.
  public var truncated: Bool
  /// The dropped part, decoded as diffusers decodes it for its warning; nil when not truncated.
  public var removedText: String?
  /// The warning diffusers logs for a truncated prompt, word for word; nil when not truncated.
  public var warning: String?

  public init(
    ids: [Int], attentionMask: [Int], truncated: Bool, removedText: String? = nil,
    warning: String? = nil
  ) {
    self.ids = ids
    self.attentionMask = attentionMask
    self.truncated = truncated
    self.removedText = removedText
    self.warning = warning
  }

  /// diffusers' message: `The following part of your input was truncated … tokens: ['…']`.
  static func truncationWarning(removedText: String, maxLength: Int) -> String {
    "The following part of your input was truncated because CLIP can only handle sequences up to"
      + " \(maxLength) tokens: [\(PythonRepr.string(removedText))]"
  }
}

/// Python's `repr(str)`, for messages that quote text the way diffusers' warning does.
enum PythonRepr {
  static func string(_ s: String) -> String {
    let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
    var out = String(quote)
    for scalar in s.unicodeScalars {
      switch scalar {
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      default:
        if Character(scalar) == quote {
          out += "\\\(quote)"
        } else if isPrintable(scalar) {
          out.unicodeScalars.append(scalar)
        } else {
          out += escape(scalar.value)
        }
      }
    }
    out.append(quote)
    return out
  }

  private static func escape(_ v: UInt32) -> String {
    let (prefix, width) = v < 0x100 ? ("\\x", 2) : v < 0x10000 ? ("\\u", 4) : ("\\U", 8)
    let digits = String(v, radix: 16)
    return prefix + String(repeating: "0", count: width - digits.count) + digits
  }

  private static func isPrintable(_ s: Unicode.Scalar) -> Bool {
    if s == " " { return true }
    switch s.properties.generalCategory {
    case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator,
      .paragraphSeparator, .spaceSeparator:
      return false
    default:
      return true
    }
  }
}
