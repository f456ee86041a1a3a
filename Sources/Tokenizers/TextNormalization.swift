import Foundation

/// The CLIP text normaliser and pre-tokenizer, on Unicode scalars.
///
/// matches: transformers CLIPTokenizer 5.23 as loaded by diffusers, whose `tokenizers` pipeline is
/// `NFC → Replace(\s+, " ") → Lowercase` then `Split(<CLIP pattern>, removed, invert) →
/// ByteLevel(use_regex)`. The regex engine there (Oniguruma) knows Unicode 16: `\s` is White_Space,
/// `\p{L}` the L* categories, `\p{N}` the N* ones. Lower-casing is per scalar (full mapping, no
/// final-sigma rule, `İ` → `i̇`). NFC: the reference's normalisation tables are Unicode 9.0, so
/// newer scalars are left alone as it leaves them; the rest goes through Foundation's NFD and the
/// standard library's NFC (each alone has bugs). Checked against the reference for every scalar
/// and ~100k random strings. Limitations: relies on the underscored `String._nfcCodeUnits`; the
/// Unicode-version emulation (9.0 for NFC, 16 for letter/number classes, the toolchain's own
/// lower-case tables, which agree today) must be revisited if the pinned versions change.
enum TextNormalization {
  /// Scalars newer than this Unicode major version are unassigned for the reference's regex.
  static let referenceUnicodeMajor = 16

  // MARK: Normaliser

  /// NFC, then every run of White_Space → one space, then per-scalar lower case.
  static func normalize(_ scalars: [Unicode.Scalar]) -> [Unicode.Scalar] {
    var out: [Unicode.Scalar] = []
    out.reserveCapacity(scalars.count)
    var inSpace = false
    for scalar in nfc(scalars) {
      if isWhitespace(scalar) {
        if !inSpace { out.append(" ") }
        inSpace = true
        continue
      }
      inSpace = false
      if scalar.isASCII {
        let v = scalar.value
        out.append(v >= 0x41 && v <= 0x5A ? Unicode.Scalar(v + 0x20)! : scalar)
      } else {
        out.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
      }
    }
    return out
  }

  /// Canonical composition as the reference does it, whose normalisation tables are Unicode 9.0:
  /// a newer (or unassigned) scalar has no decomposition, combining class 0 and no composition
  /// there, so it is kept as is and the text on each side of it is normalised on its own. Scalars
  /// below U+0300 are always NFC, so ASCII/Latin-1 text skips the work. The standard library's
  /// NFC (`_nfcCodeUnits`, public but underscored) is used rather than Foundation's
  /// `precomposedStringWithCanonicalMapping`, which on Linux composes U+10CC6 U+0CD5 into U+0CC7
  /// and misses U+0CCA U+0CD5 → U+0CCB.
  static func nfc(_ scalars: [Unicode.Scalar]) -> [Unicode.Scalar] {
    guard scalars.contains(where: { $0.value >= 0x300 }) else { return scalars }
    var result: [Unicode.Scalar] = []
    result.reserveCapacity(scalars.count)
    var start = 0
    func flush(_ end: Int) {
      guard start < end else { return }
      var view = String.UnicodeScalarView()
      view.append(contentsOf: scalars[start..<end])
      // Foundation decomposes and reorders, the standard library composes: each alone has bugs.
      let nfc = String(view).decomposedStringWithCanonicalMapping._nfcCodeUnits
      result.append(contentsOf: String(decoding: nfc, as: UTF8.self).unicodeScalars)
    }
    for (i, scalar) in scalars.enumerated() where scalar.value >= 0x300 && isNewerThanNormalizer(scalar) {
      flush(i)
      result.append(scalar)
      start = i + 1
    }
    flush(scalars.count)
    return result
  }

  /// Unicode version of the reference's normalisation tables (`unicode-normalization-alignments`).
  static let referenceNormalizationVersion = (major: 9, minor: 0)

  static func isNewerThanNormalizer(_ s: Unicode.Scalar) -> Bool {
    guard let age = s.properties.age else { return true }
    let ref = referenceNormalizationVersion
    return age.major > ref.major || (age.major == ref.major && age.minor > ref.minor)
  }

  // MARK: Character classes of the reference regex engine

  static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
    if s.isASCII { return s == " " || (s.value >= 0x09 && s.value <= 0x0D) }
    return s.properties.isWhitespace
  }

  enum CharacterClass { case letter, number, space, other }

  static func characterClass(_ s: Unicode.Scalar) -> CharacterClass {
    let v = s.value
    if v < 0x80 {
      if (v >= 0x61 && v <= 0x7A) || (v >= 0x41 && v <= 0x5A) { return .letter }
      if v >= 0x30 && v <= 0x39 { return .number }
      return isWhitespace(s) ? .space : .other
    }
    let properties = s.properties
    if properties.isWhitespace { return .space }
    switch properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
      return isKnownToReference(properties) ? .letter : .other
    case .decimalNumber, .letterNumber, .otherNumber:
      return isKnownToReference(properties) ? .number : .other
    default:
      return .other
    }
  }

  static func isKnownToReference(_ properties: Unicode.Scalar.Properties) -> Bool {
    guard let age = properties.age else { return false }
    return age.major <= referenceUnicodeMajor
  }

  // MARK: Pre-tokenizer

  static let literals: [[Unicode.Scalar]] = ["<|startoftext|>", "<|endoftext|>"].map {
    Array($0.unicodeScalars)
  }
  static let contractions: [[Unicode.Scalar]] = ["s", "t", "re", "ve", "m", "ll", "d"].map {
    Array($0.unicodeScalars)
  }

  /// Splits normalised text into the words BPE sees, with the CLIP pattern
  /// `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
  /// (matches kept, whitespace between them dropped; first alternative wins at each position),
  /// then ByteLevel's GPT-2 pattern inside each match. The latter only changes the two literal
  /// special-token matches, which it cuts into `<|`, the letters, and `|>`.
  static func preTokenize(_ s: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
    var pieces: [ArraySlice<Unicode.Scalar>] = []
    var i = 0
    let n = s.count
    func hasPrefix(_ p: [Unicode.Scalar], at j: Int) -> Bool {
      guard j + p.count <= n else { return false }
      for k in 0..<p.count where s[j + k] != p[k] { return false }
      return true
    }
    while i < n {
      let cls = characterClass(s[i])
      if cls == .space {
        i += 1
        continue
      }
      if s[i] == "<", let literal = literals.first(where: { hasPrefix($0, at: i) }) {
        let end = i + literal.count
        pieces.append(s[i..<(i + 2)])
        pieces.append(s[(i + 2)..<(end - 2)])
        pieces.append(s[(end - 2)..<end])
        i = end
        continue
      }
      if s[i] == "'", let tail = contractions.first(where: { hasPrefix($0, at: i + 1) }) {
        pieces.append(s[i..<(i + 1 + tail.count)])
        i += 1 + tail.count
        continue
      }
      var j = i + 1
      switch cls {
      case .letter:
        while j < n, characterClass(s[j]) == .letter { j += 1 }
      case .number:
        break
      default:
        while j < n, characterClass(s[j]) == .other { j += 1 }
      }
      pieces.append(s[i..<j])
      i = j
    }
    return pieces
  }
}
