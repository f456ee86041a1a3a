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

  @Option(help: "Image-to-image: skip this fraction of the schedule and add no noise (diffusers' denoising_start, 0 < x < 1): the refiner's half of a hand-off, with --init-latents (or --init-image).")
  var denoisingStart: Double?

  @Option(help: "A safetensors file with tensor 'latents' [1,4,H/8,W/8] to continue from (image-to-image without VAE encoding), e.g. a base model's --denoising-end --save-latents output.")
  var initLatents: String?

  @Option(help: "SDXL refiner (requires_aesthetics_score): the aesthetic score conditioning (default: 6.0).")
  var aestheticScore: Float?

  @Option(help: "SDXL refiner: the unconditional aesthetic score (default: 2.5).")
  var negativeAestheticScore: Float?

  func apply(to p: inout GenerationParameters) throws {
    p.prompt2 = prompt2
    p.negativePrompt2 = negativePrompt2
    p.originalSize = originalSize
    p.targetSize = targetSize
    p.cropTopLeft = cropTopLeft
    p.negativeOriginalSize = negativeOriginalSize
    p.negativeTargetSize = negativeTargetSize
    p.negativeCropTopLeft = negativeCropTopLeft
    p.denoisingEnd = denoisingEnd
    p.denoisingStart = denoisingStart
    p.aestheticScore = aestheticScore
    p.negativeAestheticScore = negativeAestheticScore
    if let initLatents { p.initLatents = try LatentsFile.read(initLatents, option: "--init-latents") }
  }
}
