import Foundation
import Imaging
import ONNX

/// A face found by `FaceAnalyzer`: where it is, how sure the detector is, its landmarks, the
/// ArcFace embedding and the aligned crop the embedding was computed from.
public struct DetectedFace: Sendable {
  /// `x1, y1, x2, y2` in image pixels.
  public var box: [Float]
  public var score: Float
  /// Five `(x, y)` landmarks: left eye, right eye, nose, left and right mouth corner.
  public var keypoints: [SIMD2<Float>]
  /// The raw ArcFace embedding (insightface `face.embedding`).
  public var embedding: [Float]
  /// The L2-normalised embedding (insightface `face.normed_embedding`; what IP-Adapter FaceID reads).
  public var normedEmbedding: [Float] { l2Normalized(embedding) }
  /// The aligned crop the recogniser saw (`norm_crop` at its input size, 112² for the released packs).
  public var alignedCrop: Image

  public var area: Float { (box[2] - box[0]) * (box[3] - box[1]) }
}

/// Which face(s) of an image to use.
public enum FaceSelection: String, Sendable, CaseIterable {
  /// Every face, in insightface's order (descending detection score).
  case all
  /// The first face of insightface's list (highest score) — what IP-Adapter's examples and ComfyUI take.
  case first
  /// The largest box (InstantID's README: the last of the faces sorted by box area).
  case largest
}

/// Options of `FaceAnalyzer.analyze`.
public struct FaceAnalysisOptions: Sendable {
  /// insightface `det_size` (square), a multiple of 32.
  public var detectionSize: Int = 640
  /// insightface `det_thresh`.
  public var scoreThreshold: Float = 0.5
  public var nmsThreshold: Float = 0.4
  public var selection: FaceSelection = .all

  public init(detectionSize: Int = 640, scoreThreshold: Float = 0.5, nmsThreshold: Float = 0.4, selection: FaceSelection = .all) {
    self.detectionSize = detectionSize
    self.scoreThreshold = scoreThreshold
    self.nmsThreshold = nmsThreshold
    self.selection = selection
  }
}

/// Face detection, alignment and ArcFace embeddings from an insightface model pack
/// (`buffalo_l`, `antelopev2`, …), run natively on ONNX graphs.
///
/// The folder's `*.onnx` files are read in sorted order and routed by their interface as
/// insightface's model zoo does: a graph with ≥ 5 outputs is the detector, one with a square
/// input of ≥ 112 pixels (multiple of 16) the recogniser; the landmark and gender/age graphs
/// (`2d106det`, `1k3d68`, `genderage`) are not used. The first file of each role wins.
///
/// matches: insightface 0.7.3 `FaceAnalysis(allowed_modules=["detection", "recognition"])`
/// `.prepare(det_thresh=0.5, det_size=(S, S))` and `.get(img)`.
/// Licence: insightface's pretrained packs are for non-commercial research only.
public final class FaceAnalyzer: @unchecked Sendable {
  public let folder: String
  public let detector: SCRFDDetector
  public let recognizer: ArcFaceRecognizer

  public init(models folder: String) throws {
    self.folder = folder
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
      throw FaceAnalysisError.modelsNotFound(folder: folder, reason: "not a folder")
    }
    let files = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
      .filter { $0.lowercased().hasSuffix(".onnx") }.sorted()
    var detector: SCRFDDetector?
    var recognizer: ArcFaceRecognizer?
    var skipped: [String] = []
    for name in files {
      let path = (folder as NSString).appendingPathComponent(name)
      let signature = try ONNXSignature(contentsOf: path)
      switch FaceModelRole(signature) {
      case .detector:
        if detector == nil { detector = try SCRFDDetector(session: ONNXSession(contentsOf: path), signature: signature) }
      case .recognizer:
        if recognizer == nil { recognizer = try ArcFaceRecognizer(session: ONNXSession(contentsOf: path), signature: signature) }
      case .landmarks, .attributes, .swapper, .unknown:
        skipped.append(name)
      }
    }
    guard let detector else {
      throw FaceAnalysisError.modelsNotFound(
        folder: folder, reason: "no face detector (.onnx with ≥ 5 outputs, e.g. det_10g.onnx) among \(files.isEmpty ? "no .onnx files" : files.joined(separator: ", "))")
    }
    guard let recognizer else {
      throw FaceAnalysisError.modelsNotFound(
        folder: folder, reason: "no recognition model (.onnx with a square ≥ 112 input, e.g. w600k_r50.onnx) among \(files.joined(separator: ", "))")
    }
    _ = skipped
    self.detector = detector
    self.recognizer = recognizer
  }

  /// Where insightface keeps a pack it downloaded: `~/.insightface/models/<pack>` (its default
  /// `root`), `~` being `$HOME`.
  public static func insightfaceFolder(pack: String = "buffalo_l", environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
    let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
    return (home as NSString).appendingPathComponent(".insightface/models/\(pack)")
  }

  /// The analyser of insightface's default pack (``insightfaceFolder(pack:environment:)``), or
  /// ``FaceAnalysisError/modelsNotFound(folder:reason:)`` saying how to provide one.
  public static func insightfaceDefault(pack: String = "buffalo_l") throws -> FaceAnalyzer {
    let folder = insightfaceFolder(pack: pack)
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
      throw FaceAnalysisError.modelsNotFound(
        folder: folder,
        reason: "no model pack given and insightface's default folder does not exist; give a folder holding det_10g.onnx and w600k_r50.onnx (insightface buffalo_l) or a hub repo")
    }
    return try FaceAnalyzer(models: folder)
  }

  /// Faces of an image (RGB, gray or with alpha: converted to RGB first), with embeddings.
  /// An image without faces gives an empty array.
  public func analyze(_ image: Image, options: FaceAnalysisOptions = FaceAnalysisOptions()) throws -> [DetectedFace] {
    let rgb = image.format == .rgb ? image : image.convertedToRGB()
    var detections = try detector.detect(
      rgb, detSize: (options.detectionSize, options.detectionSize), threshold: options.scoreThreshold,
      nmsThreshold: options.nmsThreshold)
    guard !detections.isEmpty else { return [] }
    guard detector.hasKeypoints else {
      throw FaceAnalysisError.unexpectedModel(file: detector.session.file, reason: "the detector gives no keypoints: faces cannot be aligned")
    }
    switch options.selection {
    case .all: break
    case .first: detections = [detections[0]]
    case .largest:
      // InstantID: sorted(faces, key=area)[-1] — Python's sort is stable, so among equal areas the
      // last in insightface's order wins.
      var best = 0
      for i in detections.indices where detections[i].area >= detections[best].area { best = i }
      detections = [detections[best]]
    }
    let crops = try detections.map { d in
      try FaceAlignment.normCrop(rgb, keypoints: d.keypoints.map { ($0.x, $0.y) }, size: recognizer.inputSize)
    }
    let embeddings = try recognizer.embeddings(ofAlignedCrops: crops)
    return zip(detections, zip(embeddings, crops)).map { d, e in
      DetectedFace(box: d.box, score: d.score, keypoints: d.keypoints, embedding: e.0, alignedCrop: e.1)
    }
  }

  /// The aligned crop of a face at another size (224 for IP-Adapter FaceID-Plus, 256 as ComfyUI
  /// does for SDXL), from the image the face was found in.
  public static func alignedCrop(of face: DetectedFace, in image: Image, size: Int) throws -> Image {
    let rgb = image.format == .rgb ? image : image.convertedToRGB()
    return try FaceAlignment.normCrop(rgb, keypoints: face.keypoints.map { ($0.x, $0.y) }, size: size)
  }
}

/// What a model file of an insightface pack is, decided from its interface in insightface's order
/// (`model_zoo.get_model`): ≥ 5 outputs → detector; a 192×192 input → 2-D/3-D landmarks
/// (`2d106det`, `1k3d68`); 96×96 → gender/age; two inputs at 128×128 → the face swapper; a square
/// input of ≥ 112 pixels (a multiple of 16) → recognition.
public enum FaceModelRole: Sendable, Equatable {
  case detector, landmarks, attributes, swapper, recognizer, unknown

  public init(_ signature: ONNXSignature) {
    let shape = signature.inputs.first?.shape ?? nil
    let h = shape.flatMap { $0.count == 4 ? $0[2] : nil }
    let w = shape.flatMap { $0.count == 4 ? $0[3] : nil }
    if signature.outputs.count >= 5 {
      self = .detector
    } else if h == 192, w == 192 {
      self = .landmarks
    } else if h == 96, w == 96 {
      self = .attributes
    } else if signature.inputs.count == 2, h == 128, w == 128 {
      self = .swapper
    } else if let h, let w, h == w, h >= 112, h % 16 == 0 {
      self = .recognizer
    } else {
      self = .unknown
    }
  }
}
