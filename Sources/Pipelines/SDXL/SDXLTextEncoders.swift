import Foundation
import Models
import NN
import TensorCore
import Tokenizers

/// What an SDXL pipeline adds to the Stable Diffusion components: the second tokenizer (which pads
/// with `!`) and text encoder (OpenCLIP bigG in transformers' `CLIPTextModelWithProjection`
/// layout, whose projected pooled output conditions the UNet), and the `model_index.json` flags.
///
/// matches: the `tokenizer_2`/`text_encoder_2` components and the `force_zeros_for_empty_prompt`
/// config of diffusers `StableDiffusionXLPipeline` (0.42.1), and the refiner's
/// `requires_aesthetics_score` (`StableDiffusionXLImg2ImgPipeline`: the micro-conditioning is
/// original size + crop + aesthetic score, 5 numbers instead of 6).
public struct SDXLTextEncoders: Sendable {
  public let tokenizer2: CLIPTokenizer
  public let textEncoder2: CLIPTextModel
  /// `model_index.json`'s `force_zeros_for_empty_prompt` (diffusers' default: true): without a
  /// negative prompt the unconditional embeddings are zeros.
  public let forceZerosForEmptyPrompt: Bool
  /// `model_index.json`'s `requires_aesthetics_score` (the refiner's); nil when the file does not
  /// say, and the pipeline then decides from the UNet's `add_embedding` width.
  public let requiresAestheticsScore: Bool?

  public init(
    tokenizer2: CLIPTokenizer, textEncoder2: CLIPTextModel, forceZerosForEmptyPrompt: Bool = true,
    requiresAestheticsScore: Bool? = nil
  ) {
    self.tokenizer2 = tokenizer2
    self.textEncoder2 = textEncoder2
    self.forceZerosForEmptyPrompt = forceZerosForEmptyPrompt
    self.requiresAestheticsScore = requiresAestheticsScore
  }

  /// The number of micro-conditioning values a UNet with `shape` takes: 5 (refiner, aesthetic
  /// score) or 6, from `requiresAestheticsScore` or, when unset, from the `add_embedding` width.
  public func timeIdCount(for shape: TextTimeEmbeddingShape) -> Int {
    if let requiresAestheticsScore { return requiresAestheticsScore ? 5 : 6 }
    return shape.inputDim == textEncoder2.config.projectionDim + 5 * shape.timeEmbedDim ? 5 : 6
  }

  /// Loads `tokenizer_2/` and `text_encoder_2/` of `folder` and reads `model_index.json`.
  static func load(folder: URL, prepare: PrepareOptions, variant: String?) throws -> SDXLTextEncoders {
    let fm = FileManager.default
    for component in ["tokenizer_2", "text_encoder_2"] {
      var isDir: ObjCBool = false
      if !fm.fileExists(atPath: folder.appendingPathComponent(component).path, isDirectory: &isDir) || !isDir.boolValue {
        throw PipelineError.missingComponent(folder: folder.path, component: component)
      }
    }
    let tokenizer2 = try CLIPTokenizer(directory: folder.appendingPathComponent("tokenizer_2"))
    let encoder2 = try ModelLoader.textEncoder(
      folder.appendingPathComponent("text_encoder_2"), prepare: prepare, withProjection: true, variant: variant)
    let index = try ConfigFile.load(ModelIndexFlags.self, from: folder.appendingPathComponent("model_index.json"))
    return SDXLTextEncoders(
      tokenizer2: tokenizer2, textEncoder2: encoder2, forceZerosForEmptyPrompt: index.forceZerosForEmptyPrompt ?? true,
      requiresAestheticsScore: index.requiresAestheticsScore)
  }
}

/// The flags of an SDXL `model_index.json` the engine reads.
struct ModelIndexFlags: Decodable {
  var className: String?
  var forceZerosForEmptyPrompt: Bool?
  var requiresAestheticsScore: Bool?
  /// `["transformers", "CLIPTextModel"]`, or `[null, null]` for a pipeline without it (the refiner).
  var textEncoder: [String?]?

  enum CodingKeys: String, CodingKey {
    case className = "_class_name", forceZerosForEmptyPrompt = "force_zeros_for_empty_prompt"
    case requiresAestheticsScore = "requires_aesthetics_score", textEncoder = "text_encoder"
  }

  /// Whether `model_index.json` declares a first text encoder (absent or `[null, null]`: no).
  var declaresTextEncoder: Bool { textEncoder?.contains { $0 != nil } ?? false }
}

extension StableDiffusionPipeline {
  /// SDXL prompt encoding: the penultimate hidden states of both encoders side by side, and the
  /// second encoder's projected pooled output.
  ///
  /// matches: diffusers `StableDiffusionXLPipeline.encode_prompt` (0.42.1): `prompt_2 or prompt`
  /// (a refiner, without the first encoder, encodes `prompt` and `negative_prompt` with the second);
  /// `hidden_states[-(clip_skip + 2)]` for the prompt but always `hidden_states[-2]` for the
  /// negative; `negative_prompt or ""`, `negative_prompt_2 or negative_prompt`; zeros (both
  /// embeddings and pooled) for a nil negative prompt with `force_zeros_for_empty_prompt`.
  /// - Returns: `[B, 77, width₁ + width₂]`, pooled `[B, projection_dim]` (unconditional row first
  ///   when guided) and the tokenizers' truncation warnings.
  func encodeSDXLPrompts(
    _ xl: SDXLTextEncoders, prompt: String, prompt2: String?, negativePrompt: String?, negativePrompt2: String?,
    guidance: Bool, clipSkip: Int
  ) throws -> (embeddings: Tensor, pooled: Tensor, warnings: [String]) {
    let zeros = guidance && negativePrompt == nil && xl.forceZerosForEmptyPrompt
    let encodesNegative = guidance && !zeros
    let negative = negativePrompt ?? ""
    let secondPrompt = prompt2.flatMap { $0.isEmpty ? nil : $0 } ?? prompt
    let secondNegative = negativePrompt2.flatMap { $0.isEmpty ? nil : $0 } ?? negative
    var warnings: [String] = []
    var encoders: [(CLIPTokenizer, CLIPTextModel, [String])] = [
      (xl.tokenizer2, xl.textEncoder2, encodesNegative ? [secondNegative, secondPrompt] : [secondPrompt])
    ]
    if let tokenizer, let textEncoder {
      encoders.insert((tokenizer, textEncoder, encodesNegative ? [negative, prompt] : [prompt]), at: 0)
    } else {
      encoders = [(xl.tokenizer2, xl.textEncoder2, encodesNegative ? [negative, prompt] : [prompt])]
    }
    var states: [Tensor] = []
    var pooled: Tensor?
    for (index, (tok, encoder, texts)) in encoders.enumerated() {
      guard clipSkip >= 0, clipSkip < encoder.layers.count else {
        throw PipelineError.invalidArgument(
          name: "clip skip", reason: "\(clipSkip) must be in 0..<\(encoder.layers.count) for this model's text encoders")
      }
      let ids = texts.map { text -> [Int] in
        let tokens = tok(text, padding: true)
        if let w = tokens.warning, !warnings.contains(w) { warnings.append(w) }
        return tokens.ids
      }
      let out = try encoder(ids, keepHiddenStates: true)
      let n = out.hiddenStates.count
      // Row 0 is the negative when encoded (always `hidden_states[-2]`), the last row the prompt.
      let promptState = out.hiddenStates[n - 2 - clipSkip]
      var rows: [Tensor] = []
      if encodesNegative { rows.append(out.hiddenStates[n - 2].slice(rows: 0..<1)) }
      rows.append(promptState.slice(rows: (ids.count - 1)..<ids.count))
      states.append(try Ops.concatRows(rows))
      if index == encoders.count - 1 { pooled = try encoder.textEmbeds(lastHiddenState: out.lastHiddenState, ids: ids) }
    }
    var embeddings = states.count == 2 ? try Ops.concatLast(states[0], states[1]) : states[0]
    guard var pooledRows = pooled else { throw PipelineError.invalidArgument(name: "prompt", reason: "no pooled embedding") }
    if zeros {
      embeddings = try Ops.concatRows([Tensor.zeros(embeddings.shape), embeddings])
      pooledRows = try Ops.concatRows([Tensor.zeros(pooledRows.shape), pooledRows])
    }
    return (embeddings, pooledRows, warnings)
  }

  /// SDXL's micro-conditioning rows (`add_time_ids`), unconditional first when guided: original
  /// (h, w) + crop (top, left) + target (h, w), or for a refiner (`aesthetic`) original + crop +
  /// aesthetic score.
  ///
  /// matches: `StableDiffusionXLPipeline._get_add_time_ids` and its negative rule (text-to-image:
  /// the negative row is the positive one unless both negative sizes are given), and
  /// `StableDiffusionXLImg2ImgPipeline`'s (`imageToImage`: negative sizes default to the positive
  /// ones, the negative row always takes the positive crop; with `requires_aesthetics_score` the
  /// negative row is negative original size (default: the positive one) + negative crop (default
  /// 0, 0) + negative aesthetic score).
  static func sdxlTimeIds(
    _ p: GenerationParameters, width: Int, height: Int, imageToImage: Bool, guidance: Bool, aesthetic: Bool = false
  ) -> [[Float]] {
    func row(_ original: PixelSize, _ crop: CropOffset, _ target: PixelSize) -> [Float] {
      [original.height, original.width, crop.top, crop.left, target.height, target.width].map(Float.init)
    }
    let size = PixelSize(width: width, height: height)
    let original = p.originalSize ?? size
    let target = p.targetSize ?? size
    let crop = p.cropTopLeft ?? CropOffset(top: 0, left: 0)
    if aesthetic {
      func row(_ size: PixelSize, _ crop: CropOffset, _ score: Float) -> [Float] {
        [Float(size.height), Float(size.width), Float(crop.top), Float(crop.left), score]
      }
      let positive = row(original, crop, p.aestheticScore ?? 6.0)
      guard guidance else { return [positive] }
      let negative = row(
        p.negativeOriginalSize ?? original, p.negativeCropTopLeft ?? CropOffset(top: 0, left: 0),
        p.negativeAestheticScore ?? 2.5)
      return [negative, positive]
    }
    let positive = row(original, crop, target)
    guard guidance else { return [positive] }
    let negative: [Float]
    if imageToImage {
      negative = row(p.negativeOriginalSize ?? original, crop, p.negativeTargetSize ?? target)
    } else if let no = p.negativeOriginalSize, let nt = p.negativeTargetSize {
      negative = row(no, p.negativeCropTopLeft ?? CropOffset(top: 0, left: 0), nt)
    } else {
      negative = positive
    }
    return [negative, positive]
  }
}
