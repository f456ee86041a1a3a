import Foundation
import Models
import TestSupport
import Testing

/// Config files come from strangers: every number that sizes, divides or indexes a module is
/// range-checked, and the error names the file and the field (these values used to trap — division
/// by zero, invalid ranges — or to ask for huge allocations).
@Suite struct HostileConfigTests {
  /// The tiny model's config with `changes` applied; each value is JSON text (`"[2, -1, 2]"`).
  static func mutated(_ component: String, _ changes: [String: String]) throws -> Data {
    try mutated(url: Fixtures.url("tiny-sd15/\(component)/config.json"), changes)
  }

  static func mutated(url: URL, _ changes: [String: String]) throws -> Data {
    var object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    for (k, v) in changes {
      object[k] = try JSONSerialization.jsonObject(with: Data(v.utf8), options: .fragmentsAllowed)
    }
    return try JSONSerialization.data(withJSONObject: object)
  }

  static func expectOutOfRange(
    _ field: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
  ) {
    do {
      try body()
      Issue.record("expected an out-of-range error for \(field)", sourceLocation: sourceLocation)
    } catch let error as ModelConfigError {
      guard case .outOfRange(let path, let f, _, _) = error else {
        Issue.record("expected outOfRange for \(field), got \(error)", sourceLocation: sourceLocation)
        return
      }
      #expect(f.hasPrefix(field), "field \(f)", sourceLocation: sourceLocation)
      #expect(path == "hostile/config.json", sourceLocation: sourceLocation)
      #expect(error.description.contains(field), sourceLocation: sourceLocation)
    } catch {
      Issue.record("expected ModelConfigError for \(field), got \(error)", sourceLocation: sourceLocation)
    }
  }

  /// Decodes `component`'s config (of the tiny model, or at `url`) with `field` = `value` and
  /// builds the model with `build`; expects the out-of-range error for `field`.
  static func expectRefused<C: Decodable>(
    _ type: C.Type, _ component: String, url: URL? = nil, _ field: String, _ value: String,
    sourceLocation: SourceLocation = #_sourceLocation, build: (C, String) throws -> Void
  ) {
    expectOutOfRange(field, sourceLocation: sourceLocation) {
      let data = try mutated(url: url ?? Fixtures.url("tiny-sd15/\(component)/config.json"), [field: value])
      try build(try ConfigFile.decode(type, from: data, path: "hostile/config.json"), "hostile/config.json")
    }
  }

  static func unet(_ changes: [String: String]) throws {
    let config = try ConfigFile.decode(UNet2DConditionConfig.self, from: mutated("unet", changes), path: "hostile/config.json")
    _ = try UNet2DConditionModel(config: config, path: "hostile/config.json")
  }

  @Test("UNet: zero groups, negative layers, huge or zero widths, bad kernels and eps are refused by field",
    arguments: [
      ("norm_num_groups", "0"), ("layers_per_block", "-1"), ("layers_per_block", "[2, -1, 2]"),
      ("block_out_channels", "[16, 1099511627776, 32]"), ("block_out_channels", "[16, 0, 32]"), ("cross_attention_dim", "0"),
      ("attention_head_dim", "0"), ("attention_head_dim", "[2, 4, -8]"), ("transformer_layers_per_block", "1000000000"),
      ("in_channels", "-4"), ("out_channels", "100000"), ("conv_in_kernel", "-1"), ("conv_out_kernel", "1001"),
      ("freq_shift", "1000"), ("downsample_padding", "-3"), ("sample_size", "1099511627776"), ("num_attention_heads", "0"),
    ])
  func unetRanges(_ field: String, _ value: String) {
    Self.expectOutOfRange(field) { try Self.unet([field: value]) }
  }

  @Test("UNet: more than 16 blocks, NaN eps and an infinite mid-block scale are refused")
  func unetBlockCountAndFloats() throws {
    let many = Array(repeating: 16, count: 40)
    Self.expectOutOfRange("block_out_channels") {
      let down = "[" + Array(repeating: "\"DownBlock2D\"", count: 40).joined(separator: ",") + "]"
      let up = "[" + Array(repeating: "\"UpBlock2D\"", count: 40).joined(separator: ",") + "]"
      try Self.unet(["block_out_channels": "\(many)", "down_block_types": down, "up_block_types": up, "attention_head_dim": "2"])
    }
    // JSON has no NaN or infinity (the decoder refuses them and numbers beyond Float's range), so
    // these reach the checks only from code.
    let decoded = try ConfigFile.decode(UNet2DConditionConfig.self, from: Self.mutated("unet", [:]), path: "x")
    for (field, change) in [
      ("norm_eps", { (c: inout UNet2DConditionConfig) in c.normEps = .nan }),
      ("mid_block_scale_factor", { (c: inout UNet2DConditionConfig) in c.midBlockScaleFactor = .infinity }),
    ] {
      var config = decoded
      change(&config)
      Self.expectOutOfRange(field) { _ = try UNet2DConditionModel(config: config, path: "hostile/config.json") }
    }
    #expect(throws: ModelConfigError.self) {
      let text = String(decoding: try Self.mutated("unet", [:]), as: UTF8.self)
      let patched = "{\"norm_eps\": 1e300," + text.dropFirst()
      _ = try ConfigFile.decode(UNet2DConditionConfig.self, from: Data(patched.utf8), path: "hostile/config.json")
    }
  }

  @Test("VAE: zero groups, negative layers, zero scaling factor, huge channels are refused by field",
    arguments: [
      ("norm_num_groups", "0"), ("layers_per_block", "-1"), ("scaling_factor", "0"), ("latent_channels", "0"),
      ("block_out_channels", "[8, 1073741824]"), ("in_channels", "0"), ("out_channels", "1048576"), ("sample_size", "-1"),
    ])
  func vaeRanges(_ field: String, _ value: String) {
    Self.expectRefused(AutoencoderKLConfig.self, "vae", field, value) { _ = try AutoencoderKL(config: $0, path: $1) }
  }

  @Test("CLIP text: negative or huge layer counts, vocabularies, positions and widths are refused by field",
    arguments: [
      ("num_hidden_layers", "-1"), ("num_hidden_layers", "1000000"), ("vocab_size", "0"), ("vocab_size", "1099511627776"),
      ("max_position_embeddings", "1073741824"), ("hidden_size", "0"), ("intermediate_size", "-5"), ("num_attention_heads", "0"),
      ("projection_dim", "1125899906842624"), ("layer_norm_eps", "-1"), ("eos_token_id", "-1"),
    ])
  func clipTextRanges(_ field: String, _ value: String) {
    Self.expectRefused(CLIPTextConfig.self, "text_encoder", field, value) { _ = try CLIPTextModel(config: $0, path: $1) }
  }

  @Test("CLIP vision: zero patch size, huge images and negative depth are refused by field",
    arguments: [
      ("patch_size", "0"), ("patch_size", "1048576"), ("image_size", "1048576"), ("num_hidden_layers", "-1"),
      ("num_channels", "0"), ("hidden_size", "1099511627776"), ("num_attention_heads", "-2"),
    ])
  func clipVisionRanges(_ field: String, _ value: String) {
    let url = Fixtures.url("tiny-ip-adapter/models/image_encoder/config.json")
    Self.expectRefused(CLIPVisionConfig.self, "", url: url, field, value) { _ = try CLIPVisionModel(config: $0, path: $1) }
  }

  @Test("ControlNet: zero groups, negative layers and bad embedding channels are refused by field",
    arguments: [
      ("norm_num_groups", "0"), ("layers_per_block", "-1"), ("conditioning_channels", "0"),
      ("conditioning_embedding_out_channels", "[16, -1]"), ("block_out_channels", "[1099511627776, 24, 32]"),
    ])
  func controlNetRanges(_ field: String, _ value: String) {
    let url = Fixtures.url("tiny-controlnet/config.json")
    Self.expectRefused(ControlNetConfig.self, "", url: url, field, value) { _ = try ControlNetModel(config: $0, path: $1) }
  }

  @Test("a sharded index whose weight_map names a file outside its folder is refused", arguments: [
    "../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors", "..",
  ])
  func shardNamesStayInTheFolder(_ name: String) throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shards-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let index = dir.appendingPathComponent("model.safetensors.index.json")
    let json = try JSONSerialization.data(withJSONObject: ["weight_map": ["a.weight": name]])
    try json.write(to: index)
    let error = #expect(throws: ModelFileError.self) { _ = try ModelLoader.openSharded(index: index) }
    guard case .badIndex(let path, let reason)? = error else {
      Issue.record("\(String(describing: error))")
      return
    }
    #expect(path == index.path)
    #expect(reason.contains(name))
  }

  @Test("the tiny models' own configs pass the range checks")
  func realConfigsPass() throws {
    _ = try Self.unet([:])
    let vae = try ConfigFile.decode(AutoencoderKLConfig.self, from: Self.mutated("vae", [:]), path: "vae")
    _ = try AutoencoderKL(config: vae, path: "vae")
    let text = try ConfigFile.decode(CLIPTextConfig.self, from: Self.mutated("text_encoder", [:]), path: "te")
    _ = try CLIPTextModel(config: text, path: "te")
  }
}
