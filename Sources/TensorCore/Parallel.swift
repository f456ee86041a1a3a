import CDNNL
import COpenBLAS

#if canImport(Glibc)
import Glibc
#endif

/// Thread configuration shared by every kernel.
///
/// oneDNN (Debian's build uses OpenMP) and TensorCore's own loops run on **one** libgomp thread
/// pool, so they never compete for the cores; OpenBLAS (pthreads) is only used single-threaded
/// from inside that pool or for one-off work. Call `Runtime.setThreadCount` from the thread that
/// runs the model (OpenMP settings are per calling thread).
public enum Runtime {
  nonisolated(unsafe) private static var configuredThreads: Int = 0

  /// Number of threads used by parallel kernels (default: OpenMP's, i.e. the number of cores or
  /// `OMP_NUM_THREADS`).
  public static var threadCount: Int {
    configuredThreads > 0 ? configuredThreads : Int(omp_get_max_threads())
  }

  /// Sets the thread count of oneDNN, OpenBLAS and TensorCore's loops.
  public static func setThreadCount(_ n: Int) {
    precondition(n >= 1, "thread count must be positive")
    configuredThreads = n
    omp_set_num_threads(Int32(n))
    openblas_set_num_threads(1)
  }

  /// Makes OpenBLAS single-threaded (what `setThreadCount` also does): for BLAS calls made from
  /// inside `Parallel` loops, whose threads would otherwise compete with OpenBLAS's own.
  public static func useSingleThreadedBLAS() {
    openblas_set_num_threads(1)
  }

  /// Hands memory that is free but still held back to the operating system: the tensor block pool
  /// is emptied and, with glibc, `malloc_trim` releases free heap pages (glibc keeps freed blocks
  /// below its mmap threshold, which grows to 32 MB once such blocks are freed, so dropping a
  /// model leaves its weights' pages resident otherwise). Call it between phases that use
  /// different models; the pipelines do under `MemoryPolicy.releaseAfterUse`.
  public static func returnFreedMemory() {
    StoragePool.shared.drain()
    #if os(Linux)
    _ = malloc_trim(0)
    #endif
  }
}

/// `parallelFor` over the shared OpenMP pool.
public enum Parallel {
  private struct Job {
    let count: Int
    let body: (Range<Int>) -> Void
  }

  private static let trampoline: @convention(c) (UnsafeMutableRawPointer?) -> Void = { context in
    let job = context!.assumingMemoryBound(to: Job.self)
    let thread = Int(omp_get_thread_num())
    let threads = Int(omp_get_num_threads())
    let n = job.pointee.count
    let lo = n * thread / threads
    let hi = n * (thread + 1) / threads
    if lo < hi { job.pointee.body(lo..<hi) }
  }

  /// Splits `0..<count` into one contiguous range per thread and runs `body` on each range
  /// concurrently. Runs inline when `count < 2`, when one thread is configured, or when
  /// `count * costPerItem` (a rough count of flops or bytes) is below `minimumWork`.
  public static func forRanges(
    _ count: Int, costPerItem: Int = 1 << 20, minimumWork: Int = 1 << 16,
    _ body: (Range<Int>) -> Void
  ) {
    let threads = min(Runtime.threadCount, count)
    if threads <= 1 || count * costPerItem < minimumWork {
      if count > 0 { body(0..<count) }
      return
    }
    withoutActuallyEscaping(body) { escapable in
      var job = Job(count: count, body: escapable)
      withUnsafeMutablePointer(to: &job) { pointer in
        GOMP_parallel(trampoline, UnsafeMutableRawPointer(pointer), UInt32(threads), 0)
      }
    }
  }

  /// Cuts `0..<count` into blocks of `blockSize` elements (the last one shorter), spreads the
  /// blocks over the threads and runs `body` on each block's element range. For streaming
  /// kernels: `costPerElement` is a rough count of bytes or flops per element.
  public static func forBlocks(
    _ count: Int, blockSize: Int, costPerElement: Int, _ body: (Range<Int>) -> Void
  ) {
    let blocks = (count + blockSize - 1) / blockSize
    forRanges(blocks, costPerItem: blockSize * costPerElement) { range in
      for block in range { body((block * blockSize)..<min(count, (block + 1) * blockSize)) }
    }
  }

  /// Runs `body(i)` for every `i` in `0..<count`, spread over the threads.
  public static func forEach(_ count: Int, costPerItem: Int = 1 << 20, _ body: (Int) -> Void) {
    forRanges(count, costPerItem: costPerItem) { range in
      for i in range { body(i) }
    }
  }
}
