import Foundation
import IPAdapter
import Imaging
import TensorCore
import Testing
import TestSupport
import Weights

/// Adapter files and image prompts from strangers: shapes are bounded before they divide, and
/// image sizes before they allocate.
@Suite struct HostileAdapterTests {
  /// A Plus adapter whose tensors are changed by `edit`, written to a temporary file.
  static func plusAdapter(editing edit: (inout [String: Tensor]) -> Void) throws -> String {
    try IPAdapterBadInputTests.adapterFile("ip-adapter-plus_sd15.safetensors", editing: edit)
  }

  @Test("a Resampler with zero-width latents [1, 16, 0] is refused, naming the tensor, instead of dividing by zero")
  func zeroSizedLatents() throws {
    let path = try Self.plusAdapter { t in t["image_proj.latents"] = Tensor.zeros([1, 16, 0]) }
    defer { try? FileManager.default.removeItem(atPath: path) }
    let error = #expect(throws: IPAdapterError.self) { _ = try IPAdapter(path: path, unet: nil) }
    guard case .notAnIPAdapter(let p, let reason)? = error else {
      Issue.record("\(String(describing: error))")
      return
    }
    #expect(p == path)
    #expect(reason.contains("image_proj.latents") && reason.contains("[1, 16, 0]"))
  }

  @Test("zero-sized projection and key/value tensors are refused by variant detection", arguments: [
    "image_proj.proj_in.weight", "image_proj.layers.0.0.to_q.weight", "image_proj.proj_out.weight",
    "image_proj.layers.0.1.1.weight",
  ])
  func zeroSizedTensors(_ key: String) throws {
    let path = try Self.plusAdapter { t in
      let shape = t[key]!.shape
      t[key] = Tensor.zeros([0] + shape.dropFirst())
    }
    defer { try? FileManager.default.removeItem(atPath: path) }
    #expect(throws: IPAdapterError.self) { _ = try IPAdapter(path: path, unet: nil) }
  }

  @Test("a 1×999,999 image prompt is refused by the image-prompt encoder with a size error")
  func extremeAspectImagePrompt() throws {
    let pipe = try IPFixtures.pipeline()
    let encoder = try IPFixtures.encoder(pipe)
    let adapter = try IPAdapter(path: IPFixtures.adapter("ip-adapter-plus_sd15.safetensors"), unet: pipe.unet)
    let sliver = Image(width: 1, height: 999_999, format: .rgb, fill: 200)
    let error = #expect(throws: ImageIOError.self) {
      _ = try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: [sliver])
    }
    guard case .tooLarge(_, let w, let h, _)? = error else {
      Issue.record("\(String(describing: error))")
      return
    }
    #expect(w * h > ImageLimits.default.maxPixels)
  }
}
