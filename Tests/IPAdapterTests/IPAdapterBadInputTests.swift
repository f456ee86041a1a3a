import Foundation
import IPAdapter
import Models
import Pipelines
import TensorCore
import Testing
import TestSupport
import Weights

/// Bad adapters, encoders and files give the typed pre-flight errors.
@Suite struct IPAdapterBadInputTests {
  @Test func wrongEncoderNamesTheEncoderTheAdapterNeeds() throws {
    let pipe = try IPFixtures.pipeline()
    let adapter = try IPAdapter(path: IPFixtures.adapter("ip-adapter_sd15_vit-G.safetensors"), unet: pipe.unet)
    let encoder = try IPFixtures.encoder(pipe)  // the ViT-H-like one
    do {
      _ = try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: [try IPFixtures.image("reference.png")])
      Issue.record("expected the pre-flight error")
    } catch let error as IPAdapterError {
      guard case .wrongImageEncoder(_, let enc, let reason, _) = error else { Issue.record("\(error)"); return }
      #expect(enc == IPFixtures.encoderURL.path)
      #expect(reason.contains("width 36") && reason.contains("gives 28"))
    }
  }

  @Test func realWidthsNameTheRealEncoders() {
    #expect(IPAdapter.encoderName(width: 1280, embeds: true).contains("ViT-bigG/14"))
    #expect(IPAdapter.encoderName(width: 1024, embeds: true).contains("models/image_encoder"))
    #expect(IPAdapter.encoderName(width: 1280, embeds: false).contains("ViT-H/14"))
    #expect(IPAdapter.encoderName(width: 1664, embeds: false).contains("sdxl_models/image_encoder"))
  }

  /// Writes an adapter (a copy of the fixture `name`) whose tensors are modified by `edit`.
  static func adapterFile(
    _ name: String = "ip-adapter_sd15.safetensors", editing edit: (inout [String: Tensor]) -> Void
  ) throws -> String {
    let source = try SafeTensorsFile(path: IPFixtures.adapter(name))
    var tensors: [String: Tensor] = [:]
    for k in source.keys { tensors[k] = try source.tensor(k) }
    edit(&tensors)
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ipa-\(UUID().uuidString).safetensors").path
    try SafeTensorsWriter.write(tensors, to: path)
    return path
  }

  @Test func adapterForAnotherCrossAttentionWidthIsRefused() throws {
    let pipe = try IPFixtures.pipeline()
    let path = try Self.adapterFile { t in
      t["image_proj.proj.weight"] = .zeros([4 * 24, 28])
      t["image_proj.proj.bias"] = .zeros([4 * 24])
      t["image_proj.norm.weight"] = .zeros([24])
      t["image_proj.norm.bias"] = .zeros([24])
    }
    defer { try? FileManager.default.removeItem(atPath: path) }
    #expect(throws: IPAdapterError.wrongUNet(path: path, reason: "its image tokens are 24 wide (a 24-wide text encoder) but this UNet's cross-attention takes 20 (a 20-wide text encoder)")) {
      _ = try IPAdapter(path: path, unet: pipe.unet)
    }
  }

  @Test func adapterWithTooFewLayersIsRefused() throws {
    let pipe = try IPFixtures.pipeline()
    let path = try Self.adapterFile { t in
      t["ip_adapter.21.to_k_ip.weight"] = nil
      t["ip_adapter.21.to_v_ip.weight"] = nil
    }
    defer { try? FileManager.default.removeItem(atPath: path) }
    #expect(throws: IPAdapterError.wrongUNet(path: path, reason: "it patches 10 cross-attention layers, this UNet has 11")) {
      _ = try IPAdapter(path: path, unet: pipe.unet)
    }
  }

  @Test func layerWithTheWrongWidthIsNamed() throws {
    let pipe = try IPFixtures.pipeline()
    let path = try Self.adapterFile { t in t["ip_adapter.13.to_k_ip.weight"] = .zeros([32, 20]) }
    defer { try? FileManager.default.removeItem(atPath: path) }
    #expect(throws: IPAdapterError.wrongUNet(path: path, reason: "ip_adapter.13.to_k_ip.weight is [32, 20] but up_blocks.1.attentions.2.transformer_blocks.0.attn2 needs [24, 20]")) {
      _ = try IPAdapter(path: path, unet: pipe.unet)
    }
  }

  @Test func fileWithoutAdapterKeysIsNotAnAdapter() throws {
    let pipe = try IPFixtures.pipeline()
    let path = Fixtures.url("tiny-sd15/vae/diffusion_pytorch_model.safetensors").path
    #expect(throws: IPAdapterError.self) { _ = try IPAdapter(path: path, unet: pipe.unet) }
  }

  /// A FaceID-shaped projection (`norm` + `proj.0`) without its `proj.2` is named, not guessed.
  @Test func incompleteFaceIDProjectionIsATypedError() throws {
    let pipe = try IPFixtures.pipeline()
    let path = try Self.adapterFile { t in
      t["image_proj.proj.weight"] = nil
      t["image_proj.proj.bias"] = nil
      t["image_proj.proj.0.weight"] = .zeros([40, 12])
    }
    defer { try? FileManager.default.removeItem(atPath: path) }
    let error = #expect(throws: IPAdapterError.self) { _ = try IPAdapter(path: path, unet: pipe.unet) }
    #expect(error?.description.contains("image_proj.proj.2.weight is missing") == true, "\(String(describing: error))")
  }

  @Test func truncatedAdapterFileIsATypedError() throws {
    let pipe = try IPFixtures.pipeline()
    let data = try Data(contentsOf: URL(fileURLWithPath: IPFixtures.adapter("ip-adapter_sd15.safetensors")))
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ipa-trunc-\(UUID().uuidString).safetensors").path
    try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
    defer { try? FileManager.default.removeItem(atPath: path) }
    #expect(throws: SafeTensorsError.self) { _ = try IPAdapter(path: path, unet: pipe.unet) }
  }

  @Test func missingAdapterFileIsNamed() throws {
    let pipe = try IPFixtures.pipeline()
    #expect(throws: IPAdapterError.badInput("IP-Adapter file not found: /nope/ip.safetensors")) {
      _ = try IPAdapter(path: "/nope/ip.safetensors", unet: pipe.unet)
    }
  }
}

/// The original `.bin` container (PyTorch pickle, read by the restricted unpickler).
@Suite struct IPAdapterBinCheckpointTests {
  @Test func binAndSafetensorsGiveIdenticalResults() throws {
    let pipe = try IPFixtures.pipeline()
    let encoder = try IPFixtures.encoder(pipe)
    let image = try IPFixtures.image("reference.png")
    func run(_ file: String) throws -> GenerationResult {
      let adapter = try IPAdapter(path: IPFixtures.adapter(file), unet: pipe.unet)
      var p = IPFixtures.parameters
      p.steps = 2
      return try pipe.generate(
        p, imagePrompts: [ImagePrompt(adapter: adapter, embeds: try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: [image]), scale: 0.8)])
    }
    let bin = try run("ip-adapter-plus_sd15.bin")
    let safetensors = try run("ip-adapter-plus_sd15.safetensors")
    #expect(bin.latents.scalars() == safetensors.latents.scalars())
    #expect(bin.image.pixels == safetensors.image.pixels)
  }

  @Test func binHoldsFloat32ImageProjAndFloat16LayersLikeTheReleases() throws {
    let archive = try IPAdapterFile.open(IPFixtures.adapter("ip-adapter-plus_sd15.bin"))
    #expect(archive.info("image_proj.latents")?.storedType == "F32")
    #expect(archive.info("ip_adapter.1.to_k_ip.weight")?.storedType == "F16")
  }

  @Test func maliciousPickleIsRefusedNamingTheGlobal() throws {
    let pipe = try IPFixtures.pipeline()
    let evil = Fixtures.url("torch").appendingPathComponent("evil-os-system.pt").path
    guard FileManager.default.fileExists(atPath: evil) else {
      Issue.record("fixture \(evil) missing")
      return
    }
    do {
      _ = try IPAdapter(path: evil, unet: pipe.unet)
      Issue.record("a malicious pickle was accepted")
    } catch let error as TorchCheckpointError {
      #expect("\(error)".contains("os") && "\(error)".contains("system"), "\(error)")
    }
  }
}
