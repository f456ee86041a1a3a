import Foundation
import IPAdapter
import TensorCore
import Testing

/// ComfyUI weight types, computed here independently from `IPAdapterPlus.py` /
/// `CrossAttentionPatch.py` (@ 9d076a3) and compared per slot.
@Suite struct ControlsWeightTypeTests {
  /// ComfyUI transformer_index of our SD1.5 slots (down 0–5, up 7–15, mid 6).
  static let sd15T = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 6]

  /// SDXL slots per ComfyUI index: 2, 2, 10, 10 down; 10, 10, 10, 2, 2, 2 up; 10 mid.
  static let sdxlT: [Int] = {
    var t: [Int] = []
    for (idx, depth) in [(0, 2), (1, 2), (2, 10), (3, 10), (5, 10), (6, 10), (7, 10), (8, 2), (9, 2), (10, 2), (4, 10)] {
      t += Array(repeating: idx, count: depth)
    }
    return t
  }()

  func expect(_ w: ComfyWeighting, _ slots: [IPAdapterLayerSlot], _ t: [Int], _ f: (Int) -> Double, swap: (Int) -> Bool = { _ in false }) throws {
    let got = try w.layers(for: slots)
    #expect(got.count == t.count)
    for (i, c) in got.enumerated() {
      let want = Float(f(t[i]))
      #expect(c.scale == want, "\(w.type.rawValue) slot \(i) t=\(t[i])")
      #expect(c.swapBranches == (want != 0 && swap(t[i])), "\(w.type.rawValue) swap slot \(i)")
    }
  }

  @Test func transformerIndexMapping() throws {
    let sd15 = try ControlsFixtures.slots("sd15"), sdxl = try ControlsFixtures.slots("sdxl")
    #expect(try ComfyWeighting.comfyIndices(for: sd15).map(\.t) == Self.sd15T)
    #expect(try ComfyWeighting.comfyIndices(for: sdxl).map(\.t) == Self.sdxlT)
    #expect(try ComfyWeighting.comfyIndices(for: sd15).map(\.group.rawValue) == Array(repeating: "input", count: 6) + Array(repeating: "output", count: 9) + ["middle"])
    #expect(IPAdapterUNetFamily.detect(sd15) == .sd15 && IPAdapterUNetFamily.detect(sdxl) == .sdxl)
  }

  @Test func curveTypesSD15() throws {
    let slots = try ControlsFixtures.slots("sd15"), t = Self.sd15T
    let w = 0.8, L = 16.0
    func group(_ t: Int) -> String { t < 6 ? "input" : t == 6 ? "middle" : "output" }
    try expect(ComfyWeighting(type: .linear, weight: w), slots, t) { _ in w }
    try expect(ComfyWeighting(type: .easeIn, weight: w), slots, t) { w * (0.05 + 0.95 * (1 - Double($0) / L)) }
    try expect(ComfyWeighting(type: .easeOut, weight: w), slots, t) { w * (0.05 + 0.95 * (Double($0) / L)) }
    try expect(ComfyWeighting(type: .easeInOut, weight: w), slots, t) { w * (0.05 + 0.95 * (1 - abs(Double($0) - L / 2) / (L / 2))) }
    try expect(ComfyWeighting(type: .reverseInOut, weight: w), slots, t) { w * (0.05 + 0.95 * (abs(Double($0) - L / 2) / (L / 2))) }
    try expect(ComfyWeighting(type: .weakInput, weight: w), slots, t) { group($0) == "input" ? w * 0.2 : w }
    try expect(ComfyWeighting(type: .weakMiddle, weight: w), slots, t) { group($0) == "middle" ? w * 0.2 : w }
    try expect(ComfyWeighting(type: .weakOutput, weight: w), slots, t) { group($0) == "output" ? w * 0.2 : w }
    try expect(ComfyWeighting(type: .strongMiddle, weight: w), slots, t) { group($0) == "middle" ? w : w * 0.2 }
  }

  @Test func curveTypesSDXL() throws {
    let slots = try ControlsFixtures.slots("sdxl"), t = Self.sdxlT
    let w = 1.3, L = 11.0
    try expect(ComfyWeighting(type: .easeIn, weight: w), slots, t) { w * (0.05 + 0.95 * (1 - Double($0) / L)) }
    try expect(ComfyWeighting(type: .easeInOut, weight: w), slots, t) { w * (0.05 + 0.95 * (1 - abs(Double($0) - L / 2) / (L / 2))) }
    try expect(ComfyWeighting(type: .weakOutput, weight: w), slots, t) { $0 > 4 ? w * 0.2 : w }
  }

  @Test func blockTypesSD15() throws {
    let slots = try ControlsFixtures.slots("sd15"), t = Self.sd15T
    let w = 0.9, wc = 0.6, style = Set([0, 1, 2, 3] + Array(9...15))
    try expect(ComfyWeighting(type: .styleTransfer, weight: w), slots, t) { style.contains($0) ? w : 0 }
    try expect(ComfyWeighting(type: .composition, weight: w), slots, t) { [4: w * 0.25, 5: w][$0] ?? 0 }
    try expect(ComfyWeighting(type: .strongStyleTransfer, weight: w), slots, t) { [4, 5].contains($0) ? 0 : w }
    try expect(ComfyWeighting(type: .styleAndComposition, weight: w, weightComposition: wc), slots, t) {
      style.contains($0) ? w : [4: wc * 0.25, 5: wc][$0] ?? 0
    }
    try expect(ComfyWeighting(type: .strongStyleAndComposition, weight: w, weightComposition: wc), slots, t) {
      [4, 5].contains($0) ? wc : w
    }
    // Precise types: swap in 4, 5 (style) / everywhere else (composition).
    let s = 1.7
    try expect(ComfyWeighting(type: .styleTransfer, weight: w, styleBoost: s), slots, t, {
      style.contains($0) ? w : [4: s * 0.25, 5: s][$0] ?? 0
    }, swap: { $0 == 4 || $0 == 5 })
    try expect(ComfyWeighting(type: .styleTransferPrecise, weight: w), slots, t, {
      style.contains($0) ? w : [4: w * 0.25, 5: w][$0] ?? 0
    }, swap: { $0 == 4 || $0 == 5 })
    let b = 0.35
    try expect(ComfyWeighting(type: .linear, weight: w, compositionBoost: b), slots, t, {
      switch $0 {
      case 4: w * 0.25
      case 5: w
      case 6, 7, 8: b * 0.1
      default: b
      }
    }, swap: { $0 != 4 && $0 != 5 })
  }

  @Test func blockTypesSDXL() throws {
    let slots = try ControlsFixtures.slots("sdxl"), t = Self.sdxlT
    let w = 1.1, wc = 0.7
    try expect(ComfyWeighting(type: .styleTransfer, weight: w), slots, t) { $0 == 6 ? w : 0 }
    try expect(ComfyWeighting(type: .composition, weight: w), slots, t) { $0 == 3 ? w : 0 }
    try expect(ComfyWeighting(type: .strongStyleTransfer, weight: w), slots, t) { $0 == 3 ? 0 : w }
    try expect(ComfyWeighting(type: .styleAndComposition, weight: w, weightComposition: wc), slots, t) { [3: wc, 6: w][$0] ?? 0 }
    try expect(ComfyWeighting(type: .strongStyleAndComposition, weight: w, weightComposition: wc), slots, t) { $0 == 3 ? wc : w }
    try expect(ComfyWeighting(type: .styleTransferPrecise, weight: w, styleBoost: 2), slots, t, { [3: 2, 6: w][$0] ?? 0 }, swap: { $0 == 3 })
    try expect(ComfyWeighting(type: .compositionPrecise, weight: 0.8, compositionBoost: 0.3), slots, t, {
      [3: 0.8, 6: 0.3][$0] ?? 0.3 * 0.1
    }, swap: { $0 != 3 })
    // The InstantStyle SDXL blocks are ComfyUI's style (t 6) and composition (t 3) layers.
    let comfyStyle = ControlsFixtures.nonZero(try ComfyWeighting(type: .styleTransfer).scales(for: slots), slots)
    #expect(comfyStyle == ControlsFixtures.nonZero(try IPAdapterBlockPreset.style.scales(for: slots), slots))
    let comfyComposition = ControlsFixtures.nonZero(try ComfyWeighting(type: .composition).scales(for: slots), slots)
    #expect(comfyComposition == ControlsFixtures.nonZero(try IPAdapterBlockPreset.composition.scales(for: slots), slots))
  }

  @Test func middleBlockSkipAndLayerWeights() throws {
    let slots = try ControlsFixtures.slots("sd15"), t = Self.sd15T
    // Default: the middle block (t 6) is patched; comfyCompatibleMiddle reproduces ComfyUI's skip.
    #expect(try ComfyWeighting(type: .linear, weight: 0.5).scales(for: slots)[15] == 0.5)
    try expect(ComfyWeighting(type: .linear, weight: 0.5, comfyCompatibleMiddle: true), slots, t) { $0 == 6 ? 0 : 0.5 }
    try expect(ComfyWeighting(type: .strongStyleTransfer, weight: 1, comfyCompatibleMiddle: true), slots, t) { [4, 5, 6].contains($0) ? 0 : 1 }
    // Mad Scientist layer weights: value × weight, other layers 0, type falls back to linear.
    let lw = try ComfyWeighting.parseLayerWeights("0:0, 3:0.8, 6:0.35 ,15:1")
    #expect(lw == [0: 0, 3: 0.8, 6: 0.35, 15: 1])
    try expect(ComfyWeighting(type: .easeIn, weight: 2, layerWeights: lw), slots, t) { [3: 1.6, 6: 0.7, 15: 2][$0] ?? 0 }
    try expect(ComfyWeighting(type: .compositionPrecise, weight: 2, layerWeights: lw), slots, t, { [3: 1.6, 6: 0.7, 15: 2][$0] ?? 0 }, swap: { $0 != 4 && $0 != 5 })
    #expect(throws: IPAdapterControlError.self) { try ComfyWeighting.parseLayerWeights("3=0.5") }
    // Zero weight: every layer off, no swap.
    #expect(try ComfyWeighting(type: .compositionPrecise, weight: 0, compositionBoost: 0).layers(for: slots).allSatisfy { $0 == IPAdapterLayerControl(scale: 0) })
    #expect(try IPAdapterLayerScales.comfy(ComfyWeighting(type: .styleTransferPrecise)).layers(for: slots).filter(\.swapBranches).count == 2)
  }

  @Test func namesParse() throws {
    #expect(try ComfyWeightType(name: "ease in-out") == .easeInOut)
    #expect(try ComfyWeightType(name: "ease-in-out") == .easeInOut)
    #expect(try ComfyWeightType(name: "style_transfer_precise") == .styleTransferPrecise)
    #expect(try ComfyWeightType(name: "standard") == .linear)
    #expect(try ComfyWeightType(name: "prompt is more important") == .easeOut)
    #expect(throws: IPAdapterControlError.self) { try ComfyWeightType(name: "strong") }
    #expect(ComfyWeightType.allCases.count == 16)
  }

  @Test func swappedBranchesGivesTheNegativeTheImageTokens() throws {
    let kv = try Tensor(shape: [2, 2, 3], floats: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
    #expect(try IPAdapterLayerControl.swappedBranches(kv).scalars() == [7, 8, 9, 10, 11, 12, 0, 0, 0, 0, 0, 0])
    let single = try Tensor(shape: [1, 2, 3], floats: [1, 2, 3, 4, 5, 6])
    #expect(try IPAdapterLayerControl.swappedBranches(single).scalars() == Array(repeating: 0, count: 6))
    #expect(throws: IPAdapterControlError.self) { try IPAdapterLayerControl.swappedBranches(Tensor.zeros([3, 2, 2])) }
  }
}
