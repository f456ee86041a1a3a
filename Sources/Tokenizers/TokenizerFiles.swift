import Foundation

/// Readers for the two required files of a tokenizer folder.
///
/// matches: `tokenizers`' BPE file loading as CLIPTokenizer 5.23 does it — `vocab.json` is one
/// JSON object of token → integer id; `merges.txt` lines starting with `#version` are skipped,
/// every other line (`\n` or `\r\n` ended) must be exactly two tokens separated by one space.
extension CLIPTokenizer {
  static func readVocabulary(_ url: URL) throws -> [String: Int] {
    let data = try readFile(url)
    do {
      return try JSONDecoder().decode([String: Int].self, from: data)
    } catch {
      throw TokenizerError.malformedJSON(
        path: url.path, reason: "expected an object of token → integer id (\(error))")
    }
  }

  static func readMerges(_ url: URL) throws -> [(String, String)] {
    let data = try readFile(url)
    guard String(data: data, encoding: .utf8) != nil else {
      throw TokenizerError.unreadableFile(path: url.path, reason: "not UTF-8")
    }
    // Bytes, not Characters: "\r\n" is one Character, and a token could start with a combining mark.
    let bytes = [UInt8](data)
    var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
    if lines.last?.isEmpty == true { lines.removeLast() }  // the final newline ends a line
    var merges: [(String, String)] = []
    merges.reserveCapacity(lines.count)
    for (index, rawLine) in lines.enumerated() {
      let line = rawLine.last == 0x0D ? rawLine.dropLast() : rawLine
      if line.starts(with: "#version".utf8) { continue }
      let parts = line.split(separator: 0x20, omittingEmptySubsequences: false)
      guard parts.count == 2 else {
        throw TokenizerError.malformedMerges(
          path: url.path, line: index + 1, text: String(decoding: line, as: UTF8.self))
      }
      merges.append((String(decoding: parts[0], as: UTF8.self), String(decoding: parts[1], as: UTF8.self)))
    }
    return merges
  }

  /// Largest tokenizer file read (CLIP's vocab.json is 1.6 MB).
  static let maximumFileBytes = 256 << 20

  static func readFile(_ url: URL) throws -> Data {
    guard FileManager.default.fileExists(atPath: url.path) else {
      throw TokenizerError.missingFile(path: url.path)
    }
    let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue ?? 0
    guard size <= maximumFileBytes else {
      throw TokenizerError.unreadableFile(
        path: url.path, reason: "\(size) bytes, more than the \(maximumFileBytes >> 20) MiB a tokenizer file may have")
    }
    do { return try Data(contentsOf: url) } catch {
      throw TokenizerError.unreadableFile(path: url.path, reason: "\(error)")
    }
  }
}
