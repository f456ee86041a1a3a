import ArgumentParser

/// `ipadapter bench …`: the project's benchmarks (release build).
struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Benchmarks: kernels against the machine's peak, and real-size models.",
    subcommands: [BenchOpsCommand.self, BenchModelsCommand.self, BenchPrecisionCommand.self, BenchFaceCommand.self])
}
