import ArgumentParser
import Pipelines

/// The SDXL flags of `ipadapter generate`, named after diffusers' `StableDiffusionXLPipeline`
/// arguments. Sizes are `WxH` (diffusers takes `(height, width)`), crops `TOP,LEFT`.
struct SDXLOptions: ParsableArguments {
  @Option(name: .customLong("prompt-2"), help: "SDXL: the prompt for the second text encoder (default: --prompt).")
  var prompt2: String?

  @Option(name: .customLong("negative-prompt-2"), help: "SDXL: the negative prompt for the second text encoder (default: --negative-prompt).")
  var negativePrompt2: String?

  @Option(help: "SDXL micro-conditioning: the original image size WxH (default: the output size).")
  var originalSize: PixelSize?

  @Option(help: "SDXL micro-conditioning: the target size WxH (default: the output size).")
  var targetSize: PixelSize?

  @Option(help: "SDXL micro-conditioning: the crop's top-left corner TOP,LEFT (default: 0,0).")
  var cropTopLeft: CropOffset?

  @Option(help: "SDXL: the unconditional original size WxH (default: --original-size; text-to-image uses the negative values only when both negative sizes are given, as diffusers).")
  var negativeOriginalSize: PixelSize?

  @Option(help: "SDXL: the unconditional target size WxH (default: --target-size).")
  var negativeTargetSize: PixelSize?

  @Option(help: "SDXL: the unconditional crop TOP,LEFT (default: 0,0).")
  var negativeCropTopLeft: CropOffset?

  @Option(help: "Stop after this fraction of the schedule (diffusers' denoising_end, 0 < x < 1), e.g. to hand the latents (--save-latents) to a refiner.")
  var denoisingEnd: Double?

  func apply(to p: inout GenerationParameters) {
    p.prompt2 = prompt2
    p.negativePrompt2 = negativePrompt2
    p.originalSize = originalSize
    p.targetSize = targetSize
    p.cropTopLeft = cropTopLeft
    p.negativeOriginalSize = negativeOriginalSize
    p.negativeTargetSize = negativeTargetSize
    p.negativeCropTopLeft = negativeCropTopLeft
    p.denoisingEnd = denoisingEnd
  }
}
