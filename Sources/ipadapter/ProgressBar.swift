import Foundation
import Pipelines

/// A one-line progress bar on standard error: steps, seconds per step and time left.
final class ProgressBar: Sendable {
  private let width = 30
  private let isTerminal = isatty(2) != 0

  func update(_ p: StepProgress) {
    let filled = p.total > 0 ? width * p.step / p.total : width
    let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
    let line = String(
      format: "%@ %d/%d  %.2f s/step  ETA %@", bar, p.step, p.total, p.secondsPerStep, Self.clock(p.estimatedRemaining))
    if isTerminal {
      FileHandle.standardError.write(Data("\r\u{1B}[2K\(line)".utf8))
    } else if p.step == p.total || p.step == 1 || p.step % 10 == 0 {
      FileHandle.standardError.write(Data("\(line)\n".utf8))
    }
  }

  func finish() {
    if isTerminal { FileHandle.standardError.write(Data("\n".utf8)) }
  }

  static func clock(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    return String(format: "%d:%02d", s / 60, s % 60)
  }
}
