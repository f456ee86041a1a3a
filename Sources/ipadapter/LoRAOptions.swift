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

  /// `FILE[:WEIGHT]` (`LoRAReference.parse`), a local file checked before anything loads.
  static func parse(_ text: String) throws -> LoRAReference {
    let reference: LoRAReference
    do {
      reference = try LoRAReference.parse(text)
    } catch let error as PipelineError {
      throw CLIError.invalid("--lora", "\(error)")
    }
    if let url = reference.file.localURL, !FileManager.default.fileExists(atPath: url.path) {
      throw CLIError.invalid("--lora", "file not found: \(url.path)")
    }
    return reference
  }

  func apply(to options: inout PipelineLoadOptions) throws {
    options.loras = try lora.map { try Self.parse($0) }
    options.ignoreUnmatchedLoRALayers = loraIgnoreUnmatched
  }
}
