import Foundation
import Imaging
import TestSupport
import Testing

/// `ipadapter train` end to end on the tiny SD1.5 fixture: a run with checkpoints, the loss plot,
/// `--resume latest`, and a full disk while saving (simulated with a file-size limit), which must
/// fail with one line and leave the previous checkpoint intact.
@Suite(.serialized) struct TrainCommandTests {
  func arguments(_ data: URL, output: String, steps: Int) -> [String] {
    [
      "train", "--model", CLI.model, "--image-encoder", CLI.adapters + "/image_encoder", "--data",
      data.appendingPathComponent("train.json").path, "--image-root", data.path, "--resolution", "64", "--batch-size", "2",
      "--steps", "\(steps)", "--save-steps", "2", "--output", output, "--quiet",
    ]
  }

  func logLines(_ output: String) -> [String] {
    ((try? String(contentsOfFile: output + "/loss.jsonl", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
  }

  @Test func trainsPlotsAndResumesTheLatestCheckpoint() async throws {
    try await OffPool.run { try self.trainPlotResume() }
  }

  func trainPlotResume() throws {
    let data = try TrainingData.make()
    let output = CLI.temporaryPath("train")
    let first = try CLI.run(arguments(data, output: output, steps: 4))
    #expect(first.status == 0, "\(first.stderr)")
    #expect(first.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == output + "/ip_adapter.safetensors")
    for name in ["checkpoint-2", "checkpoint-4", "checkpoint-4/ip_adapter.bin", "ip_adapter.safetensors", "ip_adapter.bin"] {
      #expect(FileManager.default.fileExists(atPath: output + "/" + name), "\(name) missing")
    }
    #expect(logLines(output).count == 4)
    let plot = try CLI.run(["train", "--plot", "--output", output])
    #expect(plot.status == 0 && plot.stdout.contains("loss (moving average) over steps 1–4"), "\(plot.stdout)\(plot.stderr)")
    // Resumed with a feature cache: steps 5 and 6 see the four examples once each.
    let cache = CLI.temporaryPath("train-cache")
    let resumed = try CLI.run(arguments(data, output: output, steps: 6) + ["--resume", "latest", "--cache-dir", cache])
    #expect(resumed.status == 0, "\(resumed.stderr)")
    #expect(logLines(output).count == 6)
    #expect(FileManager.default.fileExists(atPath: output + "/checkpoint-6/training_state.json"))
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []
    #expect(entries.filter { $0.hasSuffix(".safetensors") }.count == 4 && entries.contains("cache.json"), "\(entries)")
  }

  @Test func aFullDiskWhileSavingKeepsThePreviousCheckpoint() async throws {
    try await OffPool.run { try self.fullDisk() }
  }

  func fullDisk() throws {
    let data = try TrainingData.make()
    let output = CLI.temporaryPath("train-full")
    let first = try CLI.run(arguments(data, output: output, steps: 2))
    #expect(first.status == 0, "\(first.stderr)")
    let before = try Data(contentsOf: URL(fileURLWithPath: output + "/checkpoint-2/ip_adapter.safetensors"))
    // A 1-block file-size limit (SIGXFSZ ignored, so writes fail with EFBIG): the loss log still
    // fits, the next checkpoint's tensors do not.
    let limited = try CLI.run(
      ["-c", "trap '' XFSZ; ulimit -f 1; exec \"$0\" \"$@\"", CLI.executable.path]
        + arguments(data, output: output, steps: 4) + ["--resume", "latest"], program: "/bin/sh")
    #expect(limited.status == 1, "\(limited.stderr)")
    #expect(limited.stderr.hasPrefix("error: ") && limited.stderr.contains("checkpoint-4"), "\(limited.stderr)")
    #expect(limited.stderr.split(separator: "\n").count == 1, "\(limited.stderr)")
    let names = try FileManager.default.contentsOfDirectory(atPath: output).sorted()
    #expect(names == ["checkpoint-2", "ip_adapter.bin", "ip_adapter.safetensors", "loss.jsonl"], "\(names)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: output + "/checkpoint-2/ip_adapter.safetensors")) == before)
    // The intact checkpoint still resumes.
    let again = try CLI.run(arguments(data, output: output, steps: 4) + ["--resume", output + "/checkpoint-2"])
    #expect(again.status == 0, "\(again.stderr)")
  }

  /// A Qwen-VL resampler adapter trains, is detected by `generate` from its keys, and its `.bin`
  /// and `.safetensors` give the same image.
  @Test func aQwenResamplerAdapterTrainsAndGenerates() async throws {
    try await OffPool.run { try self.qwen() }
  }

  func qwen() throws {
    let data = try TrainingData.make()
    let output = CLI.temporaryPath("train-qwen")
    let trained = try CLI.run(arguments(data, output: output, steps: 2) + ["--projection", "qwen", "--grid-size", "3"])
    #expect(trained.status == 0, "\(trained.stderr)")
    var images: [[UInt8]] = []
    for file in ["ip_adapter.safetensors", "ip_adapter.bin"] {
      let png = output + "/\(file).png"
      let generated = try CLI.run([
        "generate", "--model", CLI.model, "--ip-adapter", output + "/" + file, "--image-encoder", CLI.adapters + "/image_encoder",
        "--ip-image", data.appendingPathComponent("1.png").path, "--prompt", "a circle", "--steps", "2", "--width", "64",
        "--height", "64", "--seed", "5", "--output", png,
      ])
      #expect(generated.status == 0, "\(generated.stderr)")
      // The pixels (the PNG's text chunk names the adapter file).
      images.append((try? Image(contentsOfFile: png))?.pixels ?? [])
    }
    #expect(!images[0].isEmpty && images[0] == images[1])
  }

  @Test(arguments: [
    (["--projection", "huge"], "--projection: 'huge' is not one of linear, plus, full-face, qwen"),
    (["--data", "/nonexistent.json"], "--data: not found"),
    (["--learning-rate", "nan"], "--learning-rate"),
    (["--resolution", "60"], "--resolution: 60 must be a multiple of"),
    (["--lr-scheduler", "exponential"], "--lr-scheduler: unknown learning-rate schedule 'exponential'"),
  ])
  func badArgumentsFailWithOneLine(_ extra: [String], _ message: String) throws {
    let data = try TrainingData.make()
    let result = try CLI.run(arguments(data, output: CLI.temporaryPath("train-bad"), steps: 2) + extra)
    #expect(result.status != 0)
    #expect(result.stderr.contains(message), "\(result.stderr)")
    #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
  }
}
