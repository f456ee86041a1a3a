import Foundation
import Imaging
import TensorCore
import Testing
import TestSupport
import Weights

/// The limits and safety switches of `generate`: one-line errors naming the flag that changes the
/// outcome, and no output file.
@Suite struct HostileInputCommandTests {
  static func expectRefusal(_ arguments: [String], mentions texts: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
    let out = CLI.temporaryPath("hostile.png")
    let r = try CLI.run(["generate", "--prompt", "x", "--steps", "1", "--quiet", "--output", out] + arguments)
    #expect(r.status == 1, sourceLocation: sourceLocation)
    #expect(r.stderr.hasPrefix("error: ") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)", sourceLocation: sourceLocation)
    for text in texts { #expect(r.stderr.contains(text), "\(r.stderr)", sourceLocation: sourceLocation) }
    #expect(!FileManager.default.fileExists(atPath: out), sourceLocation: sourceLocation)
  }

  @Test func outputLargerThanMaxPixelsIsRefused() throws {
    try Self.expectRefusal(
      ["--model", CLI.model, "--width", "128", "--height", "128", "--max-pixels", "4096"],
      mentions: ["128×128", "--max-pixels raises the limit"])
    // The init image's size is the output size.
    let initImage = Fixtures.url("images/init-64.png").path
    try Self.expectRefusal(
      ["--model", CLI.model, "--init-image", initImage, "--max-pixels", "1024"],
      mentions: ["64×64 (the init image's size)", "--max-pixels"])
  }

  @Test func inputLargerThanMaxInputPixelsIsRefused() throws {
    let initImage = Fixtures.url("images/init-64.png").path
    try Self.expectRefusal(
      ["--model", CLI.model, "--init-image", initImage, "--max-input-pixels", "100"],
      mentions: ["init-64.png: 64×64 is larger than the limit of 100 pixels", "--max-input-pixels"])
  }

  @Test func nanWeightsAreRefusedUnlessAllowNaN() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cli-nan-\(UUID().uuidString)")
    try FileManager.default.copyItem(at: Fixtures.url("tiny-sd15"), to: dir)
    defer { try? FileManager.default.removeItem(at: dir) }
    let file = dir.appendingPathComponent("unet/diffusion_pytorch_model.safetensors")
    let source = try SafeTensorsFile(path: file.path)
    var tensors = [String: Tensor]()
    for k in source.keys { tensors[k] = try source.tensor(k).toFloat32(pooled: false) }
    let shape = tensors["conv_out.bias"]!.shape
    tensors["conv_out.bias"] = try Tensor(shape: shape, floats: Array(repeating: .nan, count: shape.reduce(1, *)))
    try FileManager.default.removeItem(at: file)
    try SafeTensorsWriter.write(tensors, to: file.path)

    try Self.expectRefusal(["--model", dir.path, "--seed", "0"], mentions: ["conv_out.bias", "--allow-nan"])
    let out = CLI.temporaryPath("nan.png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let r = try CLI.run(["generate", "--model", dir.path, "--prompt", "x", "--steps", "2", "--seed", "0", "--quiet", "--allow-nan", "--output", out])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(try Image(contentsOfFile: out).pixels.allSatisfy { $0 == 0 })
  }
}
