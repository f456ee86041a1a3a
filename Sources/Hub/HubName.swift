import Foundation

/// The rules every name that ends up in a cache path obeys, whoever supplied it (the user, the hub's headers, its file
/// listing, `model_index.json` or a file already in the cache). ``HubCache`` checks them in every path it builds, the
/// wire format (``HubWireFormat``) checks them where it reads a server's answer (so that a hostile or broken hub is
/// reported as such), and ``HubReference`` where it parses the user's text.
///
/// - `repoID`: `org/name`, each part as huggingface_hub's `validate_repo_id` allows (see ``HubReference``).
/// - `commit`: exactly 40 lowercase hex digits (huggingface_hub's `REGEX_COMMIT_HASH`, `^[0-9a-f]{40}$`).
/// - `file`: a `/`-separated path relative to the repo root: not empty, not absolute, no empty, `.` or `..` component,
///   no backslash, no NUL or other control character (C0, DEL, C1), no component longer than 255 UTF-8 bytes.
/// - `revision`: a branch, tag or commit written under `refs/`: the `file` rules, no `..` anywhere (as git), no
///   whitespace and no `@`.
/// - `etag`: the blob's file name: one component by the `file` rules (so no `/`), at most 200 UTF-8 bytes (room for
///   `.incomplete` and `.lock`), not ending in `.incomplete`.
/// - `component`: a pipeline component folder named by `model_index.json`: one component by the `file` rules.
///
/// matches: what huggingface_hub 2.4.0 guarantees with `_get_pointer_path` (a pointer stays inside `snapshots/`) and
/// `REGEX_COMMIT_HASH`, made stricter: huggingface_hub checks a pointer's path after joining and accepts whatever
/// commit id a server sends; here every piece is checked before it is joined, and a snapshot path must stay inside
/// its own `snapshots/<commit>` folder. Limitations: names the hub itself allows but these rules refuse (a file
/// name with a backslash or a control character, a branch with whitespace) cannot be downloaded.
public enum HubName {
  /// What a name is used as.
  public enum Kind: String, Sendable {
    case repoID = "repo id"
    case commit = "commit id"
    case revision
    case file = "file path"
    case etag = "etag"
    case component = "pipeline component name"
  }

  /// Why `value` cannot be used as a `kind`, or nil when it can.
  public static func problem(_ value: String, as kind: Kind) -> String? {
    switch kind {
    case .repoID:
      let parts = value.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
      guard parts.count == 2 else { return "a repo id is org/name" }
      return parts.lazy.compactMap { HubReference.repoPartProblem($0) }.first
    case .commit:
      return isCommitHash(value) ? nil : "a commit id is 40 lowercase hexadecimal digits"
    case .file:
      return pathProblem(value)
    case .revision:
      if let problem = pathProblem(value) { return problem }
      let bytes = Array(value.utf8)
      if bytes.indices.dropLast().contains(where: { bytes[$0] == 0x2E && bytes[$0 + 1] == 0x2E }) {
        return "it contains '..'"
      }
      if value.unicodeScalars.contains(where: { $0.properties.isWhitespace }) { return "it contains whitespace" }
      if value.contains("@") { return "it contains '@'" }
      return nil
    case .etag:
      if value.utf8.contains(UInt8(ascii: "/")) { return "it contains '/'" }
      if let problem = pathProblem(value) { return problem }
      if value.utf8.count > 200 { return "it is longer than 200 bytes" }
      if value.hasSuffix(".incomplete") { return "it ends in '.incomplete'" }
      return nil
    case .component:
      if value.utf8.contains(UInt8(ascii: "/")) { return "it contains '/'" }
      return pathProblem(value)
    }
  }

  /// Throws ``HubError/invalidReference(_:reason:)`` naming `value` when it cannot be used as a `kind`.
  static func check(_ value: String, as kind: Kind, reference: @autoclosure () -> String) throws(HubError) {
    if let problem = problem(value, as: kind) {
      throw HubError.invalidReference(
        reference(), reason: "\(kind.rawValue) '\(printable(value))' is unusable: \(problem)")
    }
  }

  /// True for a full 40-hex-digit lowercase commit hash (huggingface_hub's `REGEX_COMMIT_HASH`).
  public static func isCommitHash(_ value: String) -> Bool {
    value.utf8.count == 40 && value.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
  }

  /// `value` with control characters escaped and cut to 200 characters, for error messages.
  public static func printable(_ value: String) -> String {
    var out = ""
    for scalar in value.unicodeScalars.prefix(200) {
      if isControl(scalar) || scalar == "\\" {
        let hex = String(scalar.value, radix: 16)
        out += scalar.value < 0x100 ? "\\x" + (hex.count == 1 ? "0" + hex : hex) : "\\u{\(hex)}"
      } else {
        out.unicodeScalars.append(scalar)
      }
    }
    return value.unicodeScalars.count > 200 ? out + "…" : out
  }

  static func isControl(_ scalar: Unicode.Scalar) -> Bool {
    scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
  }

  /// The `file` rules, on the UTF-8 bytes (what the file system sees), plus one rule that keeps
  /// every other reading consistent with them: each `/` must stand alone as a character. Swift's
  /// `String` works on grapheme clusters, in which `/` joins a following combining mark
  /// (`"../\u{301}x"` has no `/` character) or a preceding prepended mark; code that splits or
  /// compares paths by characters would then see other components than the file system does.
  static func pathProblem(_ value: String) -> String? {
    let bytes = Array(value.utf8)
    let slash = UInt8(ascii: "/")
    if bytes.isEmpty { return "it is empty" }
    if bytes.first == slash { return "it is absolute (starts with '/')" }
    if bytes.contains(UInt8(ascii: "\\")) { return "it contains a backslash" }
    if value.unicodeScalars.contains(where: isControl) { return "it contains a control character" }
    let components = bytes.split(separator: slash, omittingEmptySubsequences: false)
    for component in components {
      if component.isEmpty { return "it has an empty component ('//' or a trailing '/')" }
      if component.elementsEqual([0x2E]) || component.elementsEqual([0x2E, 0x2E]) {
        return "it has a '\(String(decoding: component, as: UTF8.self))' component"
      }
      if component.count > 255 { return "a component is longer than 255 bytes" }
    }
    let slashCharacters = value.reduce(0) { $0 + ($1 == "/" ? 1 : 0) }
    if slashCharacters != components.count - 1 {
      return "a '/' joins a neighbouring combining or prepended mark into one character"
    }
    return nil
  }
}
