import ArgumentParser
import FaceAnalysis
import Foundation
import Hub
import Imaging

/// `ipadapter face`: detect faces, print them, write embeddings and aligned crops.
struct FaceCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "face",
    abstract: "Detect faces (insightface SCRFD), align them and compute ArcFace embeddings.",
    discussion: """
      Prints every face found: box, detection score and the five keypoints. --output writes \
      safetensors with 'normed_embedding' (what the FaceID adapters read: pass the file to \
      'generate --face-embedding'), 'embedding' (raw, for InstantID), 'bbox', 'kps', 'det_score' \
      and 'image_index'. Exit status: 0 when every image has a face, 2 when an image has none \
      (nothing is written), 1 on errors.
      """)

  @Argument(help: "Photos to analyse (PNG or JPEG).")
  var images: [String]

  @Option(help: "insightface model pack: a folder holding the .onnx files (buffalo_l, antelopev2, …) or a hub repo 'org/name[/sub]'. Default: ~/.insightface/models/buffalo_l.")
  var faceModels: String?

  @Option(help: "Detection size (insightface det_size, square; a multiple of 32).")
  var detSize = 640

  @Option(help: "Which faces: all (insightface's order, by score), first (highest score, as IP-Adapter's examples), largest (InstantID's choice).")
  var select: FaceSelection = .all

  @Option(help: "Write the faces here (.safetensors).")
  var output: String?

  @Option(help: "Also write the normed embeddings as NumPy .npy [faces, 512].")
  var npy: String?

  @Option(help: "Write each face's aligned crop (PNG) into this folder.")
  var saveCrops: String?

  @Option(help: "Size of the saved crops: 224 for IP-Adapter FaceID-Plus, 112 is the ArcFace input; multiples of 112 or 128.")
  var cropSize = 224

  @OptionGroup(title: "Limits")
  var limits: LimitOptions

  func validate() throws {
    guard detSize >= 32, detSize <= 4096, detSize % 32 == 0 else {
      throw CLIError.invalid("--det-size", "\(detSize) must be a multiple of 32 between 32 and 4096")
    }
    guard cropSize > 0, cropSize <= 1024, cropSize % 112 == 0 || cropSize % 128 == 0 else {
      throw CLIError.invalid("--crop-size", "\(cropSize) must be a multiple of 112 or 128, at most 1024")
    }
  }

  func run() throws {
    var missing = false
    do {
      for f in images where !FileManager.default.fileExists(atPath: f) { throw CLIError.invalid("IMAGE", "file not found: \(f)") }
      if let output { try OutputPath.checkWritable(output, option: "--output") }
      if let npy { try OutputPath.checkWritable(npy, option: "--npy") }
      if let saveCrops {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: saveCrops, isDirectory: &isDir), isDir.boolValue else {
          throw CLIError.invalid("--save-crops", "\(saveCrops) is not an existing folder")
        }
      }
      let analyzer = try FaceModelsOption.analyzer(faceModels)
      let options = FaceAnalysisOptions(detectionSize: detSize, selection: select)
      var all: [(imageIndex: Int, face: DetectedFace)] = []
      var crops: [(String, Image)] = []
      for (index, path) in images.enumerated() {
        let image = try Image(contentsOfFile: path, limits: limits.limits)
        let faces = try analyzer.analyze(image, options: options)
        print("\(path): \(faces.count) face\(faces.count == 1 ? "" : "s") (\(image.width)×\(image.height))")
        if faces.isEmpty { missing = true }
        for (i, face) in faces.enumerated() {
          let box = face.box.map { String(format: "%.1f", $0) }.joined(separator: ", ")
          let kps = face.keypoints.map { String(format: "(%.1f, %.1f)", $0.x, $0.y) }.joined(separator: " ")
          print("  face \(i): box [\(box)] score \(String(format: "%.4f", face.score)) keypoints \(kps)")
          all.append((index, face))
          if let saveCrops {
            let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
            let crop = try FaceAnalyzer.alignedCrop(of: face, in: image, size: cropSize)
            crops.append(((saveCrops as NSString).appendingPathComponent("\(stem)_face\(i).png"), crop))
          }
        }
      }
      if missing {
        FileHandle.standardError.write(Data("error: no face found in \(images.count == 1 ? images[0] : "one of the images"); nothing written (try --det-size 320 or a larger, frontal photo)\n".utf8))
        throw ExitCode(2)
      }
      if let output { try FaceFile.write(all, images: images, models: analyzer.folder, to: output) }
      if let npy { try FaceFile.writeNPY(all.map(\.face.normedEmbedding), to: npy) }
      for (path, crop) in crops { try ImageCodec.writePNG(crop, to: path) }
    } catch let error as ExitCode {
      throw error
    } catch {
      FileHandle.standardError.write(Data("error: \(CLIError.oneLine(error))\n".utf8))
      throw ExitCode(1)
    }
  }
}

extension FaceSelection: ExpressibleByArgument {}

/// `--face-models`: a local pack folder, a hub repo holding one, or insightface's default folder.
enum FaceModelsOption {
  /// The analyser of the pack `argument` names (downloading a hub pack's detector and
  /// recogniser into the cache), or of insightface's default pack when it is nil.
  static func analyzer(_ argument: String?) throws -> FaceAnalyzer {
    guard let argument else { return try FaceAnalyzer.insightfaceDefault() }
    let reference = try HubReference.parse(argument)
    if let url = reference.localURL { return try FaceAnalyzer(models: url.path) }
    let bar = DownloadProgressBar()
    let url = try HubClient.runBlocking {
      try await HubClient().resolveFolder(
        reference, files: .faceAnalysisPack, progress: { @Sendable p in bar.update(p) })
    }
    bar.finish()
    return try FaceAnalyzer(models: url.path)
  }
}
