import Foundation
import IPAdapter
import Imaging
import Models
import NN
@testable import Pipelines
import TensorCore
import TestSupport
import Testing

/// What a request loads for a pipeline (adapters, image encoders, ControlNets) is prepared for the
/// pipeline's precision, so `--precision bf16` covers them as it covers the UNet.
@Suite struct RequestPrecisionTests {
  @Test func aBF16PipelinePreparesRequestAdaptersAndControlNetsInBF16() async throws {
    for precision in [ComputePrecision.bfloat16, .float32] {
      let pipeline = try StableDiffusionPipeline(folder: Fixtures.url("tiny-sdxl"), precision: precision)
      var spec = ImagePromptSpec(adapter: .local(Fixtures.url("instantid/tiny-instantid/ip-adapter.bin").path), scale: 0.8)
      spec.faceEmbeddings = try Tensor(shape: [1, 24], floats: (0..<24).map { Float($0) / 10 - 1 })
      var p = GenerationParameters(prompt: "a portrait")
      (p.width, p.height) = (64, 48)
      let built = try await ImagePromptBuilder().build([spec], for: pipeline, parameters: p)
      let resampler = try #require(built.prompts[0].adapter.projection as? Resampler)
      #expect(resampler.projIn.precision == precision)
      let units = try await pipeline.loadControlNets([
        ControlNetSpec(model: .local(Fixtures.url("tiny-sdxl-controlnet").path), image: Image(width: 64, height: 48, format: .rgb))
      ])
      #expect(units[0].model.controlNetMidBlock.precision == precision)
    }
  }
}
