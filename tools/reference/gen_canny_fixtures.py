"""OpenCV Canny goldens for the Swift edge detector.

Writes Tests/Fixtures/canny/:
  photo.png                 a deterministic photo-like RGB test image (gradients, soft shapes, texture, noise)
  <image>-gray.png          cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
  <image>-<lo>-<hi>.png     cv2.Canny(gray, lo, hi)                 (3×3 Sobel, L1 magnitude)
  <image>-<lo>-<hi>-l2.png  cv2.Canny(gray, lo, hi, L2gradient=True)
  <image>-rgb-<lo>-<hi>.png cv2.Canny(rgb, lo, hi)                  (OpenCV's multi-channel Canny)
  cases.json                the list of cases (image, thresholds, variant, golden file, edge count)
for <image> in reference (Tests/Fixtures/images/reference.png), stripes (…/stripes.png), photo.
Also checks exhaustively (all 2^24 colours) that cv2's RGB2GRAY equals
(9798 R + 19235 G + 3735 B + 2^14) >> 15, the formula the Swift side implements.
Run: tools/reference/.venv/bin/python tools/reference/gen_canny_fixtures.py
"""
import json
import os

import cv2
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures"))
OUT = os.path.join(FIX, "canny")
THRESHOLDS = [(100, 200), (50, 150)]


def photo_like(width=160, height=120, seed=3):
    """Smooth lighting, soft-edged discs and bars of high and low contrast, a grating whose contrast
    grows across the image (edges on both sides of the thresholds, so hysteresis matters), and
    sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.zeros((height, width, 3))
    img[..., 0] = 90 + 80 * x / width
    img[..., 1] = 110 + 60 * np.sin(y / 23.0)
    img[..., 2] = 150 - 70 * y / height
    discs = [(45, 40, 26, (220, 60, 40)), (110, 75, 30, (30, 90, 200)), (130, 25, 12, (240, 230, 80)),
             (30, 95, 14, (120, 140, 120)), (75, 100, 9, (150, 120, 160))]  # the last two: low contrast
    for cx, cy, r, color in discs:
        d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        a = np.clip(r + 0.5 - d, 0, 1)[..., None]  # anti-aliased disc
        img = img * (1 - a) + np.array(color) * a
    bar = np.clip(1.5 - np.abs((x - 0.6 * y) - 40) / 3, 0, 1)[..., None]  # a soft diagonal bar
    img = img * (1 - 0.7 * bar) + np.array([20, 20, 20]) * 0.7 * bar
    grating = (x / width * 40) * np.sign(np.sin(y / 2.5)) * (y > 100)  # contrast 0..80
    img += grating[..., None]
    img += (12 * np.sin(x / 2.1) * np.sin(y / 3.3) * (x > 100))[..., None]  # texture patch
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def check_gray_formula():
    v = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], -1).astype(np.uint8).reshape(4096, 4096, 3)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.int64)
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    assert (gray == (9798 * r + 19235 * g + 3735 * b + (1 << 14)) >> 15).all(), "RGB2GRAY formula changed"


def main():
    check_gray_formula()
    os.makedirs(OUT, exist_ok=True)
    Image.fromarray(photo_like()).save(os.path.join(OUT, "photo.png"), optimize=True)
    sources = {
        "reference": os.path.join(FIX, "images", "reference.png"),
        "stripes": os.path.join(FIX, "images", "stripes.png"),
        "photo": os.path.join(OUT, "photo.png"),
    }
    cases = []
    for name, path in sources.items():
        rgb = np.array(Image.open(path).convert("RGB"))
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        Image.fromarray(gray).save(os.path.join(OUT, f"{name}-gray.png"), optimize=True)
        for lo, hi in THRESHOLDS:
            variants = [("gray", f"{name}-{lo}-{hi}.png", cv2.Canny(gray, lo, hi))]
            variants.append(("gray-l2", f"{name}-{lo}-{hi}-l2.png", cv2.Canny(gray, lo, hi, L2gradient=True)))
            variants.append(("rgb", f"{name}-rgb-{lo}-{hi}.png", cv2.Canny(rgb, lo, hi)))
            for variant, file, edges in variants:
                assert set(np.unique(edges)) <= {0, 255}
                Image.fromarray(edges).save(os.path.join(OUT, file), optimize=True)
                cases.append({
                    "image": name, "source": os.path.relpath(path, FIX), "gray": f"{name}-gray.png",
                    "low": lo, "high": hi, "variant": variant, "golden": file,
                    "edges": int((edges == 255).sum()), "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
                })
    with open(os.path.join(OUT, "cases.json"), "w") as fh:
        json.dump({"opencv": cv2.__version__, "cases": cases}, fh, indent=1, sort_keys=True)
        fh.write("\n")
    for c in cases:
        print(c["golden"], c["edges"])


if __name__ == "__main__":
    main()
