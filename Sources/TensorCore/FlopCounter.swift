import Synchronization

/// Counts the floating-point operations of the heavy kernels (2 per multiply-add of convolutions,
/// matrix products and attention), so that the benchmark can report GFLOPS of whole models
/// exactly. Counting is one atomic add per kernel call.
public enum FlopCounter {
  private static let total = Atomic<Int>(0)

  /// Operations counted since the last `reset()`.
  public static var count: Int { total.load(ordering: .relaxed) }

  public static func reset() { total.store(0, ordering: .relaxed) }

  @inline(__always)
  static func add(_ flops: Int) { total.add(flops, ordering: .relaxed) }
}
