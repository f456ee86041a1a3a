/// Errors raised while loading a CLIP tokenizer folder or building a tokenizer from its parts.
///
/// Every case names the file (or input) that was wrong, so `description` can be shown to a user
/// as is. matches: transformers CLIPTokenizer 5.23 as loaded by diffusers (on the `tokenizers`
/// backend), which rejects the same inputs: a missing vocab/merges file, unparsable JSON, a merges line that is not exactly
/// two space-separated tokens, and a merge whose parts or result are not in the vocabulary.
public enum TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
  /// A required file (`vocab.json` or `merges.txt`) is not in the tokenizer folder.
  case missingFile(path: String)
  /// A file exists but cannot be read (permissions, not UTF-8, …).
  case unreadableFile(path: String, reason: String)
  /// A JSON file that does not parse, or whose shape is not the expected one.
  case malformedJSON(path: String, reason: String)
  /// A `merges.txt` line (1-based, counting the `#version` header) that is not `left right`.
  case malformedMerges(path: String, line: Int, text: String)
  /// A merge whose left part, right part or joined result is not in the vocabulary.
  case mergeTokenNotInVocabulary(token: String, mergeIndex: Int)
  /// Two vocabulary entries share one id (ids must be unique).
  case duplicateTokenId(id: Int, tokens: [String])
  /// `bundledSD15()` could not find the tokenizer folder inside the package's resource bundle.
  case bundledResourcesMissing
  /// A number from a tokenizer file outside what this tokenizer accepts (a token id, a length);
  /// `source` names the file (or "vocabulary"/"config" for values passed in directly).
  case outOfRange(source: String, field: String, value: String, allowed: String)

  public var description: String {
    switch self {
    case .missingFile(let path):
      "tokenizer file not found: \(path)"
    case .unreadableFile(let path, let reason):
      "cannot read tokenizer file \(path): \(reason)"
    case .malformedJSON(let path, let reason):
      "malformed JSON in \(path): \(reason)"
    case .malformedMerges(let path, let line, let text):
      "malformed merges file \(path) at line \(line): expected two space-separated tokens, got "
        + "\"\(text)\""
    case .mergeTokenNotInVocabulary(let token, let mergeIndex):
      "merge #\(mergeIndex + 1) uses or produces \"\(token)\", which is not in the vocabulary"
    case .duplicateTokenId(let id, let tokens):
      "vocabulary id \(id) is used by several tokens: \(tokens.joined(separator: ", "))"
    case .bundledResourcesMissing:
      "the bundled clip-vit-large-patch14 tokenizer folder is missing from the resource bundle"
    case .outOfRange(let source, let field, let value, let allowed):
      "\(source): \(field) = \(value) is out of range (allowed: \(allowed))"
    }
  }
}
