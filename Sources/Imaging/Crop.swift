extension Image {
  /// The rectangle [left, right) x [top, bottom); parts outside the image are zero (alpha too).
  ///
  /// matches: Pillow 13 `Image.crop((left, top, right, bottom))` with integer coordinates.
  public func cropped(left: Int, top: Int, right: Int, bottom: Int) -> Image {
    let outWidth = max(right - left, 0), outHeight = max(bottom - top, 0)
    let c = channels
    return Image.make(width: outWidth, height: outHeight, format: format) { out in
      pixels.withUnsafeBufferPointer { src in
        let x0 = max(left, 0), x1 = min(right, width)
        guard x0 < x1 else { return }
        for y in max(top, 0)..<max(min(bottom, height), max(top, 0)) {
          let s = (y * width + x0) * c
          let d = ((y - top) * outWidth + (x0 - left)) * c
          for i in 0..<((x1 - x0) * c) { out[d + i] = src[s + i] }
        }
      }
    }
  }

  /// A `height` x `width` crop around the centre, zero-padded where the image is smaller.
  ///
  /// matches: transformers 5.23 `image_transforms.center_crop` (numpy): `top = (h - crop_h) // 2`
  /// (floor division), and when the crop does not fit, the image is first pasted into a zero canvas
  /// of `max` size at offset `ceil((new - old) / 2)`.
  public func centerCropped(height cropHeight: Int, width cropWidth: Int) -> Image {
    func floorDiv2(_ v: Int) -> Int { v >= 0 ? v / 2 : -((-v + 1) / 2) }
    var top = floorDiv2(height - cropHeight)
    var left = floorDiv2(width - cropWidth)
    if top >= 0 && top + cropHeight <= height && left >= 0 && left + cropWidth <= width {
      return cropped(left: left, top: top, right: left + cropWidth, bottom: top + cropHeight)
    }
    let newHeight = max(cropHeight, height), newWidth = max(cropWidth, width)
    let topPad = (newHeight - height + 1) / 2, leftPad = (newWidth - width + 1) / 2
    top += topPad
    left += leftPad
    let bottom = top + cropHeight, right = left + cropWidth
    // The canvas is the image shifted by the padding; cropping it is cropping the image at the
    // shifted coordinates, clamped to the canvas.
    let y0 = max(0, top), y1 = min(newHeight, bottom)
    let x0 = max(0, left), x1 = min(newWidth, right)
    return cropped(left: x0 - leftPad, top: y0 - topPad, right: x1 - leftPad, bottom: y1 - topPad)
  }
}
