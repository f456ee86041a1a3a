import Foundation
import Models
import NN
import TensorCore
import Testing
import TestSupport
import Weights

/// Parity of the tiny SD1.5 components with diffusers/transformers
/// (`tools/reference/gen_sd15.py` → `Fixtures/goldens/sd15-modules.safetensors`).
@Suite struct SD15ModuleParityTests {
  let goldens: SafeTensorsFile
  let pipeline = Fixtures.url("tiny-sd15")

  init() throws { goldens = try Fixtures.archive("goldens/sd15-modules.safetensors") }

  func g(_ key: String) throws -> Tensor { try goldens.tensor(key) }

  func ids() throws -> [[Int]] {
    let flat = try goldens.int64Values("text.ids").map(Int.init)
    return [Array(flat[0..<77]), Array(flat[77..<154])]
  }

  @Test func textEncoderMatchesTransformers() throws {
    let model = try ModelLoader.textEncoder(pipeline.appendingPathComponent("text_encoder"))
    let out = try model(try ids(), keepHiddenStates: true)
    // Three fp32 transformer layers: relative error ≤ 1e-5.
    #expect(Compare.relativeError(out.lastHiddenState, try g("text.last_hidden_state")) <= 1e-5)
    #expect(Compare.relativeError(out.hiddenStates[out.hiddenStates.count - 2], try g("text.hidden_states_-2")) <= 1e-5)
  }

  @Test func textEncoderClipSkipMatchesDiffusers() throws {
    let model = try ModelLoader.textEncoder(pipeline.appendingPathComponent("text_encoder"))
    let skipped = try model.encode(try ids(), clipSkip: 1)
    #expect(Compare.relativeError(skipped, try g("text.clip_skip_1")) <= 1e-5)
  }

  @Test(arguments: ["999", "500", "1", "946.4734"])
  func unetMatchesDiffusers(timestep: String) throws {
    let unet = try ModelLoader.unet(pipeline.appendingPathComponent("unet"))
    let sample = try g("unet.sample").nhwc()
    let conditioning = try unet.makeConditioning(encoderHiddenStates: try g("unet.context"))
    let out = try unet(sample, timestep: Float(timestep)!, conditioning: conditioning)
    // A full UNet pass (≈60 kernels deep) in fp32: relative error ≤ 1e-5 (observed ~2e-6).
    #expect(Compare.relativeError(out, try g("unet.out_t\(timestep)").nhwc()) <= 1e-5)
  }

  @Test func vaeDecoderMatchesDiffusers() throws {
    let vae = try ModelLoader.vae(pipeline.appendingPathComponent("vae"))
    let image = try vae.decode(try g("vae.latents").nhwc())
    #expect(Compare.relativeError(image, try g("vae.decoded").nhwc()) <= 1e-5)
  }

  @Test func vaeEncoderMatchesDiffusers() throws {
    let vae = try ModelLoader.vae(pipeline.appendingPathComponent("vae"))
    let dist = try vae.encode(try g("vae.image").nhwc())
    #expect(Compare.relativeError(dist.mean, try g("vae.mean").nhwc()) <= 1e-5)
    #expect(Compare.relativeError(dist.logVariance, try g("vae.logvar").nhwc()) <= 1e-5)
  }
}
