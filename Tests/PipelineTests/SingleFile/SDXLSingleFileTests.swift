import Foundation
import Imaging
import Models
import Pipelines
import TensorCore
import Testing
import TestSupport
import Weights

/// SDXL single files (`tools/reference/gen_single_file_sdxl.py`): a tiny SDXL pipeline converted
/// by diffusers' `convert_diffusers_to_original_sdxl.py` into the `sd_xl_base_1.0.safetensors`
/// layout — UNet with `label_emb`, CLIP under `conditioner.embedders.0.transformer`, OpenCLIP under
/// `conditioner.embedders.1.model` with fused `in_proj` and a transposed `text_projection` — and
/// read back by diffusers' `from_single_file` to the original tensors, bit for bit. Generation
/// tolerances as SD1.5: latents relative error ≤ 1e-4, PNG within 1/255 on ≥ 99 %.
@Suite struct SDXLSingleFileTests {
  static let file = Fixtures.url("single-file/tiny-sdxl.safetensors")
  static let configs = Fixtures.url("single-file/tiny-sdxl-configs")

  static func load() throws -> StableDiffusionPipeline {
    var options = PipelineLoadOptions()
    options.singleFileConfigs = configs
    return try StableDiffusionPipeline.load(.singleFile(file), options: options)
  }

  @Test func sdxlCheckpointIsDetectedWithItsComponents() throws {
    let checkpoint = try SingleFileCheckpoint(path: Self.file.path)
    #expect(checkpoint.modelType == .sdxl)
    #expect(checkpoint.clipPrefix == "conditioner.embedders.0.transformer.text_model.")
    #expect(checkpoint.ignoredKeys == ["conditioner.embedders.1.model.logit_scale"])
  }

  /// The OpenCLIP encoder's q, k, v are the thirds of `in_proj_weight` and `text_projection`
  /// is the transpose of the stored matrix: the same tensors as the diffusers folder's.
  @Test func openCLIPEncoderReadsAsTheDiffusersTextEncoder2() throws {
    let checkpoint = try SingleFileCheckpoint(path: Self.file.path)
    let derived = try checkpoint.openCLIPWeights()
    let folder = try SafeTensorsFile(path: Fixtures.url("tiny-sdxl/text_encoder_2/model.safetensors").path)
    #expect(Set(derived.keys) == Set(folder.keys.filter { !$0.hasSuffix("position_ids") }))
    for key in derived.keys {
      let a = try derived.tensor(key).toFloat32()
      let b = try folder.tensor(key).toFloat32()
      #expect(a.shape == b.shape, "\(key)")
      #expect(Compare.relativeError(a, b) == 0, "\(key)")
    }
  }

  @Test func sdxlSingleFileMatchesDiffusersFromSingleFile() throws {
    let pipe = try Self.load()
    #expect(pipe.isSDXL)
    var p = GenerationParameters(prompt: "a red cube")
    p.negativePrompt = "blurry, low quality"
    (p.width, p.height, p.steps, p.seed) = (64, 48, 4, 0)
    let result = try pipe.generate(p)
    #expect(result.parametersText.contains("CFG scale: 5.0"), "\(result.parametersText)")
    let expected = try SafeTensorsFile(path: Fixtures.url("single-file/sdxl-t2i.safetensors").path).tensor("latents")
    #expect(result.latents.shape == expected.shape)
    #expect(Compare.relativeError(result.latents, expected) <= 1e-4)
    let png = try Image(contentsOfFile: Fixtures.url("single-file/sdxl-t2i.png").path)
    #expect(Compare.closeFraction(result.image, png) >= 0.99)
  }

  @Test func sd15ConfigsForAnSDXLFileAreRefused() throws {
    var options = PipelineLoadOptions()
    options.singleFileConfigs = Fixtures.url("tiny-sd15")
    #expect(throws: PipelineError.self) { try StableDiffusionPipeline.load(.singleFile(Self.file), options: options) }
  }

  /// The bundled SDXL base configs decode and validate (what a civitai SDXL file is built with).
  @Test func bundledSDXLConfigsDescribeTheRealModel() throws {
    let root = BundledConfigs.stableDiffusionXL
    let unet = try ConfigFile.load(UNet2DConditionConfig.self, from: root.appendingPathComponent("unet/config.json"))
    try unet.validate(path: "unet/config.json")
    #expect(unet.textTimeEmbedding?.timeEmbedDim == 256 && unet.textTimeEmbedding?.inputDim == 2816)
    #expect(unet.transformerLayersList == [1, 2, 10] && unet.crossAttentionWidth == 2048)
    let te2 = try ConfigFile.load(CLIPTextConfig.self, from: root.appendingPathComponent("text_encoder_2/config.json"))
    #expect(te2.hiddenSize == 1280 && te2.projectionDim == 1280 && te2.numHiddenLayers == 32)
    let vae = try ConfigFile.load(AutoencoderKLConfig.self, from: root.appendingPathComponent("vae/config.json"))
    #expect(vae.scalingFactor == 0.13025)
  }
}
