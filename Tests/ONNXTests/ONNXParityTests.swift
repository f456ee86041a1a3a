import Foundation
@testable import ONNX
import TensorCore
import TestSupport
import Testing
import Weights

/// Every output of the fixture graphs (tools/reference/gen_face.py) against onnxruntime 1.32 on
/// the same inputs. Tolerance: |ours − ort| ≤ 1e-4 · max(1, max |ort|) per output (fp32 kernels
/// with different summation orders; the bound).
@Suite struct ONNXParityTests {
  static let folder = "face"
  static let tolerance: Float = 1e-4

  static func path(_ name: String) -> String { Fixtures.url("\(folder)/\(name)").path }

  /// Runs `graph` on the inputs stored under `<graph>/in/` and compares every `<graph>/out/<name>`.
  func check(_ graph: String, reference: SafeTensorsFile, options: ONNXSessionOptions = ONNXSessionOptions()) throws {
    let session = try ONNXSession(contentsOf: Self.path("\(graph).onnx"), options: options)
    var inputs: [String: Tensor] = [:]
    for (name, _) in session.inputs {
      let key = "\(graph)/in/\(name)"
      if let entry = reference.header.entry(key), entry.elementType == .u8 {
        // Whole pixel values stored as uint8.
        inputs[name] = try Tensor(shape: entry.shape, floats: try reference.rawBytes(key).map(Float.init))
      } else {
        inputs[name] = try reference.tensor(key).toFloat32()
      }
    }
    let outputs = try session.run(inputs)
    #expect(outputs.count == session.outputNames.count)
    for (name, ours) in zip(session.outputNames, outputs) {
      let key = "\(graph)/out/\(name)"
      if reference.header.entry(key)?.elementType == .i64 {
        // Integer outputs (Shape): exact.
        #expect(ours.scalars().map { Int64($0) } == (try reference.int64Values(key)), "\(graph) \(name)")
        continue
      }
      let expected = try reference.tensor(key).toFloat32()
      #expect(ours.shape == expected.shape, "\(graph) \(name): shape \(ours.shape) vs \(expected.shape)")
      guard ours.shape == expected.shape else { continue }
      let scale = max(1, expected.scalars().map(abs).max() ?? 0)
      let diff = Compare.maxAbsDifference(ours, expected)
      #expect(diff <= Self.tolerance * scale, "\(graph) \(name): max |diff| \(diff)")
    }
  }

  @Test(arguments: [
    "ops_binary", "ops_conv", "ops_linear", "ops_norm_act", "ops_pool", "ops_resize11", "ops_resize13",
    "ops_shape11", "ops_shape13", "ops_softmax11", "ops_softmax13", "ops_upsample9", "fp16_cast",
  ])
  func operatorGraphMatchesOnnxruntime(_ graph: String) throws {
    try check(graph, reference: try Fixtures.archive("\(Self.folder)/ort_ops.safetensors"))
  }

  /// insightface's other buffalo_l graphs in their MXNet-export form (gen_face_aux.py): 2d106det
  /// (MobileNet-0.5: depthwise convolutions, unfolded BatchNormalization, PRelu, in-graph Sub/Mul
  /// normalisation), genderage (depthwise, Relu, two heads concatenated) and 1k3d68 (pre-activation
  /// ResNet: Identity, unfolded BN, MaxPool, shortcut convolutions), and grouped convolutions alone.
  @Test(arguments: ["aux_2d106det", "aux_genderage", "aux_1k3d68", "ops_group_conv", "ops_conv_add"])
  func auxiliaryGraphMatchesOnnxruntime(_ graph: String) throws {
    try check(graph, reference: try Fixtures.archive("\(Self.folder)/ort_aux.safetensors"))
  }

  /// Conv → Add chains: a per-channel or scalar constant is folded into the convolution's bias, a
  /// full-size constant or a computed value is added by oneDNN's sum post-op; fused or not, the
  /// results are onnxruntime's, and a session keeps only the constants it still reads at run time
  /// (packed convolution weights are not kept twice).
  @Test func convolutionAddChainsFoldConstantsAndKeepOnlyWhatRunsRead() throws {
    let reference = try Fixtures.archive("\(Self.folder)/ort_aux.safetensors")
    try check("ops_conv_add", reference: reference, options: ONNXSessionOptions(fuseConvolutions: false))
    let fused = try ONNXSession(contentsOf: Self.path("ops_conv_add.onnx"))
    #expect(fused.retainedConstantElements == 5 * 7 * 10)  // A_full only
    let unfused = try ONNXSession(contentsOf: Self.path("ops_conv_add.onnx"), options: ONNXSessionOptions(fuseConvolutions: false))
    #expect(unfused.retainedConstantElements == 5 + 5 + 1 + 5 * 7 * 10)  // the Add operands
  }

  /// The SCRFD-10G-style detector in the released files' form (opset 11, size-based Resize with
  /// Shape/Gather/Cast/Concat) and its opset variations: Upsample (opset 9), opset 13, and with
  /// BatchNormalization left unfolded — on an even and an odd letterboxed canvas (the opset-9
  /// export has a fixed input size: the even canvas only).
  @Test(arguments: [
    ("det_10g", "even"), ("det_10g", "odd"), ("det_opset9", "even"), ("det_opset13", "even"), ("det_opset13", "odd"),
    ("det_bn", "even"), ("det_bn", "odd"),
  ])
  func detectorOutputsMatchOnnxruntime(_ graph: String, _ canvas: String) throws {
    try checkDetector(graph, canvas, options: ONNXSessionOptions())
  }

  /// The same without folding Conv → Add → Relu chains into oneDNN post-ops.
  @Test func unfusedDetectorMatchesOnnxruntime() throws {
    try checkDetector("det_10g", "odd", options: ONNXSessionOptions(fuseConvolutions: false))
  }

  func checkDetector(_ graph: String, _ canvas: String, options: ONNXSessionOptions) throws {
    let reference = try Fixtures.archive("\(Self.folder)/ort_det.safetensors")
    let file = graph == "det_10g" ? "packs/tiny_buffalo_l/det_10g.onnx" : "\(graph).onnx"
    let session = try ONNXSession(contentsOf: Self.path(file), options: options)
    let shape = try #require(reference.header.entry("canvas_\(canvas)")?.shape)  // [H, W, 3] uint8 BGR
    let (h, w) = (shape[0], shape[1])
    // insightface: blobFromImage(img, 1/128, mean 127.5, swapRB) → RGB, NCHW.
    let pixels = try reference.rawBytes("canvas_\(canvas)").map(Float.init)
    var blob = [Float](repeating: 0, count: 3 * h * w)
    for y in 0..<h {
      for x in 0..<w {
        for c in 0..<3 { blob[c * h * w + y * w + x] = (pixels[(y * w + x) * 3 + (2 - c)] - 127.5) / 128 }
      }
    }
    let outputs = try session.run([session.inputs[0].name: try Tensor(shape: [1, 3, h, w], floats: blob)])
    let names = ["score", "bbox", "kps"].flatMap { kind in [8, 16, 32].map { "\(kind)_\($0)" } }
    #expect(outputs.count == 9)
    for (name, ours) in zip(names, outputs) {
      let expected = try reference.tensor("\(graph)/\(canvas)/\(name)").toFloat32()
      #expect(ours.shape == expected.shape, "\(graph) \(name): \(ours.shape) vs \(expected.shape)")
      guard ours.shape == expected.shape else { continue }
      let scale = max(1, expected.scalars().map(abs).max() ?? 0)
      let diff = Compare.maxAbsDifference(ours, expected)
      #expect(diff <= Self.tolerance * scale, "\(graph) \(canvas) \(name): max |diff| \(diff)")
    }
  }

  /// iresnet50 / iresnet100 (arcface_torch) graphs with w600k_r50's and glintr100's structure, on
  /// two aligned crops normalised as insightface's ArcFaceONNX does.
  @Test(arguments: [("w600k_r50", "tiny_buffalo_l"), ("glintr100", "tiny_antelopev2")])
  func recognitionOutputsMatchOnnxruntime(_ graph: String, _ pack: String) throws {
    let reference = try Fixtures.archive("\(Self.folder)/ort_iresnet.safetensors")
    let session = try ONNXSession(contentsOf: Self.path("packs/\(pack)/\(graph).onnx"))
    let n = try #require(reference.header.entry("crops_bgr")?.shape.first)
    let p = try reference.rawBytes("crops_bgr").map(Float.init)
    var blob = [Float](repeating: 0, count: n * 3 * 112 * 112)
    for b in 0..<n {
      for i in 0..<(112 * 112) {
        for c in 0..<3 { blob[(b * 3 + c) * 112 * 112 + i] = (p[(b * 112 * 112 + i) * 3 + (2 - c)] - 127.5) / 127.5 }
      }
    }
    let out = try session.run([session.inputs[0].name: try Tensor(shape: [n, 3, 112, 112], floats: blob)])[0]
    let expected = try reference.tensor("\(graph)/output").toFloat32()
    #expect(out.shape == expected.shape)
    let scale = max(1, expected.scalars().map(abs).max() ?? 0)
    #expect(Compare.maxAbsDifference(out, expected) <= Self.tolerance * scale)
  }
}

/// Files that are not valid or not supported get a clear, typed error naming the file and what is
/// wrong — never a crash or a wrong result.
@Suite struct ONNXRefusalTests {
  static func path(_ name: String) -> String { Fixtures.url("face/\(name)").path }

  @Test func truncatedModelIsMalformed() throws {
    #expect {
      _ = try ONNXSession(contentsOf: Self.path("truncated.onnx"))
    } throws: { error in
      guard case ONNXError.malformed(let file, let reason) = error else { return false }
      return file.hasSuffix("truncated.onnx") && reason.contains("truncated")
    }
  }

  @Test func unsupportedOperatorIsNamedWithItsNode() throws {
    #expect {
      _ = try ONNXSession(contentsOf: Self.path("unsupported_op.onnx"))
    } throws: { error in
      guard case ONNXError.unsupportedOperator(let file, let node, let op, _) = error else { return false }
      return file.hasSuffix("unsupported_op.onnx") && !node.isEmpty && !ONNXOperators.supported.contains(op)
    }
  }

  @Test func externalDataIsRefusedClearly() throws {
    #expect {
      _ = try ONNXSession(contentsOf: Self.path("external_data.onnx"))
    } throws: { error in
      guard case ONNXError.externalData(_, let tensor, let location) = error else { return false }
      return !tensor.isEmpty && !location.isEmpty
    }
  }

  /// A graph computing in float16 is refused (the engine computes in float32 and would not give
  /// onnxruntime's float16 results).
  @Test func float16ComputationIsRefused() throws {
    #expect {
      _ = try ONNXSession(contentsOf: Self.path("fp16_full.onnx"))
    } throws: { error in
      "\(error)".contains("float16")
    }
  }

  @Test func bytesThatAreNotProtobufAreMalformed() throws {
    let garbage: [UInt8] = Array("this is not an ONNX model, just text\n".utf8)
    #expect(throws: ONNXError.self) {
      try garbage.withUnsafeBytes { _ = try ONNXSession(bytes: $0, file: "garbage.onnx") }
    }
    let empty: [UInt8] = []
    #expect(throws: ONNXError.self) {
      try empty.withUnsafeBytes { _ = try ONNXSession(bytes: $0, file: "empty.onnx") }
    }
  }

  /// Every prefix of a valid model is refused with an error (no trap, no hang).
  @Test func everyTruncationOfAValidModelIsRefused() throws {
    let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.path("ops_softmax13.onnx"))))
    for cut in stride(from: 0, to: bytes.count, by: 7) {
      let prefix = Array(bytes[..<cut])
      #expect(throws: (any Error).self) {
        try prefix.withUnsafeBytes { _ = try ONNXSession(bytes: $0, file: "cut") }
      }
    }
  }

  /// An initializer declaring a huge shape but holding no values is refused before its size is
  /// allocated (fuzz-found: 377,300,000 floats declared in a 70-byte file).
  @Test func declaredShapeWithoutValuesIsRefusedBeforeAllocating() throws {
    let bytes = try [UInt8](Data(contentsOf: ONNXFuzzRegressionTests.folder
      .appendingPathComponent("float-initializer-377M-elements-without-data")))
    #expect {
      try bytes.withUnsafeBytes { _ = try ONNXSession(bytes: $0, file: "huge.onnx") }
    } throws: { error in
      guard case ONNXError.invalidGraph(let file, let reason) = error else { return false }
      return file == "huge.onnx" && reason.contains("'w'") && reason.contains("holds 0 values")
    }
  }

  @Test func wrongInputShapeIsNamed() throws {
    let session = try ONNXSession(contentsOf: Self.path("packs/tiny_buffalo_l/w600k_r50.onnx"))
    #expect {
      _ = try session.run([session.inputs[0].name: Tensor.zeros([1, 3, 100, 112])])
    } throws: { error in
      guard case ONNXError.invalidInput(_, let input, let reason) = error else { return false }
      return input == session.inputs[0].name && reason.contains("shape")
    }
  }
}

/// Every input that once crashed the `onnx` fuzz target (Fuzz/Regressions/onnx/) is refused with an
/// error or runs, as the harness does it.
@Suite struct ONNXFuzzRegressionTests {
  static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fuzz/Regressions/onnx")

  @Test func fuzzFoundInputsAreHandled() throws {
    let files = try FileManager.default.contentsOfDirectory(atPath: Self.folder.path).filter { !$0.hasPrefix(".") }
    #expect(!files.isEmpty)
    for name in files {
      let bytes = try [UInt8](Data(contentsOf: Self.folder.appendingPathComponent(name)))
      do {
        let session = try bytes.withUnsafeBytes {
          try ONNXSession(bytes: $0, file: name, options: ONNXSessionOptions(maxValueElements: 1 << 20))
        }
        var feeds: [String: Tensor] = [:]
        for (input, declared) in session.inputs {
          feeds[input] = Tensor.full((declared ?? [1]).map { d in d.map { $0 > 0 ? Int(min($0, 64)) : 4 } ?? 4 }, 0.5)
        }
        _ = try session.run(feeds)
      } catch is ONNXError {
        // The expected outcome for a malformed model.
      }
    }
  }
}
