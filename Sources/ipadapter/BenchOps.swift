import ArgumentParser
import CPeakProbe
import Foundation
import TensorCore

/// `ipadapter bench ops`: kernel throughput against the machine's measured peak.
struct BenchOpsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ops",
    abstract: "Time the core kernels (conv, GEMM, attention, GroupNorm) against the machine's peak.")

  @Option(help: "Timed repetitions per case (the median is reported).")
  var repeats: Int = 7

  @Option(help: "Threads (default: all cores).")
  var threads: Int?

  @Option(help: "Only the cases whose name contains this text (conv, gemm, attention, groupnorm).")
  var only: String?

  func wants(_ name: String) -> Bool { only.map { name.contains($0) } ?? true }

  func run() throws {
    if let threads { Runtime.setThreadCount(threads) }
    let n = Runtime.threadCount
    let peak = Machine.measurePeak(threads: n)
    let bandwidth = Machine.measureBandwidth(threads: n)
    print("machine: \(n) threads, \(Machine.cpuName)")
    print(
      String(
        format: "peak fp32: %.1f GFLOPS measured (%d threads × 12 independent %@ FMA chains; nominal %@)",
        peak.gflops, n, peak.isa, Machine.nominalPeakDescription(threads: n, lanes: peak.lanes)))
    print(String(format: "memory bandwidth: %.1f GB/s (parallel copy of 512 MiB, read + write)", bandwidth))
    print("")
    print("case                                   median      throughput   % of peak")

    // Conv 3×3 320→320 on 64×64, batch 2.
    if wants("conv") {
      let w = Tensor.random([320, 320, 3, 3], seed: 1, scale: 0.02)
      let conv = try Conv2DKernel(weight: w, bias: Tensor.random([320], seed: 2), padding: .uniform(1))
      let x = Tensor.random([2, 64, 64, 320], seed: 3)
      let t = try Bench.median(repeats) { _ = try conv(x) }
      let flops = 2.0 * 2 * 64 * 64 * 320 * 320 * 9
      report("conv 3×3 320→320 64×64 b2", t, gflops: flops / t / 1e9, peak: peak.gflops)
      print("  oneDNN implementation: \(try conv.implementation(batch: 2, height: 64, width: 64))")
    }
    // GEMM 2048³ through the packed linear kernel.
    if wants("gemm") {
      let linear = try LinearKernel(weight: Tensor.random([2048, 2048], seed: 4, scale: 0.02), bias: nil)
      let x = Tensor.random([2048, 2048], seed: 5)
      let t = try Bench.median(repeats) { _ = try linear(x) }
      report("GEMM 2048³ (packed weights)", t, gflops: 2.0 * 2048 * 2048 * 2048 / t / 1e9, peak: peak.gflops)
      print("  oneDNN implementation: \(try linear.implementation(rows: 2048))")
    }
    // Attention 4096 × 4096, 8 heads of 40.
    if wants("attention") {
      let q = Tensor.random([1, 4096, 320], seed: 6)
      let k = Tensor.random([1, 4096, 320], seed: 7)
      let v = Tensor.random([1, 4096, 320], seed: 8)
      let t = try Bench.median(repeats) {
        _ = try Attention.multiHead(query: q, sources: [AttentionSource(key: k, value: v)], heads: 8)
      }
      let flops = 4.0 * 4096 * 4096 * 40 * 8
      report("attention 4096×4096, 8 heads × 40", t, gflops: flops / t / 1e9, peak: peak.gflops)
      let chunk = Attention.queryChunk(keyCount: 4096)
      print("  working memory: \(n) threads × \(chunk) rows × 4096 keys × 4 B = \(n * chunk * 4096 * 4 / 1024) KiB")
    }
    // GroupNorm (+ SiLU): memory-bound. [2,64,64,320] (10 MiB) stays in the 32 MiB L3 cache, so
    // it is also timed at a VAE-decoder size that does not ([1,256,256,256], 64 MiB).
    if wants("groupnorm") {
      for shape in [[2, 64, 64, 320], [1, 256, 256, 256]] {
        let c = shape[3]
        let x = Tensor.random(shape, seed: 9)
        let gamma = Tensor.random([c], seed: 10)
        let beta = Tensor.random([c], seed: 11)
        let t = try Bench.median(repeats) {
          _ = try Normalization.groupNorm(x, groups: 32, weight: gamma, bias: beta, eps: 1e-5, silu: true)
        }
        // Two statistics passes read x, the output pass reads x and writes y.
        let bytes = 4.0 * Double(x.count) * 4
        let gbs = bytes / t / 1e9
        let name = "GroupNorm+SiLU \(shape)"
        print(
          String(
            format: "%-38@ %8.2f ms  %7.1f GB/s  %5.1f %% of DRAM bandwidth%@", name as NSString, t * 1000, gbs,
            100 * gbs / bandwidth, (Double(x.count) * 4 < 32e6 ? " (cache-resident)" : "") as NSString))
      }
    }
  }

  func report(_ name: String, _ seconds: Double, gflops: Double, peak: Double) {
    print(
      String(
        format: "%-38@ %8.2f ms  %7.1f GFLOPS  %5.1f %%", name as NSString, seconds * 1000, gflops, 100 * gflops / peak))
  }
}

/// Timing helpers of the benchmark.
enum Bench {
  /// Wall time of one run of `body`, in seconds.
  static func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
  }

  /// The median of `times` (sorted copy; the upper middle for an even count).
  static func median(of times: [Double]) -> Double {
    let sorted = times.sorted()
    return sorted[sorted.count / 2]
  }

  /// Runs `body` once to warm up, then `repeats` times; returns the median wall time in seconds.
  static func median(_ repeats: Int, _ body: () throws -> Void) rethrows -> Double {
    try body()
    return median(of: try (0..<max(1, repeats)).map { _ in try seconds(body) })
  }
}

/// Facts about the machine the benchmark runs on.
enum Machine {
  static var cpuName: String {
    guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
    for line in info.split(separator: "\n") where line.hasPrefix("model name") {
      return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
    }
    return "unknown CPU"
  }

  /// Measured FMA throughput on all threads.
  static func measurePeak(threads: Int) -> (gflops: Double, isa: String, lanes: Int) {
    let use512 = ipa_fma_probe_avx512(1000) > 0
    let iterations: Int64 = 50_000_000
    let probe: (Int64) -> Double = { use512 ? ipa_fma_probe_avx512($0) : ipa_fma_probe_avx2($0) }
    _ = probe(iterations / 20)
    var best = 0.0
    for _ in 0..<3 {
      let start = DispatchTime.now().uptimeNanoseconds
      Parallel.forRanges(threads, costPerItem: 1 << 30) { range in
        for _ in range { _ = probe(iterations) }
      }
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      best = max(best, Double(threads) * Double(iterations) * 12 * (use512 ? 16 : 8) * 2 / seconds / 1e9)
    }
    return (best, use512 ? "512-bit" : "256-bit", use512 ? 16 : 8)
  }

  static func nominalPeakDescription(threads: Int, lanes: Int) -> String {
    guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
      let line = info.split(separator: "\n").first(where: { $0.hasPrefix("cpu MHz") }),
      let mhz = Double(line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces))
    else { return "clock unknown" }
    let perCycle = Double(lanes * 2 * 2)
    return String(
      format: "%d cores × %.2f GHz × %.0f FLOP/cycle (2 FMA pipes × %d lanes × 2) = %.0f GFLOPS",
      threads, mhz / 1000, perCycle, lanes, Double(threads) * mhz / 1000 * perCycle)
  }

  /// Parallel copy bandwidth (read + write bytes per second, in GB/s).
  static func measureBandwidth(threads: Int) -> Double {
    let count = 64 * 1024 * 1024  // floats: 256 MiB source + 256 MiB destination
    let src = UnsafeMutablePointer<Float>.allocate(capacity: count)
    let dst = UnsafeMutablePointer<Float>.allocate(capacity: count)
    defer {
      src.deallocate()
      dst.deallocate()
    }
    src.initialize(repeating: 1, count: count)
    dst.initialize(repeating: 0, count: count)
    let seconds = Bench.median(5) {
      Parallel.forRanges(threads, costPerItem: 1 << 30) { range in
        for t in range {
          let lo = count * t / threads
          let hi = count * (t + 1) / threads
          (dst + lo).update(from: src + lo, count: hi - lo)
        }
      }
    }
    return 2.0 * Double(count) * 4 / seconds / 1e9
  }
}

extension Tensor {
  /// Deterministic pseudo-random values in [−scale, scale) (benchmarks and synthetic weights).
  static func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
    var t = Tensor(uninitializedShape: shape)
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    t.withUnsafeMutableFloats { p in
      for i in 0..<p.count {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        p[i] = (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
      }
    }
    return t
  }
}
