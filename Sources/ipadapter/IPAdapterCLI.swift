import ArgumentParser

/// The `ipadapter` command-line tool.
@main
struct IPAdapterCLI: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ipadapter",
    abstract: "Stable Diffusion with image prompts (IP-Adapter) on the CPU.",
    subcommands: [GenerateCommand.self, EmbedCommand.self, DownloadCommand.self, ModelsCommand.self, BenchCommand.self])
}
