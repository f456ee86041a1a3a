import Foundation
import TensorCore
import Weights

/// Face embeddings for the FaceID adapters, read from the files users have: a NumPy `.npy` of
/// float32 `[512]` or `[N, 512]` (what `numpy.save(face.normed_embedding)` writes for insightface),
/// or a `.safetensors` file holding one tensor (or one named `face_embeds`, `faceid_embeds`,
/// `id_embeds`, `normed_embedding` — what `ipadapter face` writes — or `embedding`, first match in
/// that order). The result is `[N, D]`, one row per face.
///
/// matches: the `faceid_embeds` input of tencent-ailab/IP-Adapter `IPAdapterFaceID.generate`
/// (`torch.from_numpy(faces[0].normed_embedding).unsqueeze(0)`). Limitations: no `.pt` pickles
/// (convert with `numpy.save`).
public enum FaceEmbeddingFile {
  public static let tensorNames = ["face_embeds", "faceid_embeds", "id_embeds", "normed_embedding", "embedding"]
  /// Most elements read (65 536 faces of 256 values; real files hold a few faces of 512).
  public static let maxElements = 1 << 24

  public static func read(_ path: String) throws -> Tensor {
    guard FileManager.default.fileExists(atPath: path) else {
      throw IPAdapterError.badInput("face embedding file not found: \(path)")
    }
    let t: Tensor
    if path.lowercased().hasSuffix(".npy") {
      t = try NPYArray.read(path: path, maxElements: maxElements)
    } else {
      let file = try openCheckpoint(path: path)
      let keys = file.keys
      guard let key = keys.count == 1 ? keys[0] : tensorNames.first(where: { keys.contains($0) }) else {
        throw IPAdapterError.badInput(
          "\(path): expected one tensor (or one named \(tensorNames.joined(separator: ", "))), found \(keys.count): \(keys.prefix(4).joined(separator: ", "))")
      }
      guard let info = file.info(key), info.shape.reduce(1, { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }) <= maxElements else {
        throw IPAdapterError.badInput("\(path): '\(key)' has more than \(maxElements) elements; a face embedding file holds [faces, 512]")
      }
      t = try file.tensor(key).toFloat32(pooled: false)
    }
    var shape = t.shape
    while shape.count > 2, shape.first == 1 { shape.removeFirst() }
    if shape.count == 1 { shape.insert(1, at: 0) }
    guard shape.count == 2, shape[0] >= 1, shape[1] >= 1 else {
      throw IPAdapterError.badInput("\(path): a face embedding file holds [D] or [N, D] (one row per face), found \(t.shape)")
    }
    if let i = NonFinite.firstIndex(t) {
      throw IPAdapterError.badInput("\(path): element \(i) is NaN or infinite")
    }
    return t.asFloat32().reshaped(shape)
  }

  /// Several files' embeddings stacked (all must have the same width).
  public static func read(_ paths: [String]) throws -> Tensor {
    let parts = try paths.map { try read($0) }
    guard let width = parts.first?.shape[1] else { throw IPAdapterError.badInput("no face embedding file given") }
    for (p, t) in zip(paths, parts) where t.shape[1] != width {
      throw IPAdapterError.badInput("\(p) holds \(t.shape[1])-d face embeddings, \(paths[0]) \(width)-d ones")
    }
    return parts.count == 1 ? parts[0] : try Ops.concatRows(parts)
  }
}
