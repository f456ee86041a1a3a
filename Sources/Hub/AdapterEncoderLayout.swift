import Foundation

/// Where the image encoder of an IP-Adapter file lives in the `h94/IP-Adapter` layout, as users
/// load them with diffusers (`image_encoder_folder`):
/// - `models/*.bin|safetensors` → `models/image_encoder` (OpenCLIP ViT-H), except the `*_vit-G`
///   files → `sdxl_models/image_encoder` (bigG);
/// - `sdxl_models/ip-adapter_sdxl.*` → `sdxl_models/image_encoder` (bigG), but the `*_vit-h`
///   files → `models/image_encoder` (diffusers#6162: loading them with `subfolder="sdxl_models"`
///   alone picks the wrong encoder);
/// - anything else → `image_encoder/` beside the file.
///
/// matches: the encoder table of `h94/IP-Adapter`'s README and diffusers' IP-Adapter docs.
public enum AdapterEncoderLayout {
  /// The encoder folder for the adapter at `path` (a repo-relative or local path), same style.
  public static func imageEncoderFolder(forAdapter path: String) -> String {
    let dir = (path as NSString).deletingLastPathComponent
    let file = (path as NSString).lastPathComponent.lowercased()
    let folder = (dir as NSString).lastPathComponent
    let parent = (dir as NSString).deletingLastPathComponent
    func sibling(_ name: String) -> String { parent.isEmpty ? "\(name)/image_encoder" : "\(parent)/\(name)/image_encoder" }
    if folder == "sdxl_models", file.contains("vit-h") { return sibling("models") }
    if folder == "models", file.contains("vit-g") { return sibling("sdxl_models") }
    return dir.isEmpty ? "image_encoder" : "\(dir)/image_encoder"
  }
}
