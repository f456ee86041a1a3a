import Foundation
import Imaging
import TensorCore
import Testing
import TestSupport
import Weights

/// `ipadapter face` (native insightface analysis) and `generate --face-image`: outputs, exit codes
/// and refusals. Values against insightface are proven in FaceAnalysisTests; here the command's
/// files must carry the same faces.
@Suite struct FaceCommandTests {
  static let face = Fixtures.url("face").path
  static let buffalo = "\(face)/packs/tiny_buffalo_l"

  @Test func facePrintsFacesAndWritesEmbeddingsNPYAndCrops() throws {
    let out = CLI.temporaryPath("faces.safetensors")
    let npy = CLI.temporaryPath("faces.npy")
    let crops = CLI.temporaryPath("crops")
    try FileManager.default.createDirectory(atPath: crops, withIntermediateDirectories: true)
    defer { for f in [out, npy, crops] { try? FileManager.default.removeItem(atPath: f) } }
    let r = try CLI.run([
      "face", "\(Self.face)/img_a.png", "--face-models", Self.buffalo, "--output", out, "--npy", npy, "--save-crops", crops,
    ])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.contains("img_a.png: 2 faces (200×150)"), "\(r.stdout)")
    #expect(r.stdout.contains("face 0: box ["), "\(r.stdout)")
    let file = try SafeTensorsFile(path: out)
    let normed = try file.tensor("normed_embedding")
    #expect(normed.shape == [2, 512])
    #expect(try file.tensor("kps").shape == [2, 5, 2])
    #expect(try file.tensor("bbox").shape == [2, 4])
    let reference = try Fixtures.archive("face/e2e.safetensors")
    let scores = try reference.tensor("tiny_buffalo_l/a/det640/det_score").scalars()
    #expect(zip(try file.tensor("det_score").scalars(), scores).allSatisfy { abs($0 - $1) <= 1e-4 })
    // Unit rows; the .npy holds the same rows.
    for row in 0..<2 {
      let v = Array(normed.scalars()[(row * 512)..<((row + 1) * 512)])
      #expect(abs(v.map { $0 * $0 }.reduce(0, +) - 1) < 1e-4)
    }
    let fromNPY = try NPYArray.read(path: npy)
    #expect(fromNPY.shape == [2, 512] && fromNPY.scalars() == normed.scalars())
    for i in 0..<2 {
      let crop = try Image(contentsOfFile: "\(crops)/img_a_face\(i).png")
      #expect(crop.width == 224 && crop.height == 224)
    }
  }

  @Test func anImageWithoutAFaceExitsWithStatusTwoAndWritesNothing() throws {
    let blank = CLI.temporaryPath("blank.png")
    let out = CLI.temporaryPath("none.safetensors")
    defer { for f in [blank, out] { try? FileManager.default.removeItem(atPath: f) } }
    try ImageCodec.writePNG(Image(width: 64, height: 48, format: .rgb, fill: 120), to: blank)
    let r = try CLI.run(["face", blank, "--face-models", Self.buffalo, "--output", out])
    #expect(r.status == 2, "\(r.stderr)")
    #expect(r.stderr.contains("no face found"), "\(r.stderr)")
    #expect(!FileManager.default.fileExists(atPath: out))
  }

  @Test func missingOrWrongModelsAreOneLineErrors() throws {
    let r = try CLI.run(["face", "\(Self.face)/img_a.png", "--face-models", "\(Self.face)/no-such-pack"])
    #expect(r.status == 1)
    #expect(r.stderr.hasPrefix("error: ") && r.stderr.contains("no-such-pack"), "\(r.stderr)")
    // A folder without a detector.
    let only = CLI.temporaryPath("only-recognizer")
    try FileManager.default.createDirectory(atPath: only, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: only) }
    try FileManager.default.copyItem(atPath: "\(Self.buffalo)/w600k_r50.onnx", toPath: "\(only)/w600k_r50.onnx")
    let r2 = try CLI.run(["face", "\(Self.face)/img_a.png", "--face-models", only])
    #expect(r2.status == 1 && r2.stderr.contains("no face detector"), "\(r2.stderr)")
    let r3 = try CLI.run(["face", "\(Self.face)/img_a.png", "--face-models", Self.buffalo, "--det-size", "100"])
    #expect(r3.status != 0 && r3.stderr.contains("--det-size"), "\(r3.stderr)")
  }

  /// Gray, 16-bit and JPEG photos are analysed like cv2.imread reads them (FaceAnalysisTests);
  /// the command accepts them all.
  @Test func grayscaleSixteenBitAndJPEGPhotosAreAnalysed() throws {
    let r = try CLI.run([
      "face", "\(Self.face)/img_b.jpg", "\(Self.face)/img_c_gray.png", "\(Self.face)/img_d_16bit.png", "--face-models", Self.buffalo,
      "--select", "largest",
    ])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.components(separatedBy: ": 1 face ").count == 4, "\(r.stdout)")
  }

  /// A CMYK JPEG (decoded as Pillow does) is analysed like any photo (the random-weight detector
  /// finds "faces" in its noise, upscaled 17×).
  @Test func cmykJPEGIsDecodedAndAnalysed() throws {
    let cmyk = Fixtures.url("imaging/jpeg_cmyk_37x23.jpg").path
    let r = try CLI.run(["face", cmyk, "--face-models", Self.buffalo])
    #expect(r.status == 0 && r.stdout.contains(" faces (37×23)"), "\(r.stdout) \(r.stderr)")
  }

  /// `generate --face-image PHOTO`: the face is found, embedded and projected natively, and the
  /// image equals the one made from the same embedding given as a file.
  @Test func generateFromAPhotoEqualsGenerateFromItsEmbedding() throws {
    let pack = "\(Self.face)/packs/tiny_faceid24"
    let faces = CLI.temporaryPath("faces24.safetensors")
    let a = CLI.temporaryPath("photo.png")
    let b = CLI.temporaryPath("embedding.png")
    defer { for f in [faces, a, b] { try? FileManager.default.removeItem(atPath: f) } }
    let photo = "\(Self.face)/img_a.png"
    let r0 = try CLI.run(["face", photo, "--face-models", pack, "--select", "first", "--output", faces])
    #expect(r0.status == 0, "\(r0.stderr)")
    let adapter = Fixtures.url("faceid/ip-adapter-faceid_sd15.bin").path
    let common = FaceIDCommandTests.common + ["--ip-adapter", adapter]
    let r1 = try CLI.run(common + ["--face-image", photo, "--face-models", pack, "--output", a])
    #expect(r1.status == 0, "\(r1.stderr)")
    let r2 = try CLI.run(common + ["--face-embedding", faces, "--output", b])
    #expect(r2.status == 0, "\(r2.stderr)")
    let x = try Image(contentsOfFile: a)
    let y = try Image(contentsOfFile: b)
    #expect(x.pixels == y.pixels)
  }
}
