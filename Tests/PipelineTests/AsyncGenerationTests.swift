import Foundation
import Hub
import IPAdapter
import Imaging
import Pipelines
import Schedulers
import Synchronization
import TensorCore
import Testing
import TestSupport

/// The async API: cancellation, ordered events, one generation at a time per pipeline, reusable
/// phases, the one-call request and the load entry point (tiny SD1.5 pipeline).
@Suite struct AsyncGenerationTests {
  static let folder = Fixtures.url("tiny-sd15")
  static let adapters = Fixtures.url("tiny-ip-adapter/models")

  static func parameters(steps: Int = 4, seed: UInt64 = 0) -> GenerationParameters {
    var p = GenerationParameters(prompt: "a red cube")
    p.negativePrompt = "blurry, low quality"
    p.steps = steps
    p.seed = seed
    p.scheduler = .ddim  // one UNet call per step (PNDM's warm-up adds one)
    return p
  }

  /// Runs `body` in a synchronous context, where the blocking overloads are chosen.
  static func blocking<T>(_ body: () throws -> T) rethrows -> T { try body() }

  @Test func asyncGenerationGivesTheSynchronousImage() async throws {
    let pipe = try StableDiffusionPipeline(folder: Self.folder)
    let sync = try Self.blocking { try pipe.generate(Self.parameters()) }
    let async = try await pipe.generate(Self.parameters())
    #expect(async.image == sync.image)
    #expect(async.latents.scalars() == sync.latents.scalars())
  }

  @Test func eventsAreCompleteAndOrdered() async throws {
    let pipe = try StableDiffusionPipeline(folder: Self.folder)
    var seen: [String] = []
    var finished: GenerationResult?
    var previewShape: [Int] = []
    for try await event in pipe.generationEvents(Self.parameters(steps: 5), options: GenerationOptions(previewEvery: 2)) {
      switch event {
      case .step(let s):
        seen.append("step \(s.step)/\(s.total)")
        #expect(s.elapsed >= 0)
      case .preview(let p):
        seen.append("preview \(p.step)")
        previewShape = p.latents.shape
        #expect(p.image == nil)
      case .finished(let r):
        seen.append("finished")
        finished = r
      }
    }
    #expect(seen == ["step 1/5", "step 2/5", "preview 2", "step 3/5", "step 4/5", "preview 4", "step 5/5", "finished"])
    #expect(previewShape == [1, 4, 8, 8])
    #expect(finished?.image == (try Self.blocking { try pipe.generate(Self.parameters(steps: 5)) }).image)
  }

  @Test func imagePreviewsAreVAEDecodings() async throws {
    let pipe = try StableDiffusionPipeline(folder: Self.folder)
    var previews: [GenerationPreview] = []
    for try await event in pipe.generationEvents(
      Self.parameters(steps: 3), options: GenerationOptions(previewEvery: 1, preview: .image))
    {
      if case .preview(let p) = event { previews.append(p) }
    }
    #expect(previews.map(\.step) == [1, 2])
    let first = try #require(previews.first)
    #expect(try first.image == Self.blocking { try pipe.decode(first.latents) })
  }

  /// The task is cancelled from the step callback (the generation's own thread), so the test does
  /// not depend on how soon the cooperative pool — shared with every other running test on two
  /// cores — gets around to resuming it.
  @Test func cancellationStopsWithinOneStepAndReturnsNothing() async throws {
    let pipe = try StableDiffusionPipeline(folder: Self.folder)
    let steps = Mutex(0)
    let cancelledAt = Mutex<Int?>(nil)
    let handle = Mutex<Task<GenerationResult, Error>?>(nil)
    let task = Task {
      try await pipe.generate(Self.parameters(steps: 200)) { event in
        if case .step = event {
          let n = steps.withLock { $0 += 1; return $0 }
          if cancelledAt.withLock({ $0 }) == nil, let t = handle.withLock({ $0 }) {
            cancelledAt.withLock { $0 = n }
            t.cancel()
          }
        }
      }
    }
    handle.withLock { $0 = task }
    await #expect(throws: CancellationError.self) { _ = try await task.value }
    let atCancel = try #require(cancelledAt.withLock { $0 })
    let after = steps.withLock { $0 }
    #expect(after <= atCancel + 1, "\(after) steps after cancelling at \(atCancel)")
    #expect(after < 200)
    // The pipeline is usable afterwards.
    #expect(try await pipe.generate(Self.parameters(steps: 2)).image.width == pipe.defaultSize)
  }

  @Test func stoppingTheEventIterationCancelsTheGeneration() async throws {
    let pipe = try StableDiffusionPipeline(folder: Self.folder)
    var steps = 0
    for try await event in pipe.generationEvents(Self.parameters(steps: 200)) {
      if case .step = event { steps += 1 }
      if steps == 2 { break }
    }
    // The cancelled generation must not hold the queue for the remaining 198 steps.
    let clock = ContinuousClock()
    let start = clock.now
    _ = try await pipe.generate(Self.parameters(steps: 1))
    let full = try await clock.measure { _ = try await pipe.generate(Self.parameters(steps: 20)) }
    #expect(clock.now - start < full * 10 + .seconds(2))
  }

  @Test func aProgressCallbackMayCallThePipelineWithoutDeadlock() async throws {
    let pipe = try StableDiffusionPipeline(folder: Self.folder)
    let decoded = Mutex<[Int]>([])
    var options = GenerationOptions(previewEvery: 1)
    options.preview = .latents
    let result = try await pipe.generate(Self.parameters(steps: 3), options: options) { event in
      // Runs on the pipeline's queue: the synchronous call runs inline.
      if case .preview(let p) = event, let image = try? pipe.decode(p.latents) {
        decoded.withLock { $0.append(image.width) }
      }
    }
    #expect(decoded.withLock { $0 } == [pipe.defaultSize, pipe.defaultSize])
    #expect(result.image.width == pipe.defaultSize)
  }

  @Test func aCancelledTaskDoesNotStart() async throws {
    let pipe = try StableDiffusionPipeline(folder: Self.folder)
    let counted = Mutex(0)
    let task = Task {
      withUnsafeCurrentTask { $0?.cancel() }
      return try await pipe.generate(Self.parameters()) { _ in counted.withLock { $0 += 1 } }
    }
    await #expect(throws: CancellationError.self) { _ = try await task.value }
    #expect(counted.withLock { $0 } == 0)
  }

  @Test func encodersAndVAEStopAtTheirCheckpointsWhenCancelled() throws {
    let pipe = try StableDiffusionPipeline(folder: Self.folder)
    let token = CancellationToken()
    token.cancel()
    #expect(throws: CancellationError.self) { try token.installed { _ = try pipe.encodeText(for: Self.parameters()) } }
    let latents = try Tensor(shape: [1, 4, 8, 8], floats: Array(repeating: 0, count: 256))
    #expect(throws: CancellationError.self) { try token.installed { _ = try pipe.decode(latents) } }
    let encoder = try ImagePromptEncoder(folder: Self.adapters.appendingPathComponent("image_encoder"))
    let image = Image(width: 32, height: 32, format: .rgb, fill: 90)
    #expect(throws: CancellationError.self) {
      try token.installed { _ = try encoder.features([image], kind: .imageEmbeds) }
    }
  }

  @Test func parallelGenerationsOnOnePipelineMatchSequentialOnes() async throws {
    let pipe = try StableDiffusionPipeline(folder: Self.folder)
    let sequential = try [1, 2, 3].map { try pipe.generate(Self.parameters(seed: $0)).image }
    let parallel = try await withThrowingTaskGroup(of: (UInt64, Image).self) { group in
      for seed in [1, 2, 3] as [UInt64] {
        group.addTask { (seed, try await pipe.generate(Self.parameters(seed: seed)).image) }
      }
      var out: [UInt64: Image] = [:]
      for try await (seed, image) in group { out[seed] = image }
      return out
    }
    #expect([parallel[1], parallel[2], parallel[3]] == sequential.map { Optional($0) })
  }

  @Test func reusedTextConditioningGivesTheSameImageAndMustMatch() async throws {
    let pipe = try StableDiffusionPipeline(folder: Self.folder)
    let text = try await pipe.encodeText(for: Self.parameters())
    for seed in [5, 6] as [UInt64] {
      let fresh = try Self.blocking { try pipe.generate(Self.parameters(seed: seed)) }
      let cached = try await pipe.generate(Self.parameters(seed: seed), conditioning: text)
      #expect(cached.image == fresh.image)
    }
    var other = Self.parameters()
    other.prompt = "a blue sphere"
    let error = #expect(throws: PipelineError.self) { try pipe.generate(other, conditioning: text) }
    #expect(String(describing: error).contains("prompt"))
    var unguided = Self.parameters()
    unguided.guidanceScale = 1
    #expect(throws: PipelineError.self) { try pipe.generate(unguided, conditioning: text) }
  }

  @Test func denoiseThenDecodeIsGenerate() async throws {
    let pipe = try StableDiffusionPipeline(folder: Self.folder)
    let whole = try Self.blocking { try pipe.generate(Self.parameters()) }
    let latents = try Self.blocking { try pipe.denoise(Self.parameters()) }
    #expect(latents.scalars() == whole.latents.scalars())
    #expect(try await pipe.decode(latents) == whole.image)
    #expect(throws: PipelineError.self) { try pipe.decode(Tensor(shape: [1, 8, 8, 4], floats: Array(repeating: 0, count: 256))) }
  }

  @Test func releasingModelsAfterUseChangesNothingButMemory() throws {
    let pipe = try StableDiffusionPipeline(folder: Self.folder)
    let kept = try pipe.generate(Self.parameters())
    let released = try pipe.generate(Self.parameters(), options: GenerationOptions(memory: .releaseAfterUse))
    let again = try pipe.generate(Self.parameters())
    #expect(released.image == kept.image)
    #expect(again.image == kept.image)
  }

  @Test func loadTakesFoldersAndTypedText() async throws {
    let direct = try StableDiffusionPipeline(folder: Self.folder)
    let loaded = try await StableDiffusionPipeline.load(try ModelSource.parse(Self.folder.path))
    let expected = try Self.blocking { try direct.generate(Self.parameters()) }
    #expect(try await loaded.generate(Self.parameters()).image == expected.image)
    #expect(try ModelSource.parse("h94/IP-Adapter") == .hub(.repo(repoID: "h94/IP-Adapter", revision: nil)))
    #expect(throws: ModelSourceError.self) { try ModelSource.parse("/nonexistent/model") }
  }

  @Test func aRequestBuildsImagePromptsLikeTheHandAssembledOnes() async throws {
    let pipe = try StableDiffusionPipeline(folder: Self.folder)
    let reference = try Image(contentsOfFile: Fixtures.url("images/reference.png").path)
    let adapterPath = Self.adapters.appendingPathComponent("ip-adapter-plus_sd15.safetensors").path
    let adapter = try IPAdapter(path: adapterPath, unet: pipe.unet)
    let encoder = try ImagePromptEncoder(
      folder: Self.adapters.appendingPathComponent("image_encoder"), processorConfig: pipe.featureExtractorConfig)
    let embeds = try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: [reference])
    let byHand = try Self.blocking {
      try pipe.generate(Self.parameters(), imagePrompts: [ImagePrompt(adapter: adapter, embeds: embeds, scale: 0.7)])
    }

    var request = GenerationRequest(parameters: Self.parameters())
    request.imagePrompts = [ImagePromptSpec(adapter: .local(adapterPath), images: [reference], scale: 0.7)]
    let viaRequest = try await pipe.generate(request)
    #expect(viaRequest.image == byHand.image)
    #expect(viaRequest.parametersText == byHand.parametersText)

    var bad = request
    bad.imagePrompts[0].imageWeights = [1, 2]
    let error = await #expect(throws: PipelineError.self) { _ = try await pipe.generate(bad) }
    #expect(String(describing: error).contains("imagePrompts[0].imageWeights"))
    var none = request
    none.imagePrompts[0].images = []
    let missing = await #expect(throws: PipelineError.self) { _ = try await pipe.generate(none) }
    #expect(String(describing: missing).contains("imagePrompts[0].images"))
  }
}
