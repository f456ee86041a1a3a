import Foundation
import TensorCore
import Weights

/// Writes a trained adapter in the released layout, which `IPAdapter(path:)` (and so
/// `ipadapter generate`) and diffusers' `load_ip_adapter` read unchanged: flat `image_proj.*` and
/// `ip_adapter.*` keys in one `.safetensors` file, written atomically (a temporary file in the
/// same folder renamed over the target, so an interrupted save leaves the previous file intact).
public enum AdapterCheckpoint {
  public static func write(imageProj: [String: Tensor], ipAdapter: [String: Tensor], to path: String) throws {
    var tensors: [String: Tensor] = [:]
    for (key, t) in imageProj { tensors["image_proj." + key] = t }
    for (key, t) in ipAdapter { tensors["ip_adapter." + key] = t }
    try SafeTensorsWriter.write(tensors, metadata: ["format": "pt"], to: path)
  }

  /// The same adapter as a PyTorch `.bin` (`torch.save({"image_proj": {…}, "ip_adapter": {…}})`,
  /// the layout of the released `.bin` files and of `tutorial_train.py`'s converted checkpoints),
  /// written atomically.
  public static func writeBin(imageProj: [String: Tensor], ipAdapter: [String: Tensor], to path: String) throws {
    func sorted(_ d: [String: Tensor]) -> [(key: String, tensor: Tensor)] {
      d.keys.sorted { $0.compare($1, options: .numeric) == .orderedAscending }.map { ($0, d[$0]!) }
    }
    try TorchCheckpointWriter.write([("image_proj", sorted(imageProj)), ("ip_adapter", sorted(ipAdapter))], to: path)
  }
}
