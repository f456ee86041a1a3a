import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A raw TCP server on 127.0.0.1 for what FlyingFox cannot do: answer every request with a status line and then one
/// header line every `intervalMs`, forever (a slowloris on the response head), so that only an overall deadline can
/// end the request. Each connection runs on its own thread until the peer goes away or the server stops.
final class TrickleServer: @unchecked Sendable {
  private let fd: Int32
  private let lock = NSLock()
  private var stopped = false
  private var accepted = 0
  let port: UInt16
  let intervalMs: Int

  var endpoint: String { "http://127.0.0.1:\(port)" }
  var connections: Int { lock.withLock { accepted } }

  init(intervalMs: Int) throws {
    self.intervalMs = intervalMs
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw CocoaError(.fileWriteUnknown) }
    self.fd = fd
    var yes: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0, listen(fd, 16) == 0 else {
      close(fd)
      throw CocoaError(.fileWriteUnknown)
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    port = UInt16(bigEndian: address.sin_port)
    let thread = Thread { [self] in acceptLoop() }
    thread.start()
  }

  func stop() {
    lock.withLock { stopped = true }
    shutdown(fd, Int32(SHUT_RDWR))
    close(fd)
  }

  private var isStopped: Bool { lock.withLock { stopped } }

  private func acceptLoop() {
    while !isStopped {
      let client = accept(fd, nil, nil)
      guard client >= 0 else {
        if errno == EINTR { continue }
        return
      }
      lock.withLock { accepted += 1 }
      let thread = Thread { [self] in serve(client) }
      thread.start()
    }
  }

  private func serve(_ client: Int32) {
    defer { close(client) }
    var buffer = [UInt8](repeating: 0, count: 8192)
    _ = recv(client, &buffer, buffer.count, 0)  // the request (not parsed)
    guard send(client, "HTTP/1.1 200 OK\r\n") else { return }
    var n = 0
    while !isStopped {
      usleep(useconds_t(intervalMs * 1000))
      n += 1
      guard send(client, "X-Trickle-\(n): a\r\n") else { return }
    }
  }

  private func send(_ client: Int32, _ text: String) -> Bool {
    let bytes = Array(text.utf8)
    return bytes.withUnsafeBytes { Glibc.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
  }
}
