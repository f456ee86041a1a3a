import ArgumentParser
import Foundation
import Hub
import Pipelines

/// The LoRA flags of `ipadapter generate`.
struct LoRAOptions: ParsableArguments {
  @Option(
    name: .customLong("lora"),
    help: "A LoRA to fuse into the model: FILE[:WEIGHT] (default weight 1.0; .safetensors or .bin; kohya/A1111, LoCon, PEFT or diffusers layout; a local file or a hub file reference org/name/file.safetensors). Repeat for several (their products add up).")
  var lora: [String] = []

  @Flag(help: "Skip LoRA layers that match no layer of the model (a warning gives their number) instead of refusing the file.")
  var loraIgnoreUnmatched = false

  /// `FILE[:WEIGHT]`: the weight is what follows the last ':' when it is a number.
  static func parse(_ text: String) throws -> LoRAReference {
    var file = text
    var weight: Float = 1
    if let colon = text.lastIndex(of: ":"), let w = Float(text[text.index(after: colon)...]) {
      guard w.isFinite else { throw CLIError.invalid("--lora", "weight \(w) in '\(text)' is not a finite number") }
      file = String(text[..<colon])
      weight = w
    }
    guard !file.isEmpty else { throw CLIError.invalid("--lora", "'\(text)' names no file") }
    let reference = try HubReference.parse(file)
    if !reference.isRemote, !FileManager.default.fileExists(atPath: file) {
      throw CLIError.invalid("--lora", "file not found: \(file)")
    }
    return LoRAReference(reference, weight: weight)
  }

  func apply(to options: inout PipelineLoadOptions) throws {
    options.loras = try lora.map { try Self.parse($0) }
    options.ignoreUnmatchedLoRALayers = loraIgnoreUnmatched
  }
}
