import FaceAnalysis
import Foundation
import Hub
import IPAdapter
import Imaging
import TensorCore

/// The face an InstantID generation keeps: found in a photo, or given as an embedding and
/// keypoints (bypassing detection).
public enum InstantIDFace: Sendable {
  /// A photo analysed by `analyzer` (insightface's pipeline): the largest face (the InstantID
  /// README's `sorted(…, key=box area)[-1]`; `faceIndex` 1 takes the second largest, …), its
  /// **raw** embedding and its keypoints. With `pose`, the keypoints (and the keypoint image's
  /// size) come from the largest face in that photo instead (the README's pose example).
  case photo(Image, analyzer: FaceAnalyzer, pose: Image? = nil, detectionSize: Int = 640, faceIndex: Int = 0)
  /// A raw ArcFace embedding (the adapter's width: 512 for InstantX/InstantID) and the five
  /// keypoints (insightface order) on a `canvasWidth` × `canvasHeight` image; `faceBox`
  /// (x1, y1, x2, y2 on that canvas) is needed only for ``InstantIDSpec/enhanceFaceRegion``.
  case given(embedding: [Float], keypoints: [SIMD2<Float>], canvasWidth: Int, canvasHeight: Int, faceBox: SIMD4<Float>? = nil)
}

/// An InstantID generation's identity part, as an app describes it: the adapter and IdentityNet
/// files, the face, and the two strengths.
///
/// matches: instantX-research/InstantID `StableDiffusionXLInstantIDPipeline` (commit 2145b67) —
/// `load_ip_adapter_instantid` (the `ip-adapter.bin` Resampler + `to_k_ip`/`to_v_ip`),
/// `_encode_prompt_image_emb` (one raw embedding as a one-token sequence; unconditional tokens
/// from a zero embedding), IdentityNet called with `encoder_hidden_states = prompt_image_emb` and
/// the UNet's `text_embeds`/`time_ids`, `draw_kps` for its control image (`FaceKeypointImage`),
/// the README's defaults (`ip_adapter_scale` 0.8, `controlnet_conditioning_scale` 0.8).
/// `enhanceFaceRegion` is the official apps' option (the `_full` pipeline's `control_mask`).
/// Limitations: one face (the reference's `image_embeds` takes one).
public struct InstantIDSpec: Sendable {
  /// The face adapter (`ip-adapter.bin` of InstantX/InstantID): a local file or a hub file.
  public var adapter: HubReference
  /// IdentityNet, an SDXL ControlNet folder (`ControlNetModel/` of InstantX/InstantID).
  public var identityNet: HubReference
  public var face: InstantIDFace
  /// λ of the face adapter (`ip_adapter_scale`).
  public var ipScale: Float = 0.8
  /// How λ is spread over the UNet's layers (per-block scales, an InstantStyle preset, a ComfyUI
  /// weight type — as `ImagePromptSpec.layerScales`); nil = `ipScale` everywhere, as the reference.
  public var layerScales: IPAdapterLayerScales?
  /// The steps where the face adapter acts (IdentityNet has its own window below).
  public var adapterWindow: IPAdapterStepWindow = .full
  /// IdentityNet's `controlnet_conditioning_scale`.
  public var identityNetScale: Float = 0.8
  /// IdentityNet's `control_guidance_start` / `control_guidance_end`.
  public var identityNetStart = 0.0
  public var identityNetEnd = 1.0
  /// The official apps' "enhance non-face region" (`enhance_face_region`, the `_full` pipeline's
  /// `control_mask`): a mask of the face box, 1 inside, at the output size; the face adapter's
  /// attention output is multiplied by it at every layer (nearest-sampled) and IdentityNet's
  /// residuals by its bilinear downsamplings.
  public var enhanceFaceRegion = false

  public init(adapter: HubReference, identityNet: HubReference, face: InstantIDFace) {
    self.adapter = adapter
    self.identityNet = identityNet
    self.face = face
  }

  /// The spec of an InstantX/InstantID-style folder or hub repo: `ip-adapter.bin` and
  /// `ControlNetModel/` inside it.
  public init(folder: HubReference, face: InstantIDFace) throws {
    switch folder {
    case .local(let path):
      let root = URL(fileURLWithPath: HubConfiguration.expandTilde(path))
      self.init(
        adapter: .local(root.appendingPathComponent("ip-adapter.bin").path),
        identityNet: .local(root.appendingPathComponent("ControlNetModel").path), face: face)
    case .repo(let id, let revision):
      self.init(
        adapter: .file(repoID: id, path: "ip-adapter.bin", revision: revision),
        identityNet: .file(repoID: id, path: "ControlNetModel", revision: revision), face: face)
    case .file(let id, let sub, let revision):
      self.init(
        adapter: .file(repoID: id, path: "\(sub)/ip-adapter.bin", revision: revision),
        identityNet: .file(repoID: id, path: "\(sub)/ControlNetModel", revision: revision), face: face)
    }
  }
}

/// What the face becomes before generation: the embedding `[1, D]` and IdentityNet's image.
public struct InstantIDFaceInput: Sendable {
  /// The raw ArcFace embedding, one row.
  public var embedding: Tensor
  /// The keypoints drawn as `draw_kps` does.
  public var keypointImage: Image
  /// The keypoints used (from the photo, the pose photo, or as given).
  public var keypoints: [SIMD2<Float>]
  /// The box (x1, y1, x2, y2) of the face whose keypoints are drawn, on the keypoint image.
  public var faceBox: SIMD4<Float>?
}

extension InstantIDFace {
  /// Runs the face analysis if needed and draws the keypoint image.
  /// - Throws: `PipelineError.invalidArgument` when no face is found (naming the photo),
  ///   `faceIndex` is beyond the faces found, or the embedding is empty or not finite;
  ///   `FaceAnalysisError` for bad keypoints.
  public func prepare() throws -> InstantIDFaceInput {
    switch self {
    case .given(let embedding, let keypoints, let w, let h, let box):
      guard !embedding.isEmpty, embedding.allSatisfy(\.isFinite) else {
        throw PipelineError.invalidArgument(name: "InstantID face embedding", reason: "empty, or a value is NaN or infinite")
      }
      let image = try FaceKeypointImage.draw(keypoints: keypoints.map { (x: $0.x, y: $0.y) }, width: w, height: h)
      return InstantIDFaceInput(
        embedding: try Tensor(shape: [1, embedding.count], floats: embedding), keypointImage: image, keypoints: keypoints,
        faceBox: box)
    case .photo(let photo, let analyzer, let pose, let size, let index):
      let face = try Self.face(in: photo, what: "the face photo", analyzer: analyzer, size: size, index: index)
      var (keypoints, box) = (face.keypoints, SIMD4(face.box[0], face.box[1], face.box[2], face.box[3]))
      var canvas = photo
      if let pose {
        let posed = try Self.face(in: pose, what: "the pose photo", analyzer: analyzer, size: size, index: 0)
        (keypoints, box) = (posed.keypoints, SIMD4(posed.box[0], posed.box[1], posed.box[2], posed.box[3]))
        canvas = pose
      }
      let image = try FaceKeypointImage.draw(
        keypoints: keypoints.map { (x: $0.x, y: $0.y) }, width: canvas.width, height: canvas.height)
      return InstantIDFaceInput(
        embedding: try Tensor(shape: [1, face.embedding.count], floats: face.embedding), keypointImage: image,
        keypoints: keypoints, faceBox: box)
    }
  }

  /// The `index`-th largest face (0: the largest; ties keep insightface's order, as Python's
  /// stable sort then `[-1]` does).
  static func face(in photo: Image, what: String, analyzer: FaceAnalyzer, size: Int, index: Int) throws -> DetectedFace {
    let faces = try analyzer.analyze(photo, options: FaceAnalysisOptions(detectionSize: size, selection: .all))
    guard !faces.isEmpty else {
      throw PipelineError.invalidArgument(
        name: "InstantID", reason: "no face found in \(what) (\(photo.width)×\(photo.height)); try another detection size or a larger, frontal face")
    }
    func area(_ f: DetectedFace) -> Float { (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) }
    // Ascending by area, stable; the reference takes the last.
    let ordered = faces.enumerated().sorted { a, b in
      area(a.element) != area(b.element) ? area(a.element) < area(b.element) : a.offset < b.offset
    }.map(\.element)
    guard (0..<ordered.count).contains(index) else {
      throw PipelineError.invalidArgument(
        name: "InstantID face index", reason: "\(index) is out of range: \(ordered.count) face(s) found in \(what)")
    }
    return ordered[ordered.count - 1 - index]
  }
}
