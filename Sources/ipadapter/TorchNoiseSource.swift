import IPAdapter
import Schedulers
import TensorCore

/// PyTorch's CPU generator as the random source of ComfyUI's noise image
/// (`torch.rand`/`torch.randn` after `torch.manual_seed(seed)`).
struct TorchNoiseSource: IPAdapterRandomSource {
  var generator: TorchGenerator

  init(seed: UInt64) { generator = TorchGenerator(seed: seed) }

  mutating func uniform(count: Int) -> [Float] { generator.rand([count]).scalars() }
  mutating func normal(count: Int) -> [Float] { generator.randn([count]).scalars() }
}
