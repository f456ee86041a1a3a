// Helpers shared by the targets: a per-process scratch folder for APIs that only take a path,
// splitting one input into several files, and a minimal stored-zip writer.

import Foundation
import Weights
#if canImport(Glibc)
  import Glibc
#endif

/// A scratch folder for the APIs that read files (safetensors, torch checkpoints, tokenizer
/// folders): `/dev/shm/ipadapter-fuzz-<pid>` (RAM-backed), or `$FUZZ_SCRATCH_DIR/ipadapter-fuzz-<pid>`.
/// Removed at exit; a crash leaves it behind (scripts/fuzz removes folders of dead processes).
enum Scratch {
  nonisolated(unsafe) static var folder = ""

  static func setUp() {
    let base: String
    if let env = getenv("FUZZ_SCRATCH_DIR") {
      base = String(cString: env)
    } else if access("/dev/shm", W_OK) == 0 {
      base = "/dev/shm"
    } else {
      base = "/tmp"
    }
    folder = "\(base)/ipadapter-fuzz-\(getpid())"
    mkdir(folder, 0o700)
    atexit { Scratch.removeAll() }
  }

  /// Removes the scratch folder and everything in it.
  static func removeAll() {
    try? FileManager.default.removeItem(atPath: folder)
  }

  /// Writes `bytes` to `name` inside the scratch folder as a NEW file (unlink, then create) so that
  /// a mapping of the previous input, if anything still holds one, keeps its own pages and never
  /// sees the file truncated under it. Returns the path.
  @discardableResult
  static func write(_ bytes: some Collection<UInt8>, name: String) -> String {
    let path = folder + "/" + name
    unlink(path)
    let fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0o600)
    check(fd >= 0, "cannot create \(path): errno \(errno)")
    let array = Array(bytes)
    array.withUnsafeBytes { raw in
      var offset = 0
      while offset < raw.count {
        let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
        check(n > 0, "cannot write \(path): errno \(errno)")
        offset += n
      }
    }
    close(fd)
    return path
  }

  static func remove(_ name: String) { unlink(folder + "/" + name) }

  static func makeFolder(_ name: String) -> String {
    let path = folder + "/" + name
    mkdir(path, 0o700)
    return path
  }
}

/// The separator between the parts of a multi-file input (tokenizer folders, torch zip records).
/// NUL bytes cannot appear in JSON text, so JSON parts never contain it by accident.
let partSeparator: [UInt8] = Array("\0--part--\0".utf8)

/// Splits `bytes` at every occurrence of `partSeparator`.
func splitParts(_ bytes: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
  var parts: [ArraySlice<UInt8>] = []
  let n = partSeparator.count
  bytes.withUnsafeBufferPointer { buffer in
    let base = bytes.startIndex
    var start = 0
    var i = 0
    while i + n <= buffer.count {
      if buffer[i] == partSeparator[0] && memcmp(buffer.baseAddress! + i, partSeparator, n) == 0 {
        parts.append(bytes[(base + start)..<(base + i)])
        i += n
        start = i
      } else {
        i += 1
      }
    }
    parts.append(bytes[(base + start)..<bytes.endIndex])
  }
  return parts
}

/// A zip archive of stored (uncompressed) records with correct CRCs, data aligned to 64 bytes as
/// `torch.save` aligns it — enough for `TorchCheckpoint` to reach the unpickler.
struct StoredZipWriter {
  private(set) var bytes: [UInt8] = []
  private var central: [UInt8] = []
  private var count = 0

  private static func le16(_ v: Int, into out: inout [UInt8]) {
    out += [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)]
  }

  private static func le32(_ v: UInt32, into out: inout [UInt8]) {
    out += [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF), UInt8((v >> 16) & 0xFF), UInt8(v >> 24)]
  }

  mutating func add(_ name: String, _ data: ArraySlice<UInt8>) {
    let nameBytes = Array(name.utf8)
    let crc = data.withUnsafeBytes { CRC32.checksum($0) }
    let offset = bytes.count
    let headerEnd = offset + 30 + nameBytes.count
    // Extra field padding so the data starts on a 64-byte boundary (extra fields need ≥ 4 bytes).
    var pad = (64 - headerEnd % 64) % 64
    if pad > 0 && pad < 4 { pad += 64 }
    var local: [UInt8] = [0x50, 0x4B, 0x03, 0x04]
    Self.le16(20, into: &local)  // version needed
    Self.le16(0, into: &local)  // flags
    Self.le16(0, into: &local)  // method: stored
    Self.le16(0, into: &local)  // time
    Self.le16(0x21, into: &local)  // date
    Self.le32(crc, into: &local)
    Self.le32(UInt32(data.count), into: &local)
    Self.le32(UInt32(data.count), into: &local)
    Self.le16(nameBytes.count, into: &local)
    Self.le16(pad, into: &local)
    local += nameBytes
    if pad > 0 {
      // Header id 0x4655 ("FU"), then pad - 4 zero bytes.
      local += [0x55, 0x46]
      Self.le16(pad - 4, into: &local)
      local += [UInt8](repeating: 0, count: pad - 4)
    }
    bytes += local
    bytes += data

    var entry: [UInt8] = [0x50, 0x4B, 0x01, 0x02]
    Self.le16(20, into: &entry)  // made by
    Self.le16(20, into: &entry)  // needed
    Self.le16(0, into: &entry)
    Self.le16(0, into: &entry)
    Self.le16(0, into: &entry)
    Self.le16(0x21, into: &entry)
    Self.le32(crc, into: &entry)
    Self.le32(UInt32(data.count), into: &entry)
    Self.le32(UInt32(data.count), into: &entry)
    Self.le16(nameBytes.count, into: &entry)
    Self.le16(0, into: &entry)  // extra
    Self.le16(0, into: &entry)  // comment
    Self.le16(0, into: &entry)  // disk
    Self.le16(0, into: &entry)  // internal attributes
    Self.le32(0, into: &entry)  // external attributes
    Self.le32(UInt32(offset), into: &entry)
    entry += nameBytes
    central += entry
    count += 1
  }

  mutating func finish() -> [UInt8] {
    let centralOffset = bytes.count
    var out = bytes + central
    out += [0x50, 0x4B, 0x05, 0x06]
    Self.le16(0, into: &out)
    Self.le16(0, into: &out)
    Self.le16(count, into: &out)
    Self.le16(count, into: &out)
    Self.le32(UInt32(central.count), into: &out)
    Self.le32(UInt32(centralOffset), into: &out)
    Self.le16(0, into: &out)
    return out
  }
}
