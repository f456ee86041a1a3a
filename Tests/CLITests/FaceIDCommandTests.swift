import Foundation
import Imaging
import TensorCore
import Testing
import TestSupport
import Weights

/// `ipadapter generate` with the FaceID adapters (`--face-embedding`, `--face-crop`,
/// `--faceid-lora-scale`, `--faceid-s-scale`) against diffusers' images
/// (`tools/reference/gen_faceid.py`), and their one-line refusals.
@Suite struct FaceIDCommandTests {
  static let folder = Fixtures.url("faceid").path
  static let common = [
    "generate", "--model", CLI.model, "--prompt", "a portrait", "--negative-prompt", "blurry", "--steps", "3",
    "--seed", "0", "--width", "64", "--height", "64", "--quiet", "--ip-scale", "0.8",
  ]

  /// Runs `generate`, compares the PNG with diffusers' and returns its parameters text.
  @discardableResult
  func generate(_ extra: [String], golden: String) throws -> String {
    let out = CLI.temporaryPath("faceid.png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let r = try CLI.run(Self.common + extra + ["--output", out])
    #expect(r.status == 0, "\(r.stderr)")
    let expected = try Image(contentsOfFile: "\(Self.folder)/\(golden).png")
    let decoded = try ImageCodec.decode(contentsOfFile: out)
    #expect(Compare.closeFraction(decoded.image, expected) >= 0.99)
    return decoded.text(forKey: "parameters") ?? ""
  }

  @Test func faceIDWithItsLoRAAtHalfWeightMatchesDiffusers() throws {
    let text = try generate(
      ["--ip-adapter", "\(Self.folder)/ip-adapter-faceid_sd15.bin", "--face-embedding", "\(Self.folder)/face-a.npy",
       "--faceid-lora-scale", "0.5"], golden: "e2e-faceid-sd15-lora0.5")
    #expect(text.contains("IP-Adapter: ip-adapter-faceid_sd15.bin (0.8), FaceID LoRA: 0.5"), "\(text)")
  }

  @Test func faceIDPlusV2WithAFaceCropMatchesDiffusers() throws {
    try generate(
      ["--ip-adapter", "\(Self.folder)/ip-adapter-faceid-plusv2_sd15.bin", "--face-embedding", "\(Self.folder)/face-a.npy",
       "--face-crop", "\(Self.folder)/face-crop.png", "--image-encoder", "\(CLI.adapters)/image_encoder",
       "--faceid-s-scale", "0.6"], golden: "e2e-plusv2-sd15")
  }

  @Test func portraitWithThreeFacesMatchesDiffusers() throws {
    try generate(
      ["--ip-adapter", "\(Self.folder)/ip-adapter-faceid-portrait_sd15.bin", "--face-embedding", "\(Self.folder)/faces-3.npy"],
      golden: "e2e-portrait-sd15")
  }

  /// `embed` writes the FaceID tokens; generating from them gives the same image (the adapter's
  /// LoRA still comes from the adapter file).
  @Test func embedThenGenerateFromEmbedsGivesTheSameImage() throws {
    let embeds = CLI.temporaryPath("faceid-embeds.safetensors")
    let a = CLI.temporaryPath("a.png")
    let b = CLI.temporaryPath("b.png")
    defer { for f in [embeds, a, b] { try? FileManager.default.removeItem(atPath: f) } }
    let adapter = "\(Self.folder)/ip-adapter-faceid-plusv2_sd15.bin"
    let crop = "\(Self.folder)/face-crop.png"
    let encoder = "\(CLI.adapters)/image_encoder"
    let e = try CLI.run([
      "embed", "--ip-adapter", adapter, "--face-embedding", "\(Self.folder)/face-a.npy", "--face-crop", crop,
      "--image-encoder", encoder, "--faceid-s-scale", "0.6", "--output", embeds,
    ])
    #expect(e.status == 0, "\(e.stderr)")
    let r1 = try CLI.run(Self.common + [
      "--ip-adapter", adapter, "--face-embedding", "\(Self.folder)/face-a.npy", "--face-crop", crop, "--image-encoder", encoder,
      "--faceid-s-scale", "0.6", "--output", a,
    ])
    let r2 = try CLI.run(Self.common + ["--ip-adapter", adapter, "--ip-embeds", embeds, "--output", b])
    #expect(r1.status == 0 && r2.status == 0, "\(r1.stderr) \(r2.stderr)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: a)) == Data(contentsOf: URL(fileURLWithPath: b)))
  }

  /// diffusers' FaceID `ip_adapter_image_embeds` layout `[2, 1, 1, D]` (zero embedding first).
  @Test func diffusersLayoutFaceEmbeddingsMatchDiffusers() throws {
    let file = CLI.temporaryPath("id-embeds.safetensors")
    defer { try? FileManager.default.removeItem(atPath: file) }
    let face = try NPYArray.read(path: "\(Self.folder)/face-a.npy").scalars()
    try SafeTensorsWriter(["id_embeds": try Tensor(shape: [2, 1, 1, face.count], floats: Array(repeating: 0, count: face.count) + face)])
      .write(to: file)
    try generate(["--ip-adapter", "\(Self.folder)/ip-adapter-faceid_sd15.bin", "--ip-embeds", file], golden: "e2e-faceid-sd15")
  }

  /// A face embedding of the wrong width, written as `.npy` float32 [7].
  static func wrongWidthEmbedding() throws -> String {
    let path = CLI.temporaryPath("face7.npy")
    var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (7,), }"
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var bytes: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)]
    bytes += Array(header.utf8)
    for i in 0..<7 { withUnsafeBytes(of: Float(i).bitPattern.littleEndian) { bytes += $0 } }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
  }

  @Test(arguments: [
    (["--ip-adapter", "faceid_sd15", "--face-embedding", "WRONG"], "face embeddings must be [faces, 24]"),
    (["--ip-adapter", "faceid_sdxl", "--face-embedding", "face-a.npy"], "its image tokens are 50 wide"),
    (["--ip-adapter", "faceid-plusv2_sd15", "--face-embedding", "face-a.npy"], "needs an aligned face crop"),
    (["--ip-adapter", "faceid_sd15", "--face-embedding", "face-a.npy", "--ip-image", "REF"], "takes face embeddings"),
    (["--ip-adapter", "faceid_sd15", "--face-embedding", "face-a.npy", "--faceid-lora-scale", "nan"], "--faceid-lora-scale"),
    (["--face-embedding", "face-a.npy"], "--face-embedding: needs --ip-adapter"),
    (["--ip-adapter", "faceid-portrait_sd15", "--face-embedding", "face-a.npy"], "takes several face embeddings"),
    (["--ip-adapter", "faceid_sd15", "--face-embedding", "missing.npy"], "file not found"),
  ])
  func badFaceIDInputFailsWithOneLine(arguments: [String], message: String) throws {
    let wrong = try Self.wrongWidthEmbedding()
    defer { try? FileManager.default.removeItem(atPath: wrong) }
    let args = arguments.map { a -> String in
      switch a {
      case "WRONG": return wrong
      case "REF": return CLI.reference
      case "face-a.npy", "missing.npy": return "\(Self.folder)/\(a)"
      case _ where a.hasPrefix("faceid"): return "\(Self.folder)/ip-adapter-\(a).bin"
      default: return a
      }
    }
    let out = CLI.temporaryPath("bad.png")
    let r = try CLI.run(Self.common + args + ["--output", out])
    #expect(r.status != 0)
    #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
    #expect(r.stderr.hasPrefix("error: "))
    #expect(r.stderr.contains(message), "\(r.stderr)")
    #expect(!FileManager.default.fileExists(atPath: out))
  }
}
