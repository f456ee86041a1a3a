import Foundation
import Imaging
import ONNX
import TensorCore

/// insightface's ArcFace recogniser on an ONNX graph (`w600k_r50.onnx`, `glintr100.onnx`, …):
/// the aligned crop (`norm_crop` at the graph's input size) normalised `(p − mean)/std` in RGB,
/// one embedding per face (512 values for the released models), not normalised.
///
/// matches: insightface 0.7.3 `model_zoo.arcface_onnx.ArcFaceONNX` (`get`, `get_feat`). Mean/std are
/// 127.5/127.5, or 0/1 when the graph normalises itself (MXNet exports whose first nodes are
/// `Sub…`/`_minus…` and `Mul…`/`_mul…`), as insightface decides.
public final class ArcFaceRecognizer: @unchecked Sendable {
  public let session: ONNXSession
  public let inputSize: Int
  public let mean: Float
  public let std: Float
  let inputName: String

  public init(session: ONNXSession, signature: ONNXSignature) throws {
    self.session = session
    guard signature.inputs.count == 1, let input = signature.inputs.first, let shape = input.shape, shape.count == 4,
      let h = shape[2], let w = shape[3], h == w, h >= 112, h % 16 == 0, h <= 1024
    else {
      throw FaceAnalysisError.unexpectedModel(
        file: session.file, reason: "a recognition model takes one square image input of at least 112 pixels (a multiple of 16)")
    }
    inputName = input.name
    inputSize = Int(h)
    let names = signature.leadingNodeNames
    let hasSub = names.contains { $0.hasPrefix("Sub") || $0.hasPrefix("_minus") }
    let hasMul = names.contains { $0.hasPrefix("Mul") || $0.hasPrefix("_mul") }
    (mean, std) = hasSub && hasMul ? (0, 1) : (127.5, 127.5)
  }

  /// Embeddings of aligned crops (`inputSize`², RGB), one row per crop, in one batch.
  public func embeddings(ofAlignedCrops crops: [Image]) throws -> [[Float]] {
    guard !crops.isEmpty else { return [] }
    let s = inputSize
    var blob = Tensor(uninitializedShape: [crops.count, s, s, 3])
    blob.withUnsafeMutableFloats { d in
      for (i, crop) in crops.enumerated() {
        precondition(crop.width == s && crop.height == s && crop.format == .rgb)
        crop.pixels.withUnsafeBufferPointer { p in
          for j in 0..<(s * s * 3) { d[i * s * s * 3 + j] = (Float(p[j]) - mean) / std }
        }
      }
    }
    let out = try session.run([inputName: ONNXInput(nhwc: blob)])[0]
    let per = out.count / crops.count
    guard per > 0, out.count == per * crops.count else {
      throw FaceAnalysisError.unexpectedModel(file: session.file, reason: "output \(out.shape) does not hold one embedding per face")
    }
    let values = out.scalars()
    return (0..<crops.count).map { Array(values[($0 * per)..<(($0 + 1) * per)]) }
  }
}

/// L2-normalised copy of an embedding (insightface `Face.normed_embedding`, float32).
public func l2Normalized(_ v: [Float]) -> [Float] {
  var sum: Float = 0
  for x in v { sum += x * x }
  let norm = sum.squareRoot()
  return norm > 0 ? v.map { $0 / norm } : v
}
