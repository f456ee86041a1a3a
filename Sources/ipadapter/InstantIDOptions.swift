import ArgumentParser
import FaceAnalysis
import Foundation
import Hub
import IPAdapter
import Imaging
import Pipelines

/// `generate`'s InstantID flags. The face comes from the image-prompt group's `--face-image` /
/// `--face-embedding` (and `--face-models`, `--face-det-size`), which belong to InstantID when
/// `--instantid` is given; so do `--ip-scale` and the face adapter's controls (`--ip-block-scales`,
/// `--ip-preset`, `--ip-weight-type`, `--ip-start`, `--ip-end`) when no `--ip-adapter` is.
struct InstantIDOptions: ParsableArguments {
  @Option(help: "InstantID (SDXL): a folder or hub repo holding ip-adapter.bin and ControlNetModel/ (InstantX/InstantID); the face from --face-image (its largest face) or --face-embedding with --face-keypoints.")
  var instantid: String?

  @Option(help: "InstantID: IdentityNet's conditioning scale (default 0.8, as the InstantID README).")
  var identitynetScale: Float = 0.8

  @Option(help: "InstantID: fraction of the steps before which IdentityNet is off (default 0).")
  var identitynetStart: Double = 0

  @Option(help: "InstantID: fraction of the steps after which IdentityNet is off (default 1).")
  var identitynetEnd: Double = 1

  @Option(help: "InstantID: the face adapter's scale when --ip-adapter adapters take --ip-scale (default: --ip-scale without --ip-adapter, else 0.8).")
  var instantidScale: Float?

  @Option(help: "InstantID: a photo whose largest face gives the keypoints (the pose) instead of the face photo's; the keypoint image has its size.")
  var facePoseImage: String?

  @Option(help: "InstantID: the five keypoints 'x1,y1 x2,y2 x3,y3 x4,y4 x5,y5' (eyes, nose, mouth corners) in pixels of the output image, with --face-embedding instead of --face-image; or a .json file [[x, y], …].")
  var faceKeypoints: String?

  @Option(help: "InstantID: which face of --face-image, by size (0 = the largest, as the reference).")
  var faceIndex: Int = 0

  @Flag(help: "InstantID: the official apps' 'enhance non-face region': the face adapter's attention and IdentityNet's residuals are limited to the face's box (needs a photo: --face-image or --face-pose-image).")
  var enhanceFaceRegion = false

  /// Checks the flags; moves the face flags out of `imagePrompts` (they are InstantID's here).
  func take(from imagePrompts: inout ImagePromptOptions) throws -> TakenFace? {
    guard let instantid else {
      for (flag, given) in [
        ("--face-pose-image", facePoseImage != nil), ("--face-keypoints", faceKeypoints != nil),
        ("--instantid-scale", instantidScale != nil), ("--enhance-face-region", enhanceFaceRegion),
      ] where given {
        throw CLIError.invalid(flag, "needs --instantid")
      }
      return nil
    }
    _ = try HubReference.parse(instantid)
    for (flag, v) in [("--identitynet-scale", identitynetScale), ("--instantid-scale", instantidScale ?? 0)] where !v.isFinite {
      throw CLIError.invalid(flag, "\(v) is not a finite number")
    }
    guard identitynetStart >= 0, identitynetEnd <= 1, identitynetStart < identitynetEnd else {
      throw CLIError.invalid("--identitynet-start", "start \(identitynetStart) and end \(identitynetEnd) must satisfy 0 ≤ start < end ≤ 1")
    }
    guard faceIndex >= 0 else { throw CLIError.invalid("--face-index", "\(faceIndex) must be 0 or more") }
    var taken = TakenFace(models: imagePrompts.faceModels, detectionSize: imagePrompts.faceDetSize)
    guard imagePrompts.faceImage.count <= 1, imagePrompts.faceEmbedding.count <= 1 else {
      throw CLIError.invalid("--face-image", "InstantID takes one face: give one --face-image or one --face-embedding")
    }
    taken.photo = imagePrompts.faceImage.first
    taken.embedding = imagePrompts.faceEmbedding.first
    imagePrompts.faceImage = []
    imagePrompts.faceEmbedding = []
    if imagePrompts.ipAdapter.isEmpty, let s = imagePrompts.ipScale.first {
      guard imagePrompts.ipScale.count == 1 else { throw CLIError.invalid("--ip-scale", "InstantID takes one scale") }
      taken.scale = s
      imagePrompts.ipScale = []
    }
    if let s = instantidScale { taken.scale = s }
    if imagePrompts.ipAdapter.isEmpty {
      (taken.layerScales, taken.window) = try Self.faceAdapterControls(&imagePrompts)
    }
    guard taken.photo != nil || taken.embedding != nil else {
      throw CLIError.invalid("--instantid", "needs a face: --face-image PHOTO, or --face-embedding FILE with --face-keypoints or --face-pose-image")
    }
    if taken.photo == nil, faceKeypoints == nil, facePoseImage == nil {
      throw CLIError.invalid("--face-embedding", "with InstantID it needs keypoints: --face-keypoints or --face-pose-image (or give --face-image)")
    }
    if faceKeypoints != nil, taken.photo != nil || facePoseImage != nil {
      throw CLIError.invalid("--face-keypoints", "give keypoints or a photo to find them in (--face-image, --face-pose-image), not both")
    }
    for (flag, file) in [("--face-image", taken.photo), ("--face-embedding", taken.embedding), ("--face-pose-image", facePoseImage)] {
      if let file, !FileManager.default.fileExists(atPath: file) { throw CLIError.invalid(flag, "file not found: \(file)") }
    }
    return taken
  }

  /// The InstantID face flags taken from the image-prompt group.
  struct TakenFace {
    var models: String?
    var detectionSize: Int
    var photo: String?
    var embedding: String?
    var scale: Float = 0.8
    var layerScales: IPAdapterLayerScales?
    var window = IPAdapterStepWindow.full
  }

  /// The layer-scale and step-window flags, one value each, for the face adapter (taken out of
  /// the image-prompt group, which has no adapter to give them to).
  static func faceAdapterControls(_ o: inout ImagePromptOptions) throws -> (IPAdapterLayerScales?, IPAdapterStepWindow) {
    for (flag, n) in [
      ("--ip-block-scales", o.ipBlockScales.count), ("--ip-preset", o.ipPreset.count),
      ("--ip-weight-type", o.ipWeightType.count), ("--ip-start", o.ipStart.count), ("--ip-end", o.ipEnd.count),
    ] where n > 1 {
      throw CLIError.invalid(flag, "InstantID's face adapter takes one value, got \(n)")
    }
    guard [!o.ipBlockScales.isEmpty, !o.ipPreset.isEmpty, !o.ipWeightType.isEmpty].filter({ $0 }).count <= 1 else {
      throw CLIError.invalid("--ip-block-scales/--ip-preset/--ip-weight-type", "give at most one of them")
    }
    var controls = AdapterControls()
    if let b = o.ipBlockScales.first { controls.blockScales = try IPAdapterBlockScales(json: b) }
    controls.preset = o.ipPreset.first
    if let t = o.ipWeightType.first {
      controls.weightType = ComfyWeighting(type: t, weightComposition: o.ipWeightComposition, comfyCompatibleMiddle: o.ipComfyMiddle)
    }
    controls.window = try IPAdapterStepWindow(start: o.ipStart.first ?? 0, end: o.ipEnd.first ?? 1)
    (o.ipBlockScales, o.ipPreset, o.ipWeightType, o.ipStart, o.ipEnd) = ([], [], [], [], [])
    return (controls.layerScales, controls.window)
  }

  /// The library's description (photos read, the face pack loaded, keypoints parsed).
  func spec(_ taken: TakenFace, width: Int?, height: Int?, limits: ImageLimits) throws -> InstantIDSpec {
    let folder = try HubReference.parse(instantid ?? "")
    let pose = try facePoseImage.map { try Image(contentsOfFile: $0, limits: limits) }
    let face: InstantIDFace
    if let embeddingFile = taken.embedding {
      let e = try FaceEmbeddingFile.read(embeddingFile)
      guard e.rank == 2, e.shape[0] == 1 else {
        throw CLIError.invalid("--face-embedding", "InstantID takes one face embedding, \(embeddingFile) holds \(e.shape[0])")
      }
      if let faceKeypoints {
        let points = try Self.keypoints(faceKeypoints)
        guard let width, let height else {
          throw CLIError.invalid("--face-keypoints", "keypoints are in pixels of the output: give --width and --height")
        }
        face = .given(embedding: e.scalars(), keypoints: points, canvasWidth: width, canvasHeight: height)
      } else {
        let poseImage = try pose ?? Image(contentsOfFile: taken.photo ?? "", limits: limits)
        let analyzer = try FaceModelsOption.analyzer(taken.models)
        let found = try InstantIDFace.photo(poseImage, analyzer: analyzer, detectionSize: taken.detectionSize).prepare()
        face = .given(
          embedding: e.scalars(), keypoints: found.keypoints, canvasWidth: poseImage.width, canvasHeight: poseImage.height,
          faceBox: found.faceBox)
      }
    } else {
      let photo = try Image(contentsOfFile: taken.photo ?? "", limits: limits)
      let analyzer = try FaceModelsOption.analyzer(taken.models)
      face = .photo(photo, analyzer: analyzer, pose: pose, detectionSize: taken.detectionSize, faceIndex: faceIndex)
    }
    var spec = try InstantIDSpec(folder: folder, face: face)
    spec.ipScale = taken.scale
    spec.layerScales = taken.layerScales
    spec.adapterWindow = taken.window
    spec.identityNetScale = identitynetScale
    spec.identityNetStart = identitynetStart
    spec.identityNetEnd = identitynetEnd
    spec.enhanceFaceRegion = enhanceFaceRegion
    return spec
  }

  /// `--face-keypoints`: ten numbers (commas, spaces or semicolons between them) or a JSON file
  /// `[[x, y], …]` of five points.
  static func keypoints(_ text: String) throws -> [SIMD2<Float>] {
    var numbers: [Float]
    if text.lowercased().hasSuffix(".json") {
      // Five points are a few dozen bytes: the size is checked before the file is read.
      let size = (try? FileManager.default.attributesOfItem(atPath: text)[.size] as? NSNumber)?.intValue
      guard let size, size <= 1 << 16, let data = FileManager.default.contents(atPath: text) else {
        throw CLIError.invalid("--face-keypoints", "cannot read \(text), or it is larger than 64 KiB")
      }
      guard let rows = try? JSONDecoder().decode([[Float]].self, from: data), rows.allSatisfy({ $0.count == 2 })
      else {
        throw CLIError.invalid("--face-keypoints", "\(text) is not a JSON list of [x, y] pairs")
      }
      numbers = rows.flatMap { $0 }
    } else {
      let parts = text.split(whereSeparator: { $0 == "," || $0 == " " || $0 == ";" })
      numbers = []
      for p in parts {
        guard let v = Float(p) else { throw CLIError.invalid("--face-keypoints", "'\(p)' is not a number") }
        numbers.append(v)
      }
    }
    guard numbers.count == 10, numbers.allSatisfy(\.isFinite) else {
      throw CLIError.invalid("--face-keypoints", "give five finite x,y pairs (eyes, nose, mouth corners), got \(numbers.count) numbers")
    }
    return (0..<5).map { SIMD2(numbers[2 * $0], numbers[2 * $0 + 1]) }
  }
}
