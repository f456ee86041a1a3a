import Foundation
import Models
import NN
import Pipelines
import TensorCore
import Testing
import TestSupport
import Weights

/// The LDM → diffusers table (`Sources/Models/SingleFile/LDMKeyTable.swift`): every tensor of a
/// file written by diffusers' own converter lands on the diffusers key it came from, bit for bit;
/// the SD1.5 expansion of the templated rows; EMA selection; `state_dict` extras.
@Suite struct SingleFileKeyMappingTests {
  typealias F = SingleFileFixtures

  /// Same keys and identical tensors in `mapped` and in the folder's component file.
  func expectSameTensors(_ mapped: any TensorArchive, _ folder: any TensorArchive, convert: DType? = nil) throws {
    #expect(mapped.keys == folder.keys, "keys differ: \(Set(mapped.keys).symmetricDifference(folder.keys).sorted().prefix(8))")
    for key in folder.keys where mapped.info(key) != nil {
      var expected = try folder.tensor(key)
      if let convert { expected = expected.converted(to: convert) }
      #expect(F.identical(try mapped.tensor(key), expected), "\(key) differs")
    }
  }

  @Test func tableMapsEveryTensorOfTheSafetensorsFileToItsDiffusersTensor() throws {
    let checkpoint = try SingleFileCheckpoint(path: F.safetensors.path)
    #expect(checkpoint.modelType == .sd1)
    #expect(!checkpoint.usesEMA)
    #expect(checkpoint.vaePrefix == "first_stage_model.")
    #expect(checkpoint.clipPrefix == "cond_stage_model.transformer.text_model.")
    #expect(checkpoint.ignoredKeys.isEmpty)
    try expectSameTensors(
      try checkpoint.unetWeights(config: try F.unetConfig()),
      try Fixtures.archive("tiny-sd15/unet/diffusion_pytorch_model.safetensors"))
    try expectSameTensors(
      try checkpoint.vaeWeights(config: try F.vaeConfig()),
      try KeyTables.legacyVAEAttention(try Fixtures.archive("tiny-sd15/vae/diffusion_pytorch_model.safetensors")))
    try expectSameTensors(
      try checkpoint.textEncoderWeights(), try Fixtures.archive("tiny-sd15/text_encoder/model.safetensors"))
  }

  @Test func ckptIsUnwrappedAndItsExtrasAreIgnored() throws {
    let checkpoint = try SingleFileCheckpoint(path: F.ckpt.path)
    #expect(checkpoint.modelType == .sd1Inpainting)
    #expect(checkpoint.modelType.unetInChannels == 9)
    // One EMA copy is not an EMA checkpoint: the trained weights are read, the copy is ignored.
    #expect(!checkpoint.usesEMA)
    #expect(checkpoint.ignoredKeys == F.ckptExtras)
    #expect(checkpoint.archive.info("model.diffusion_model.input_blocks.0.0.weight")?.storedType == "BF16")
    // BF16 tensors are the folder's tensors rounded to BF16.
    try expectSameTensors(
      try checkpoint.unetWeights(config: try F.unetConfig(F.inpaintingFolder)),
      try Fixtures.archive("tiny-sd15-inpainting/unet/diffusion_pytorch_model.safetensors"), convert: .bfloat16)
    try expectSameTensors(
      try checkpoint.textEncoderWeights(), try Fixtures.archive("tiny-sd15/text_encoder/model.safetensors"),
      convert: .bfloat16)
  }

  @Test func completeEMACopiesAreChosenUnlessTheTrainedWeightsAreAskedFor() throws {
    // LitEma's name, as written into the `.ckpt` fixture by the generator.
    #expect(LDMKeyTable.emaKey(forUNetKey: "model.diffusion_model.input_blocks.0.0.bias") == "model_ema.diffusion_modelinput_blocks00bias")
    let file = try SafeTensorsFile(path: F.safetensors.path)
    var tensors: [String: Tensor] = [:]
    for key in file.keys {
      let t = try file.tensor(key)
      if let ema = LDMKeyTable.emaKey(forUNetKey: key) {
        tensors[ema] = t  // the EMA copy holds the real weights …
        tensors[key] = Tensor.zeros(t.shape)  // … the trained weights are zeros
      } else {
        tensors[key] = t
      }
    }
    let archive = TensorDictionary(tensors, name: "ema test")
    let ema = try SingleFileCheckpoint(archive: archive, path: "ema test")
    #expect(ema.usesEMA)
    #expect(ema.ignoredKeys.allSatisfy { $0.hasPrefix(LDMKeyTable.unetPrefix) })
    let folder = try Fixtures.archive("tiny-sd15/unet/diffusion_pytorch_model.safetensors")
    try expectSameTensors(try ema.unetWeights(config: try F.unetConfig()), folder)

    let trained = try SingleFileCheckpoint(archive: archive, path: "ema test", ema: .nonEMA)
    #expect(!trained.usesEMA)
    let weights = try trained.unetWeights(config: try F.unetConfig())
    #expect(try weights.tensor("conv_in.weight").scalars().allSatisfy { $0 == 0 })
  }

  @Test func clipKeysWithoutTextModelLoadToo() throws {
    let file = try SafeTensorsFile(path: F.safetensors.path)
    let bare = try RenamedArchive(file) { key, _ in
      (key.replacingOccurrences(of: "cond_stage_model.transformer.text_model.", with: "cond_stage_model.transformer."), nil)
    }
    let checkpoint = try SingleFileCheckpoint(archive: bare, path: "bare clip")
    #expect(checkpoint.clipPrefix == "cond_stage_model.transformer.")
    try expectSameTensors(
      try checkpoint.textEncoderWeights(), try Fixtures.archive("tiny-sd15/text_encoder/model.safetensors"))
  }

  @Test func unmappedKeysAreReportedByStrictLoadingWithTheirFileNames() throws {
    let file = try SafeTensorsFile(path: F.safetensors.path)
    let extra = try TensorDictionary(loading: file).merging([
      "model.diffusion_model.input_blocks.1.0.in_layers.9.weight": Tensor.zeros([16])
    ])
    let checkpoint = try SingleFileCheckpoint(archive: extra, path: "extra.safetensors")
    let error = try #require(throws: WeightLoadingError.self) {
      _ = try checkpoint.loadUNet(config: try F.unetConfig(), configPath: "unet/config.json")
    }
    #expect(error.unexpected == ["model.diffusion_model.input_blocks.1.0.in_layers.9.weight"])
    #expect(error.source.hasPrefix("extra.safetensors (UNet"))
  }

  /// The templated rows expanded with the real SD1.5 configs (4 blocks, 2 layers, no attention in
  /// the last down / first up block), against `convert_diffusers_to_original_stable_diffusion.py`'s
  /// hard-coded SD1.5 map.
  @Test func sd15ExpansionMatchesTheKnownLayout() throws {
    let configs = BundledConfigs.stableDiffusion15
    let unet = LDMKeyMapping.unet(try F.unetConfig(configs))
    let cases: [(String, String)] = [
      ("input_blocks.0.0.weight", "conv_in.weight"),
      ("input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"),
      ("input_blocks.4.0.skip_connection.bias", "down_blocks.1.resnets.0.conv_shortcut.bias"),
      ("input_blocks.8.1.transformer_blocks.0.attn2.to_k.weight", "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k.weight"),
      ("input_blocks.11.0.emb_layers.1.weight", "down_blocks.3.resnets.1.time_emb_proj.weight"),
      ("middle_block.1.proj_in.weight", "mid_block.attentions.0.proj_in.weight"),
      ("middle_block.2.out_layers.3.weight", "mid_block.resnets.1.conv2.weight"),
      ("output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"),
      ("output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"),
      ("output_blocks.5.1.norm.weight", "up_blocks.1.attentions.2.norm.weight"),
      ("output_blocks.11.0.in_layers.0.weight", "up_blocks.3.resnets.2.norm1.weight"),
      ("time_embed.2.bias", "time_embedding.linear_2.bias"),
      ("out.2.weight", "conv_out.weight"),
    ]
    for (ldm, diffusers) in cases { #expect(unet.map(ldm, shape: [1])?.key == diffusers, "\(ldm)") }
    #expect(unet.map("output_blocks.2.2.conv.weight", shape: [1]) == nil)  // up_blocks.0 has no attention
    #expect(unet.map("input_blocks.12.0.op.weight", shape: [1]) == nil)  // the last block does not downsample

    let vaeConfig = try ConfigFile.load(AutoencoderKLConfig.self, from: configs.appendingPathComponent("vae/config.json"))
    let vae = LDMKeyMapping.vae(vaeConfig)
    #expect(vae.map("decoder.up.0.block.2.conv1.weight", shape: [1])?.key == "decoder.up_blocks.3.resnets.2.conv1.weight")
    #expect(vae.map("decoder.up.3.upsample.conv.bias", shape: [1])?.key == "decoder.up_blocks.0.upsamplers.0.conv.bias")
    #expect(vae.map("encoder.down.1.block.0.nin_shortcut.weight", shape: [1])?.key == "encoder.down_blocks.1.resnets.0.conv_shortcut.weight")
    #expect(vae.map("encoder.norm_out.weight", shape: [1])?.key == "encoder.conv_norm_out.weight")
    let q = try #require(vae.map("encoder.mid.attn_1.q.weight", shape: [512, 512, 1, 1]))
    #expect(q.key == "encoder.mid_block.attentions.0.to_q.weight" && q.shape == [512, 512])
    let proj = try #require(vae.map("decoder.mid.attn_1.proj_out.bias", shape: [512]))
    #expect(proj.key == "decoder.mid_block.attentions.0.to_out.0.bias" && proj.shape == nil)
    #expect(vae.map("decoder.mid.attn_1.norm.weight", shape: [512])?.key == "decoder.mid_block.attentions.0.group_norm.weight")
    #expect(vae.map("decoder.up.0.upsample.conv.weight", shape: [1]) == nil)  // level 0 = last diffusers block
  }

  /// Every UNet and VAE key of the real SD1.5 architecture against the LDM key diffusers'
  /// `convert_diffusers_to_original_stable_diffusion.py` gives it (`sd15-key-map.json`), shapes
  /// included for the VAE attention kernels.
  @Test func sd15ExpansionAgreesWithDiffusersConverterOnEveryKey() throws {
    struct KeyMap: Decodable {
      var unet: [[String]]
      var vae: [VAEEntry]
    }
    struct VAEEntry: Decodable {
      var ldm: String, ldmShape: [Int], diffusers: String, diffusersShape: [Int]
      init(from decoder: Decoder) throws {
        var c = try decoder.unkeyedContainer()
        ldm = try c.decode(String.self)
        ldmShape = try c.decode([Int].self)
        diffusers = try c.decode(String.self)
        diffusersShape = try c.decode([Int].self)
      }
    }
    let data = try Data(contentsOf: Fixtures.url("single-file/sd15-key-map.json"))
    let map = try JSONDecoder().decode(KeyMap.self, from: data)
    let configs = BundledConfigs.stableDiffusion15
    let unet = LDMKeyMapping.unet(try F.unetConfig(configs))
    #expect(map.unet.count == 686)
    for pair in map.unet { #expect(unet.map(pair[0], shape: [1])?.key == pair[1], "\(pair[0])") }
    let vaeConfig = try ConfigFile.load(AutoencoderKLConfig.self, from: configs.appendingPathComponent("vae/config.json"))
    let vae = LDMKeyMapping.vae(vaeConfig)
    #expect(map.vae.count == 248)
    for e in map.vae {
      let mapped = vae.map(e.ldm, shape: e.ldmShape)
      #expect(mapped?.key == e.diffusers, "\(e.ldm)")
      #expect((mapped?.shape ?? e.ldmShape) == e.diffusersShape, "\(e.ldm)")
    }
  }
}
