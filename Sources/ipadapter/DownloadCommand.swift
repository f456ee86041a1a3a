import ArgumentParser
import Foundation
import Hub

/// `ipadapter download REF…`: fetches hub repos or files into the Hugging Face cache and prints their local paths.
struct DownloadCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "download",
    abstract: "Download models from the Hugging Face hub into the shared cache and print their local paths.",
    discussion: """
      A REF is org/name (a diffusers pipeline: model_index.json, configs, tokenizer files and one set of \
      weights per component), org/name/path/in/repo.ext (one file), either with an optional @revision \
      (branch, tag or commit), or a local path (printed as is: an existing path, or one starting with /, ./, \
      ../ or ~, is always local). The cache is huggingface_hub's (HF_HUB_CACHE, else HF_HOME/hub, else \
      ~/.cache/huggingface/hub), so models already downloaded by diffusers are reused. Environment: \
      HF_ENDPOINT, HF_TOKEN (or the file HF_HOME/token) for gated repos, HF_HUB_OFFLINE=1 for no network.
      """)

  @Argument(help: "Hub references or local paths: org/name[@rev], org/name/path/file[@rev].")
  var references: [String]

  @Option(help: "The cache folder (default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub).")
  var cacheDir: String?

  @Flag(help: "Use the cache only, like HF_HUB_OFFLINE=1.")
  var offline = false

  @Flag(help: "Re-check the digest (sha256 / git sha1) of files already in the cache; re-fetch mismatches.")
  var verify = false

  @Flag(help: "Do not show the progress bar.")
  var quiet = false

  func run() throws {
    do {
      try execute()
    } catch let error as ExitCode {
      throw error
    } catch {
      FileHandle.standardError.write(Data("error: \(CLIError.oneLine(error))\n".utf8))
      throw ExitCode(1)
    }
  }

  func execute() throws {
    guard !references.isEmpty else { throw CLIError.invalid("REF", "give at least one hub reference") }
    let parsed = try references.map { try HubReference.parse($0) }
    var configuration = HubConfiguration.fromEnvironment()
    if let cacheDir {
      configuration.cacheDirectory = URL(fileURLWithPath: (cacheDir as NSString).expandingTildeInPath, isDirectory: true)
    }
    if offline { configuration.offline = true }
    let client = HubClient(configuration: configuration)
    let bar = quiet ? nil : DownloadProgressBar()
    let verify = verify
    let progress: HubProgressHandler? = bar.map { bar in { @Sendable p in bar.update(p) } }
    for reference in parsed {
      let url: URL = try HubClient.runBlocking {
        try await client.resolve(reference, verify: verify, progress: progress)
      }
      bar?.finish()
      print(url.path)
    }
  }
}

/// A one-line download progress bar on standard error: file n/N, name, bytes, speed.
final class DownloadProgressBar: @unchecked Sendable {
  private let lock = NSLock()
  private let width = 24
  private let isTerminal = isatty(2) != 0
  private var current: String?
  private var started = Date()
  private var lastDraw = Date.distantPast
  private var lastLine: String?

  func update(_ p: HubProgress) {
    lock.withLock {
      let key = "\(p.repoID)/\(p.file)"
      if key != current {
        if current != nil { endLine() }
        current = key
        started = Date()
      }
      let done = p.totalBytes.map { p.completedBytes >= $0 } ?? false
      let now = Date()
      guard done || now.timeIntervalSince(lastDraw) >= 0.1 else { return }
      lastDraw = now
      let fraction = p.totalBytes.map { $0 > 0 ? Double(p.completedBytes) / Double($0) : 1 } ?? 0
      let filled = Int(Double(width) * min(1, fraction))
      let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
      let seconds = max(now.timeIntervalSince(started), 1e-3)
      let speed = HubCache.formatSize(Int64(Double(p.completedBytes) / seconds))
      let total = p.totalBytes.map { "/" + HubCache.formatSize($0) } ?? ""
      let line =
        "[\(p.fileIndex)/\(p.fileCount)] \(p.file) \(bar) \(HubCache.formatSize(p.completedBytes))\(total) \(speed)B/s"
      if isTerminal {
        FileHandle.standardError.write(Data("\r\u{1B}[2K\(line)".utf8))
      }
      lastLine = line
    }
  }

  /// Ends the current file's line (called between references).
  func finish() {
    lock.withLock {
      if current != nil { endLine() }
      current = nil
    }
  }

  private func endLine() {
    if isTerminal {
      FileHandle.standardError.write(Data("\n".utf8))
    } else if let lastLine {
      FileHandle.standardError.write(Data("\(lastLine)\n".utf8))
    }
    lastLine = nil
  }
}
