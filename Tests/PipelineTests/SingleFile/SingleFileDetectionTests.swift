import Foundation
import Models
import Pipelines
import TensorCore
import Testing
import TestSupport
import Weights

/// Model-type detection and refusals, VAE-file layouts, unsafe pickles, and `ModelSource`.
@Suite struct SingleFileDetectionTests {
  typealias F = SingleFileFixtures

  /// The tiny single file with `changes` applied (nil removes a key).
  func variant(_ changes: [String: Tensor?], dropping prefix: String? = nil) throws -> TensorDictionary {
    var tensors = try TensorDictionary(loading: try SafeTensorsFile(path: F.safetensors.path)).tensors
    if let prefix { tensors = tensors.filter { !$0.key.hasPrefix(prefix) } }
    for (key, value) in changes { tensors[key] = value }
    return TensorDictionary(tensors, name: "variant")
  }

  func refusal(_ archive: any TensorArchive) -> SingleFileError? {
    do {
      _ = try SingleFileCheckpoint(archive: archive, path: "model.safetensors")
      return nil
    } catch {
      return error as? SingleFileError
    }
  }

  @Test func stableDiffusion2IsRefusedByItsOpenCLIPKeys() throws {
    let error = refusal(try variant(["cond_stage_model.model.token_embedding.weight": Tensor.zeros([4, 4])]))
    #expect(
      error == .unsupportedModel(
        path: "model.safetensors", family: "Stable Diffusion 2.x",
        evidence: "OpenCLIP text encoder key 'cond_stage_model.model.token_embedding.weight'"))
    #expect(error?.description.contains("only Stable Diffusion 1.x and SDXL base") == true)
  }

  @Test func stableDiffusion2IsRefusedByItsCrossAttentionWidth() throws {
    let key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    guard case .unsupportedModel(_, let family, let evidence)? = refusal(try variant([key: Tensor.zeros([16, 1024])])) else {
      Issue.record("not refused")
      return
    }
    #expect(family == "Stable Diffusion 2.x")
    #expect(evidence.contains(key) && evidence.contains("1024"))
  }

  @Test func sdxlWithoutItsSecondEncoderAndTheRefinerAreRefused() throws {
    let key = "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight"
    #expect(
      refusal(try variant([key: Tensor.zeros([77, 4])]))
        == .unsupportedModel(
          path: "model.safetensors", family: "Stable Diffusion XL-style",
          evidence: "key '\(key)' but no OpenCLIP text encoder 'conditioner.embedders.1.model.*'"))
    let refiner = "conditioner.embedders.0.model.token_embedding.weight"
    #expect(
      refusal(try variant([refiner: Tensor.zeros([10, 4])]))
        == .unsupportedModel(
          path: "model.safetensors", family: "Stable Diffusion XL refiner",
          evidence: "OpenCLIP as the only text encoder ('\(refiner)')"))
  }

  @Test func otherInputChannelCountsAreRefused() throws {
    let key = "model.diffusion_model.input_blocks.0.0.weight"
    #expect(
      refusal(try variant([key: Tensor.zeros([16, 8, 3, 3])]))
        == .unsupportedModel(path: "model.safetensors", family: "InstructPix2Pix", evidence: "'\(key)' has shape [16, 8, 3, 3]"))
  }

  @Test func filesWithoutAnLDMUNetAreNamedForWhatTheyAre() throws {
    #expect(throws: SingleFileError.notAStableDiffusionCheckpoint(
      path: F.ldmVAE.path, found: "it looks like a VAE: give it as the separate VAE file (--vae)")) {
      _ = try SingleFileCheckpoint(path: F.ldmVAE.path)
    }
    let unet = Fixtures.url("tiny-sd15/unet/diffusion_pytorch_model.safetensors").path
    #expect(throws: SingleFileError.notAStableDiffusionCheckpoint(
      path: unet, found: "it looks like one diffusers component (a UNet or ControlNet), not a whole checkpoint")) {
      _ = try SingleFileCheckpoint(path: unet)
    }
  }

  @Test func missingComponentsAreNamed() throws {
    #expect(throws: SingleFileError.missingComponent(
      path: "model.safetensors", component: "CLIP text encoder", prefix: "cond_stage_model.transformer.",
      hint: "this engine needs the text encoder inside the checkpoint")) {
      _ = try SingleFileCheckpoint(archive: try variant([:], dropping: "cond_stage_model."), path: "model.safetensors")
    }
    // No VAE inside: fine with --vae, an error naming the option without it.
    let noVAE = try SingleFileCheckpoint(archive: try variant([:], dropping: "first_stage_model."), path: "model.safetensors")
    #expect(noVAE.vaePrefix == nil)
    #expect(throws: SingleFileError.missingComponent(
      path: "model.safetensors", component: "VAE", prefix: "first_stage_model.", hint: "give a separate VAE file (--vae)")) {
      _ = try noVAE.vaeWeights(config: try F.vaeConfig())
    }
  }

  @Test func ckptWithAForbiddenPickleGlobalIsRefused() throws {
    let evil = Fixtures.url("torch/evil-os-system.pt")
    do {
      var options = PipelineLoadOptions()
      options.singleFileConfigs = F.folder
      _ = try StableDiffusionPipeline.load(.singleFile(evil), options: options)
      Issue.record("loaded a pickle that calls os.system")
    } catch let error as TorchCheckpointError {
      guard case .forbiddenGlobal(let path, _, let module, let name) = error else {
        Issue.record("unexpected error \(error)")
        return
      }
      #expect(path == evil.path)
      #expect(["os", "posix"].contains(module) && name == "system")
    }
  }

  @Test func vaeFileLayoutsAreDetectedFromTheirKeys() throws {
    func layout(_ url: URL) throws -> VAEFileLayout {
      try VAEFile.layout(of: try openCheckpoint(path: url.path), path: url.path)
    }
    #expect(try layout(F.diffusersVAE) == .diffusers(prefix: ""))
    #expect(try layout(F.ldmVAE) == .ldm(prefix: ""))
    #expect(try layout(F.safetensors) == .ldm(prefix: "first_stage_model."))
    let text = Fixtures.url("tiny-sd15/text_encoder/model.safetensors")
    let error = try #require(throws: SingleFileError.self) { _ = try layout(text) }
    guard case .unrecognizedVAELayout(let path, let sample) = error else {
      Issue.record("unexpected \(error)")
      return
    }
    #expect(path == text.path && sample.count == 5)
  }

  @Test func modelSourceTellsFoldersFromFiles() throws {
    #expect(try ModelSource.resolve(F.folder) == .diffusersFolder(F.folder))
    #expect(try ModelSource.resolve(F.folder.appendingPathComponent("model_index.json")) == .diffusersFolder(F.folder))
    #expect(try ModelSource.resolve(F.safetensors) == .singleFile(F.safetensors))
    #expect(try ModelSource.resolve(F.ckpt) == .singleFile(F.ckpt))
    let missing = Fixtures.url("single-file/nope.safetensors")
    #expect(throws: ModelSourceError.notFound(path: missing.path)) { try ModelSource.resolve(missing) }
    let unet = F.folder.appendingPathComponent("unet")
    #expect(throws: ModelSourceError.folderWithoutModelIndex(
      path: unet.path, isComponent: true, checkpoints: ["diffusion_pytorch_model.safetensors"])) {
      try ModelSource.resolve(unet)
    }
    let dir = Fixtures.url("single-file")
    let error = try #require(throws: ModelSourceError.self) { try ModelSource.resolve(dir) }
    guard case .folderWithoutModelIndex(_, false, let checkpoints) = error else {
      Issue.record("unexpected \(error)")
      return
    }
    #expect(checkpoints.contains("tiny-sd15.safetensors") && checkpoints.contains("tiny-sd15-inpainting.ckpt"))
    #expect(error.description.contains("give the file, e.g. \(dir.path)/"))
    let png = Fixtures.url("images/init-64.png")
    #expect(throws: ModelSourceError.notACheckpoint(path: png.path)) { try ModelSource.resolve(png) }
  }
}
