import Foundation

/// Integer raster drawing on an RGB (or any channel count) 8-bit image, pixel for pixel as
/// OpenCV's non-antialiased primitives: 8-connected lines, convex polygon fill, filled circles and
/// the polygon approximation of an ellipse.
///
/// matches: OpenCV 4.x/5.0 `imgproc/src/drawing.cpp` — `cv::line` with `LINE_8` and `shift` 0
/// (`LineIterator`, clipped by `clipLine`), `cv::fillConvexPoly` (`LINE_8`, `shift` 0),
/// `cv::circle` with `thickness` −1, `LINE_8` and `shift` 0 (the midpoint circle with horizontal
/// spans), and `cv::ellipse2Poly` (its 1°-step sine table in float32, rounding with `cvRound`,
/// i.e. half to even). Limitations: no antialiasing, no sub-pixel `shift`, no thick outlines.
public struct RasterCanvas: Sendable {
  public private(set) var image: Image

  /// Wraps `image` (any channel count; a colour gives one value per channel).
  public init(_ image: Image) { self.image = image }

  /// An integer pixel position (x to the right, y down).
  public struct Point: Sendable, Equatable {
    public var x: Int
    public var y: Int
    public init(_ x: Int, _ y: Int) {
      self.x = x
      self.y = y
    }
  }

  private var width: Int { image.width }
  private var height: Int { image.height }

  /// Sets pixels `x0...x1` of row `y` (already clipped by the caller).
  private mutating func span(_ y: Int, _ x0: Int, _ x1: Int, _ color: [UInt8]) {
    guard x0 <= x1 else { return }
    let (c, w) = (image.channels, image.width)
    image.withUnsafeMutablePixels { p in
      var o = (y * w + x0) * c
      for _ in x0...x1 {
        for k in 0..<c { p[o + k] = color[k] }
        o += c
      }
    }
  }

  private mutating func put(_ x: Int, _ y: Int, _ color: [UInt8]) { span(y, x, x, color) }

  // MARK: - Lines

  /// Cohen–Sutherland clipping of the segment to `[0, w) × [0, h)` in 64-bit integers with C's
  /// truncating division; false when nothing of it is inside. (OpenCV `clipLine(Size2l, …)`.)
  static func clip(width: Int, height: Int, _ p1: inout Point, _ p2: inout Point) -> Bool {
    guard width > 0, height > 0 else { return false }
    let right = width - 1
    let bottom = height - 1
    var (x1, y1, x2, y2) = (p1.x, p1.y, p2.x, p2.y)
    func code(_ x: Int, _ y: Int) -> Int {
      (x < 0 ? 1 : 0) + (x > right ? 2 : 0) + (y < 0 ? 4 : 0) + (y > bottom ? 8 : 0)
    }
    var c1 = code(x1, y1)
    var c2 = code(x2, y2)
    if c1 & c2 == 0 && c1 | c2 != 0 {
      if c1 & 12 != 0 {
        let a = c1 < 8 ? 0 : bottom
        x1 += (a - y1) * (x2 - x1) / (y2 - y1)
        y1 = a
        c1 = (x1 < 0 ? 1 : 0) + (x1 > right ? 2 : 0)
      }
      if c2 & 12 != 0 {
        let a = c2 < 8 ? 0 : bottom
        x2 += (a - y2) * (x2 - x1) / (y2 - y1)
        y2 = a
        c2 = (x2 < 0 ? 1 : 0) + (x2 > right ? 2 : 0)
      }
      if c1 & c2 == 0 && c1 | c2 != 0 {
        if c1 != 0 {
          let a = c1 == 1 ? 0 : right
          y1 += (a - x1) * (y2 - y1) / (x2 - x1)
          x1 = a
          c1 = 0
        }
        if c2 != 0 {
          let a = c2 == 1 ? 0 : right
          y2 += (a - x2) * (y2 - y1) / (x2 - x1)
          x2 = a
          c2 = 0
        }
      }
    }
    (p1, p2) = (Point(x1, y1), Point(x2, y2))
    return c1 | c2 == 0
  }

  /// An 8-connected line from `a` to `b`, both ends included (OpenCV `line`, `LINE_8`).
  public mutating func line(_ a: Point, _ b: Point, color: [UInt8]) {
    var (p1, p2) = (a, b)
    let (w, h) = (width, height)
    let outside = { (p: Point) in p.x < 0 || p.x >= w || p.y < 0 || p.y >= h }
    if outside(p1) || outside(p2) {
      guard Self.clip(width: width, height: height, &p1, &p2) else { return }
    }
    var dx = p2.x - p1.x
    var dy = p2.y - p1.y
    if dx < 0 {  // drawn left to right
      dx = -dx
      dy = -dy
      p1 = p2
    }
    let ySign = dy < 0 ? -1 : 1
    dy = abs(dy)
    // The major axis advances every step, the minor one when the error term goes negative.
    var major = (1, 0)
    var minor = (0, ySign)
    if dy > dx {
      swap(&dx, &dy)
      swap(&major, &minor)
    }
    var err = dx - 2 * dy
    var (x, y) = (p1.x, p1.y)
    for _ in 0...dx {
      put(x, y, color)
      let step = err < 0
      err += -2 * dy + (step ? 2 * dx : 0)
      x += major.0 + (step ? minor.0 : 0)
      y += major.1 + (step ? minor.1 : 0)
    }
  }

  // MARK: - Polygons

  /// Fills a convex polygon and draws its outline with ``line(_:_:color:)`` (OpenCV
  /// `fillConvexPoly`, `LINE_8`, `shift` 0). Fewer than three points draw only the outline.
  public mutating func fillConvexPolygon(_ v: [Point], color: [UInt8]) {
    let n = v.count
    guard n > 0 else { return }
    let shift16 = 16
    let one = 1 << shift16
    var xmin = v[0].x, xmax = v[0].x, ymin = v[0].y, ymax = v[0].y
    var imin = 0
    var p0 = v[n - 1]
    for i in 0..<n {
      let p = v[i]
      if p.y < ymin {
        ymin = p.y
        imin = i
      }
      ymax = max(ymax, p.y)
      xmax = max(xmax, p.x)
      xmin = min(xmin, p.x)
      line(p0, p, color: color)
      p0 = p
    }
    guard n >= 3, xmax >= 0, ymax >= 0, xmin < width, ymin < height else { return }
    ymax = min(ymax, height - 1)
    // Two edges walk down from the top vertex, one each way round the polygon.
    var idx = [imin, imin]
    let di = [1, n - 1]
    var ye = [ymin, ymin]
    var ex = [-one, -one]
    var edx = [0, 0]
    var edges = n
    var y = ymin
    let half = one >> 1
    repeat {
      for i in 0..<2 where y >= ye[i] {
        var idx0 = idx[i]
        var j = idx0 + di[i]
        if j >= n { j -= n }
        // (C's `for (; edges-- > 0; )`: the count is shared by both edges and ends at −1.)
        while true {
          let more = edges > 0
          edges -= 1
          guard more else { break }
          let ty = v[j].y
          if ty > y {
            let xs = v[idx0].x << shift16
            let xe = v[j].x << shift16
            ye[i] = ty
            edx[i] = ((xe - xs) * 2 + (ty - y)) / (2 * (ty - y))
            ex[i] = xs
            idx[i] = j
            break
          }
          idx0 = j
          j += di[i]
          if j >= n { j -= n }
        }
      }
      if edges < 0 { break }
      if y >= 0 {
        let (l, r) = ex[0] > ex[1] ? (1, 0) : (0, 1)
        var x1 = (ex[l] + half) >> shift16
        var x2 = (ex[r] + half) >> shift16
        if x2 >= 0 && x1 < width {
          x1 = max(x1, 0)
          x2 = min(x2, width - 1)
          span(y, x1, x2, color)
        }
      }
      ex[0] += edx[0]
      ex[1] += edx[1]
      y += 1
    } while y <= ymax
  }

  // MARK: - Circles

  /// A filled circle (OpenCV `circle` with `thickness` −1, `LINE_8`, `shift` 0): the midpoint
  /// circle's octants joined by horizontal spans, clipped to the image.
  public mutating func fillCircle(center: Point, radius: Int, color: [UInt8]) {
    guard radius >= 0 else { return }
    var err = 0, dx = radius, dy = 0, plus = 1, minus = (radius << 1) - 1
    let (w, h) = (width, height)
    func row(_ y: Int, _ x0: Int, _ x1: Int) {
      guard y >= 0, y < h, x1 >= 0, x0 < w else { return }
      span(y, max(x0, 0), min(x1, w - 1), color)
    }
    while dx >= dy {
      let (y11, y12, y21, y22) = (center.y - dy, center.y + dy, center.y - dx, center.y + dx)
      let (x11, x12, x21, x22) = (center.x - dx, center.x + dx, center.x - dy, center.x + dy)
      if x11 < w && x12 >= 0 && y21 < h && y22 >= 0 {
        row(y11, x11, x12)
        row(y12, x11, x12)
        row(y21, x21, x22)
        row(y22, x21, x22)
      }
      dy += 1
      err += plus
      plus += 2
      let mask = err <= 0 ? 0 : -1
      err -= minus & mask
      dx += mask
      minus -= mask & 2
    }
  }

  // MARK: - Ellipses

  /// The vertices of an elliptic arc (OpenCV `ellipse2Poly` with integer centre and axes):
  /// points every `delta` degrees of the arc from `arcStart` to `arcEnd`, rotated by `angle`
  /// degrees, rounded half to even, consecutive duplicates dropped.
  public static func ellipsePolygon(
    center: Point, axes: (Int, Int), angle: Int, arcStart: Int, arcEnd: Int, delta: Int
  ) -> [Point] {
    var angle = angle
    var (arcStart, arcEnd) = (arcStart, arcEnd)
    while angle < 0 { angle += 360 }
    while angle > 360 { angle -= 360 }
    if arcStart > arcEnd { swap(&arcStart, &arcEnd) }
    while arcStart < 0 {
      arcStart += 360
      arcEnd += 360
    }
    while arcEnd > 360 {
      arcEnd -= 360
      arcStart -= 360
    }
    if arcEnd - arcStart > 360 {
      arcStart = 0
      arcEnd = 360
    }
    let alpha = Double(sinTable[450 - angle])  // cos
    let beta = Double(sinTable[angle])  // sin
    var points: [Point] = []
    var previous: Point?
    let step = max(delta, 1)
    var i = arcStart
    while i < arcEnd + step {
      var a = min(i, arcEnd)
      if a < 0 { a += 360 }
      let x = Double(axes.0) * Double(sinTable[450 - a])
      let y = Double(axes.1) * Double(sinTable[a])
      let px = Double(center.x) + x * alpha - y * beta
      let py = Double(center.y) + x * beta + y * alpha
      let p = Point(Int(px.rounded(.toNearestOrEven)), Int(py.rounded(.toNearestOrEven)))
      if p != previous {
        points.append(p)
        previous = p
      }
      i += step
    }
    if points.count == 1 { points = [center, center] }
    return points
  }

  /// sin(k°) for k = 0…450 rounded to 7 decimals, each parsed as a float32 literal (OpenCV's table).
  static let sinTable: [Float] = (0...450).map { k in
    let units = Int((sin(Double(k) * .pi / 180) * 1e7).rounded())
    let digits = String(abs(units))
    let padded = String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    let literal = (units < 0 ? "-" : "") + padded.dropLast(7) + "." + padded.suffix(7)
    return Float(literal)!
  }
}
