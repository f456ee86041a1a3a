import IPAdapter
import Models
import TensorCore

/// An image prompt with a step window: its attention sources (computed once) are attended to only
/// at the steps inside the window; elsewhere the generation is exactly the base model's.
///
/// matches: the official IP-Adapter `StableDiffusionXLCustomPipeline` gating (scale set to 0 when
/// `i/len < start` or `(i+1)/len > end`).
final class ImagePromptWindowExtension: DenoisingExtension {
  let sources: [Int: [AttentionSource]]
  let window: IPAdapterStepWindow

  init(sources: [Int: [AttentionSource]], window: IPAdapterStepWindow) {
    self.sources = sources
    self.window = window
  }

  func conditioning(_ base: CrossAttentionConditioning, step: StepContext) throws -> CrossAttentionConditioning {
    guard window.isActive(step: step.position, of: step.count) else { return base }
    var c = base
    for (layer, list) in sources {
      for s in list { c.append(s, toLayer: layer) }
    }
    return c
  }
}

extension StableDiffusionPipeline {
  /// Adds every image prompt to the conditioning (whole-run prompts) or to the loop (windowed
  /// prompts), with masks downsampled for the output size.
  func attach(_ prompts: [ImagePrompt], to conditioning: inout CrossAttentionConditioning, loop: inout DenoisingLoop, width: Int, height: Int) throws {
    let latent = (height: height / vaeScaleFactor, width: width / vaeScaleFactor)
    let blocks = unet.config.blockOutChannels.count
    for prompt in prompts {
      if let masks = prompt.masks, masks.shape[1] != height || masks.shape[2] != width {
        throw PipelineError.invalidArgument(
          name: "IP-Adapter mask", reason: "masks are \(masks.shape[2])×\(masks.shape[1]), the output is \(width)×\(height)")
      }
      let sources = try prompt.sources(batch: conditioning.batch, latentSize: latent, blockCount: blocks)
      if prompt.window == .full {
        for (layer, list) in sources {
          for s in list { conditioning.append(s, toLayer: layer) }
        }
      } else {
        loop.extensions.append(ImagePromptWindowExtension(sources: sources, window: prompt.window))
      }
    }
  }
}
