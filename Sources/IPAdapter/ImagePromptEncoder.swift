import Foundation
import Imaging
import Models
import NN
import TensorCore

/// The image side of IP-Adapter: CLIP preprocessing and the CLIP vision encoder, with the
/// unconditional features cached (they never change for a given encoder).
///
/// matches: diffusers `StableDiffusionPipeline.encode_image` — `image_embeds` for global
/// adapters (unconditional: a zero embedding), `hidden_states[-2]` for Plus/full-face
/// (unconditional: the encoder run on zero, i.e. mean-colour, normalised pixels).
/// `@unchecked Sendable`: its model's only mutable state, the lazily packed kernels, is guarded by `KernelLock`.
public final class ImagePromptEncoder: @unchecked Sendable {
  public let path: String
  public let model: CLIPVisionModel
  public let processor: CLIPImageProcessor
  private var zeroHidden: Tensor?
  private let lock = NSLock()

  /// - Parameters:
  ///   - folder: the encoder folder (`config.json`, `model.safetensors`).
  ///   - processorConfig: a `preprocessor_config.json` to use (the pipeline's `feature_extractor`
  ///     has priority, then the encoder folder's own); nil → CLIP defaults at the encoder's size.
  public init(folder: URL, processorConfig: URL? = nil, prepare: PrepareOptions = PrepareOptions()) throws {
    path = folder.path
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDir), isDir.boolValue else {
      throw ModelFileError.missingFolder(path: folder.path)
    }
    model = try ModelLoader.imageEncoder(folder, prepare: prepare)
    let own = folder.appendingPathComponent("preprocessor_config.json")
    if let processorConfig {
      processor = try CLIPImageProcessor(configFile: processorConfig.path)
    } else if FileManager.default.fileExists(atPath: own.path) {
      processor = try CLIPImageProcessor(configFile: own.path)
    } else {
      var p = CLIPImageProcessor()
      p.size = .shortest(model.config.imageSize)
      p.cropSize = .square(model.config.imageSize)
      processor = p
    }
  }

  /// An encoder from an already-loaded model (tests, benchmarks, programmatic use).
  public init(model: CLIPVisionModel, processor: CLIPImageProcessor, path: String = "<memory>") {
    self.path = path
    self.model = model
    self.processor = processor
  }

  /// CLIP features of `images` for a projection that reads `kind`: `[N, D]` or `[N, L, H]`.
  /// `maxPixels` bounds the CLIP resize of each image (`ImageLimits.maxPixels`).
  public func features(
    _ images: [Image], kind: CLIPVisionOutputKind, maxPixels: Int = ImageLimits.default.maxPixels
  ) throws -> Tensor {
    guard !images.isEmpty else { throw IPAdapterError.badInput("no image prompt given") }
    var processor = processor
    processor.maxPixels = maxPixels
    let pixels = try processor.preprocess(images)
    return try model(pixels, output: kind)
  }

  /// The unconditional features for `count` images.
  public func unconditionalFeatures(count: Int, kind: CLIPVisionOutputKind) throws -> Tensor {
    switch kind {
    case .imageEmbeds:
      return Tensor.zeros([count, model.config.projectionDim])
    case .penultimateHiddenState:
      lock.lock()
      defer { lock.unlock() }
      if zeroHidden == nil {
        let s = model.config.imageSize
        zeroHidden = try model(Tensor.zeros([1, s, s, model.config.numChannels]), output: .penultimateHiddenState)
      }
      return try Ops.concatRows(Array(repeating: zeroHidden!, count: count))
    }
  }
}
