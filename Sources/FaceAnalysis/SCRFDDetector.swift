import Foundation
import Imaging
import ONNX
import TensorCore

/// One detection: box corners, score and (for keypoint models) the five landmarks, in the
/// coordinates of the analysed image.
public struct FaceDetection: Sendable, Equatable {
  /// `x1, y1, x2, y2`.
  public var box: [Float]
  public var score: Float
  /// Five `(x, y)` points (left eye, right eye, nose, left and right mouth corner), or empty.
  public var keypoints: [SIMD2<Float>]

  public var area: Float { (box[2] - box[0]) * (box[3] - box[1]) }
}

/// insightface's SCRFD / RetinaFace-style detector on an ONNX graph (`det_10g.onnx`,
/// `scrfd_10g_bnkps.onnx`, …).
///
/// The image is resized with its aspect ratio into the top-left corner of a zero `detSize` canvas
/// (OpenCV bilinear, bit for bit), normalised `(p − 127.5)/128` in RGB, and run; each stride's
/// outputs are decoded against anchor centres `(col·s, row·s)` (distances × stride), filtered by
/// score, scaled back, sorted by score and thinned by greedy NMS with "+1" areas — all in float32
/// as NumPy computes it.
///
/// matches: insightface 0.7.3 `model_zoo.retinaface.RetinaFace.detect` (the class that serves SCRFD graphs).
/// Graph layouts: 6/9 outputs (strides 8/16/32, 2 anchors, without/with keypoints), 10/15 outputs
/// (strides 8–128, 1 anchor).
public final class SCRFDDetector: @unchecked Sendable {
  public let session: ONNXSession
  public let strides: [Int]
  public let anchorsPerCell: Int
  public let hasKeypoints: Bool
  /// Input size fixed by the graph (width, height), if any; nil when H and W are dynamic.
  public let fixedInputSize: (width: Int, height: Int)?
  let batched: Bool
  let inputName: String

  public init(session: ONNXSession, signature: ONNXSignature) throws {
    self.session = session
    guard let input = signature.inputs.first, signature.inputs.count == 1 else {
      throw FaceAnalysisError.unexpectedModel(file: session.file, reason: "a face detector has one input, this model has \(signature.inputs.count)")
    }
    inputName = input.name
    let count = signature.outputs.count
    switch count {
    case 6, 9: (strides, anchorsPerCell) = ([8, 16, 32], 2)
    case 10, 15: (strides, anchorsPerCell) = ([8, 16, 32, 64, 128], 1)
    default:
      throw FaceAnalysisError.unexpectedModel(file: session.file, reason: "\(count) outputs: not an SCRFD/RetinaFace detector (6, 9, 10 or 15 outputs)")
    }
    hasKeypoints = count == 9 || count == 15
    batched = (signature.outputs.first?.shape?.count ?? 2) == 3
    if let s = input.shape, s.count == 4, let h = s[2], let w = s[3], h > 0, w > 0 {
      fixedInputSize = (Int(w), Int(h))
    } else {
      fixedInputSize = nil
    }
  }

  /// Detects faces in an RGB image. `detSize` is insightface's `det_size` (width, height);
  /// a graph with a fixed input size uses its own size instead, as insightface does.
  public func detect(
    _ image: Image, detSize: (width: Int, height: Int) = (640, 640), threshold: Float = 0.5, nmsThreshold: Float = 0.4
  ) throws -> [FaceDetection] {
    let size = fixedInputSize ?? detSize
    guard size.width >= 32, size.height >= 32, size.width <= 4096, size.height <= 4096,
      size.width % 32 == 0, size.height % 32 == 0
    else {
      throw FaceAnalysisError.invalidOption(name: "det size", reason: "\(size.width)×\(size.height) must be multiples of 32 between 32 and 4096")
    }
    let rgb = image.format == .rgb ? image : image.convertedToRGB()
    guard rgb.width > 0, rgb.height > 0 else { throw FaceAnalysisError.invalidImage(image: "image", reason: "empty image") }
    // Letterbox, as insightface: the longer side (relative to the canvas) fills it.
    let imRatio = Double(rgb.height) / Double(rgb.width)
    let modelRatio = Double(size.height) / Double(size.width)
    var newWidth: Int
    var newHeight: Int
    if imRatio > modelRatio {
      newHeight = size.height
      newWidth = Int(Double(newHeight) / imRatio)
    } else {
      newWidth = size.width
      newHeight = Int(Double(newWidth) * imRatio)
    }
    newWidth = max(newWidth, 1)
    newHeight = max(newHeight, 1)
    let detScale = Float(Double(newHeight) / Double(rgb.height))
    let resized = OpenCVResize.linear(rgb, width: newWidth, height: newHeight)
    // Blob: NHWC float, (p − 127.5)/128, zero canvas outside the resized image.
    var blob = Tensor(uninitializedShape: [1, size.height, size.width, 3])
    blob.withUnsafeMutableFloats { d in
      d.update(repeating: (0 - 127.5) / 128)
      resized.pixels.withUnsafeBufferPointer { s in
        for y in 0..<newHeight {
          for i in 0..<(newWidth * 3) { d[y * size.width * 3 + i] = (Float(s[y * newWidth * 3 + i]) - 127.5) / 128 }
        }
      }
    }
    let outputs = try session.run([inputName: ONNXInput(nhwc: blob)])
    let fmc = strides.count
    var candidates: [(box: SIMD4<Float>, score: Float, kps: [SIMD2<Float>])] = []
    for (index, stride) in strides.enumerated() {
      let (h, w) = (size.height / stride, size.width / stride)
      let k = h * w * anchorsPerCell
      let scores = outputs[index]
      let boxes = outputs[index + fmc]
      guard scores.count == k, boxes.count == k * 4 else {
        throw FaceAnalysisError.unexpectedModel(
          file: session.file, reason: "stride \(stride) outputs hold \(scores.count) scores and \(boxes.count / 4) boxes, the \(size.width)×\(size.height) input needs \(k)")
      }
      var kps: Tensor?
      if hasKeypoints {
        kps = outputs[index + 2 * fmc]
        guard kps!.count == k * 10 else {
          throw FaceAnalysisError.unexpectedModel(file: session.file, reason: "stride \(stride) keypoint output holds \(kps!.count / 10) rows, needs \(k)")
        }
      }
      let s = Float(stride)
      scores.withUnsafeFloats { sc in
        for i in 0..<k where sc[i] >= threshold {
          let cell = i / anchorsPerCell
          let cx = Float(cell % w) * s
          let cy = Float(cell / w) * s
          let box = boxes.withUnsafeFloats { b in
            SIMD4<Float>(cx - b[4 * i] * s, cy - b[4 * i + 1] * s, cx + b[4 * i + 2] * s, cy + b[4 * i + 3] * s)
          }
          var points: [SIMD2<Float>] = []
          if let kps {
            kps.withUnsafeFloats { p in
              for j in 0..<5 { points.append(SIMD2(cx + p[10 * i + 2 * j] * s, cy + p[10 * i + 2 * j + 1] * s)) }
            }
          }
          candidates.append((box / detScale, sc[i], points.map { $0 / detScale }))
        }
      }
    }
    // Order by descending score (NumPy: argsort ascending, then reversed), then greedy NMS.
    let order = Self.descendingOrder(candidates.map(\.score))
    let sorted = order.map { candidates[$0] }
    let keep = Self.nms(sorted.map(\.box), threshold: nmsThreshold)
    return keep.map { i in
      let c = sorted[i]
      return FaceDetection(box: [c.box.x, c.box.y, c.box.z, c.box.w], score: c.score, keypoints: c.kps)
    }
  }

  /// Indices by descending score; ties keep NumPy's reversed order (later index first).
  static func descendingOrder(_ scores: [Float]) -> [Int] {
    Array(scores.indices).sorted { a, b in scores[a] != scores[b] ? scores[a] > scores[b] : a > b }
  }

  /// insightface's greedy NMS over boxes already in descending score order (float32, "+1" areas).
  static func nms(_ boxes: [SIMD4<Float>], threshold: Float) -> [Int] {
    let areas = boxes.map { ($0.z - $0.x + 1) * ($0.w - $0.y + 1) }
    var order = Array(boxes.indices)
    var keep: [Int] = []
    while let i = order.first {
      keep.append(i)
      let a = boxes[i]
      order = order.dropFirst().filter { j in
        let b = boxes[j]
        let w = max(Float(0), min(a.z, b.z) - max(a.x, b.x) + 1)
        let h = max(Float(0), min(a.w, b.w) - max(a.y, b.y) + 1)
        let inter = w * h
        let overlap = inter / (areas[i] + areas[j] - inter)
        return overlap <= threshold
      }
    }
    return keep
  }
}
