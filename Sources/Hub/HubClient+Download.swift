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
/// multi-gigabyte file costs no second pass.
private final class IncompleteWriter: @unchecked Sendable {
  let handle: FileHandle
  let path: String
  private(set) var offset: Int64
  let report: (Int64) -> Void
  /// Builds a fresh digest already fed with what precedes the content (git's "blob <size>\0"), or nil.
  let makeDigest: (() -> Digest)?
  private var digest: Digest?

  init(path: String, offset: Int64, makeDigest: (() -> Digest)?, report: @escaping (Int64) -> Void) throws {
    guard let handle = FileHandle(forWritingAtPath: path) else { throw CocoaError(.fileWriteNoPermission) }
    self.handle = handle
    self.path = path
    self.offset = offset
    self.report = report
    self.makeDigest = makeDigest
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
      try handle.write(contentsOf: data)
      digest?.update(data)
      offset += Int64(data.count)
      report(offset)
    }
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
    let incomplete = cache.incompletePath(loc.repoID, etag: metadata.etag).path
    let blob = cache.blobPath(loc.repoID, etag: metadata.etag).path
    let fm = FileManager.default
    var failures = 0
    var corruptions = 0
    var restarts = 0
    while true {
      if Task.isCancelled { throw HubError.network(loc, detail: "cancelled") }
      if !fm.fileExists(atPath: incomplete), !fm.createFile(atPath: incomplete, contents: nil) {
        throw HubError.cache(loc, path: incomplete, detail: "cannot create the download file")
      }
      var offset = Self.fileSize(incomplete)
      var streamedDigest: String?
      if let size = metadata.size, offset > size { offset = 0 }

      if metadata.size == nil || offset < metadata.size! || offset == 0 {
        let (reached, error, hashed) = await getOnce(job, metadata: metadata, path: incomplete, offset: offset)
        streamedDigest = hashed
        if let error {
          if case .corrupt = error {  // a Range answer that does not fit: start again from zero
            restarts += 1
            if restarts > configuration.maxAttempts { throw error }
            try? fm.removeItem(atPath: incomplete)
            continue
          }
          guard Self.isRetryable(error) else { throw error }
          if reached <= offset { failures += 1 }  // an attempt that brought bytes does not count
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
        if actual > size { try? fm.removeItem(atPath: incomplete) }
        await backoff(failures)
        continue
      }
      let digestOK = streamedDigest.map { $0 == metadata.etag } ?? digestMatches(incomplete, etag: metadata.etag)
      if !digestOK {
        corruptions += 1
        try? fm.removeItem(atPath: incomplete)
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

  /// One GET from `offset`; returns the bytes on disk afterwards and the failure, if any.
  private func getOnce(_ job: FileJob, metadata: FileMetadata, path: String, offset: Int64) async -> (
    Int64, HubError?, String?
  ) {
    let loc = job.loc
    let endpointHost = URL(string: configuration.endpoint)?.host?.lowercased()
    let auth = metadata.downloadURL.host?.lowercased() == endpointHost
    var request = hubRequest(metadata.downloadURL, method: "GET", timeout: configuration.downloadTimeout, auth: auth)
    if offset > 0 { request.setValue("bytes=\(offset)-", forHTTPHeaderField: "Range") }
    let writer: IncompleteWriter
    do {
      let progress = job.progress
      let (index, count, total) = (job.index, job.count, metadata.size)
      writer = try IncompleteWriter(path: path, offset: offset, makeDigest: Self.digestFactory(metadata)) { done in
        progress?(
          HubProgress(
            repoID: loc.repoID, file: loc.file!, completedBytes: done, totalBytes: total, fileIndex: index,
            fileCount: count))
      }
    } catch {
      return (offset, .cache(loc, path: path, detail: "cannot open the download file: \(error.localizedDescription)"), nil)
    }
    defer { writer.close() }
    do {
      let response = try await transport.send(request, followRedirects: true, sink: { try writer.consume($0) })
      if response.status == 416 {
        return (writer.offset, .corrupt(loc, detail: "range \(offset)- not satisfiable"), nil)
      }
      if let error = classify(response, loc) { return (writer.offset, error, nil) }
      return (writer.offset, nil, writer.finalDigest())
    } catch is IncompleteWriter.RangeMismatch {
      return (writer.offset, .corrupt(loc, detail: "the server answered another byte range than bytes=\(offset)-"), nil)
    } catch {
      if Task.isCancelled { return (writer.offset, .network(loc, detail: "cancelled"), nil) }
      return (writer.offset, .network(loc, detail: (error as NSError).localizedDescription), nil)
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
