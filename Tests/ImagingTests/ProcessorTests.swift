import Foundation
import Imaging
import TensorCore
import Testing

/// `CLIPImageProcessor.preprocess` equals transformers 5.23 `pixel_values` (PIL backend, as
/// diffusers uses it here) transposed to NHWC: max |error| <= 1e-6, and bit-identical.
@Suite struct CLIPProcessorTests {
  @Test("CLIP pixel_values match transformers", arguments: ImagingFixtures.labels("clip"))
  func pixelValues(label: String) throws {
    let golden = try ImagingFixtures.entry("clip", label)
    let config = try #require(golden.object("config"))
    let processor = try JSONDecoder().decode(
      CLIPImageProcessor.self, from: try JSONSerialization.data(withJSONObject: config))
    let image = try ImagingFixtures.image(try #require(golden.string("source")))
    let pixelValues = try processor.preprocess(image)
    #expect(pixelValues.shape == golden.shape)
    guard pixelValues.shape == golden.shape else { return }
    let (maxError, bitExact) = try compareFloats(pixelValues, golden)
    #expect(maxError <= 1e-6, "\(label): max |error| \(maxError)")
    #expect(bitExact, "\(label): not bit-identical (max |error| \(maxError))")
  }

  @Test func defaultsAreCLIPs() throws {
    let fromEmpty = try JSONDecoder().decode(CLIPImageProcessor.self, from: Data("{}".utf8))
    #expect(fromEmpty == CLIPImageProcessor())
    #expect(fromEmpty.size == .shortest(224) && fromEmpty.cropSize == .square(224))
    #expect(fromEmpty.resample == .bicubic && fromEmpty.rescaleFactor == 1.0 / 255.0)
    let image = try ImagingFixtures.image("rgb_300x200.png")
    #expect(try CLIPImageProcessor().preprocess(image).shape == [1, 224, 224, 3])
  }

  /// The old-style config of Stable Diffusion 1.5's `feature_extractor` (ints for sizes).
  @Test func legacyConfigWithIntSizes() throws {
    let json = """
      {"crop_size": 224, "do_center_crop": true, "do_convert_rgb": true, "do_normalize": true,
       "do_resize": true, "feature_extractor_type": "CLIPFeatureExtractor",
       "image_mean": [0.48145466, 0.4578275, 0.40821073],
       "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}
      """
    let processor = try JSONDecoder().decode(CLIPImageProcessor.self, from: Data(json.utf8))
    #expect(processor == CLIPImageProcessor())
  }

  /// transformers `get_resize_output_image_size(default_to_square=False)`: `int(size * long / short)`.
  @Test func shortestEdgeRounding() {
    #expect(CLIPImageProcessor.resizeOutputSize(height: 200, width: 300, size: .shortest(224)) == (224, 336))
    #expect(CLIPImageProcessor.resizeOutputSize(height: 23, width: 37, size: .shortest(224)) == (224, 360))
    #expect(CLIPImageProcessor.resizeOutputSize(height: 1000, width: 667, size: .shortest(224)) == (335, 224))
    #expect(CLIPImageProcessor.resizeOutputSize(height: 7, width: 7, size: .shortest(224)) == (224, 224))
  }
}

/// diffusers `VaeImageProcessor` preprocess/postprocess equivalents.
@Suite struct VaeProcessorTests {
  @Test("VaeImageProcessor.preprocess matches diffusers", arguments: ImagingFixtures.labels("vae_pre"))
  func preprocess(label: String) throws {
    let golden = try ImagingFixtures.entry("vae_pre", label)
    let image = try ImagingFixtures.image(try #require(golden.string("source")))
    let kwargs = golden.object("kwargs") ?? [:]
    let processor: VaeImageProcessor =
      golden.string("kind") == "image" ? VaeImageProcessor() : .mask()
    let crops = (kwargs["crops_coords"] as? [Int]).map { (left: $0[0], top: $0[1], right: $0[2], bottom: $0[3]) }
    let mode = (kwargs["resize_mode"] as? String).flatMap(VaeImageProcessor.ResizeMode.init) ?? .default
    let out = try processor.preprocess(
      image, height: kwargs["height"] as? Int, width: kwargs["width"] as? Int, resizeMode: mode,
      cropsCoords: crops)
    #expect(out.shape == golden.shape)
    guard out.shape == golden.shape else { return }
    let (maxError, bitExact) = try compareFloats(out, golden)
    #expect(bitExact, "\(label): max |error| \(maxError)")
  }

  @Test("VaeImageProcessor.postprocess matches diffusers", arguments: ["rgb", "gray"])
  func postprocess(name: String) throws {
    let entry = try #require(
      (ImagingFixtures.manifest()["vae_post"] as? [[String: Any]])?.first { $0["name"] as? String == name })
    let input = Golden(try #require(entry["input"] as? [String: Any]))
    let output = Golden(try #require(entry["output"] as? [String: Any]))
    let tensor = try Tensor(shape: input.shape, floats: try input.storedFloats())
    let images = VaeImageProcessor().postprocess(tensor)
    let expected = try output.storedBytes()
    let perImage = expected.count / images.count
    #expect(images.count == input.shape[0])
    for (i, image) in images.enumerated() {
      #expect(image.format.pillowMode == (entry["modes"] as? [String])?[i])
      let want = Array(expected[(i * perImage)..<((i + 1) * perImage)])
      let diffs = zip(image.pixels, want).filter { $0 != $1 }.count
      #expect(diffs == 0, "\(name) image \(i): \(diffs) samples differ")
    }
  }

  @Test func postprocessRoundsHalfToEvenInFloat32() throws {
    // 0 → 0.5 → 127.5 → 128 (round half to even); out-of-range values clamp.
    let t = try Tensor(shape: [1, 1, 3, 1], floats: [0, -3, 3])
    #expect(VaeImageProcessor().postprocess(t)[0].pixels == [128, 0, 255])
  }
}
