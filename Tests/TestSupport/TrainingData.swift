import Foundation
import Imaging

/// A tiny training data set in IP-Adapter's format, written to a temporary folder: four 80×64
/// PNGs (a red and a green square, a blue and a yellow circle on grey), `train.json` captions.
public enum TrainingData {
  /// Writes the images and `train.json` (or `entries` instead of the four captions); returns the folder.
  public static func make(_ entries: [[String: String]]? = nil) throws -> URL {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("train-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let shapes: [(String, String, [UInt8])] = [
      ("red", "square", [220, 30, 30]), ("blue", "circle", [30, 60, 220]), ("green", "square", [30, 200, 60]),
      ("yellow", "circle", [230, 210, 40]),
    ]
    var items: [[String: String]] = []
    for (i, (colour, shape, rgb)) in shapes.enumerated() {
      var pixels = [UInt8](repeating: 128, count: 80 * 64 * 3)
      for y in 12..<52 {
        for x in 20..<60 {
          let (dx, dy) = (Double(x) - 39.5, Double(y) - 31.5)
          guard shape == "square" || dx * dx + dy * dy <= 400 else { continue }
          for c in 0..<3 { pixels[(y * 80 + x) * 3 + c] = rgb[c] }
        }
      }
      try Image(width: 80, height: 64, channels: 3, pixels: pixels).writePNG(to: folder.appendingPathComponent("\(i).png").path)
      items.append(["image_file": "\(i).png", "text": "a \(colour) \(shape)"])
    }
    let json = try JSONSerialization.data(withJSONObject: entries ?? items)
    try json.write(to: folder.appendingPathComponent("train.json"))
    return folder
  }

}

/// Runs long synchronous work (a training loop, a child process) on a thread of its own, so that a
/// test does not hold one of Swift concurrency's cooperative threads — on a 2-core machine there
/// are two, and the loopback servers of the hub tests run on them.
public enum OffPool {
  public static func run<T>(_ body: @escaping () throws -> T) async throws -> T {
    let box = UncheckedBox(body)
    let result: UncheckedBox<T> = try await withCheckedThrowingContinuation { continuation in
      let thread = Thread {
        do { continuation.resume(returning: UncheckedBox(try box.value())) } catch { continuation.resume(throwing: error) }
      }
      thread.stackSize = 16 << 20
      thread.start()
    }
    return result.value
  }
}

/// A value handed across threads by `OffPool` (each side uses it alone, one after the other).
struct UncheckedBox<V>: @unchecked Sendable {
  let value: V
  init(_ value: V) { self.value = value }
}
