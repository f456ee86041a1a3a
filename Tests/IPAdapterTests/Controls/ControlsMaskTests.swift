import Foundation
import IPAdapter
import Imaging
import TensorCore
import Testing
import TestSupport

/// Masks: `IPAdapterMaskProcessor.downsample` / `.preprocess` goldens from diffusers 0.42.1 and
/// the mask checks.
@Suite struct ControlsMaskTests {
  @Test func downsampleMatchesDiffusers() throws {
    let doc = try #require(try ControlsFixtures.json("masks.json") as? [String: Any])
    let cases = try #require(doc["downsample"] as? [[String: Any]])
    let goldens = try ControlsFixtures.goldens()
    #expect(cases.count >= 15)
    var padded = 0
    for c in cases {
      let key = c["key"] as! String, lq = c["queries"] as! Int
      let mask = try goldens.tensor(key + ".mask")
      let expected = try goldens.tensor(key + ".out")
      let (weights, warning) = try IPAdapterMasks.downsample(mask, queryCount: lq)
      #expect(weights.shape == [1, lq])
      #expect(Compare.maxAbsDifference(weights, expected) <= 1e-6, "\(key) \(mask.shape) → \(lq)")
      #expect((warning != nil) == (c["warned"] as! Bool), "\(key) warning")
      if warning != nil { padded += 1 }
    }
    #expect(padded >= 4)
  }

  @Test func gridFollowsDiffusers() throws {
    // 64×96 mask (W/H = 1.5): Lq 6144 → 64×96; 96 → 8×12.
    #expect(try IPAdapterMasks.grid(height: 64, width: 96, queryCount: 6144) == (64, 96))
    #expect(try IPAdapterMasks.grid(height: 64, width: 96, queryCount: 96) == (8, 12))
    // Square mask, Lq = 1000: int(sqrt(1000)) = 31, 1000 % 31 ≠ 0 → 32 rows × 31 = 992 (padded).
    #expect(try IPAdapterMasks.grid(height: 64, width: 64, queryCount: 1000) == (32, 31))
    #expect(throws: IPAdapterControlError.self) { try IPAdapterMasks.grid(height: 1, width: 1000, queryCount: 4) }
  }

  @Test func bicubicIdentityAndConstants() {
    let x: [Float] = (0..<20).map { Float($0) * 0.37 - 2 }
    #expect(IPAdapterMasks.bicubicResize(x, height: 4, width: 5, toHeight: 4, toWidth: 5) == x)
    let ones = [Float](repeating: 1, count: 49)
    #expect(IPAdapterMasks.bicubicResize(ones, height: 7, width: 7, toHeight: 3, toWidth: 11).allSatisfy { abs($0 - 1) < 1e-6 })
  }

  @Test func preprocessMatchesDiffusers() throws {
    let doc = try #require(try ControlsFixtures.json("masks.json") as? [String: Any])
    let cases = try #require(doc["preprocess"] as? [[String: Any]])
    let goldens = try ControlsFixtures.goldens()
    for c in cases {
      let file = c["file"] as! String, h = c["height"] as! Int, w = c["width"] as! Int
      let image = try Image(contentsOfFile: Fixtures.url("masks/\(file)").path)
      let (masks, warnings) = try IPAdapterMasks.preprocess([image], height: h, width: w)
      #expect(masks.shape == [1, h, w])
      let expected = try goldens.tensor(c["key"] as! String)
      #expect(masks.scalars() == expected.scalars(), "\(file) → \(w)×\(h)")
      #expect(Set(masks.scalars()).isSubset(of: [0, 1]))
      let aspect = Double(image.width) / Double(image.height), target = Double(w) / Double(h)
      #expect(warnings.isEmpty == (abs(aspect - target) <= 0.01 * target))
    }
  }

  @Test func preprocessedMaskDrivesQueryWeights() throws {
    let image = try Image(contentsOfFile: Fixtures.url("masks/halves-rgb.png").path)  // left half white
    let (masks, _) = try IPAdapterMasks.preprocess([image], height: 64, width: 40)
    let perAdapter = try IPAdapterMasks.forAdapter(masks)
    #expect(perAdapter.shape == [1, 1, 64, 40])
    try IPAdapterMasks.validate(masks: [perAdapter, nil], imageCounts: [1, 3])
    let (q, warning) = try IPAdapterMasks.downsample(masks, queryCount: 8 * 5)
    #expect(warning == nil)
    let v = q.scalars()
    // Row-major 8×5 grid: the first columns are inside the white half, the last outside.
    #expect(v[0] > 0.9 && v[4] < 0.1)
    let source = AttentionSource(key: Tensor.zeros([1, 4, 8]), value: Tensor.zeros([1, 4, 8]), scale: 0.7, queryWeights: q)
    #expect(source.queryWeights?.shape == [1, 40])
  }

  @Test func validationErrors() throws {
    let one = Tensor.zeros([1, 1, 8, 8]), two = Tensor.zeros([1, 2, 8, 8])
    func message(_ body: () throws -> Void) -> String {
      do {
        try body()
        return ""
      } catch { return "\(error)" }
    }
    #expect(message { try IPAdapterMasks.validate(masks: [one], imageCounts: [1, 1]) }.contains("must match the number of IP-Adapters (2)"))
    #expect(message { try IPAdapterMasks.validate(masks: [Tensor.zeros([1, 8, 8])], imageCounts: [1]) }.contains("[1, num_images_for_ip_adapter, height, width]"))
    #expect(message { try IPAdapterMasks.validate(masks: [two], imageCounts: [3]) } == "Number of masks (2) does not match number of ip images (3) at index 0")
    #expect(message { try IPAdapterMasks.validate(masks: [nil, two], imageCounts: [1, 2], perImageScales: [nil, [0.5]]) }
      == "Number of masks (2) does not match number of scales (1) at index 1")
    #expect(message { try IPAdapterMasks.validate(masks: [Tensor.zeros([2, 1, 8, 8])], imageCounts: [1]) }.contains("batch size 1"))
    try IPAdapterMasks.validate(masks: [two, nil], imageCounts: [2, 5], perImageScales: [[0.3, 0.6], nil])
    #expect(throws: IPAdapterControlError.self) { try IPAdapterMasks.preprocess([], height: 64, width: 64) }
    #expect(throws: IPAdapterControlError.self) { try IPAdapterMasks.downsample(Tensor.zeros([2, 8, 8]), queryCount: 16) }
    #expect(throws: IPAdapterControlError.self) { try IPAdapterMasks.forAdapter(Tensor.zeros([8, 8])) }
  }
}
