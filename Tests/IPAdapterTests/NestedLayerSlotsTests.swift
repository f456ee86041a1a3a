import Foundation
import IPAdapter
import Models
import Testing
import TestSupport

/// The IP-Adapter slot table computed from a config with per-layer transformer counts
/// (`Fixtures/tiny-unet-nested`) lists the same attention layers, in the same order, as the UNet
/// built from it — the table the controls use without building a model.
@Suite struct NestedLayerSlotsTests {
  @Test func slotTableFromANestedConfigMatchesTheBuiltUNet() throws {
    let folder = Fixtures.url("tiny-unet-nested")
    let config = try ConfigFile.load(UNet2DConditionConfig.self, from: folder.appendingPathComponent("config.json"))
    let unet = try ModelLoader.unet(folder)
    let slots = IPAdapterLayerTable.slots(for: config)
    #expect(slots == IPAdapterLayerTable.slots(for: unet))
    #expect(slots.count == 18)
    #expect(slots.last?.name == "mid_block.attentions.0.transformer_blocks.1.attn2")
  }
}
