// Generates images with an image prompt through the engine's async library API:
//
//   tiny-generation MODEL ADAPTER IMAGE OUTPUT_PREFIX
//
// MODEL is a diffusers folder, a single-file checkpoint or a hub reference; ADAPTER an IP-Adapter
// file (local or hub; its image encoder is `image_encoder/` beside it); IMAGE the image prompt.
// Writes OUTPUT_PREFIX-<seed>.png for two seeds: the text and the image prompt are encoded once and
// reused, as an app generating variations would.
import Foundation
import Hub
import Imaging
import Pipelines

let arguments = CommandLine.arguments
guard arguments.count == 5 else {
  FileHandle.standardError.write(Data("usage: tiny-generation MODEL ADAPTER IMAGE OUTPUT_PREFIX\n".utf8))
  exit(2)
}

do {
  let pipeline = try await StableDiffusionPipeline.load(try ModelSource.parse(arguments[1]))

  var parameters = GenerationParameters(prompt: "a red cube on a table")
  parameters.negativePrompt = "blurry"
  parameters.steps = 4

  // Phase 1, once: the image prompt (adapter + CLIP image encoder) and the text.
  let spec = ImagePromptSpec(
    adapter: try HubReference.parse(arguments[2]), images: [try Image(contentsOfFile: arguments[3])], scale: 0.6)
  let imagePrompts = try await ImagePromptBuilder().build([spec], for: pipeline, parameters: parameters)
  let text = try await pipeline.encodeText(for: parameters)

  // Phases 2 and 3, per seed, with progress events.
  for seed in [1, 2] as [UInt64] {
    parameters.seed = seed
    var result: GenerationResult?
    for try await event in pipeline.generationEvents(parameters, conditioning: text, imagePrompts: imagePrompts.prompts) {
      switch event {
      case .step(let step): print("seed \(seed): step \(step.step)/\(step.total)")
      case .preview: break
      case .finished(let r): result = r
      }
    }
    guard let result else { throw CancellationError() }
    let path = "\(arguments[4])-\(seed).png"
    try result.image.writePNG(to: path, text: [PNGTextChunk(key: "parameters", value: result.parametersText)])
    print("wrote \(path) (\(result.image.width)×\(result.image.height))")
  }
} catch {
  FileHandle.standardError.write(Data("error: \(error)\n".utf8))
  exit(1)
}
