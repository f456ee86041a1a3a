import Foundation
import Hub

/// `hub`: everything the hub client parses from a server or from the cache (`HubWireFormat`),
/// then the cache paths built from what was parsed (`HubCache` checks every name again). The
/// first byte chooses (byte % 5); the rest is:
/// 0 a `/resolve/` HEAD answer as text: `HTTP/1.1 302` (or just the status) then `Name: value`
///   lines → `HubWireFormat.parseResolveHead` (+ `statusError` with the rest as body)
/// 1 the listing JSON of `/api/models/{repo}/revision/{commit}?blobs=true` → `parseFileList`
/// 2 a cached `trees/<commit>.json` → `decodeTree`
/// 3 `model_index.json` → `pipelineComponents` → `PipelineFiles.select`
/// 4 a `--model` reference → `HubReference.parse`, and the text checked as every `HubName` kind
enum HubTarget {
  static let repoID = "fuzz-org/fuzz-repo"
  static let commit = "0123456789abcdef0123456789abcdef01234567"
  static let requestURL = URL(string: "https://huggingface.co/fuzz-org/fuzz-repo/resolve/main/unet/config.json")!
  static let location = HubLocation(repoID: repoID, file: "unet/config.json", revision: "main")
  static let cacheRoot = URL(fileURLWithPath: "/nonexistent/fuzz-hub-cache", isDirectory: true)

  static func run(_ input: [UInt8]) throws {
    guard let selector = input.first else { return }
    let body = Data(input.dropFirst())
    let cache = HubCache(root: cacheRoot)
    switch selector % 5 {
    case 0:
      let (status, headers, rest) = parseHead(body)
      _ = HubWireFormat.statusError(status: status, headers: headers, body: rest, location: location, tokenSent: true)
      let answer = try HubWireFormat.parseResolveHead(
        status: status, headers: headers, requestURL: requestURL, location: location, tokenSent: false)
      switch answer {
      case .redirect(let url):
        check(HubWireFormat.sameOrigin(url, requestURL), "redirect to another origin")
      case .file(let metadata):
        // Every name the wire format returns has passed HubName's rules: the cache must accept it.
        check((try? cache.blobPath(repoID, etag: metadata.etag)) != nil, "parsed ETag refused by HubCache")
        check((try? cache.snapshotFolder(repoID, commit: metadata.commit)) != nil, "parsed commit refused")
        _ = HubWireFormat.sameOrigin(metadata.downloadURL, requestURL)
      case .missing(let commit):
        if let commit { check((try? cache.snapshotFolder(repoID, commit: commit)) != nil, "parsed commit refused") }
      }
    case 1:
      let entries = try HubWireFormat.parseFileList(body, location: location)
      use(entries, cache)
    case 2:
      if let entries = HubWireFormat.decodeTree(body) { use(entries, cache) }
    case 3:
      let components = try HubWireFormat.pipelineComponents(modelIndex: body, location: location).map(\.name)
      let files = ["model_index.json", "README.md"] + components.flatMap { [$0 + "/config.json", $0 + "/model.safetensors"] }
      let selected = PipelineFiles.select(files: files, components: components)
      for file in selected {
        check((try? cache.pointerPath(repoID, commit: commit, file: file)) != nil, "selected file refused by HubCache")
      }
    default:
      let text = String(decoding: body, as: UTF8.self)
      for kind in [HubName.Kind.repoID, .commit, .revision, .file, .etag, .component] {
        _ = HubName.problem(text, as: kind)
      }
      _ = HubName.printable(text)
      let reference = try HubReference.parse(text, fileExists: { _ in false })
      _ = reference.description
    }
  }

  /// Cache paths for every listed file, as a download would build them.
  static func use(_ entries: [RepoFileEntry], _ cache: HubCache) {
    for entry in entries.prefix(64) {
      // Listed paths have passed HubName's rules: the cache must accept them. (Listed blob ids and
      // LFS hashes are carried as they are; blob names come from the HEAD answer's etag.)
      check((try? cache.pointerPath(repoID, commit: commit, file: entry.path)) != nil, "listed path refused")
      _ = try? cache.blobPath(repoID, etag: entry.etag)
    }
    _ = PipelineFiles.select(files: entries.map(\.path), components: ["unet", "vae", "tokenizer", "text_encoder"])
  }

  /// `HTTP/1.1 302 Found` (or `302`) then `Name: value` lines (names lower-cased, as the transport
  /// gives them); an empty line ends the headers and the rest is the body.
  static func parseHead(_ data: Data) -> (Int, [String: String], Data) {
    let text = String(decoding: data, as: UTF8.self)
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
      $0.hasSuffix("\r") ? $0.dropLast() : $0
    }[...]
    var status = 200
    if let first = lines.first {
      let words = first.split(separator: " ")
      let code = first.hasPrefix("HTTP/") ? words.dropFirst().first : words.first
      status = code.flatMap { Int($0) } ?? 200
      lines = lines.dropFirst()
    }
    var headers: [String: String] = [:]
    while let line = lines.first {
      lines = lines.dropFirst()
      if line.isEmpty { break }
      guard let colon = line.firstIndex(of: ":") else { continue }
      let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
      headers[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return (status, headers, Data(lines.joined(separator: "\n").utf8))
  }
}
