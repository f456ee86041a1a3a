import Foundation
import TestSupport

/// Runs the built `ipadapter` executable (it sits next to the test runner).
enum CLI {
  static var executable: URL {
    URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
      .appendingPathComponent("ipadapter")
  }

  struct Result {
    var status: Int32
    var stdout: String
    var stderr: String
  }

  /// Runs the executable (or `program`, e.g. a shell wrapping it) with `arguments`.
  static func run(_ arguments: [String], program: String? = nil) throws -> Result {
    let p = Process()
    p.executableURL = program.map { URL(fileURLWithPath: $0) } ?? executable
    p.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
  }

  static func temporaryPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID().uuidString)-\(name)").path
  }

  static let model = Fixtures.url("tiny-sd15").path
  static let adapters = Fixtures.url("tiny-ip-adapter/models").path
  static let reference = Fixtures.url("images/reference.png").path
}
