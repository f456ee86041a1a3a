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
