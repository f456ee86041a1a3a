import Foundation

/// Where the hub is, where the cache is, the token and whether the network may be used.
///
/// matches: huggingface_hub 2.4.0 `constants.py` and `utils/_auth.py` environment handling —
/// `HF_ENDPOINT` (default `https://huggingface.co`, trailing `/` dropped); cache root `HF_HUB_CACHE`, else
/// `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, `HF_HOME` defaulting to `$XDG_CACHE_HOME/huggingface` or
/// `~/.cache/huggingface` (with `~` expanded); token `HF_TOKEN`, else `HUGGING_FACE_HUB_TOKEN`, else the file
/// `HF_TOKEN_PATH` (default `HF_HOME/token`), stripped of spaces and newlines; offline when `HF_HUB_OFFLINE` or
/// `TRANSFORMERS_OFFLINE` is 1/ON/YES/TRUE. Limitations: no OIDC or Colab tokens, no OAuth refresh,
/// `$VAR` inside the paths is not expanded.
public struct HubConfiguration: Sendable {
  /// The hub's base URL, without a trailing slash.
  public var endpoint: String
  /// The cache root (the folder holding `models--org--name`).
  public var cacheDirectory: URL
  /// A user access token, sent as `Authorization: Bearer` only to URLs with the endpoint's scheme, host and port
  /// (never to a CDN, another port or scheme of the same host, or after a redirect leaves that origin).
  public var token: String?
  /// No network at all: resolve from the cache or fail with ``HubError/offlineNotCached(_:missing:)``.
  public var offline: Bool
  /// Seconds to wait for a metadata (HEAD / API) answer (huggingface_hub: `HF_HUB_ETAG_TIMEOUT`, 10).
  public var metadataTimeout: TimeInterval = 10
  /// Seconds one metadata request (a HEAD, the file listing) may take in all, however steadily bytes trickle in
  /// (the idle ``metadataTimeout`` alone would let a server that sends a byte every few seconds hold it forever).
  /// huggingface_hub has no such deadline.
  public var metadataDeadline: TimeInterval = 30
  /// Seconds without received bytes before a download attempt is given up (`HF_HUB_DOWNLOAD_TIMEOUT`, 10).
  public var downloadTimeout: TimeInterval = 10
  /// The slowest download accepted, in bytes per second averaged over ``downloadRateWindow``: an attempt that
  /// receives less in any such window is abandoned as stalled (and resumed with `Range`; a stall counts toward
  /// ``maxAttempts`` even when it brought bytes). So one file takes at most about
  /// `maxAttempts × (size / downloadMinimumRate + downloadRateWindow)` seconds, however the server trickles.
  /// 16 KiB/s (131 kbit/s) by default; 0 turns the rule off. huggingface_hub has only the idle timeout.
  public var downloadMinimumRate: Double = 16 * 1024
  /// The window (seconds) over which ``downloadMinimumRate`` is averaged.
  public var downloadRateWindow: TimeInterval = 30
  /// The largest file listing (`/api/models/…/revision/…` JSON, or a cached `trees/<commit>.json`) read, in bytes;
  /// a larger one is a ``HubError/protocolViolation(_:detail:)``, cut off as soon as it passes the limit. 32 MiB
  /// (a listing costs about 200 bytes a file: some 150 000 files).
  public var maxListingBytes = 32 << 20
  /// The largest other body kept in memory (error answers, `model_index.json`), in bytes; larger is a
  /// ``HubError/protocolViolation(_:detail:)``, cut off as soon as it passes the limit. 1 MiB.
  public var maxMetadataBodyBytes = 1 << 20
  /// Attempts for one request on 5xx, 429 or a dropped connection (downloads resume with `Range`).
  public var maxAttempts: Int = 3
  /// Wait before the second attempt; doubled for each further one.
  public var retryBackoff: TimeInterval = 0.5
  /// Sent as `User-Agent`.
  public var userAgent = "ipadapter-swift-hub/1.0"
  /// Pipeline components a pipeline download leaves out (the engine never runs SD's safety
  /// checker, 1.2 GB in SD1.5).
  public var skippedComponents: Set<String> = ["safety_checker"]

  public init(endpoint: String, cacheDirectory: URL, token: String? = nil, offline: Bool = false) {
    var endpoint = endpoint
    while endpoint.hasSuffix("/") { endpoint.removeLast() }
    self.endpoint = endpoint
    self.cacheDirectory = cacheDirectory
    self.token = token
    self.offline = offline
  }

  /// The configuration the environment describes (the process's own by default).
  public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> Self {
    func value(_ key: String) -> String? { env[key].flatMap { $0.isEmpty ? nil : $0 } }
    let home = expandTilde(value("HOME") ?? NSHomeDirectory())
    let xdg = value("XDG_CACHE_HOME").map { expandTilde($0, home: home) } ?? home + "/.cache"
    let hfHome = value("HF_HOME").map { expandTilde($0, home: home) } ?? xdg + "/huggingface"
    let cache =
      (value("HF_HUB_CACHE") ?? value("HUGGINGFACE_HUB_CACHE")).map { expandTilde($0, home: home) }
      ?? hfHome + "/hub"
    var token = cleanToken(value("HF_TOKEN") ?? value("HUGGING_FACE_HUB_TOKEN"))
    if token == nil {
      let tokenPath = value("HF_TOKEN_PATH").map { expandTilde($0, home: home) } ?? hfHome + "/token"
      token = cleanToken(try? String(contentsOfFile: tokenPath, encoding: .utf8))
    }
    let offline = isTrue(env["HF_HUB_OFFLINE"]) || isTrue(env["TRANSFORMERS_OFFLINE"])
    return HubConfiguration(
      endpoint: value("HF_ENDPOINT") ?? "https://huggingface.co",
      cacheDirectory: URL(fileURLWithPath: cache, isDirectory: true), token: token, offline: offline)
  }

  static func isTrue(_ value: String?) -> Bool {
    guard let value else { return false }
    return ["1", "ON", "YES", "TRUE"].contains(value.uppercased())
  }

  static func cleanToken(_ token: String?) -> String? {
    guard let token else { return nil }
    let cleaned = token.replacingOccurrences(of: "\r", with: "").replacingOccurrences(of: "\n", with: "")
      .trimmingCharacters(in: .whitespaces)
    return cleaned.isEmpty ? nil : cleaned
  }

  /// `~` and `~/…` expanded against `home` (the shell's rule); anything else unchanged.
  public static func expandTilde(_ path: String, home: String = NSHomeDirectory()) -> String {
    if path == "~" { return home }
    if path.hasPrefix("~/") { return home + path.dropFirst() }
    return path
  }
}
