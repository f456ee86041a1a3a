import ArgumentParser
import Foundation
import Synchronization
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

/// A one-line download progress bar on standard error: file n/N, name, bytes, speed. Called from
/// the download tasks; its state is behind a mutex.
final class DownloadProgressBar: Sendable {
  private struct State {
    var current: String?
    var started = Date()
    var lastDraw = Date.distantPast
    var lastLine: String?
  }

  private let state = Mutex(State())
  private let width = 24
  private let isTerminal = isatty(2) != 0

  func update(_ p: HubProgress) {
    state.withLock { st in
      let key = "\(p.repoID)/\(p.file)"
      if key != st.current {
        if st.current != nil { endLine(&st) }
        st.current = key
        st.started = Date()
      }
      let done = p.totalBytes.map { p.completedBytes >= $0 } ?? false
      let now = Date()
      guard done || now.timeIntervalSince(st.lastDraw) >= 0.1 else { return }
      st.lastDraw = now
      let fraction = p.totalBytes.map { $0 > 0 ? Double(p.completedBytes) / Double($0) : 1 } ?? 0
      let filled = Int(Double(width) * min(1, fraction))
      let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
      let seconds = max(now.timeIntervalSince(st.started), 1e-3)
      let speed = HubCache.formatSize(Int64(Double(p.completedBytes) / seconds))
      let total = p.totalBytes.map { "/" + HubCache.formatSize($0) } ?? ""
      let line =
        "[\(p.fileIndex)/\(p.fileCount)] \(p.file) \(bar) \(HubCache.formatSize(p.completedBytes))\(total) \(speed)B/s"
      if isTerminal {
        FileHandle.standardError.write(Data("\r\u{1B}[2K\(line)".utf8))
      }
      st.lastLine = line
    }
  }

  /// Ends the current file's line (called between references).
  func finish() {
    state.withLock { st in
      if st.current != nil { endLine(&st) }
      st.current = nil
    }
  }

  private func endLine(_ st: inout State) {
    if isTerminal {
      FileHandle.standardError.write(Data("\n".utf8))
    } else if let lastLine = st.lastLine {
      FileHandle.standardError.write(Data("\(lastLine)\n".utf8))
    }
    st.lastLine = nil
  }
}
