import Foundation
import Hub
import IPAdapter
import Imaging
import Models
import NN
import Pipelines
import Schedulers
import TensorCore
import Testing
import TestSupport
import Weights

/// End to end: a single file generates the folder pipeline's image (bit for bit when the stored
/// dtypes are the folder's), with and without an IP-Adapter; `--vae` files in both layouts; the
/// BF16 inpainting `.ckpt` against diffusers' `from_single_file` on the same file.
/// Tolerances where dtypes differ: latents relative error ≤ 1e-4, PNG within 1/255 on ≥ 99 %.
@Suite struct SingleFilePipelineTests {
  typealias F = SingleFileFixtures

  @Test func safetensorsGeneratesTheFolderImageBitForBit() throws {
    let folder = try StableDiffusionPipeline(folder: F.folder).generate(F.parameters)
    let single = try F.singleFile().generate(F.parameters)
    #expect(F.identical(single.latents, folder.latents))
    #expect(single.image.pixels == folder.image.pixels)
    let fields = single.parametersText.split(separator: "\n").last?.components(separatedBy: ", ") ?? []
    #expect(fields.contains("Model: tiny-sd15"))
  }

  @Test func withAnIPAdapterGeneratesTheFolderImageBitForBit() throws {
    func generate(_ pipe: StableDiffusionPipeline) throws -> GenerationResult {
      let adapter = try IPAdapter(
        path: Fixtures.url("tiny-ip-adapter/models/ip-adapter-plus_sd15.safetensors").path, unet: pipe.unet)
      let encoder = try ImagePromptEncoder(
        folder: Fixtures.url("tiny-ip-adapter/models/image_encoder"), processorConfig: pipe.featureExtractorConfig)
      let image = try Image(contentsOfFile: Fixtures.url("images/reference.png").path)
      let embeds = try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: [image])
      return try pipe.generate(F.parameters, imagePrompts: [ImagePrompt(adapter: adapter, embeds: embeds, scale: 0.6)])
    }
    let folder = try generate(try StableDiffusionPipeline(folder: F.folder))
    let single = try generate(try F.singleFile())
    #expect(F.identical(single.latents, folder.latents))
    #expect(single.image.pixels == folder.image.pixels)
    // The adapter changed the image (the comparison is not vacuous).
    let plain = try StableDiffusionPipeline(folder: F.folder).generate(F.parameters)
    #expect(plain.image.pixels != folder.image.pixels)
  }

  /// The same VAE in three files: diffusers layout, LDM layout without prefix, and a whole
  /// checkpoint (`first_stage_model.`).
  @Test(arguments: ["tiny-sd15/vae/diffusion_pytorch_model.safetensors", "single-file/tiny-vae-ldm.safetensors",
                    "single-file/tiny-sd15.safetensors"])
  func vaeFileGivesTheFolderImageBitForBit(file: String) throws {
    let folder = try StableDiffusionPipeline(folder: F.folder).generate(F.parameters)
    let single = try F.singleFile(vae: Fixtures.url(file)).generate(F.parameters)
    #expect(F.identical(single.latents, folder.latents))
    #expect(single.image.pixels == folder.image.pixels)
  }

  /// The swap is real: the BF16 `.ckpt` with the F16 LDM VAE file decodes with F16 weights, and a
  /// folder takes the `.ckpt`'s BF16 VAE.
  @Test func vaeFileReplacesTheModelsOwnVAE() throws {
    func vaeType(_ pipe: StableDiffusionPipeline) -> DType? { pipe.vae.namedParameters().first?.1.storedValue?.dtype }
    let ckpt = try F.singleFile(F.ckpt)
    #expect(vaeType(ckpt) == .bfloat16)
    #expect(vaeType(try F.singleFile(F.ckpt, vae: F.ldmVAE)) == .float16)

    let folder = try StableDiffusionPipeline(folder: F.folder)
    #expect(vaeType(folder) == .float16)
    let swapped = try StableDiffusionPipeline.load(try ModelSource.resolve(F.folder), options: PipelineLoadOptions(vae: .local(F.ckpt.path)))
    #expect(vaeType(swapped) == .bfloat16)
    let reference = try folder.generate(F.parameters)
    let result = try swapped.generate(F.parameters)
    #expect(F.identical(result.latents, reference.latents))  // the VAE only decodes
    #expect(result.image.pixels != reference.image.pixels)
    #expect(Compare.closeFraction(result.image, reference.image) >= 0.9)
  }

  @Test func aFolderPipelineTakesAnLDMVAEFile() throws {
    let folder = try StableDiffusionPipeline(folder: F.folder).generate(F.parameters)
    let swapped = try StableDiffusionPipeline.load(try ModelSource.resolve(F.folder), options: PipelineLoadOptions(vae: .local(F.ldmVAE.path))).generate(F.parameters)
    #expect(F.identical(swapped.latents, folder.latents))
    #expect(swapped.image.pixels == folder.image.pixels)
  }

  @Test func modelSourceLoadsTheSameModelFromTheFolderAndTheFile() throws {
    let a = try StableDiffusionPipeline.load(try ModelSource.resolve(F.folder)).generate(F.parameters)
    var options = PipelineLoadOptions()
    options.singleFileConfigs = F.folder
    let b = try StableDiffusionPipeline.load(try ModelSource.resolve(F.safetensors), options: options).generate(F.parameters)
    #expect(F.identical(a.latents, b.latents))
  }

  /// `gen_single_file.py`: diffusers' `StableDiffusionInpaintPipeline.from_single_file` on the BF16
  /// `.ckpt`, the case `inpaint9-ddim-1.0` of the folder goldens. The configs given are the
  /// 4-channel tiny-sd15 ones: `in_channels` follows the file.
  @Test func bf16InpaintingCkptMatchesDiffusersFromSingleFile() throws {
    let pipe = try F.singleFile(F.ckpt)
    #expect(pipe.unet.inChannels == 9)
    var p = F.parameters
    p.steps = 4
    p.scheduler = try SchedulerKind(cliName: "ddim")
    p.strength = 1.0
    p.initImage = try Image(contentsOfFile: Fixtures.url("images/init-64.png").path)
    p.mask = try Image(contentsOfFile: Fixtures.url("images/mask-64.png").path)
    let result = try pipe.generate(p)
    let golden = Fixtures.url("single-file/inpaint9-ddim-1.0-bf16")
    let latents = try SafeTensorsFile(path: golden.appendingPathExtension("safetensors").path).tensor("latents")
    #expect(result.latents.shape == latents.shape)
    #expect(Compare.relativeError(result.latents, latents) <= 1e-4)
    let png = try Image(contentsOfFile: golden.appendingPathExtension("png").path)
    #expect(Compare.closeFraction(result.image, png) >= 0.99)
  }

  @Test func theBundledSD15ConfigsRefuseTheTinyFileNamingItsKeys() throws {
    let error = try #require(throws: WeightLoadingError.self) {
      _ = try StableDiffusionPipeline.load(.singleFile(F.safetensors))
    }
    #expect(error.source.hasPrefix(F.safetensors.path))
    #expect(!error.shapeMismatches.isEmpty)
  }
}
