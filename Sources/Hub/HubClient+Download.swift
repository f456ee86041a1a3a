import Foundation

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif
#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Appends a response body to `blobs/<etag>.incomplete` as it arrives (on the URLSession delegate queue), hashing
/// it on the way when a digest is wanted (the prefix already on disk is hashed first), so that checking a
/// multi-gigabyte file costs no second pass. It refuses to grow the file past the size the hub announced, and
/// abandons a transfer that averages less than the minimum rate over a window (a stall).
/// `@unchecked Sendable`: written by one URLSession delegate queue at a time.
private final class IncompleteWriter: @unchecked Sendable {
  let handle: FileHandle
  let path: String
  private(set) var offset: Int64
  let report: (Int64) -> Void
  /// Builds a fresh digest already fed with what precedes the content (git's "blob <size>\0"), or nil.
  let makeDigest: (() -> Digest)?
  private var digest: Digest?
  /// The announced size: a body that would pass it is cut off.
  let expectedSize: Int64?
  /// Minimum bytes per window (0: no rule), the window, and where the current window started.
  let minimumRate: Double
  let window: TimeInterval
  private var windowStart = Date()
  private var windowBytes: Int64 = 0

  init(
    path: String, offset: Int64, expectedSize: Int64?, minimumRate: Double, window: TimeInterval,
    makeDigest: (() -> Digest)?, report: @escaping (Int64) -> Void
  ) throws {
    let fd = HubCache.openForWriting(path, create: false)
    guard fd >= 0 else { throw CocoaError(.fileWriteNoPermission) }
    self.handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    self.path = path
    self.offset = offset
    self.report = report
    self.makeDigest = makeDigest
    self.expectedSize = expectedSize
    self.minimumRate = minimumRate
    self.window = window
    try handle.truncate(atOffset: UInt64(offset))
    try handle.seek(toOffset: UInt64(offset))
    if var d = makeDigest?() {
      if offset > 0 {
        let reader = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? reader.close() }
        var remaining = offset
        while remaining > 0, let chunk = try reader.read(upToCount: Int(min(remaining, 4 << 20))), !chunk.isEmpty {
          d.update(chunk)
          remaining -= Int64(chunk.count)
        }
      }
      digest = d
    }
  }

  /// The hex digest of everything on disk (call once, after a complete answer).
  func finalDigest() -> String? {
    guard var d = digest else { return nil }
    digest = nil
    return d.finalizeHex()
  }

  struct RangeMismatch: Error {}
  /// The server sent more bytes than the size it announced.
  struct TooLong: Error { let size: Int64 }
  /// Fewer than `minimumRate × window` bytes arrived in a window.
  struct Stalled: Error { let bytes: Int64; let seconds: TimeInterval }

  func consume(_ event: HTTPStreamEvent) throws {
    switch event {
    case .response(let status, let headers):
      if status == 200, offset > 0 {
        // The server ignored Range: start over rather than append the whole file to a prefix.
        try handle.truncate(atOffset: 0)
        try handle.seek(toOffset: 0)
        offset = 0
        digest = makeDigest?()
      } else if status == 206 {
        let start = headers["content-range"].flatMap { Self.rangeStart($0) }
        if start != offset { throw RangeMismatch() }
      }
    case .data(let data):
      if let expectedSize, offset + Int64(data.count) > expectedSize { throw TooLong(size: expectedSize) }
      try checkRate(adding: data.count)
      try handle.write(contentsOf: data)
      digest?.update(data)
      offset += Int64(data.count)
      report(offset)
    }
  }

  /// Counts `count` more bytes in the current window; when the window is over, throws ``Stalled`` if it brought too
  /// little, else starts the next one. (Complete silence is the idle timeout's job.)
  private func checkRate(adding count: Int) throws {
    guard minimumRate > 0, window > 0 else { return }
    windowBytes += Int64(count)
    let elapsed = Date().timeIntervalSince(windowStart)
    guard elapsed >= window else { return }
    if Double(windowBytes) < minimumRate * elapsed { throw Stalled(bytes: windowBytes, seconds: elapsed) }
    windowStart = Date()
    windowBytes = 0
  }

  /// `bytes 100-199/200` → 100.
  static func rangeStart(_ header: String) -> Int64? {
    guard let range = header.split(separator: " ").last, let dash = range.firstIndex(of: "-") else { return nil }
    return Int64(range[..<dash])
  }

  func close() { try? handle.close() }
}

extension HubClient {
  /// Downloads `metadata.downloadURL` into `blobs/<etag>` (the caller holds the lock): resumes an existing
  /// `.incomplete`, retries dropped connections and 5xx with `Range`, checks size and digest, then renames.
  func downloadBlob(_ job: FileJob, metadata: FileMetadata) async throws(HubError) {
    let loc = job.loc
    let incomplete = try cache.incompletePath(loc.repoID, etag: metadata.etag).path
    let blob = try cache.blobPath(loc.repoID, etag: metadata.etag).path
    var failures = 0
    var corruptions = 0
    var restarts = 0
    while true {
      if Task.isCancelled { throw HubError.network(loc, detail: "cancelled") }
      let fd = HubCache.openForWriting(incomplete, create: true)
      guard fd >= 0 else {
        throw HubError.cache(loc, path: incomplete, detail: "cannot create the download file: \(HubCache.lastError())")
      }
      close(fd)
      var offset = Self.fileSize(incomplete)
      var streamedDigest: String?
      if let size = metadata.size, offset > size { offset = 0 }

      if metadata.size == nil || offset < metadata.size! || offset == 0 {
        let (reached, error, hashed, stalled) = await getOnce(job, metadata: metadata, path: incomplete, offset: offset)
        streamedDigest = hashed
        if let error {
          if case .corrupt = error {  // a Range answer that does not fit, or too many bytes: start again from zero
            restarts += 1
            if restarts > configuration.maxAttempts { throw error }
            HubCache.removeFile(incomplete)
            continue
          }
          guard Self.isRetryable(error) else { throw error }
          // An attempt that brought bytes does not count, unless it stalled.
          if reached <= offset || stalled { failures += 1 }
          if failures >= configuration.maxAttempts { throw error }
          await backoff(max(failures, 1))
          continue
        }
      }

      let actual = Self.fileSize(incomplete)
      if let size = metadata.size, actual != size {
        failures += 1
        if failures >= configuration.maxAttempts {
          throw HubError.corrupt(loc, detail: "got \(actual) bytes, expected \(size)")
        }
        if actual > size { HubCache.removeFile(incomplete) }
        await backoff(failures)
        continue
      }
      let digestOK = streamedDigest.map { $0 == metadata.etag } ?? digestMatches(incomplete, etag: metadata.etag)
      if !digestOK {
        corruptions += 1
        HubCache.removeFile(incomplete)
        if corruptions >= configuration.maxAttempts {
          throw HubError.corrupt(loc, detail: "content does not hash to its etag \(metadata.etag)")
        }
        continue
      }
      if rename(incomplete, blob) != 0 {
        throw HubError.cache(loc, path: blob, detail: "cannot move the download into place: \(String(cString: strerror(errno)))")
      }
      return
    }
  }

  /// One GET from `offset`; returns the bytes on disk afterwards, the failure if any, the streamed digest, and whether
  /// the attempt was abandoned as stalled. The token goes only to the endpoint's origin (``tokenAllowed(for:)``),
  /// and the transport drops it on any redirect that leaves that origin.
  private func getOnce(_ job: FileJob, metadata: FileMetadata, path: String, offset: Int64) async -> (
    Int64, HubError?, String?, Bool
  ) {
    let loc = job.loc
    var request = hubRequest(metadata.downloadURL, method: "GET", timeout: configuration.downloadTimeout)
    if offset > 0 { request.setValue("bytes=\(offset)-", forHTTPHeaderField: "Range") }
    let writer: IncompleteWriter
    do {
      let progress = job.progress
      let (index, count, total) = (job.index, job.count, metadata.size)
      writer = try IncompleteWriter(
        path: path, offset: offset, expectedSize: metadata.size, minimumRate: configuration.downloadMinimumRate,
        window: configuration.downloadRateWindow, makeDigest: Self.digestFactory(metadata)
      ) { done in
        progress?(
          HubProgress(
            repoID: loc.repoID, file: loc.file!, completedBytes: done, totalBytes: total, fileIndex: index,
            fileCount: count))
      }
    } catch {
      let detail = "cannot open the download file: \(error.localizedDescription)"
      return (offset, .cache(loc, path: path, detail: detail), nil, false)
    }
    defer { writer.close() }
    let options = RequestOptions(
      followRedirects: true, maxBodyBytes: configuration.maxMetadataBodyBytes,
      maxErrorBodyBytes: configuration.maxMetadataBodyBytes, deadline: nil)
    do {
      let response = try await transport.send(request, options: options, sink: { try writer.consume($0) })
      if response.status == 416 {
        return (writer.offset, .corrupt(loc, detail: "range \(offset)- not satisfiable"), nil, false)
      }
      if let error = classify(response, loc) { return (writer.offset, error, nil, false) }
      if !(200..<300).contains(response.status) {
        return (writer.offset, .protocolViolation(loc, detail: "the download answered \(response.status)"), nil, false)
      }
      return (writer.offset, nil, writer.finalDigest(), false)
    } catch is IncompleteWriter.RangeMismatch {
      return (writer.offset, .corrupt(loc, detail: "the server answered another byte range than bytes=\(offset)-"), nil, false)
    } catch let tooLong as IncompleteWriter.TooLong {
      let detail = "the server sent more than the \(tooLong.size) bytes it announced"
      return (writer.offset, .corrupt(loc, detail: detail), nil, false)
    } catch let stall as IncompleteWriter.Stalled {
      let rate = HubCache.formatSize(Int64(configuration.downloadMinimumRate))
      let detail =
        "the download stalled: \(stall.bytes) bytes in \(Self.formatSeconds(stall.seconds.rounded())), "
        + "less than the minimum \(rate)B/s"
      return (writer.offset, .network(loc, detail: detail), nil, true)
    } catch {
      return (writer.offset, transportError(error, loc), nil, false)
    }
  }

  /// A digest to compute while downloading: sha256 for a 64-hex etag, git blob sha1 for a 40-hex one (needs the
  /// size), nil when the etag is no digest we know.
  static func digestFactory(_ metadata: FileMetadata) -> (() -> Digest)? {
    let etag = metadata.etag
    guard etag.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else { return nil }
    if etag.utf8.count == 64 { return { Digest(.sha256) } }
    if etag.utf8.count == 40, let size = metadata.size {
      return {
        var d = Digest(.sha1)
        d.update(Data("blob \(size)\0".utf8))
        return d
      }
    }
    return nil
  }

  static func fileSize(_ path: String) -> Int64 {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
  }
}
