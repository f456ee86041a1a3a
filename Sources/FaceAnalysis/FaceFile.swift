import Foundation
import TensorCore
import Weights

/// Writes analysed faces to files other tools (and `--face-embedding`) read.
///
/// safetensors (float32): `normed_embedding` `[F, D]` (first, so `FaceEmbeddingFile` picks it),
/// `embedding` `[F, D]` (raw, for InstantID and the Portrait "unnorm" adapter), `bbox` `[F, 4]`,
/// `kps` `[F, 5, 2]`, `det_score` `[F]`, `image_index` `[F]`; metadata names the images and models.
/// `.npy`: the normed embeddings `[F, D]` (what `numpy.save(face.normed_embedding)` gives for one face).
public enum FaceFile {
  public static func write(
    _ faces: [(imageIndex: Int, face: DetectedFace)], images: [String], models: String, to path: String
  ) throws {
    guard let d = faces.first?.face.embedding.count else {
      throw FaceAnalysisError.invalidOption(name: "faces", reason: "no faces to write")
    }
    let f = faces.count
    let tensors: [String: Tensor] = [
      "normed_embedding": try Tensor(shape: [f, d], floats: faces.flatMap { $0.face.normedEmbedding }),
      "embedding": try Tensor(shape: [f, d], floats: faces.flatMap { $0.face.embedding }),
      "bbox": try Tensor(shape: [f, 4], floats: faces.flatMap { $0.face.box }),
      "kps": try Tensor(shape: [f, 5, 2], floats: faces.flatMap { $0.face.keypoints.flatMap { [$0.x, $0.y] } }),
      "det_score": try Tensor(shape: [f], floats: faces.map(\.face.score)),
      "image_index": try Tensor(shape: [f], floats: faces.map { Float($0.imageIndex) }),
    ]
    let metadata = [
      "format": "ipadapter-faces", "images": images.joined(separator: "\n"), "models": models,
    ]
    try SafeTensorsWriter.write(tensors, metadata: metadata, to: path)
  }

  /// Writes `[F, D]` float32 little-endian as NumPy `.npy` (version 1.0), atomically.
  public static func writeNPY(_ rows: [[Float]], to path: String) throws {
    guard let d = rows.first?.count, rows.allSatisfy({ $0.count == d }) else {
      throw FaceAnalysisError.invalidOption(name: "faces", reason: "no faces to write")
    }
    var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows.count), \(d)), }"
    let total = 10 + header.utf8.count + 1
    header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
    var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
    let length = UInt16(header.utf8.count)
    data.append(contentsOf: [UInt8(length & 0xff), UInt8(length >> 8)])
    data.append(contentsOf: Array(header.utf8))
    for row in rows {
      for v in row { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
    }
    try data.write(to: URL(fileURLWithPath: path), options: .atomic)
  }
}
