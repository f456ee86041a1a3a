import ArgumentParser
import Foundation
import Imaging
import Models
import NN
import Pipelines
import TensorCore

/// `ipadapter bench precision`: how close the bf16 mode stays to fp32 (PSNR).
struct BenchPrecisionCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "precision",
    abstract: "PSNR of bf16 against fp32: a real-size UNet step (random weights) and a whole generation with --model.")

  @Option(help: "A pipeline folder to generate with in both precisions (e.g. Tests/Fixtures/tiny-sd15).")
  var model: String?

  @Option(help: "Steps of the --model generation.")
  var steps: Int = 20

  @Flag(help: "Skip the real-size UNet comparison.")
  var skipUNet = false

  func run() throws {
    if !skipUNet {
      let psnr = try unetStep()
      print(String(format: "real-size SD1.5 UNet, one step at 64×64 (CFG batch 2, random weights): PSNR %.1f dB", psnr))
    }
    if let model {
      let (image, latents) = try generation(model)
      print(String(format: "%@: %d-step generation, PSNR of the 8-bit image %.1f dB, of the final latents %.1f dB", model, steps, image, latents))
    }
  }

  /// PSNR with the reference's peak-to-peak range as the signal.
  static func psnr(_ a: [Float], _ reference: [Float]) -> Double {
    var mse = 0.0
    for i in 0..<a.count {
      let d = Double(a[i] - reference[i])
      mse += d * d
    }
    mse /= Double(max(a.count, 1))
    let range = Double((reference.max() ?? 0) - (reference.min() ?? 0))
    return mse == 0 ? .infinity : 10 * log10(range * range / mse)
  }

  func unetStep() throws -> Double {
    var outputs: [[Float]] = []
    for precision in [ComputePrecision.float32, .bfloat16] {
      let bench = ModelBench(precision: precision, repeats: 1, steps: 1)
      let unet = try bench.unet()
      let conditioning = try unet.makeConditioning(encoderHiddenStates: Tensor.random([2, 77, 768], seed: 7))
      outputs.append(try unet(Tensor.random([2, 64, 64, 4], seed: 10), timestep: 500, conditioning: conditioning).scalars())
    }
    return Self.psnr(outputs[1], outputs[0])
  }

  func generation(_ folder: String) throws -> (Double, Double) {
    var images: [[Float]] = []
    var latents: [[Float]] = []
    for precision in [ComputePrecision.float32, .bfloat16] {
      let pipe = try StableDiffusionPipeline(folder: URL(fileURLWithPath: folder), precision: precision)
      var p = GenerationParameters(prompt: "a red cube")
      p.steps = steps
      p.seed = 0
      let r = try pipe.generate(p)
      images.append(r.image.pixels.map(Float.init))
      latents.append(r.latents.scalars())
    }
    // 8-bit images: the signal peak is 255 whatever the content.
    var mse = 0.0
    for i in 0..<images[0].count {
      let d = Double(images[1][i] - images[0][i])
      mse += d * d
    }
    mse /= Double(images[0].count)
    let imagePSNR = mse == 0 ? Double.infinity : 10 * log10(255 * 255 / mse)
    return (imagePSNR, Self.psnr(latents[1], latents[0]))
  }
}
