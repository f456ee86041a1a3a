/// The added (special) tokens of a tokenizer, with their ids, and the splitting of text around
/// them.
///
/// matches: `tokenizers`' AddedVocabulary as CLIPTokenizer 5.23 fills it: a token already in the
/// vocabulary keeps its id, a new one gets the next id past the vocabulary; non-normalised tokens
/// are cut out of the raw text first, normalised ones out of each normalised remainder (their own
/// text normalised the same way); at each position the longest token wins, leftmost first.
struct AddedTokens: Sendable {
  struct Entry {
    var scalars: [Unicode.Scalar]
    var id: Int
  }

  enum Segment {
    case token(Int)
    case text(ArraySlice<Unicode.Scalar>)
  }

  private(set) var raw: [Entry] = []
  private(set) var normalized: [Entry] = []
  private(set) var idToContent: [Int: String] = [:]
  private(set) var contentToId: [String: Int] = [:]

  init(_ tokens: [SpecialToken], vocabulary: [String: Int]) {
    var flags: [(content: String, normalized: Bool, id: Int)] = []
    var nextId = vocabulary.count
    for token in tokens where !token.content.isEmpty {
      let scalars = token.content.unicodeScalars
      if let i = flags.firstIndex(where: { $0.content.unicodeScalars.elementsEqual(scalars) }) {
        flags[i].normalized = token.normalized  // the later registration's flags win
        continue
      }
      let id: Int
      if let known = vocabulary[token.content] {
        id = known
      } else {
        id = max(nextId, (flags.map(\.id).max() ?? -1) + 1)
        nextId = id + 1
      }
      flags.append((token.content, token.normalized, id))
      idToContent[id] = token.content
      contentToId[token.content] = id
    }
    for (content, isNormalized, id) in flags {
      if isNormalized {
        let text = TextNormalization.normalize(Array(content.unicodeScalars))
        if !text.isEmpty { normalized.append(Entry(scalars: text, id: id)) }
      } else {
        raw.append(Entry(scalars: Array(content.unicodeScalars), id: id))
      }
    }
  }

  /// Cuts `entries` out of `text`: the longest entry matching at the leftmost position wins.
  static func split(_ text: ArraySlice<Unicode.Scalar>, on entries: [Entry]) -> [Segment] {
    guard !entries.isEmpty, !text.isEmpty else { return text.isEmpty ? [] : [.text(text)] }
    var segments: [Segment] = []
    var start = text.startIndex
    var i = text.startIndex
    while i < text.endIndex {
      var best: Entry?
      for entry in entries where entry.scalars.first == text[i] && entry.scalars.count > (best?.scalars.count ?? 0) {
        if text.endIndex - i >= entry.scalars.count,
          text[i..<(i + entry.scalars.count)].elementsEqual(entry.scalars)
        {
          best = entry
        }
      }
      if let best {
        if start < i { segments.append(.text(text[start..<i])) }
        segments.append(.token(best.id))
        i += best.scalars.count
        start = i
      } else {
        i += 1
      }
    }
    if start < text.endIndex { segments.append(.text(text[start..<text.endIndex])) }
    return segments
  }
}
