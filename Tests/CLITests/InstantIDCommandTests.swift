import FaceAnalysis
import Foundation
import Imaging
import TensorCore
import Testing
import TestSupport
import Weights

/// `ipadapter generate --instantid`: the face from a photo, or an embedding with keypoints, on the
/// tiny SDXL model and tiny InstantID folder; values against the reference pipeline's goldens
/// (tools/reference/gen_instantid.py; the library parity is InstantIDParityTests); refusals.
@Suite struct InstantIDCommandTests {
  static let sdxl = Fixtures.url("tiny-sdxl").path
  static let instantID = Fixtures.url("instantid/tiny-instantid").path
  static let goldens = Fixtures.url("instantid/pipeline")
  static let pack = Fixtures.url("face/packs/tiny_faceid24").path
  static let common = [
    "generate", "--model", sdxl, "--instantid", instantID, "--prompt", "a portrait of a person", "--negative-prompt",
    "blurry, low quality", "--width", "64", "--height", "48", "--steps", "4", "--guidance-scale", "5", "--seed", "0", "--quiet",
  ]

  func latents(_ path: String) throws -> Tensor { try SafeTensorsFile(path: path).tensor("latents") }

  @Test func embeddingAndKeypointsGiveTheReferenceLatents() throws {
    let npy = CLI.temporaryPath("face.npy")
    let out = CLI.temporaryPath("out.png")
    let saved = CLI.temporaryPath("latents.safetensors")
    defer { for f in [npy, out, saved] { try? FileManager.default.removeItem(atPath: f) } }
    let golden = try SafeTensorsFile(path: Self.goldens.appendingPathComponent("given.safetensors").path)
    try FaceFile.writeNPY([try golden.tensor("embedding").scalars()], to: npy)
    let r = try CLI.run(
      Self.common + [
        "--face-embedding", npy, "--face-keypoints", "22.4,15.8 41.2,16.3 31.7,25.2 24.1,34.6 39.5,34.0", "--ip-scale", "0.8",
        "--identitynet-scale", "0.8", "--output", out, "--save-latents", saved,
      ])
    #expect(r.status == 0, "\(r.stderr)")
    let error = Compare.relativeError(try latents(saved), try golden.tensor("latents"))
    #expect(error <= 1e-4, "latents relative error \(error)")
    let png = try Image(contentsOfFile: out)
    #expect(Compare.closeFraction(png, try Image(contentsOfFile: Self.goldens.appendingPathComponent("given.png").path)) >= 0.99)
    // The same keypoints as a JSON file give the same latents; a file that is not a list of pairs is refused.
    let json = CLI.temporaryPath("kps.json")
    let fromJSON = CLI.temporaryPath("json.safetensors")
    defer { for f in [json, fromJSON] { try? FileManager.default.removeItem(atPath: f) } }
    try Data("[[22.4, 15.8], [41.2, 16.3], [31.7, 25.2], [24.1, 34.6], [39.5, 34.0]]".utf8).write(to: URL(fileURLWithPath: json))
    let j = try CLI.run(
      Self.common + ["--face-embedding", npy, "--face-keypoints", json, "--output", out, "--save-latents", fromJSON])
    #expect(j.status == 0, "\(j.stderr)")
    #expect(try latents(fromJSON).scalars() == (try latents(saved)).scalars())
    // Without --ip-adapter the layer-scale flags are the face adapter's: 0.8 on every layer is --ip-scale 0.8.
    let blocks = try CLI.run(
      Self.common + [
        "--face-embedding", npy, "--face-keypoints", json, "--ip-block-scales", "0.8", "--ip-scale", "0.3", "--output", out,
        "--save-latents", fromJSON,
      ])
    #expect(blocks.status == 0, "\(blocks.stderr)")
    #expect(try latents(fromJSON).scalars() == (try latents(saved)).scalars())
    try Data("{\"x\": 1}".utf8).write(to: URL(fileURLWithPath: json))
    let bad = try CLI.run(Self.common + ["--face-embedding", npy, "--face-keypoints", json, "--output", out])
    #expect(bad.status == 1 && bad.stderr.contains("is not a JSON list of [x, y] pairs"), "\(bad.stderr)")
  }

  @Test func enhanceFaceRegionChangesTheImage() throws {
    let plain = CLI.temporaryPath("plain.safetensors")
    let enhanced = CLI.temporaryPath("enhanced.safetensors")
    let out = CLI.temporaryPath("out.png")
    defer { for f in [plain, enhanced, out] { try? FileManager.default.removeItem(atPath: f) } }
    let face = ["--face-image", Fixtures.url("face/img_a.png").path, "--face-models", Self.pack, "--output", out]
    let a = try CLI.run(Self.common + face + ["--save-latents", plain, "--height", "64"])
    let b = try CLI.run(Self.common + face + ["--save-latents", enhanced, "--height", "64", "--enhance-face-region"])
    #expect(a.status == 0 && b.status == 0, "\(a.stderr) \(b.stderr)")
    #expect(Compare.relativeError(try latents(plain), try latents(enhanced)) > 1e-3)
    // 64×48 latents do not divide into the tiny UNet's attention resolutions: refused by name.
    let odd = try CLI.run(Self.common + face + ["--enhance-face-region"])
    #expect(odd.status == 1 && odd.stderr.contains("must be a multiple of 32"), "\(odd.stderr)")
  }

  @Test func aPhotoIsAnalysedNatively() throws {
    let out = CLI.temporaryPath("photo.png")
    let saved = CLI.temporaryPath("photo.safetensors")
    defer { for f in [out, saved] { try? FileManager.default.removeItem(atPath: f) } }
    let r = try CLI.run(
      Self.common + [
        "--face-image", Fixtures.url("face/img_a.png").path, "--face-models", Self.pack, "--output", out, "--save-latents", saved,
      ])
    #expect(r.status == 0, "\(r.stderr)")
    let golden = try SafeTensorsFile(path: Self.goldens.appendingPathComponent("photo.safetensors").path)
    // The all-native bound of InstantIDParityTests (the embedding's cosine 0.99917).
    let error = Compare.relativeError(try latents(saved), try golden.tensor("latents"))
    #expect(error <= 5e-2, "latents relative error \(error)")
  }

  @Test(arguments: [
    ([], "--face-embedding: with InstantID it needs keypoints"),
    (["--face-keypoints", "1,2,3"], "--face-keypoints: give five finite x,y pairs"),
    (["--face-keypoints", "1,2 3,4 5,6 7,8 9,10", "--identitynet-scale", "nan"], "--identitynet-scale: nan is not a finite number"),
    (["--face-keypoints", "1,2 3,4 5,6 7,8 9,10", "--identitynet-start", "0.9", "--identitynet-end", "0.2"], "--identitynet-start"),
    (["--face-keypoints", "1,2 3,4 5,6 7,8 9,10", "--enhance-face-region"], "needs the face's box"),
    (["--face-keypoints", "1,2 3,4 5,6 7,8 9,10", "--ip-start", "0.1", "--ip-start", "0.2"], "--ip-start: InstantID's face adapter takes one value"),
  ])
  func badFlagsAreRefusedBeforeLoading(_ extra: [String], _ message: String) throws {
    let out = CLI.temporaryPath("never.png")
    let npy = CLI.temporaryPath("face.npy")
    defer { for f in [out, npy] { try? FileManager.default.removeItem(atPath: f) } }
    try FaceFile.writeNPY([[Float](repeating: 1, count: 24)], to: npy)
    let r = try CLI.run(Self.common + ["--face-embedding", npy] + extra + ["--output", out])
    #expect(r.status == 1)
    #expect(r.stderr.contains(message), "\(r.stderr)")
    #expect(!FileManager.default.fileExists(atPath: out))
  }

  @Test func refusalsAreOneLineErrorsAndWriteNothing() throws {
    let out = CLI.temporaryPath("never.png")
    let blank = CLI.temporaryPath("blank.png")
    defer { for f in [out, blank] { try? FileManager.default.removeItem(atPath: f) } }
    try ImageCodec.writePNG(Image(width: 96, height: 80, format: .rgb, fill: 0), to: blank)
    let noFace = try CLI.run(Self.common + ["--face-image", blank, "--face-models", Self.pack, "--output", out])
    #expect(noFace.status == 1)
    #expect(noFace.stderr.contains("no face found in the face photo"), "\(noFace.stderr)")
    var sd15 = Self.common
    sd15[2] = Fixtures.url("tiny-sd15").path
    let wrongModel = try CLI.run(sd15 + ["--face-image", Fixtures.url("face/img_a.png").path, "--face-models", Self.pack, "--output", out])
    #expect(wrongModel.status == 1)
    #expect(wrongModel.stderr.contains("not an SDXL model"), "\(wrongModel.stderr)")
    let noFaceGiven = try CLI.run(Self.common + ["--output", out])
    #expect(noFaceGiven.stderr.contains("--instantid: needs a face"), "\(noFaceGiven.stderr)")
    let keypointsWithoutInstantID = try CLI.run(
      ["generate", "--model", Self.sdxl, "--prompt", "x", "--face-keypoints", "1,2", "--output", out])
    #expect(keypointsWithoutInstantID.stderr.contains("--face-keypoints: needs --instantid"), "\(keypointsWithoutInstantID.stderr)")
    #expect(!FileManager.default.fileExists(atPath: out))
  }
}
