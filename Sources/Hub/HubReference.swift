import Foundation

/// What a `--model` / `--ip-adapter` argument names: a local path, a whole hub repo, or one file in a hub repo.
///
/// Grammar (the rule the CLI documents):
/// - **Local** if a file or folder exists at that path, or the text starts with `/`, `./`, `../`, `~` or is `.`/`..`
///   (an existing path always wins over a hub reference, so a folder called `org/name` in the working directory is used).
/// - Otherwise **hub**: `org/name` is a repo, `org/name/path/in/repo.ext` is one file of it, and either may end in
///   `@revision` (a branch, tag or commit hash: `org/name@fp16`, `org/name/sub/file.bin@2f1c…`).
///   `org` and `name` are hub repo ids: letters, digits, `-`, `_`, `.`, at most 96 characters, no `--` or `..`,
///   not starting or ending with `-` or `.` (huggingface_hub's `validate_repo_id`). A revision may contain `/`
///   (`refs/pr/1`) but not `..` or whitespace; the file path and the revision obey ``HubName``'s rules (no `.`, `..`
///   or empty component, no backslash or control character).
///
/// matches: huggingface_hub 2.4.0 `validate_repo_id` for the repo id part. Limitations: model repos only
/// (no `datasets/` or `spaces/` prefix), no `hf://` URLs.
public enum HubReference: Equatable, Sendable, CustomStringConvertible {
  /// A path on this machine.
  case local(String)
  /// A whole repo (a diffusers pipeline, for instance); `revision` is nil for the default branch.
  case repo(repoID: String, revision: String?)
  /// One file of a repo, `path` relative to the repo root with `/` separators.
  case file(repoID: String, path: String, revision: String?)

  /// Parses `text`; `fileExists` decides the "an existing path wins" rule (tests pass their own).
  public static func parse(
    _ text: String, fileExists: (String) -> Bool = { FileManager.default.fileExists(atPath: $0) }
  ) throws(HubError) -> HubReference {
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    guard !trimmed.isEmpty else { throw HubError.invalidReference(text, reason: "it is empty") }
    if fileExists(trimmed) || looksLocal(trimmed) { return .local(trimmed) }

    var body = Substring(trimmed)
    var revision: String?
    if let at = body.lastIndex(of: "@") {
      let rev = String(body[body.index(after: at)...])
      guard !rev.isEmpty else { throw HubError.invalidReference(text, reason: "nothing follows '@'") }
      guard isValidRevision(rev) else {
        throw HubError.invalidReference(text, reason: "'\(rev)' is not a valid revision")
      }
      revision = rev
      body = body[..<at]
    }
    let parts = body.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
    guard parts.count >= 2 else {
      throw HubError.invalidReference(
        text, reason: "a hub reference is org/name or org/name/path/to/file (and no such local path exists)")
    }
    for part in parts[0..<2] {
      if let problem = repoPartProblem(part) { throw HubError.invalidReference(text, reason: problem) }
    }
    let repoID = parts[0] + "/" + parts[1]
    if parts.count == 2 { return .repo(repoID: repoID, revision: revision) }
    let path = parts[2...].joined(separator: "/")
    if let problem = HubName.problem(path, as: .file) {
      throw HubError.invalidReference(text, reason: "the file path in the repo is unusable: \(problem)")
    }
    return .file(repoID: repoID, path: path, revision: revision)
  }

  /// Whether this names something on the hub rather than a local path.
  public var isRemote: Bool {
    if case .local = self { return false }
    return true
  }

  /// The path on this machine (`~` expanded) of a `.local` reference; nil for hub references.
  public var localURL: URL? {
    guard case .local(let path) = self else { return nil }
    return URL(fileURLWithPath: HubConfiguration.expandTilde(path))
  }

  /// True when the text can only be a local path (see the grammar above).
  public static func looksLocal(_ text: String) -> Bool {
    text == "." || text == ".." || text.hasPrefix("/") || text.hasPrefix("./") || text.hasPrefix("../")
      || text.hasPrefix("~")
  }

  public var description: String {
    switch self {
    case .local(let path): path
    case .repo(let id, let rev): id + (rev.map { "@" + $0 } ?? "")
    case .file(let id, let path, let rev): id + "/" + path + (rev.map { "@" + $0 } ?? "")
    }
  }

  static func repoPartProblem(_ part: String) -> String? {
    if part.isEmpty { return "the repo id has an empty organisation or name" }
    if part.count > 96 { return "'\(part)' is longer than 96 characters" }
    let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    if !part.allSatisfy({ allowed.contains($0) }) {
      return "'\(part)' may only contain letters, digits, '-', '_' and '.'"
    }
    if part.contains("--") || part.contains("..") { return "'\(part)' contains '--' or '..'" }
    if part.hasPrefix("-") || part.hasPrefix(".") || part.hasSuffix("-") || part.hasSuffix(".") {
      return "'\(part)' starts or ends with '-' or '.'"
    }
    return nil
  }

  static func isValidRevision(_ rev: String) -> Bool { HubName.problem(rev, as: .revision) == nil }
}
