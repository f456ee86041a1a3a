import Foundation
import IPAdapter
import Models
import Testing
import TestSupport

/// Per-layer scales: diffusers' dictionary form against `_maybe_expand_lora_scales` goldens,
/// InstantStyle presets, JSON parsing and typed errors.
@Suite struct ControlsScaleTests {
  @Test(arguments: ["sd15", "tiny", "sdxl"])
  func slotTableFromConfigMatchesDiffusersProcessorOrder(config: String) throws {
    let doc = try #require(try ControlsFixtures.json("scales.json") as? [String: Any])
    let configs = try #require(doc["configs"] as? [String: [String: [String]]])
    let expected = try #require(configs[config]?["layers"])
    let slots = try ControlsFixtures.slots(config)
    #expect(slots.map(\.name) == expected)
    #expect(slots.map(\.key) == slots.indices.map { 2 * $0 + 1 })
  }

  @Test func slotTableFromConfigEqualsTheModelsTable() throws {
    let config = try ControlsFixtures.config("tiny")
    let unet = try UNet2DConditionModel(config: config)
    #expect(IPAdapterLayerTable.slots(for: config) == IPAdapterLayerTable.slots(for: unet))
    let sd15 = try ControlsFixtures.slots("sd15")
    #expect(sd15.count == 16)
    #expect(sd15.map(\.hidden) == [320, 320, 640, 640, 1280, 1280] + Array(repeating: 1280, count: 3)
      + Array(repeating: 640, count: 3) + Array(repeating: 320, count: 3) + [1280])
    #expect(try ControlsFixtures.slots("sdxl").count == 70)
  }

  @Test func diffusersDictionaryExpansionMatchesGoldens() throws {
    let doc = try #require(try ControlsFixtures.json("scales.json") as? [String: Any])
    let cases = try #require(doc["cases"] as? [[String: Any]])
    var checked = 0
    for c in cases {
      let name = c["name"] as! String, config = c["config"] as! String, json = c["json"] as! String
      let slots = try ControlsFixtures.slots(config)
      let result = Result { try IPAdapterBlockScales(json: json).scales(for: slots) }
      if let expected = c["expected"] as? [Double], !(c["diffusers_ignores"] as! Bool) {
        let got = try result.get()
        #expect(got == expected.map { Float($0) }, "\(name) on \(config)")
      } else {
        // diffusers raises, or silently drops an unknown block: we refuse with a typed error.
        #expect(throws: IPAdapterControlError.self, "\(name) on \(config)") { try result.get() }
      }
      checked += 1
    }
    #expect(checked >= 40)
  }

  @Test func errorsNameTheKey() throws {
    let sd15 = try ControlsFixtures.slots("sd15")
    func error(_ json: String) -> IPAdapterControlError? {
      do {
        _ = try IPAdapterBlockScales(json: json).scales(for: sd15)
        return nil
      } catch { return error as? IPAdapterControlError }
    }
    #expect(error(#"{"up": {"block_1": [1, 2]}}"#) == .wrongListLength(key: "up.block_1", expected: 3, got: 2))
    #expect(error(#"{"down": {"block_2": [1, 2, 3]}}"#) == .wrongListLength(key: "down.block_2", expected: 2, got: 3))
    #expect(error(#"{"mid": [1, 2]}"#) == .wrongListLength(key: "mid", expected: 1, got: 2))
    #expect(error(#"{"middle": 1}"#) == .unknownPart(key: "middle"))
    #expect(error(#"{"up": {"block_01": 1}}"#) == .unknownBlock(key: "up.block_01", available: ["up.block_1", "up.block_2", "up.block_3"]))
    #expect(error(#"{"down.block_0.0": 1}"#) == .unknownPart(key: "down.block_0.0"))
    #expect(
      error(#"{"down": {"block_3": 1}}"#)
        == .unknownBlock(key: "down.block_3", available: ["down.block_0", "down.block_1", "down.block_2"]))
    #expect(error(#"{"up": {"block_0": 1}}"#) == .unknownBlock(key: "up.block_0", available: ["up.block_1", "up.block_2", "up.block_3"]))
    #expect(error(#"{"up": {"block_1": true}}"#) == .malformedScales(key: "up.block_1", reason: "must be a number or a list of numbers"))
    #expect(error(#"{"up": {"block_1": [0, "x", 0]}}"#) == .malformedScales(key: "up.block_1[1]", reason: "must be a number"))
    #expect(error(#"{"mid": {"block_0": 1}}"#) != nil)
    #expect(error(#"{"up": "all"}"#) == .malformedScales(key: "up", reason: "must be a number or {\"block_i\": …}"))
    #expect(error("[1, 2]") == .malformedScales(key: "", reason: "must be a number or a JSON object with keys down/mid/up"))
    #expect(try IPAdapterBlockScales(json: "0.25").scales(for: sd15) == Array(repeating: 0.25, count: 16))
    #expect(error("{up: 1}") != nil)
    let message = (error(#"{"up": {"block_1": [1, 2]}}"#)?.description) ?? ""
    #expect(message.contains("'up.block_1'") && message.contains("3 values"))
  }

  @Test func cliExampleAndZeroDictionaries() throws {
    let sd15 = try ControlsFixtures.slots("sd15")
    let s = try IPAdapterBlockScales(json: #"{"up": {"block_1": [0, 1, 0]}}"#).scales(for: sd15)
    #expect(ControlsFixtures.nonZero(s, sd15) == ["up_blocks.1.attentions.1.transformer_blocks.0.attn2"])
    for json in ["{}", #"{"down": 0, "mid": 0, "up": 0}"#, #"{"down": {"block_0": [0, 0]}, "mid": [0]}"#] {
      #expect(try IPAdapterBlockScales(json: json).scales(for: sd15) == Array(repeating: 0, count: 16), "\(json)")
    }
    // Whole numbers and the programmatic form agree with the JSON form.
    let programmatic = IPAdapterBlockScales(down: .all(2), mid: .perAttention([0.5]), up: .blocks(["block_2": .perAttention([1, 0, 1])]))
    #expect(try programmatic.scales(for: sd15) == IPAdapterBlockScales(json: #"{"down": 2, "mid": [0.5], "up": {"block_2": [1, 0, 1]}}"#).scales(for: sd15))
    #expect(try IPAdapterLayerScales.uniform(0.6).scales(for: sd15) == Array(repeating: 0.6, count: 16))
  }

  @Test func presetsTouchExactlyTheirLayers() throws {
    let sd15 = try ControlsFixtures.slots("sd15"), sdxl = try ControlsFixtures.slots("sdxl")
    func names(_ p: IPAdapterBlockPreset, _ slots: [IPAdapterLayerSlot], scale: Float = 1) throws -> Set<String> {
      let s = try p.scales(for: slots, scale: scale)
      #expect(Set(s).isSubset(of: [0, scale]))
      return ControlsFixtures.nonZero(s, slots)
    }
    func stack(_ module: String, _ depth: Int) -> Set<String> {
      Set((0..<depth).map { "\(module).transformer_blocks.\($0).attn2" })
    }
    let sd15Style = Set((0..<3).map { "up_blocks.1.attentions.\($0).transformer_blocks.0.attn2" })
    let sd15Composition: Set<String> = [
      "down_blocks.2.attentions.0.transformer_blocks.0.attn2", "down_blocks.2.attentions.1.transformer_blocks.0.attn2",
      "mid_block.attentions.0.transformer_blocks.0.attn2",
    ]
    #expect(try names(.style, sd15) == sd15Style)
    #expect(try names(.composition, sd15, scale: 0.8) == sd15Composition)
    #expect(try names(.styleAndComposition, sd15) == sd15Style.union(sd15Composition))
    #expect(try names(.style, sdxl) == stack("up_blocks.0.attentions.1", 10))
    #expect(try names(.composition, sdxl) == stack("down_blocks.2.attentions.1", 10))
    #expect(try names(.styleAndComposition, sdxl, scale: 1.5) == stack("up_blocks.0.attentions.1", 10).union(stack("down_blocks.2.attentions.1", 10)))
    // The SDXL presets are diffusers' documented InstantStyle dictionaries.
    #expect(
      try IPAdapterBlockPreset.styleAndComposition.scales(for: sdxl)
        == IPAdapterBlockScales(json: #"{"down": {"block_2": [0.0, 1.0]}, "up": {"block_0": [0.0, 1.0, 0.0]}}"#).scales(for: sdxl))
    #expect(try IPAdapterBlockPreset(name: "layout") == .composition)
    #expect(try IPAdapterBlockPreset(name: "style+layout") == .styleAndComposition)
    #expect(try IPAdapterBlockPreset(name: "Style_And_Composition") == .styleAndComposition)
    #expect(throws: IPAdapterControlError.self) { try IPAdapterBlockPreset(name: "content") }
    // The tiny UNet has no cross-attention in down_blocks.2: the composition preset says so.
    let tiny = try ControlsFixtures.slots("tiny")
    #expect(throws: IPAdapterControlError.presetNeedsMissingLayer(preset: "composition", layer: "down_blocks.2.attentions.0")) {
      try IPAdapterBlockPreset.composition.scales(for: tiny)
    }
    #expect(try ControlsFixtures.nonZero(IPAdapterLayerScales.preset(.style, scale: 1).scales(for: tiny), tiny).count == 3)
  }

  @Test func layerPositionsAndQueryCounts() throws {
    let p = try IPAdapterLayerPosition(name: "down_blocks.2.attentions.1.transformer_blocks.0.attn2")
    #expect(p == IPAdapterLayerPosition(part: .down, block: 2, attention: 1))
    let m = try IPAdapterLayerPosition(name: "mid_block.attentions.0.transformer_blocks.7.attn2")
    #expect(m.transformerBlock == 7 && m.part == .mid && m.attentionModule == "mid_block.attentions.0")
    #expect(throws: IPAdapterControlError.self) { try IPAdapterLayerPosition(name: "conv_in") }
    // SD1.5 at 512×768 (latent 64×96): 6144, 1536, 384 queries on the down path, 96 in the middle.
    let sd15 = try ControlsFixtures.slots("sd15")
    let counts = try sd15.map { try $0.position().queryCount(latentHeight: 64, latentWidth: 96, blockCount: 4) }
    #expect(counts == [6144, 6144, 1536, 1536, 384, 384, 384, 384, 384, 1536, 1536, 1536, 6144, 6144, 6144, 96])
    // Odd sizes round up at every downsampler (65×33 → 33×17 → 17×9 → 9×5).
    #expect(IPAdapterLayerPosition(part: .mid, block: 0, attention: 0).queryCount(latentHeight: 65, latentWidth: 33, blockCount: 4) == 45)
  }
}
