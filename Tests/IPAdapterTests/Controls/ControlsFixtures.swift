import Foundation
import IPAdapter
import Models
import TensorCore
import TestSupport
import Weights

/// Fixtures of the control tests: UNet slot lists built from configs (no weights) and the goldens of
/// `tools/reference/gen_ip_controls.py`.
enum ControlsFixtures {
  static func config(_ name: String) throws -> UNet2DConditionConfig {
    let url: URL
    switch name {
    case "sd15":
      url = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Sources/Pipelines/Resources/configs/stable-diffusion-v1-5/unet/config.json")
    case "tiny": url = Fixtures.url("tiny-sd15/unet/config.json")
    default: url = Fixtures.url("ip-controls/sdxl-unet-config.json")
    }
    return try JSONDecoder().decode(UNet2DConditionConfig.self, from: Data(contentsOf: url))
  }

  static func slots(_ name: String) throws -> [IPAdapterLayerSlot] { IPAdapterLayerTable.slots(for: try config(name)) }

  static func json(_ relative: String) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.url("ip-controls/\(relative)")))
  }

  static func goldens() throws -> SafeTensorsFile { try Fixtures.archive("ip-controls/goldens.safetensors") }

  /// Names of the slots with a non-zero scale.
  static func nonZero(_ scales: [Float], _ slots: [IPAdapterLayerSlot]) -> Set<String> {
    Set(zip(scales, slots).filter { $0.0 != 0 }.map { $0.1.name })
  }
}
