import Foundation
import TensorCore
import Weights

/// Precomputed image-prompt embeddings on disk, so that a generation needs no image encoder:
/// F32 safetensors with `image_prompt_embeds` and `uncond_image_prompt_embeds`, both `[1, N·T, C]`
/// (the projected tokens; written by `ipadapter embed`), or diffusers' `ip_adapter_image_embeds`
/// layout (one tensor `[2, N, D]` or `[2, N, S, D]` of CLIP features, negative half first, projected
/// on reading).
///
/// matches: diffusers `prepare_ip_adapter_image_embeds` input format for the second layout.
public enum ImagePromptEmbedsFile {
  public static let conditionalKey = "image_prompt_embeds"
  public static let unconditionalKey = "uncond_image_prompt_embeds"

  /// Writes `embeds` (as produced for `adapter`) atomically to `path`.
  public static func write(_ embeds: ImagePromptEmbeds, adapter: IPAdapter, to path: String) throws {
    try SafeTensorsWriter.write(
      [conditionalKey: embeds.conditional.asFloat32(), unconditionalKey: embeds.unconditional.asFloat32()],
      metadata: ["ip_adapter": URL(fileURLWithPath: adapter.path).lastPathComponent, "variant": "\(adapter.variant)"],
      to: path)
  }

  /// Reads embeddings for `adapter`, checking their shape against it.
  /// - Throws: `IPAdapterError.badEmbeds` naming the file and what does not fit.
  public static func read(_ path: String, adapter: IPAdapter) throws -> ImagePromptEmbeds {
    let file = try SafeTensorsFile(path: path)
    if file.info(conditionalKey) == nil, file.keys.count == 1, let info = file.info(file.keys[0]),
      info.shape.count == 3 || info.shape.count == 4, info.shape.first == 2
    {
      return try diffusersLayout(try file.tensor(file.keys[0]).toFloat32(), path: path, adapter: adapter)
    }
    for key in [conditionalKey, unconditionalKey] where file.info(key) == nil {
      throw IPAdapterError.badEmbeds(
        path: path,
        reason: "no tensor '\(key)' (write the file with 'ipadapter embed', or store one diffusers ip_adapter_image_embeds tensor [2, N, …])")
    }
    let cond = try file.tensor(conditionalKey).toFloat32()
    let uncond = try file.tensor(unconditionalKey).toFloat32()
    let c = adapter.variant.crossDim
    guard cond.rank == 3, cond.shape[0] == 1, cond.shape[1] > 0, cond.shape[2] == c, uncond.shape == cond.shape else {
      throw IPAdapterError.badEmbeds(
        path: path,
        reason: "embeddings must be [1, tokens, \(c)] for \(URL(fileURLWithPath: adapter.path).lastPathComponent), got \(cond.shape) and \(uncond.shape)")
    }
    if let t = adapter.projection.tokensPerImage, cond.shape[1] % t != 0 {
      throw IPAdapterError.badEmbeds(path: path, reason: "\(cond.shape[1]) tokens is not a multiple of the adapter's \(t) tokens per image")
    }
    return ImagePromptEmbeds(
      conditional: cond, unconditional: uncond, imageCount: adapter.projection.tokensPerImage.map { cond.shape[1] / $0 } ?? 1)
  }

  /// diffusers' `ip_adapter_image_embeds` entry: CLIP features `[2, N, D]` (global adapters) or
  /// `[2, N, S, D]` (hidden states), or face embeddings `[2, N, 1, D]` (FaceID), negative half
  /// first — projected here like diffusers' UNet does.
  static func diffusersLayout(_ t: Tensor, path: String, adapter: IPAdapter) throws -> ImagePromptEmbeds {
    let n = t.shape[1]
    let perHalf = Array(t.shape.dropFirst())
    guard perHalf.allSatisfy({ $0 > 0 }) else {
      throw IPAdapterError.badEmbeds(path: path, reason: "diffusers embeds \(t.shape) have an empty dimension")
    }
    if case .faceID(let f) = adapter.variant {
      // FaceID: `[2, N, 1, D]` or `[2, N, D]` face embeddings (diffusers' FaceID examples), negative first.
      guard (perHalf.count == 2 || (perHalf.count == 3 && perHalf[1] == 1)), perHalf.last == f.idDim else {
        throw IPAdapterError.badEmbeds(
          path: path, reason: "diffusers FaceID embeds \(t.shape) do not fit \(URL(fileURLWithPath: adapter.path).lastPathComponent), which takes [2, N, 1, \(f.idDim)] face embeddings")
      }
      let negative = t.slice(rows: 0..<1).reshaped([n, f.idDim])
      let positive = t.slice(rows: 1..<2).reshaped([n, f.idDim])
      return ImagePromptEmbeds(
        conditional: try adapter.tokens(positive), unconditional: try adapter.tokens(negative), imageCount: n)
    }
    if case .faceIDPlus = adapter.variant {
      throw IPAdapterError.badEmbeds(
        path: path, reason: "a FaceID-Plus adapter needs the face crop's CLIP features besides the embeddings: give --face-image, or --face-embedding and --face-crop (or embeddings written by 'ipadapter embed')")
    }
    let wantsEmbeds = adapter.variant.usesImageEmbeds
    guard (wantsEmbeds && perHalf.count == 2) || (!wantsEmbeds && perHalf.count == 3), perHalf.last == adapter.variant.inputWidth
    else {
      throw IPAdapterError.badEmbeds(
        path: path,
        reason: "diffusers embeds \(t.shape) do not fit \(URL(fileURLWithPath: adapter.path).lastPathComponent), which takes \(wantsEmbeds ? "[2, N, \(adapter.variant.inputWidth)]" : "[2, N, tokens, \(adapter.variant.inputWidth)]")")
    }
    let negative = t.slice(rows: 0..<1).reshaped(perHalf)
    let positive = t.slice(rows: 1..<2).reshaped(perHalf)
    return ImagePromptEmbeds(
      conditional: try adapter.tokens(positive), unconditional: try adapter.tokens(negative), imageCount: n)
  }
}
