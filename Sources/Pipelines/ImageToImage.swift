import Imaging
import Models
import Schedulers
import TensorCore
import TorchRandom

/// Initial latents of a run that starts from an image, with where the loop starts.
struct StartingPoint {
  var latents: Tensor
  var startIndex: Int
  var stepExtension: (any DenoisingExtension)?
}

extension StableDiffusionPipeline {
  /// `retrieve_latents(vae.encode(image), generator)` × `scaling_factor`: the posterior sampled
  /// with the shared generator (one draw of the latent's size), as diffusers' `_encode_vae_image`;
  /// tiled as `vaeTiling` says.
  ///
  /// With `normalized` (SDXL image-to-image) and a VAE with `latents_mean`/`latents_std`:
  /// `(sample − mean) · scaling_factor / std` per channel instead, as
  /// `StableDiffusionXLImg2ImgPipeline.prepare_latents` (its inpainting pipeline does not).
  func encodeImage(
    _ pixels: Tensor, vaeTiling: VAETilingMode, normalized: Bool = false, generator: inout TorchGenerator
  ) throws -> Tensor {
    let posterior = try encodeVAE(pixels, tiling: vaeTiling)
    let shape = posterior.mean.shape
    let noise = generator.randn(nchw: [shape[0], shape[3], shape[1], shape[2]], layout: .nhwc)
    let sample = try posterior.sample(noise: noise)
    if normalized, let (mean, std) = vae.config.latentStatistics {
      let scaling = vae.config.scalingFactor
      return Self.perChannel(sample) { x, c in (x - mean[c]) * scaling / std[c] }
    }
    return Ops.scale(sample, vae.config.scalingFactor)
  }

  /// `f(value, channel)` over an NHWC tensor (the latent statistics' per-channel arithmetic).
  static func perChannel(_ x: Tensor, _ f: (Float, Int) -> Float) -> Tensor {
    let out = x.toFloat32(pooled: false)
    let channels = x.shape.last ?? 1
    let p = out.mutableFloatPointer
    for i in 0..<out.count { p[i] = f(p[i], i % channels) }
    return out
  }

  /// The RGB image as the VAE input `[1, H, W, 3]` in [−1, 1], resized (Pillow LANCZOS) to the
  /// output size as diffusers' `VaeImageProcessor.preprocess` does.
  func preprocessInitImage(_ image: Image, width: Int, height: Int, maxPixels: Int) throws -> Tensor {
    var processor = VaeImageProcessor(vaeScaleFactor: vaeScaleFactor)
    processor.maxPixels = maxPixels
    return try processor.preprocess(image.convertedToRGB(), height: height, width: width)
  }

  /// The first step for `strength`, or an error when no step would run.
  func firstStep(strength: Double, scheduler: any Scheduler, steps: Int) throws -> Int {
    guard strength > 0, strength <= 1 else {
      throw PipelineError.invalidArgument(name: "strength", reason: "\(strength) must be in (0, 1]")
    }
    let start = try scheduler.startIndex(strength: strength)
    guard start < scheduler.timesteps.count else {
      throw PipelineError.invalidArgument(
        name: "strength", reason: "\(strength) with \(steps) steps leaves no denoising step; raise --strength or --steps")
    }
    return start
  }

  /// The first step for `denoising_start`: the timesteps below `round(T − start · T)` run
  /// (T = `num_train_timesteps`, Python's half-to-even rounding).
  ///
  /// matches: `StableDiffusionXLImg2ImgPipeline.get_timesteps` with `denoising_start` (every
  /// sampler here has diffusers `order` 1).
  func denoisingStartIndex(_ start: Double, scheduler: any Scheduler) throws -> Int {
    let cutoff = timestepCutoff(start)
    let remaining = scheduler.timesteps.filter { $0 < cutoff }.count
    guard remaining > 0 else {
      throw PipelineError.invalidArgument(
        name: "denoising start", reason: "\(start) leaves no denoising step (every timestep is at or above \(Int(cutoff)))")
    }
    return scheduler.timesteps.count - remaining
  }

  /// Where an image-to-image or inpainting run starts: `denoising_start` when given, else `strength`.
  func startIndex(_ p: GenerationParameters, strength: Double, scheduler: any Scheduler) throws -> Int {
    if let start = p.denoisingStart { return try denoisingStartIndex(start, scheduler: scheduler) }
    return try firstStep(strength: strength, scheduler: scheduler, steps: p.steps)
  }

  /// Image-to-image: encode the image (or take the given latents), add the noise of the first
  /// remaining timestep — none with `denoising_start`.
  ///
  /// matches: diffusers `StableDiffusionImg2ImgPipeline.prepare_latents` and `get_timesteps`
  /// (random draws in order: the posterior sample, then the noise), and
  /// `StableDiffusionXLImg2ImgPipeline`'s 4-channel `image` (latents used as they are, no draw)
  /// and `denoising_start` (`add_noise=False`, no noise drawn).
  func imageToImageStart(
    _ p: GenerationParameters, width: Int, height: Int, scheduler: any Scheduler, vaeTiling: VAETilingMode,
    generator: inout TorchGenerator
  ) throws -> StartingPoint {
    let start = try startIndex(p, strength: p.strength ?? defaultStrength(inpainting: false), scheduler: scheduler)
    let initLatents: Tensor
    if let given = p.initLatents {
      initLatents = try Ops.nchwToNhwc(given)
    } else if let image = p.initImage {
      let pixels = try preprocessInitImage(image, width: width, height: height, maxPixels: p.maxPixels)
      initLatents = try encodeImage(pixels, vaeTiling: vaeTiling, normalized: isSDXL, generator: &generator)
    } else {
      throw PipelineError.invalidArgument(name: "initImage", reason: "image-to-image needs an init image or init latents")
    }
    guard p.denoisingStart == nil else { return StartingPoint(latents: initLatents, startIndex: start, stepExtension: nil) }
    let s = initLatents.shape
    let noise = generator.randn(nchw: [s[0], s[3], s[1], s[2]], layout: .nhwc)
    return StartingPoint(
      latents: try scheduler.addNoise(original: initLatents, noise: noise, stepIndex: start), startIndex: start,
      stepExtension: nil)
  }

  /// Inpainting with a 9-channel inpainting UNet or a regular 4-channel UNet.
  ///
  /// matches: diffusers `StableDiffusionInpaintPipeline` (0.42.1): mask = grayscale, resized like
  /// the image, binarised at 0.5; masked image = image × (mask < 0.5); mask at latent size by
  /// nearest interpolation; random draws in diffusers' order (image latents when needed, noise,
  /// masked-image latents); strength 1 starts from pure noise × `init_noise_sigma`. SDXL:
  /// `StableDiffusionXLInpaintPipeline`, the same steps, plus `denoising_start` (start from the
  /// image latents without noise; the noise is still drawn for the blending).
  func inpaintingStart(
    _ image: Image, mask: Image, width: Int, height: Int, strength: Double, denoisingStart: Double?,
    scheduler: any Scheduler, steps: Int, guidance: Bool, maxPixels: Int, vaeTiling: VAETilingMode,
    generator: inout TorchGenerator
  ) throws -> StartingPoint {
    let channels = unet.inChannels
    let latentChannels = vae.config.latentChannels
    guard channels == latentChannels || channels == 2 * latentChannels + 1 else {
      throw PipelineError.invalidArgument(
        name: "model", reason: "an inpainting UNet takes \(latentChannels) or \(2 * latentChannels + 1) input channels, this one \(channels)")
    }
    let start = try denoisingStart.map { try denoisingStartIndex($0, scheduler: scheduler) }
      ?? firstStep(strength: strength, scheduler: scheduler, steps: steps)
    let isStrengthMax = strength == 1
    let initPixels = try preprocessInitImage(image, width: width, height: height, maxPixels: maxPixels)
    let needsImageLatents = channels == latentChannels || !isStrengthMax || denoisingStart != nil
    let imageLatents = needsImageLatents ? try encodeImage(initPixels, vaeTiling: vaeTiling, generator: &generator) : nil
    let shape = [1, latentChannels, height / vaeScaleFactor, width / vaeScaleFactor]
    let noise = generator.randn(nchw: shape, layout: .nhwc)
    let latents = denoisingStart != nil
      ? imageLatents!
      : isStrengthMax
        ? Ops.scale(noise, scheduler.initNoiseSigma)
        : try scheduler.addNoise(original: imageLatents!, noise: noise, stepIndex: start)

    var maskProcessor = VaeImageProcessor.mask(vaeScaleFactor: vaeScaleFactor)
    maskProcessor.maxPixels = maxPixels
    let maskPixels = try maskProcessor.preprocess(mask, height: height, width: width)
    let keep = Ops.map(maskPixels) { m in SIMD16<Float>(repeating: 1).replacing(with: 0, where: m .>= SIMD16(repeating: 0.5)) }
    let maskedPixels = try Ops.mul(initPixels, try Ops.broadcastChannels(keep, to: initPixels.shape[3]))
    let maskedLatents = try encodeImage(maskedPixels, vaeTiling: vaeTiling, generator: &generator)
    let latentMask = try Ops.nearestDownsample(maskPixels, factor: vaeScaleFactor)
    let ext = InpaintingExtension(
      mask: latentMask, maskedImageLatents: maskedLatents, imageLatents: channels == latentChannels ? imageLatents : nil,
      noise: noise, guidance: guidance)
    return StartingPoint(latents: latents, startIndex: start, stepExtension: ext)
  }
}

/// The per-step part of inpainting.
///
/// 9-channel UNets get `[latents, mask, masked-image latents]` as input; 4-channel UNets get the
/// known region re-imposed after every step: `(1 − m)·add_noise(image_latents, noise, t_{i+1}) + m·latents`
/// (the last step run — the last before `denoising_end` — blends with the clean image latents).
final class InpaintingExtension: DenoisingExtension {
  let mask: Tensor
  let maskedImageLatents: Tensor
  let imageLatents: Tensor?
  let noise: Tensor
  let guidance: Bool
  private lazy var extra: Tensor? = try? {
    let one = try Ops.concatLast(mask, maskedImageLatents)
    return guidance ? try Ops.concatRows([one, one]) : one
  }()

  init(mask: Tensor, maskedImageLatents: Tensor, imageLatents: Tensor?, noise: Tensor, guidance: Bool) {
    self.mask = mask
    self.maskedImageLatents = maskedImageLatents
    self.imageLatents = imageLatents
    self.noise = noise
    self.guidance = guidance
  }

  func extraInputChannels(for input: Tensor, step: StepContext) throws -> Tensor? {
    imageLatents == nil ? extra : nil
  }

  func afterStep(_ latents: Tensor, step: StepContext, scheduler: any Scheduler) throws -> Tensor {
    guard let imageLatents else { return latents }
    var proper = imageLatents
    if step.position < step.count - 1 {
      proper = try scheduler.addNoise(original: imageLatents, noise: noise, stepIndex: step.index + 1)
    }
    // (1 − m)·proper + m·latents, with the mask broadcast over the latent channels.
    let m = try Ops.broadcastChannels(mask, to: latents.shape[3])
    let inverse = Ops.map(m) { SIMD16<Float>(repeating: 1) - $0 }
    return try Ops.add(try Ops.mul(inverse, proper), try Ops.mul(m, latents))
  }
}
