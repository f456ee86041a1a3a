import ArgumentParser
import Foundation

/// The `ipadapter` command-line tool.
@main
struct IPAdapterCLI: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ipadapter",
    abstract: "Stable Diffusion with image prompts (IP-Adapter) on the CPU.",
    subcommands: [GenerateCommand.self, EmbedCommand.self, TrainCommand.self, FaceCommand.self, DownloadCommand.self, ModelsCommand.self, BenchCommand.self])

  /// Parses and runs the subcommand. Help is printed as ArgumentParser formats it; every error,
  /// an argument ArgumentParser refuses included, is one line `error: …` on standard error (the
  /// commands print their own and exit 1).
  static func main() async {
    do {
      var command = try parseAsRoot()
      if var asyncCommand = command as? AsyncParsableCommand {
        try await asyncCommand.run()
      } else {
        try command.run()
      }
    } catch {
      let code = exitCode(for: error)
      if code == .success {
        print(fullMessage(for: error))
        Foundation.exit(0)
      }
      let text = message(for: error)
      if !text.isEmpty {
        FileHandle.standardError.write(Data("error: \(CLIError.oneLine(ArgumentError(message: text)))\n".utf8))
      }
      Foundation.exit(code.rawValue)
    }
  }
}

/// An ArgumentParser message as an error, for `CLIError.oneLine`.
struct ArgumentError: Error, CustomStringConvertible {
  var message: String
  var description: String { message }
}
