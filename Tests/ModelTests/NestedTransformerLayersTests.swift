import Foundation
import Models
import TensorCore
import Testing
import TestSupport
import Weights

/// Per-layer `transformer_layers_per_block` with `reverse_transformer_layers_per_block` (the
/// asymmetric UNets of distilled SDXL models such as SSD-1B), against diffusers 0.42.1 on
/// `Fixtures/tiny-unet-nested` (`tools/reference/gen_sdxl.py`): down counts `[1, [1, 2], [2, 1]]`,
/// up counts `[[1, 2, 1], [2, 1, 3], 1]`, the middle block 2. Tolerance: relative error ≤ 1e-4.
@Suite struct NestedTransformerLayersTests {
  static let folder = Fixtures.url("tiny-unet-nested")

  @Test func nestedCountsExpandPerLayerAsDiffusers() throws {
    let config = try ConfigFile.load(UNet2DConditionConfig.self, from: Self.folder.appendingPathComponent("config.json"))
    #expect(config.downTransformerLayers == [[1, 1], [1, 2], [2, 1]])
    #expect(config.upTransformerLayers == [[1, 2, 1], [2, 1, 3], [1, 1, 1]])
    #expect(config.midTransformerLayers == 2)
    let unet = try ModelLoader.unet(Self.folder)
    #expect(unet.crossAttentionLayers.count == (1 + 2) + (2 + 1) + (1 + 2 + 1) + (2 + 1 + 3) + 2)
  }

  @Test func unetWithPerLayerTransformerCountsMatchesDiffusers() throws {
    let m = try Fixtures.archive("goldens/sdxl-nested-unet.safetensors")
    let unet = try ModelLoader.unet(Self.folder)
    let timeIds = try m.tensor("time_ids").scalars()
    let conditioning = try unet.makeConditioning(
      encoderHiddenStates: try m.tensor("context"),
      textTime: TextTimeConditions(
        textEmbeds: try m.tensor("text_embeds"), timeIds: [Array(timeIds[0..<6]), Array(timeIds[6..<12])]))
    let out = try unet(try m.tensor("sample").nhwc(), timestep: 500, conditioning: conditioning)
    let error = Compare.relativeError(try out.nchw(), try m.tensor("out_t500"))
    #expect(error <= 1e-4, "relative error \(error)")
  }

  @Test func perLayerCountsWithoutTheReverseListOrOfTheWrongLengthAreRefused() throws {
    func decode(_ fields: String) throws -> UNet2DConditionConfig {
      let text = #"{"block_out_channels": [8, 16], "norm_num_groups": 4, "layers_per_block": 2, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "# + fields + "}"
      return try ConfigFile.decode(UNet2DConditionConfig.self, from: Data(text.utf8), path: "config.json")
    }
    let noReverse = try decode(#""transformer_layers_per_block": [1, [1, 2]]"#)
    #expect(throws: ModelConfigError.malformed(
      path: "config.json", field: "reverse_transformer_layers_per_block",
      reason: "is required with per-layer transformer_layers_per_block (an asymmetric UNet), as in diffusers")) {
      try noReverse.validate(path: "config.json")
    }
    let short = try decode(#""transformer_layers_per_block": [1, [1, 2, 3]], "reverse_transformer_layers_per_block": [1, 1]"#)
    #expect(throws: ModelConfigError.malformed(
      path: "config.json", field: "transformer_layers_per_block[1]", reason: "lists 3 layers, the block has 2")) {
      try short.validate(path: "config.json")
    }
  }
}
