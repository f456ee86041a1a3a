import ArgumentParser
import FaceAnalysis
import Foundation
import ONNX
import TensorCore

/// `ipadapter bench face DIR`: the face graphs at real size (from `gen_face.py --real DIR`), the
/// cases of `tools/reference/bench_face_ort.py`, side by side with onnxruntime through
/// `tools/reference/bench_face_compare.py`.
struct BenchFaceCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "face",
    abstract: "Time face detection (SCRFD-10G at 640²) and ArcFace embeddings (r50, r100; batch 1) on real-size graphs.")

  @Argument(help: "Folder with det_10g.onnx, w600k_r50.onnx and glintr100.onnx (gen_face.py --real DIR).")
  var folder: String

  @Option(help: "Timed runs per case (the median is reported).")
  var runs = 10

  @Option(help: "Untimed runs first.")
  var warmup = 2

  @Option(help: "Threads (default: all cores).")
  var threads: Int?

  func run() throws {
    if let threads { Runtime.setThreadCount(threads) }
    let cases: [(String, String, [Int])] = [
      ("detection_640", "det_10g.onnx", [1, 3, 640, 640]),
      ("arcface_r50_b1", "w600k_r50.onnx", [1, 3, 112, 112]),
      ("arcface_r100_b1", "glintr100.onnx", [1, 3, 112, 112]),
    ]
    var results: [String] = []
    for (name, file, shape) in cases {
      let path = (folder as NSString).appendingPathComponent(file)
      guard FileManager.default.fileExists(atPath: path) else { continue }
      var session: ONNXSession!
      let load = try Bench.seconds { session = try ONNXSession(contentsOf: path) }
      var rng = SystemRandomNumberGenerator()
      let input = try Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &rng) })
      let feed = [session.inputs[0].name: input]
      for _ in 0..<warmup { _ = try session.run(feed) }
      var times: [Double] = []
      for _ in 0..<max(1, runs) { times.append(try Bench.seconds { _ = try session.run(feed) } * 1e3) }
      let sorted = times.sorted()
      results.append(
        String(
          format: "\"%@\": {\"median_ms\": %.2f, \"min_ms\": %.2f, \"max_ms\": %.2f, \"session_ms\": %.1f}", name,
          sorted[sorted.count / 2], sorted.first!, sorted.last!, load * 1e3))
    }
    print("{\"engine\": \"ipadapter\", \"threads\": \(Runtime.threadCount), \"cases\": {\(results.joined(separator: ", "))}}")
  }
}
