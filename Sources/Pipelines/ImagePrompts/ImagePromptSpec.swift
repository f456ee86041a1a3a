import FaceAnalysis
import Foundation
import Hub
import IPAdapter
import Imaging
import TensorCore

/// One adapter's image prompt as an app describes it: which files, which images, and every
/// control. `ImagePromptBuilder` turns a list of these into `ImagePrompt`s (loading adapters,
/// sharing image encoders, encoding and projecting the images).
///
/// matches: the image-prompt arguments of diffusers (`load_ip_adapter`, `ip_adapter_image`,
/// `ip_adapter_image_embeds`, `set_ip_adapter_scale`, `ip_adapter_masks`) and the controls of
/// ComfyUI_IPAdapter_plus (weight type, combine mode, embeds scaling, negative image, start/end).
public struct ImagePromptSpec: Sendable {
  /// The IP-Adapter checkpoint (`.safetensors`/`.bin`): a local path or a hub file.
  public var adapter: HubReference
  /// The CLIP image encoder folder; nil = `image_encoder/` beside the adapter (fetched from the
  /// same hub repo for a hub adapter, the h94/IP-Adapter layout).
  public var imageEncoder: HubReference?
  /// The reference images, encoded in order (tokens concatenated unless `combine` merges them).
  public var images: [Image] = []
  /// Precomputed embeddings (`ImagePromptEmbedsFile`) used instead of `images` and the encoder.
  public var embedsFile: URL?
  /// λ; 0 switches the adapter off exactly.
  public var scale: Float = 1
  /// How λ is spread over the layers; nil = `scale` everywhere. For `.preset` and `.comfy` the
  /// builder uses `scale` as their strength.
  public var layerScales: IPAdapterLayerScales?
  /// The steps where the adapter acts.
  public var window: IPAdapterStepWindow = .full
  public var embedsScaling: IPAdapterEmbedsScaling = .vOnly
  /// How several images combine before projection, with optional per-image weights (one per
  /// image).
  public var combine: IPAdapterCombineMode = .concat
  public var imageWeights: [Float]?
  /// The unconditional image convention (or a negative image).
  public var negative: IPAdapterNegativeImage = .zeros
  /// Regional masks, one per image after combining (white = where the image acts), resized to the
  /// output size.
  public var masks: [Image] = []
  /// A region `[H, W]` at the output size (1 inside) the adapter's attention output is limited to,
  /// sampled nearest per layer (`ImagePrompt.regionMask`; InstantID's `enhance_face_region`).
  public var regionMask: Tensor?

  // MARK: FaceID adapters

  /// Face embeddings `[N, D]`, one row per face (`FaceEmbeddingFile`; insightface's
  /// `normed_embedding`, 512-d) — what every FaceID adapter takes instead of `images`.
  public var faceEmbeddings: Tensor?
  /// FaceID-Plus: one aligned face crop per face (insightface `norm_crop`, 224×224), read by the
  /// CLIP image encoder.
  public var faceImages: [Image] = []
  /// FaceID adapters: photos to find the face in (one face each: the highest-scoring, as
  /// IP-Adapter's examples take `faces[0]`), analysed by `faceAnalyzer` — instead of
  /// `faceEmbeddings` and `faceImages`. The embedding is insightface's `normed_embedding` (the raw
  /// one for the Portrait "unnorm" adapter); FaceID-Plus also gets the 224² aligned crop.
  public var facePhotos: [Image] = []
  /// The face detector and recogniser for `facePhotos` (`FaceAnalyzer(models:)`; load it once
  /// and reuse it across generations).
  public var faceAnalyzer: FaceAnalyzer?
  /// insightface `det_size` for `facePhotos` (a multiple of 32).
  public var faceDetectionSize = 640
  /// The weight of the LoRA inside a FaceID adapter file (the reference's `lora_scale`, 1.0).
  public var faceIDLoRAScale: Float = 1
  /// FaceID-Plus v2's shortcut (`x + s·perceiver(x)`); nil = on when `faceIDShortcutScale` is
  /// set, else the reference's default: on for SDXL-wide (2048) adapters (only -plusv2_sdxl
  /// exists), off for SD1.5 (`-plus_sd15`; set it or the scale for `-plusv2_sd15`).
  public var faceIDShortcut: Bool?
  /// FaceID-Plus v2's `s_scale` (nil = 1.0).
  public var faceIDShortcutScale: Float?

  public init(adapter: HubReference, images: [Image] = [], scale: Float = 1) {
    self.adapter = adapter
    self.images = images
    self.scale = scale
  }

  /// The layer scales the builder applies for `scale`.
  var resolvedLayerScales: IPAdapterLayerScales {
    switch layerScales {
    case nil: return .uniform(scale)
    case .preset(let p, _)?: return .preset(p, scale: scale)
    case .comfy(var w)?:
      w.weight = Double(scale)
      return .comfy(w)
    case let other?: return other
    }
  }
}
