import Foundation
import IPAdapter
import Imaging
import TensorCore

extension StableDiffusionPipeline {
  /// Turns an InstantID spec into what the one generation path already runs: the face adapter as
  /// the last image prompt (a Resampler over the raw face embedding) and IdentityNet as the first
  /// ControlNet (its control image the drawn keypoints; the caller points its cross-attention at
  /// that prompt's tokens). Without a width and height, the output gets the size the InstantID
  /// README's `resize_img` gives the keypoint image (short side 1024, long side 1280, multiples
  /// of 64).
  /// - Returns: the index of the face adapter's prompt.
  func prepareInstantID(
    _ spec: InstantIDSpec, parameters: inout GenerationParameters, imagePrompts: inout [ImagePromptSpec],
    controlNets: inout [ControlNetSpec]
  ) async throws -> Int {
    guard isSDXL else {
      throw PipelineError.invalidArgument(
        name: "InstantID", reason: "\(modelName) is not an SDXL model: InstantID's adapter and IdentityNet are made for SDXL")
    }
    for (name, v) in [("InstantID ip scale", spec.ipScale), ("IdentityNet scale", spec.identityNetScale)] where !v.isFinite {
      throw PipelineError.invalidArgument(name: name, reason: "\(v) is not a finite number")
    }
    let face = try await ComputeQueue.detached { try spec.face.prepare() }
    var adapter = ImagePromptSpec(adapter: spec.adapter, scale: spec.ipScale)
    adapter.faceEmbeddings = face.embedding
    adapter.layerScales = spec.layerScales
    adapter.window = spec.adapterWindow
    imagePrompts.append(adapter)
    var identityNet = ControlNetSpec(model: spec.identityNet, image: face.keypointImage, scale: spec.identityNetScale)
    identityNet.start = spec.identityNetStart
    identityNet.end = spec.identityNetEnd
    controlNets.insert(identityNet, at: 0)
    if parameters.width == nil && parameters.height == nil && parameters.initImage == nil && parameters.initLatents == nil {
      let size = Self.instantIDReadmeSize(width: face.keypointImage.width, height: face.keypointImage.height)
      (parameters.width, parameters.height) = (size.width, size.height)
    }
    if spec.enhanceFaceRegion {
      guard let box = face.faceBox else {
        throw PipelineError.invalidArgument(
          name: "InstantID enhance face region", reason: "needs the face's box: give a photo, or a faceBox with the embedding")
      }
      let (width, height) = try outputSize(for: parameters)
      // The reference samples the mask at every attention resolution by an exact ratio.
      let factor = vaeScaleFactor << max(unet.config.blockOutChannels.count - 1, 0)
      guard width % factor == 0, height % factor == 0 else {
        throw PipelineError.invalidArgument(
          name: "InstantID enhance face region",
          reason: "the output size \(width)×\(height) must be a multiple of \(factor) so the face mask fits every attention resolution")
      }
      let mask = try Self.faceRegionMask(
        box, canvasWidth: face.keypointImage.width, canvasHeight: face.keypointImage.height, width: width, height: height)
      imagePrompts[imagePrompts.count - 1].regionMask = mask
      controlNets[0].residualMask = mask
    }
    return imagePrompts.count - 1
  }

  /// The official apps' `control_mask`: 1 on `[int(y1):int(y2), int(x1):int(x2)]` of an output-sized
  /// plane (the box scaled from the keypoint canvas when the sizes differ; clamped to the plane,
  /// where Python's negative indices would wrap).
  static func faceRegionMask(_ box: SIMD4<Float>, canvasWidth: Int, canvasHeight: Int, width: Int, height: Int) throws -> Tensor {
    guard box.x.isFinite, box.y.isFinite, box.z.isFinite, box.w.isFinite, canvasWidth > 0, canvasHeight > 0 else {
      throw PipelineError.invalidArgument(name: "InstantID face box", reason: "\(box) is not a finite box")
    }
    func edge(_ v: Float, _ canvas: Int, _ size: Int) -> Int {
      let scaled = canvas == size ? Double(v) : Double(v) * Double(size) / Double(canvas)
      return min(max(Int(scaled.rounded(.towardZero)), 0), size)
    }
    let (x1, x2) = (edge(box.x, canvasWidth, width), edge(box.z, canvasWidth, width))
    let (y1, y2) = (edge(box.y, canvasHeight, height), edge(box.w, canvasHeight, height))
    var plane = [Float](repeating: 0, count: width * height)
    if x1 < x2 && y1 < y2 {
      for y in y1..<y2 { for x in x1..<x2 { plane[y * width + x] = 1 } }
    }
    return try Tensor(shape: [height, width], floats: plane)
  }

  /// The InstantID README's `resize_img(image)` size: scaled so the short side is 1024 (Python
  /// `round`, half to even), then so the long side is 1280, then rounded down to multiples of 64.
  static func instantIDReadmeSize(width: Int, height: Int) -> (width: Int, height: Int) {
    guard width > 0, height > 0 else { return (1024, 1024) }
    let r1 = 1024 / Double(min(width, height))
    let (w1, h1) = ((r1 * Double(width)).rounded(.toNearestOrEven), (r1 * Double(height)).rounded(.toNearestOrEven))
    let r2 = 1280 / max(w1, h1)
    let w = Int((r2 * w1).rounded(.toNearestOrEven)) / 64 * 64
    let h = Int((r2 * h1).rounded(.toNearestOrEven)) / 64 * 64
    return (max(w, 64), max(h, 64))
  }
}
