import ArgumentParser
import Foundation
import Hub

/// `ipadapter models`: the repos in the Hugging Face cache, their revisions and sizes (like `hf cache ls`).
struct ModelsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "models",
    abstract: "List the models in the Hugging Face hub cache (shared with diffusers and transformers).")

  @Option(help: "The cache folder (default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub).")
  var cacheDir: String?

  @Flag(help: "Also list each revision (commit, refs, size) and its files.")
  var files = false

  func run() throws {
    let root =
      cacheDir.map { URL(fileURLWithPath: ($0 as NSString).expandingTildeInPath, isDirectory: true) }
      ?? HubConfiguration.fromEnvironment().cacheDirectory
    let repos = HubCache(root: root).listCachedRepos()
    if repos.isEmpty {
      print("No models in \(root.path)")
      return
    }
    var rows = [["REPO ID", "SIZE", "FILES", "REFS", "LOCAL PATH"]]
    for repo in repos {
      let refs = repo.revisions.flatMap(\.refs).sorted().joined(separator: ", ")
      rows.append([
        repo.repoID, HubCache.formatSize(repo.sizeOnDisk), String(repo.blobCount), refs.isEmpty ? "-" : refs,
        repo.path,
      ])
    }
    print(Self.table(rows))
    if files {
      for repo in repos {
        print("\n\(repo.repoID)")
        for revision in repo.revisions {
          let refs = revision.refs.isEmpty ? "" : " (\(revision.refs.joined(separator: ", ")))"
          print("  \(revision.commit)\(refs)  \(HubCache.formatSize(revision.sizeOnDisk))")
          for file in revision.files {
            print("    \(file.path)  \(HubCache.formatSize(file.size))")
          }
        }
      }
    }
    let total = repos.map(\.sizeOnDisk).reduce(0, +)
    print("\n\(repos.count) repo(s), \(HubCache.formatSize(total)) on disk in \(root.path)")
  }

  /// Left-aligned columns separated by two spaces.
  static func table(_ rows: [[String]]) -> String {
    let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max() ?? 0 }
    return rows.map { row in
      row.enumerated().map { c, cell in
        c == row.count - 1 ? cell : cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
      }.joined(separator: "  ")
    }.joined(separator: "\n")
  }
}
