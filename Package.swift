// swift-tools-version:6.0
// The IP-Adapter engine: Stable Diffusion with image prompts on an ordinary CPU.
import PackageDescription


let package = Package(
  name: "IPAdapterEngine",
  platforms: [.macOS(.v14)],
  products: [
    .library(name: "TensorCore", targets: ["TensorCore"]),
    .library(name: "Weights", targets: ["Weights"]),
    .library(name: "Tokenizers", targets: ["Tokenizers"]),
    .library(name: "TorchRandom", targets: ["TorchRandom"]),
    .library(name: "Schedulers", targets: ["Schedulers"]),
    .library(name: "Imaging", targets: ["Imaging"]),
    .library(name: "NN", targets: ["NN"]),
    .library(name: "Models", targets: ["Models"]),
    .library(name: "IPAdapter", targets: ["IPAdapter"]),
    .library(name: "Hub", targets: ["Hub"]),
    .library(name: "ONNX", targets: ["ONNX"]),
    .library(name: "FaceAnalysis", targets: ["FaceAnalysis"]),
    .library(name: "Pipelines", targets: ["Pipelines"]),
    .library(name: "Autograd", targets: ["Autograd"]),
    .library(name: "Training", targets: ["Training"]),
    .executable(name: "ipadapter", targets: ["ipadapter"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    // Documentation only (`swift package generate-documentation`); no target depends on it.
    .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
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

    // Elementwise C kernels compiled for the baseline and for AVX2/FMA/F16C, chosen at run time.
    .target(name: "CKernels", path: "Sources/CKernels"),
    // Tensors and kernels: no model knowledge.
    .target(name: "TensorCore", dependencies: ["CDNNL", "COpenBLAS", "CKernels"]),
    // Checkpoint containers (safetensors, PyTorch pickles) and strict loading.
    .target(name: "Weights", dependencies: ["TensorCore"]),
    // CLIP byte-level BPE tokenizer.
    .target(
      name: "Tokenizers", resources: [.copy("Resources/clip-vit-large-patch14")]),
    // PyTorch's CPU random generator (Mersenne Twister, randn/rand bit for bit).
    .target(name: "TorchRandom", dependencies: ["TensorCore"]),
    // Noise schedulers (diffusers semantics).
    .target(name: "Schedulers", dependencies: ["TensorCore", "TorchRandom"]),
    // PNG/JPEG decoding and encoding, Pillow-compatible resizing, image processors.
    .target(name: "Imaging", dependencies: ["TensorCore", "CImageCodecs"]),
    // Layers whose parameter names are the checkpoints' key paths.
    .target(name: "NN", dependencies: ["TensorCore", "Weights"]),
    // CLIP text/vision, UNet, VAE built from their config.json.
    .target(
      name: "Models", dependencies: ["NN", "Weights", "TensorCore", "Tokenizers"]),
    // ONNX models (protobuf decoding, a graph executor on TensorCore's kernels).
    .target(name: "ONNX", dependencies: ["TensorCore", "Weights"]),
    // insightface's face pipeline (SCRFD detection, alignment, ArcFace) on ONNX graphs.
    .target(name: "FaceAnalysis", dependencies: ["ONNX", "Imaging", "TensorCore", "Weights"]),
    // IP-Adapter: image encoder front end, projections, decoupled-attention key/value sources.
    .target(
      name: "IPAdapter", dependencies: ["Models", "NN", "Weights", "Imaging", "TensorCore", "TorchRandom"]),
    // Text-to-image (and later image-prompted) generation: one denoising loop for every sampler.
    .target(
      name: "Pipelines",
      dependencies: [
        "Models", "IPAdapter", "FaceAnalysis", "Schedulers", "TorchRandom", "Imaging", "Tokenizers", "TensorCore", "Weights",
        "Hub",
      ],
      resources: [.copy("Resources/configs")]),
    // Reverse-mode gradients and optimisers (no model knowledge).
    .target(name: "Autograd", dependencies: ["TensorCore"]),
    // Adapter training: the adapters' trainable forms on the autograd tape.
    .target(
      name: "Training",
      dependencies: [
        "Autograd", "Pipelines", "IPAdapter", "Models", "Schedulers", "Tokenizers", "TorchRandom", "Imaging", "Weights",
        "TensorCore", "Hub",
      ]),
    // The machine's FMA throughput, for the benchmark's "% of peak".
    .target(name: "CPeakProbe", path: "Sources/CPeakProbe"),
    // Hugging Face hub client with huggingface_hub's cache layout (Foundation only).
    .target(name: "Hub"),
    // The command-line tool.
    .executableTarget(
      name: "ipadapter",
      dependencies: [
        "Pipelines", "Training", "Autograd", "FaceAnalysis", "CPeakProbe", "Hub",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]),

    // Fixture paths and comparison helpers shared by the test targets.
    .target(
      name: "TestSupport", dependencies: ["TensorCore", "Weights", "Imaging"], path: "Tests/TestSupport"),
    .testTarget(
      name: "TensorCoreTests", dependencies: ["TensorCore", "Weights", "TestSupport"]),
    .testTarget(name: "WeightsTests", dependencies: ["Weights", "TestSupport"]),
    .testTarget(name: "ONNXTests", dependencies: ["ONNX", "TensorCore", "Weights", "TestSupport"]),
    .testTarget(name: "FaceAnalysisTests", dependencies: ["FaceAnalysis", "ONNX", "Imaging", "TensorCore", "Weights", "TestSupport"]),
    .testTarget(name: "TokenizerTests", dependencies: ["Tokenizers"]),
    .testTarget(name: "SchedulerTests", dependencies: ["Schedulers", "TorchRandom"]),
    .testTarget(name: "ImagingTests", dependencies: ["Imaging"]),
    .testTarget(name: "NNTests", dependencies: ["NN", "Weights", "TestSupport"]),
    .testTarget(name: "AutogradTests", dependencies: ["Autograd", "TensorCore", "Weights", "TestSupport"]),
    .testTarget(
      name: "TrainingTests",
      dependencies: ["Training", "Autograd", "Pipelines", "Schedulers", "IPAdapter", "Models", "TensorCore", "Weights", "TestSupport"]),
    .testTarget(
      name: "ModelTests", dependencies: ["Models", "Weights", "Tokenizers", "TestSupport"]),
    .testTarget(
      name: "PipelineTests",
      dependencies: ["Pipelines", "Hub", "IPAdapter", "FaceAnalysis", "Imaging", "Schedulers", "TensorCore", "Weights", "TestSupport"]),
    .testTarget(
      name: "IPAdapterTests",
      dependencies: ["IPAdapter", "Pipelines", "FaceAnalysis", "Hub", "Imaging", "Weights", "TorchRandom", "TestSupport"]),
    .testTarget(
      name: "HubTests", dependencies: ["Hub", "ipadapter", .product(name: "FlyingFox", package: "FlyingFox")]),
    .testTarget(
      name: "CLITests", dependencies: ["ipadapter", "TestSupport", "FaceAnalysis", "Imaging", "Weights"]),
  ]
)
