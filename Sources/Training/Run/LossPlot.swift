import Foundation

/// A text chart of a training run's `loss.jsonl` (`ipadapter train --plot`): the loss per step
/// smoothed by an exponential moving average (0.98, as the progress line), one column per span
/// of steps.
public enum LossPlot {
  /// The steps and losses of a loss log (lines without a finite loss are skipped).
  public static func read(logFile: URL) throws -> [(step: Int, loss: Double)] {
    guard let text = try? String(contentsOf: logFile, encoding: .utf8) else {
      throw TrainingError.malformedData(path: logFile.path, reason: "no loss log (train with --output pointing here first)")
    }
    return text.split(separator: "\n").compactMap { line in
      guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
        let step = object["step"] as? Int, let loss = object["loss"] as? Double, loss.isFinite
      else { return nil }
      return (step, loss)
    }
  }

  /// The chart, `width` columns by `height` rows, with the loss axis on the left.
  public static func render(logFile: URL, width: Int = 60, height: Int = 12) throws -> String {
    let points = try read(logFile: logFile)
    guard !points.isEmpty else { throw TrainingError.malformedData(path: logFile.path, reason: "the log has no losses yet") }
    var smoothed: [Double] = []
    for p in points { smoothed.append(smoothed.last.map { 0.98 * $0 + 0.02 * p.loss } ?? p.loss) }
    let columns = min(width, smoothed.count)
    let values = (0..<columns).map { c -> Double in
      let lo = c * smoothed.count / columns, hi = max(lo + 1, (c + 1) * smoothed.count / columns)
      return smoothed[lo..<hi].reduce(0, +) / Double(hi - lo)
    }
    let (low, high) = (values.min()!, values.max()!)
    let span = high > low ? high - low : 1
    var rows = Array(repeating: Array(repeating: Character(" "), count: columns), count: height)
    for (c, v) in values.enumerated() {
      let r = Int(((high - v) / span * Double(height - 1)).rounded())
      rows[r][c] = "•"
    }
    var out = "loss (moving average) over steps \(points.first!.step)–\(points.last!.step)\n"
    for (r, row) in rows.enumerated() {
      let label = r == 0 ? String(format: "%8.4f", high) : r == height - 1 ? String(format: "%8.4f", low) : String(repeating: " ", count: 8)
      out += "\(label) │\(String(row))\n"
    }
    out += String(repeating: " ", count: 9) + "└" + String(repeating: "─", count: columns) + "\n"
    out += String(format: "last loss %.4f, moving average %.4f", points.last!.loss, smoothed.last!)
    return out
  }
}
