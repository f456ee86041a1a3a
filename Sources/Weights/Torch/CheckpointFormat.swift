/// The container format of a checkpoint file, recognised from its first bytes (never from its
/// extension: `.bin` files are torch zips, `.ckpt` files are sometimes safetensors, …).
///
/// matches: the checks of `torch.serialization._is_zipfile` (local-header magic "PK\x03\x04"),
/// torch's legacy magic number (`0x1950a86a20f9469cfc6c` pickled as a LONG1 right after PROTO),
/// the legacy tar layout ("ustar" at offset 257) and the safetensors framing (8-byte little-endian
/// header length followed by '{').
/// Limitations: only looks at the leading bytes; a file that passes is fully validated by the
/// reader that opens it.
public enum CheckpointFormat: String, Sendable, Equatable {
  /// huggingface safetensors.
  case safetensors
  /// `torch.save` zip archive (PyTorch ≥ 1.6).
  case torchZip
  /// `torch.save(..., _use_new_zipfile_serialization=False)`: pickle stream with torch's magic.
  case torchLegacyPickle
  /// The tar-based format of PyTorch before 0.4.
  case torchLegacyTar
  /// Anything else.
  case unknown

  /// The format of a file whose leading bytes (and total size) are `bytes`.
  public static func detect(_ bytes: UnsafeRawBufferPointer) -> CheckpointFormat {
    let n = bytes.count
    if n >= 4 && bytes[0] == 0x50 && bytes[1] == 0x4B && bytes[2] == 0x03 && bytes[3] == 0x04 { return .torchZip }
    // An empty zip (end-of-central-directory record only) is still a zip.
    if n >= 4 && bytes[0] == 0x50 && bytes[1] == 0x4B && bytes[2] == 0x05 && bytes[3] == 0x06 { return .torchZip }
    if n >= 10 {
      let length = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
      if length >= 2 && length <= UInt64(n - 8) && bytes[8] == UInt8(ascii: "{") { return .safetensors }
    }
    if let kind = legacyKind(bytes) {
      return kind == legacyTarDescription ? .torchLegacyTar : .torchLegacyPickle
    }
    return .unknown
  }

  /// The format of the file at `path` (reads its mapping's first bytes).
  public static func detect(path: String) throws(TorchCheckpointError) -> CheckpointFormat {
    let mapping: MemoryMappedFile
    do {
      mapping = try MemoryMappedFile(path: path)
    } catch {
      switch error {
      case .notARegularFile(let p): throw .notARegularFile(path: p)
      case .io(let p, let operation, let reason): throw .io(path: p, operation: operation, reason: reason)
      default: throw .io(path: path, operation: "open", reason: error.description)
      }
    }
    return detect(mapping.bytes)
  }

  static let legacyTarDescription = "tar archive with sys_info/pickle/storages/tensors"

  /// Torch's legacy magic number as pickled: LONG1 with 10 bytes.
  private static let legacyMagic: [UInt8] = [0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

  /// A description of the legacy torch format in `bytes`, or nil if it is not one.
  static func legacyKind(_ bytes: UnsafeRawBufferPointer) -> String? {
    let n = bytes.count
    if n >= 262 && Array(bytes[257..<262]) == Array("ustar".utf8) { return legacyTarDescription }
    guard n >= 2, bytes[0] == 0x80, bytes[1] >= 2, bytes[1] <= 5 else { return nil }
    // Protocol 4+ puts a 9-byte FRAME opcode before the first value.
    for start in [2, 11] where n >= start + legacyMagic.count {
      if Array(bytes[start..<(start + legacyMagic.count)]) == legacyMagic { return "pickle stream with torch's legacy magic number" }
    }
    return nil
  }

  /// Words for what the first bytes of a non-checkpoint look like.
  static func describeLeadingBytes(_ bytes: UnsafeRawBufferPointer) -> String {
    let n = bytes.count
    if n == 0 { return "nothing (the file is empty)" }
    if n >= 2 && bytes[0] == 0x80 && bytes[1] <= 5 { return "a plain Python pickle (not written by torch.save)" }
    if n >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B { return "a gzip stream" }
    if n >= 4 && bytes[0] == 0x89 && bytes[1] == 0x48 && bytes[2] == 0x44 && bytes[3] == 0x46 { return "an HDF5 signature" }
    if bytes[0] == UInt8(ascii: "<") || bytes[0] == UInt8(ascii: "{") { return "text (an HTML error page or JSON instead of the checkpoint?)" }
    let head = bytes.prefix(8).map { hex8($0) }.joined(separator: " ")
    return "the bytes \(head)"
  }
}

/// Opens a checkpoint of any supported container, chosen by content (magic bytes), not by
/// extension: a `.safetensors` file as `SafeTensorsFile`, a `torch.save` zip (`.bin`, `.pt`,
/// `.pth`, `.ckpt`) as `TorchCheckpoint`. Legacy torch files throw
/// `TorchCheckpointError.legacyFormat`, anything else `.unrecognizedFormat`.
///
/// matches: diffusers' `load_state_dict` dispatch (safetensors, else `torch.load`), but by content.
/// Throws `SafeTensorsError` for a malformed safetensors file and `TorchCheckpointError` otherwise.
/// Limitations: one file only (shards listed by a `*.index.json` are combined with
/// `CompositeArchive`); the file is mapped once to look at its first bytes and again by the reader.
public func openCheckpoint(path: String) throws -> any TensorArchive {
  switch try CheckpointFormat.detect(path: path) {
  case .safetensors: return try SafeTensorsFile(path: path)
  case .torchZip: return try TorchCheckpoint(path: path)
  case .torchLegacyPickle:
    throw TorchCheckpointError.legacyFormat(path: path, kind: "pickle stream with torch's legacy magic number")
  case .torchLegacyTar:
    throw TorchCheckpointError.legacyFormat(path: path, kind: CheckpointFormat.legacyTarDescription)
  case .unknown:
    let mapping = try? MemoryMappedFile(path: path)
    let found = mapping.map { CheckpointFormat.describeLeadingBytes($0.bytes) } ?? "unreadable bytes"
    throw TorchCheckpointError.unrecognizedFormat(path: path, found: found)
  }
}
