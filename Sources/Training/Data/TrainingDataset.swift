import Foundation
import Imaging
import TensorCore

/// Errors of the training data and of a training run's files, each naming the file (and entry)
/// and what is wrong.
public enum TrainingError: Error, Equatable, CustomStringConvertible {
  case malformedData(path: String, reason: String)
  case badImage(path: String, entry: Int, reason: String)
  case invalidArgument(name: String, reason: String)
  case badCheckpoint(path: String, reason: String)

  public var description: String {
    switch self {
    case .malformedData(let path, let reason): "\(path): \(reason)"
    case .badImage(let path, let entry, let reason): "\(path) (entry \(entry)): \(reason)"
    case .invalidArgument(let name, let reason): "\(name): \(reason)"
    case .badCheckpoint(let path, let reason): "\(path): \(reason)"
    }
  }
}

/// A training data set in IP-Adapter's format: a JSON list of `{"image_file": …, "text": …}`
/// objects and the folder the image files are relative to.
///
/// matches: `MyDataset` of tencent-ailab/IP-Adapter `tutorial_train.py`: the diffusion target is
/// the image resized (shortest side to `resolution`, bilinear, as torchvision's `Resize` on a PIL
/// image) and centre-cropped to `resolution`², scaled to [−1, 1] (`Normalize([0.5], [0.5])`); the
/// image prompt is the same file through the CLIP image processor. Image paths must stay inside
/// the image root (no absolute paths, no `..`).
public struct TrainingDataset: Sendable {
  public struct Entry: Sendable, Equatable {
    public var imageFile: String
    public var text: String
  }

  public let path: String
  public let imageRoot: URL
  public let entries: [Entry]
  /// Largest data file read (a list of a million captions fits easily).
  public static let maxFileBytes = 1 << 30

  public init(jsonFile: URL, imageRoot: URL) throws {
    path = jsonFile.path
    self.imageRoot = imageRoot
    let attributes = try? FileManager.default.attributesOfItem(atPath: path)
    guard let size = attributes?[.size] as? Int else { throw TrainingError.malformedData(path: path, reason: "cannot read the file") }
    guard size <= Self.maxFileBytes else {
      throw TrainingError.malformedData(path: path, reason: "\(size) bytes is larger than the \(Self.maxFileBytes)-byte limit")
    }
    guard let data = FileManager.default.contents(atPath: path) else {
      throw TrainingError.malformedData(path: path, reason: "cannot read the file")
    }
    let json: Any
    do { json = try JSONSerialization.jsonObject(with: data) } catch {
      throw TrainingError.malformedData(path: path, reason: "not valid JSON (\(error.localizedDescription))")
    }
    guard let list = json as? [Any] else {
      throw TrainingError.malformedData(path: path, reason: "expected a JSON list of {\"image_file\": …, \"text\": …} objects")
    }
    guard !list.isEmpty else { throw TrainingError.malformedData(path: path, reason: "the list is empty") }
    let path = self.path
    entries = try list.enumerated().map { i, item in
      guard let object = item as? [String: Any] else {
        throw TrainingError.malformedData(path: path, reason: "entry \(i) is not an object")
      }
      guard let file = object["image_file"] as? String, !file.isEmpty else {
        throw TrainingError.malformedData(path: path, reason: "entry \(i) has no \"image_file\" string")
      }
      guard let text = object["text"] as? String else {
        throw TrainingError.malformedData(path: path, reason: "entry \(i) has no \"text\" string")
      }
      guard !file.hasPrefix("/"), !file.split(separator: "/").contains(".."), !file.contains("\0") else {
        throw TrainingError.malformedData(path: path, reason: "entry \(i): image_file \"\(file)\" must be a path inside the image root")
      }
      return Entry(imageFile: file, text: text)
    }
  }

  public var count: Int { entries.count }

  /// The image file of entry `i`.
  public func imagePath(_ i: Int) -> String { imageRoot.appendingPathComponent(entries[i].imageFile).path }

  /// Reads entry `i`'s image (RGB).
  public func image(_ i: Int, limits: ImageLimits = .default) throws -> Image {
    do {
      return try Image(contentsOfFile: imagePath(i), limits: limits).convertedToRGB()
    } catch {
      throw TrainingError.badImage(path: imagePath(i), entry: i, reason: "\(error)")
    }
  }

  /// The diffusion target of an image: `[resolution, resolution, 3]` in [−1, 1].
  ///
  /// matches: torchvision `Compose([Resize(r, BILINEAR), CenterCrop(r), ToTensor(), Normalize([0.5], [0.5])])`
  /// on a PIL image: the shorter side becomes `r` and the longer `int(r · long / short)`;
  /// the crop's offsets are `int(round((side − r) / 2))` (ties to even).
  public static func targetPixels(_ image: Image, resolution r: Int) throws -> Tensor {
    try resizedCrop(image, resolution: r) { Int((Double($0) / 2).rounded(.toNearestOrEven)) }.pixels
  }

  /// The SDXL diffusion target and its micro-conditioning: `[resolution, resolution, 3]` in
  /// [−1, 1] and `add_time_ids` = original (height, width) + crop (top, left) + target (r, r).
  ///
  /// matches: `MyDataset` of tencent-ailab/IP-Adapter `tutorial_train_sdxl.py` (`center_crop=True`):
  /// `Resize(r, BILINEAR)`, `ToTensor`, `Normalize([0.5], [0.5])`, then a crop at
  /// `top = Δh // 2`, `left = Δw // 2` (floor, where `CenterCrop` rounds).
  public static func targetPixelsSDXL(_ image: Image, resolution r: Int) throws -> (pixels: Tensor, timeIds: [Float]) {
    let (pixels, top, left) = try resizedCrop(image, resolution: r) { $0 / 2 }
    return (pixels, [image.height, image.width, top, left, r, r].map(Float.init))
  }

  /// Resizes the shorter side to `r` and crops `r`² at the offsets `offset(excess)` gives.
  static func resizedCrop(_ image: Image, resolution r: Int, offset: (Int) -> Int) throws -> (pixels: Tensor, top: Int, left: Int) {
    guard r > 0, image.width > 0, image.height > 0 else {
      throw TrainingError.invalidArgument(name: "resolution", reason: "\(r) for a \(image.width)×\(image.height) image")
    }
    let (w, h) = (image.width, image.height)
    let (outW, outH) = w <= h ? (r, Int(Double(r) * Double(h) / Double(w))) : (Int(Double(r) * Double(w) / Double(h)), r)
    let resized = image.resized(width: outW, height: outH, filter: .bilinear)
    let top = offset(outH - r)
    let left = offset(outW - r)
    let crop = resized.cropped(left: left, top: top, right: left + r, bottom: top + r).convertedToRGB()
    var out = Tensor(uninitializedShape: [r, r, 3])
    out.withUnsafeMutableFloats { d in
      for (i, v) in crop.pixels.enumerated() { d[i] = (Float(v) / 255 - 0.5) / 0.5 }
    }
    return (out, top, left)
  }
}
