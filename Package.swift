// swift-tools-version:6.0
// The IP-Adapter engine: Stable Diffusion with image prompts on an ordinary CPU.
import PackageDescription

/// Hot code must be fast in debug builds too (`swift test` builds debug): every library target is
/// optimised and may use AVX2/FMA (x86-64-v3); oneDNN picks AVX-512 kernels itself at run time.
let optimised: [SwiftSetting] = [
  .unsafeFlags(["-O", "-Xcc", "-march=x86-64-v3"]),
]

let package = Package(
  name: "IPAdapterEngine",
  platforms: [.macOS(.v14)],
  products: [
    .library(name: "TensorCore", targets: ["TensorCore"]),
    .library(name: "Weights", targets: ["Weights"]),
    .library(name: "Tokenizers", targets: ["Tokenizers"]),
    .library(name: "Schedulers", targets: ["Schedulers"]),
    .library(name: "Imaging", targets: ["Imaging"]),
    .library(name: "NN", targets: ["NN"]),
    .library(name: "Models", targets: ["Models"]),
    .library(name: "IPAdapter", targets: ["IPAdapter"]),
    .library(name: "Pipelines", targets: ["Pipelines"]),
    .executable(name: "ipadapter", targets: ["ipadapter"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    // Test-only: the loopback hub imitation in HubTests.
    .package(url: "https://github.com/swhitty/FlyingFox", from: "0.27.1"),
  ],
  targets: [
    // C libraries from Debian packages.
    .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", providers: [.apt(["libdnnl-dev"])]),
    .systemLibrary(
      name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
      providers: [.apt(["libopenblas-dev"])]),
    .systemLibrary(
      name: "CImageCodecs", path: "Sources/CImageCodecs",
      providers: [.apt(["libpng-dev", "libjpeg62-turbo-dev"])]),

    // Tensors and kernels: no model knowledge.
    .target(name: "TensorCore", dependencies: ["CDNNL", "COpenBLAS"], swiftSettings: optimised),
    // Checkpoint containers (safetensors, PyTorch pickles) and strict loading.
    .target(name: "Weights", dependencies: ["TensorCore"], swiftSettings: optimised),
    // CLIP byte-level BPE tokenizer.
    .target(
      name: "Tokenizers", resources: [.copy("Resources/clip-vit-large-patch14")],
      swiftSettings: optimised),
    // Noise schedulers (diffusers semantics) and torch-compatible random numbers.
    .target(name: "Schedulers", dependencies: ["TensorCore"], swiftSettings: optimised),
    // PNG/JPEG decoding and encoding, Pillow-compatible resizing, image processors.
    .target(name: "Imaging", dependencies: ["TensorCore", "CImageCodecs"], swiftSettings: optimised),
    // Layers whose parameter names are the checkpoints' key paths.
    .target(name: "NN", dependencies: ["TensorCore", "Weights"], swiftSettings: optimised),
    // CLIP text/vision, UNet, VAE built from their config.json.
    .target(
      name: "Models", dependencies: ["NN", "Weights", "TensorCore", "Tokenizers"],
      swiftSettings: optimised),
    // IP-Adapter: image encoder front end, projections, decoupled-attention key/value sources.
    .target(
      name: "IPAdapter", dependencies: ["Models", "NN", "Weights", "Imaging", "TensorCore"],
      swiftSettings: optimised),
    // Text-to-image (and later image-prompted) generation: one denoising loop for every sampler.
    .target(
      name: "Pipelines",
      dependencies: ["Models", "IPAdapter", "Schedulers", "Imaging", "Tokenizers", "TensorCore", "Weights"],
      resources: [.copy("Resources/configs")], swiftSettings: optimised),
    // The machine's FMA throughput, for the benchmark's "% of peak".
    .target(name: "CPeakProbe", path: "Sources/CPeakProbe", cSettings: [.unsafeFlags(["-O2"])]),
    // Hugging Face hub client with huggingface_hub's cache layout (Foundation only).
    .target(name: "Hub", swiftSettings: optimised),
    // The command-line tool.
    .executableTarget(
      name: "ipadapter",
      dependencies: [
        "Pipelines", "CPeakProbe", "Hub", .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: optimised),

    // Fixture paths and comparison helpers shared by the test targets.
    .target(
      name: "TestSupport", dependencies: ["TensorCore", "Weights"], path: "Tests/TestSupport",
      swiftSettings: optimised),
    .testTarget(
      name: "TensorCoreTests", dependencies: ["TensorCore", "Weights", "TestSupport"], swiftSettings: optimised),
    .testTarget(name: "WeightsTests", dependencies: ["Weights", "TestSupport"], swiftSettings: optimised),
    .testTarget(name: "TokenizerTests", dependencies: ["Tokenizers"], swiftSettings: optimised),
    .testTarget(name: "SchedulerTests", dependencies: ["Schedulers"], swiftSettings: optimised),
    .testTarget(name: "ImagingTests", dependencies: ["Imaging"], swiftSettings: optimised),
    .testTarget(name: "NNTests", dependencies: ["NN", "Weights", "TestSupport"], swiftSettings: optimised),
    .testTarget(
      name: "ModelTests", dependencies: ["Models", "Weights", "Tokenizers", "TestSupport"],
      swiftSettings: optimised),
    .testTarget(
      name: "PipelineTests", dependencies: ["Pipelines", "Imaging", "TestSupport"],
      swiftSettings: optimised),
    .testTarget(
      name: "IPAdapterTests", dependencies: ["IPAdapter", "Pipelines", "Imaging", "Weights", "TestSupport"],
      swiftSettings: optimised),
    .testTarget(
      name: "HubTests", dependencies: ["Hub", "ipadapter", .product(name: "FlyingFox", package: "FlyingFox")],
      swiftSettings: optimised),
    .testTarget(
      name: "CLITests", dependencies: ["ipadapter", "TestSupport", "Imaging", "Weights"], swiftSettings: optimised),
  ]
)
