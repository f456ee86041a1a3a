import Foundation
import Hub
import Models
import NN
import TensorCore
import IPAdapter
import Weights

/// A LoRA to apply: a local file or hub file, at a weight (`--lora FILE[:WEIGHT]`).
public struct LoRAReference: Sendable, Equatable {
  public var file: HubReference
  public var weight: Float
  public init(_ file: HubReference, weight: Float = 1) {
    self.file = file
    self.weight = weight
  }

  /// `FILE[:WEIGHT]` (AUTOMATIC1111-style `name:weight`): the weight is what follows the last `:`
  /// when it is a number (default 1); the rest is a local path or a hub file reference.
  public static func parse(_ text: String) throws -> LoRAReference {
    var file = text
    var weight: Float = 1
    if let colon = text.lastIndex(of: ":"), let w = Float(text[text.index(after: colon)...]) {
      guard w.isFinite else {
        throw PipelineError.invalidArgument(name: "LoRA weight", reason: "\(w) in '\(text)' is not a finite number")
      }
      file = String(text[..<colon])
      weight = w
    }
    guard !file.isEmpty else { throw PipelineError.invalidArgument(name: "LoRA", reason: "'\(text)' names no file") }
    return LoRAReference(try HubReference.parse(file), weight: weight)
  }
}

/// A LoRA fused into a pipeline's weights, as the PNG parameters record it.
public struct AppliedLoRA: Sendable {
  public var file: LoRAFile
  public var weight: Float
  /// AUTOMATIC1111's short hash (`Lora hashes:`): the first 12 hex digits of the sha256 of the
  /// tensor data (safetensors, the "addnet" hash) or of the whole file.
  public var shortHash: String
}

/// The LoRAs currently fused into a pipeline (guarded by a lock: read by generations, written by
/// `applyLoRAs` on the compute queue).
final class LoRAState: @unchecked Sendable {
  struct Value {
    /// The user's LoRAs (`applyLoRAs`), with what fusing them did and whether it skipped
    /// unmatched layers (re-fusing them must skip the same ones).
    var applied: [AppliedLoRA] = []
    var report: LoRAFusionReport?
    var ignoreUnmatched = false
    /// What is fused now (file path @ weight, in order): the user's LoRAs and the FaceID LoRAs
    /// of the last generation's image prompts.
    var fusedKey: [String] = []
  }
  private let lock = NSLock()
  private var stored = Value()
  var value: Value {
    get { lock.withLock { stored } }
    set { lock.withLock { stored = newValue } }
  }
  static func key(_ loras: [WeightedLoRA]) -> [String] { loras.map { "\($0.file.path)@\($0.weight)" } }
}

extension StableDiffusionPipeline {
  /// The LoRA lookup tables of this pipeline's UNet and text encoders.
  public var loraTargets: [LoRAComponent: LoRATargetTable] {
    var t: [LoRAComponent: LoRATargetTable] = [.unet: LoRATargetTable(component: .unet, model: unet, unetConfig: unet.config)]
    if let textEncoder { t[.textEncoder] = LoRATargetTable(component: .textEncoder, model: textEncoder) }
    if let xl = sdxl { t[.textEncoder2] = LoRATargetTable(component: .textEncoder2, model: xl.textEncoder2) }
    return t
  }

  /// bf16 compute keeps fused weights in bf16 (its kernels round to it anyway); fp32 in fp32.
  var loraStorage: DType { precision == .bfloat16 ? .bfloat16 : .float32 }

  /// The LoRAs fused into the weights now, in order.
  public var appliedLoRAs: [AppliedLoRA] { loraState.value.applied }

  /// What the last `applyLoRAs` did (layers fused, unmatched layers skipped); nil before any.
  public var loraReport: LoRAFusionReport? { loraState.value.report }

  /// Makes the UNet and text encoders' weights the loaded ones plus exactly `loras` (each at its
  /// weight; an empty list removes every LoRA). The products are added to the weights once, here
  /// (a denoising step then costs what it costs without LoRA); changing the set or the weights
  /// later starts again from the loaded weights without re-reading the model files. Runs on the
  /// pipeline's compute queue (after any generation in progress).
  ///
  /// matches: diffusers `load_lora_weights` per file + `set_adapters(names, weights)` + `fuse_lora()`.
  /// - Throws: `LoRAError` (unmatched layers unless `ignoreUnmatched`, shapes of another base
  ///   model, NaN) — the weights are unchanged then.
  @discardableResult
  public func applyLoRAs(_ loras: [(file: LoRAFile, weight: Float)], ignoreUnmatched: Bool = false) throws -> LoRAFusionReport {
    let hashes = try loras.map { try Self.loraShortHash(path: $0.file.path) }
    let weighted = loras.map { WeightedLoRA($0.file, weight: $0.weight) }
    return try compute.sync {
      let report = try LoRAFusion.apply(weighted, to: loraTargets, ignoreUnmatched: ignoreUnmatched, storage: loraStorage)
      loraState.value = LoRAState.Value(
        applied: zip(loras, hashes).map { AppliedLoRA(file: $0.0.file, weight: $0.0.weight, shortHash: $0.1) },
        report: report, ignoreUnmatched: ignoreUnmatched, fusedKey: LoRAState.key(weighted))
      return report
    }
  }

  /// Opens and applies local LoRA files (hub references must have been fetched: see `load`).
  @discardableResult
  public func applyLoRAs(files: [(path: String, weight: Float)], ignoreUnmatched: Bool = false) throws -> LoRAFusionReport {
    try applyLoRAs(files.map { (try LoRAFile(path: $0.path), $0.weight) }, ignoreUnmatched: ignoreUnmatched)
  }

  /// Makes the fused set the user's LoRAs plus the FaceID LoRAs of `imagePrompts` (each at its
  /// `faceIDLoRAScale`); nothing is recomputed when the set is unchanged. Called on the compute
  /// queue before denoising.
  ///
  /// matches: tencent-ailab/IP-Adapter FaceID's LoRA attention processors (`lora_scale`), which are
  /// the fused weights' arithmetic, and diffusers `load_ip_adapter` + `set_adapters("faceid_0", w)`.
  func syncFusedLoRAs(for imagePrompts: [ImagePrompt]) throws {
    var state = loraState.value
    var wanted = state.applied.map { WeightedLoRA($0.file, weight: $0.weight) }
    for p in imagePrompts {
      if let lora = p.adapter.faceIDLoRA, p.faceIDLoRAScale != 0 { wanted.append(WeightedLoRA(lora, weight: p.faceIDLoRAScale)) }
    }
    let key = LoRAState.key(wanted)
    guard key != state.fusedKey else { return }
    try LoRAFusion.apply(wanted, to: loraTargets, ignoreUnmatched: state.ignoreUnmatched, storage: loraStorage)
    state.fusedKey = key
    loraState.value = state
  }

  /// AUTOMATIC1111's LoRA short hash of a file.
  static func loraShortHash(path: String) throws -> String {
    var start: UInt64 = 0
    if let file = try? SafeTensorsFile(path: path) { start = UInt64(file.header.dataSectionOffset) }
    return String(try Digest.sha256(ofFile: path, from: start).prefix(12))
  }

  /// The prompt line and the `Lora hashes` field the PNG parameters get for the applied LoRAs.
  func loraParameters(prompt: String) -> (prompt: String, field: (String, String)?) {
    let applied = appliedLoRAs
    guard !applied.isEmpty else { return (prompt, nil) }
    var line = prompt
    for a in applied where !prompt.contains("<lora:\(a.file.name):") {
      line += " <lora:\(a.file.name):\(ParametersText.format(a.weight))>"
    }
    let hashes = applied.map { "\($0.file.name): \($0.shortHash)" }.joined(separator: ", ")
    return (line, ("Lora hashes", ParametersText.quoted(hashes)))
  }
}
