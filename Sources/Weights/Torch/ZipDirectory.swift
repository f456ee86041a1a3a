/// The central directory of a zip archive held in memory (a memory-mapped checkpoint): for every
/// entry its name, sizes, CRC and the file offset where its data starts, so stored (uncompressed)
/// entries can be viewed in place without copying.
///
/// Why not ZIPFoundation (weichsel/ZIPFoundation 0.9.20, available in the package mirror): its
/// `Entry` keeps `dataOffset` and the local-header offset internal, and its `Archive` reads through
/// `FILE*` (`fopen`/`fread`) or copies into a `Data`; its only way to get an entry's bytes is an
/// `extract(_:consumer:)` that copies them in chunks. That cannot give a zero-copy view of a
/// multi-GB `.ckpt` in a mapping, and it would add a zlib system-library dependency for nothing
/// (torch writes every record uncompressed). Reading a central directory is small and well
/// specified, so it is done here, with every offset and length checked against the buffer.
///
/// matches: PKWARE APPNOTE 6.3.x §4.3 (local header, central directory, end-of-central-directory
/// record, zip64 end record and locator, zip64 extended-information extra field 0x0001), as written
/// by PyTorch's `PyTorchStreamWriter` (miniz): stored entries, data descriptors (bit 3, so local
/// headers carry zero sizes — sizes always come from the central directory), 64-byte-aligned data
/// via padding in the local extra field, and a zip64 end record even for small files.
/// Limitations: single-disk archives only; no decompression or decryption (such entries are
/// listed, and refused when read); an archive comment longer than 65,535 bytes cannot exist by
/// construction and data appended after the end record makes the file unreadable here.
struct ZipDirectory {
  /// One central-directory entry.
  struct Entry: Equatable {
    var name: String
    /// File offset of the first data byte (after the local header, name and extra field).
    var dataOffset: Int
    var compressedSize: Int
    var uncompressedSize: Int
    /// 0 = stored, 8 = deflate, …
    var method: UInt16
    var flags: UInt16
    var crc32: UInt32

    var isEncrypted: Bool { flags & 1 != 0 }
  }

  /// Entries in central-directory order.
  var entries: [Entry]
  private var index: [String: Int]

  /// The entry called `name`, or nil.
  func entry(_ name: String) -> Entry? { index[name].map { entries[$0] } }

  private static let localSignature: UInt32 = 0x0403_4B50
  private static let centralSignature: UInt32 = 0x0201_4B50
  private static let endSignature: UInt32 = 0x0605_4B50
  private static let zip64EndSignature: UInt32 = 0x0606_4B50
  private static let zip64LocatorSignature: UInt32 = 0x0706_4B50

  /// Reads the directory of the zip archive `bytes`. Throws `.corruptZip` for anything
  /// inconsistent; `path` is only used in messages.
  static func read(_ bytes: UnsafeRawBufferPointer, path: String) throws(TorchCheckpointError) -> ZipDirectory {
    let reader = ByteReader(bytes: bytes)
    func corrupt(_ reason: String) -> TorchCheckpointError { .corruptZip(path: path, reason: reason) }
    let size = bytes.count

    // End-of-central-directory record: 22 bytes plus a comment of up to 65,535 bytes at the end.
    guard size >= 22 else { throw corrupt("only \(size) bytes, too short to hold a zip directory (truncated file)") }
    var end: Int? = nil
    var candidate = size - 22
    let lowest = max(0, size - 22 - 0xFFFF)
    while candidate >= lowest {
      if reader.u32(candidate) == endSignature && candidate + 22 + Int(reader.u16(candidate + 20)) == size {
        end = candidate
        break
      }
      candidate -= 1
    }
    guard let end else {
      throw corrupt("no end-of-central-directory record at the end of the file (the file is truncated or has bytes appended)")
    }
    var diskNumber = UInt64(reader.u16(end + 4))
    var directoryDisk = UInt64(reader.u16(end + 6))
    var entriesOnDisk = UInt64(reader.u16(end + 8))
    var entryCount = UInt64(reader.u16(end + 10))
    var directorySize = UInt64(reader.u32(end + 12))
    var directoryOffset = UInt64(reader.u32(end + 16))
    var directoryLimit = end  // the central directory must end before this offset

    // Zip64: a 20-byte locator right before the end record points at the zip64 end record.
    if end >= 20 && reader.u32(end - 20) == zip64LocatorSignature {
      let locator = end - 20
      guard reader.u32(locator + 4) == 0, reader.u32(locator + 16) <= 1 else {
        throw corrupt("multi-disk (split) archives are not supported")
      }
      guard let record = Int(exactly: reader.u64(locator + 8)), record <= locator - 56 else {
        throw corrupt("zip64 end-of-central-directory locator points outside the file")
      }
      guard reader.u32(record) == zip64EndSignature else {
        throw corrupt("zip64 end-of-central-directory record missing at offset \(record)")
      }
      diskNumber = UInt64(reader.u32(record + 16))
      directoryDisk = UInt64(reader.u32(record + 20))
      entriesOnDisk = reader.u64(record + 24)
      entryCount = reader.u64(record + 32)
      directorySize = reader.u64(record + 40)
      directoryOffset = reader.u64(record + 48)
      directoryLimit = record
    } else if entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
      throw corrupt("end-of-central-directory record defers to zip64 values but there is no zip64 locator")
    }
    guard diskNumber == 0, directoryDisk == 0, entriesOnDisk == entryCount else {
      throw corrupt("multi-disk (split) archives are not supported")
    }
    guard let dirOffset = Int(exactly: directoryOffset), let dirSize = Int(exactly: directorySize),
      dirOffset <= directoryLimit, dirSize <= directoryLimit - dirOffset
    else {
      throw corrupt("central directory (offset \(directoryOffset), \(directorySize) bytes) lies outside the file")
    }
    guard entryCount <= UInt64(dirSize / 46) else {
      throw corrupt("\(entryCount) entries cannot fit in a \(dirSize)-byte central directory")
    }

    var entries: [Entry] = []
    entries.reserveCapacity(Int(entryCount))
    var index: [String: Int] = [:]
    var p = dirOffset
    let dirEnd = dirOffset + dirSize
    for n in 0..<Int(entryCount) {
      guard p + 46 <= dirEnd, reader.u32(p) == centralSignature else {
        throw corrupt("central directory entry \(n) at offset \(p) is missing or damaged")
      }
      let flags = reader.u16(p + 8)
      let method = reader.u16(p + 10)
      let crc = reader.u32(p + 16)
      var compressed = UInt64(reader.u32(p + 20))
      var uncompressed = UInt64(reader.u32(p + 24))
      let nameLength = Int(reader.u16(p + 28))
      let extraLength = Int(reader.u16(p + 30))
      let commentLength = Int(reader.u16(p + 32))
      var diskStart = UInt64(reader.u16(p + 34))
      var localOffset = UInt64(reader.u32(p + 42))
      let nameStart = p + 46
      guard nameStart + nameLength + extraLength + commentLength <= dirEnd else {
        throw corrupt("central directory entry \(n) runs past the end of the directory")
      }
      let nameBytes = UnsafeRawBufferPointer(rebasing: bytes[nameStart..<(nameStart + nameLength)])
      let name = String(decoding: nameBytes, as: UTF8.self)

      // Zip64 extended information: only the fields whose 32/16-bit value is saturated, in order.
      var e = nameStart + nameLength
      let extraEnd = e + extraLength
      while e + 4 <= extraEnd {
        let id = reader.u16(e)
        let fieldSize = Int(reader.u16(e + 2))
        let fieldStart = e + 4
        guard fieldStart + fieldSize <= extraEnd else {
          throw corrupt("extra field of \"\(name)\" runs past its entry")
        }
        if id == 0x0001 {
          var q = fieldStart
          let fieldEnd = fieldStart + fieldSize
          func next64() throws(TorchCheckpointError) -> UInt64 {
            guard q + 8 <= fieldEnd else { throw corrupt("zip64 extra field of \"\(name)\" is too short") }
            defer { q += 8 }
            return reader.u64(q)
          }
          if uncompressed == 0xFFFF_FFFF { uncompressed = try next64() }
          if compressed == 0xFFFF_FFFF { compressed = try next64() }
          if localOffset == 0xFFFF_FFFF { localOffset = try next64() }
          if diskStart == 0xFFFF {
            guard q + 4 <= fieldEnd else { throw corrupt("zip64 extra field of \"\(name)\" is too short") }
            diskStart = UInt64(reader.u32(q))
          }
        }
        e = fieldStart + fieldSize
      }
      guard diskStart == 0 else { throw corrupt("entry \"\(name)\" is on another disk (split archive)") }

      // The local header gives the real start of the data (its extra field may differ from the
      // central one: torch pads it to align the data to 64 bytes).
      guard let local = Int(exactly: localOffset), local <= dirOffset, dirOffset - local >= 30,
        reader.u32(local) == localSignature
      else {
        throw corrupt("local header of \"\(name)\" (offset \(localOffset)) is missing or damaged")
      }
      let localNameLength = Int(reader.u16(local + 26))
      let localExtraLength = Int(reader.u16(local + 28))
      let dataStart = local + 30 + localNameLength + localExtraLength
      guard let size = Int(exactly: compressed), let fullSize = Int(exactly: uncompressed),
        dataStart <= dirOffset, size <= dirOffset - dataStart
      else {
        throw corrupt("data of \"\(name)\" (\(compressed) bytes at offset \(dataStart)) overruns the central directory")
      }
      guard localNameLength == nameLength,
        memcmpEqual(bytes, local + 30, nameStart, nameLength)
      else {
        throw corrupt("local header at offset \(local) names a different file than the directory entry \"\(name)\"")
      }
      if index[name] != nil { throw corrupt("entry \"\(name)\" appears twice") }
      index[name] = entries.count
      entries.append(
        Entry(
          name: name, dataOffset: dataStart, compressedSize: size, uncompressedSize: fullSize,
          method: method, flags: flags, crc32: crc))
      p = nameStart + nameLength + extraLength + commentLength
    }
    return ZipDirectory(entries: entries, index: index)
  }

  private static func memcmpEqual(_ bytes: UnsafeRawBufferPointer, _ a: Int, _ b: Int, _ count: Int) -> Bool {
    for i in 0..<count where bytes[a + i] != bytes[b + i] { return false }
    return true
  }
}

/// Little-endian loads at offsets the caller has bounds-checked (`offset + width <= count`).
struct ByteReader {
  let bytes: UnsafeRawBufferPointer

  func u16(_ offset: Int) -> UInt16 {
    precondition(offset >= 0 && offset + 2 <= bytes.count)
    return UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
  }
  func u32(_ offset: Int) -> UInt32 {
    precondition(offset >= 0 && offset + 4 <= bytes.count)
    return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
  }
  func u64(_ offset: Int) -> UInt64 {
    precondition(offset >= 0 && offset + 8 <= bytes.count)
    return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
  }
}

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as zip stores it.
///
/// matches: `zlib.crc32` (the check value of "123456789" is 0xCBF43926).
public enum CRC32 {
  private static let table: [UInt32] = (0..<256).map { n in
    var c = UInt32(n)
    for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
  }

  public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    table.withUnsafeBufferPointer { t in
      for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    }
    return c ^ 0xFFFF_FFFF
  }
}
