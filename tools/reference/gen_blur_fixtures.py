"""Pillow GaussianBlur goldens for the Swift `Image.gaussianBlurred` (the mask blur of inpainting,
diffusers' `VaeImageProcessor.blur`, which is `image.filter(ImageFilter.GaussianBlur(r))`).

Writes Tests/Fixtures/blur/:
  mask_41x29.png            a hand-drawn-like inpainting mask (L): an ellipse, a bar, a single dot
  <source>-<radius>.png     Pillow 13 `image.filter(ImageFilter.GaussianBlur(radius))`, same mode
  cases.json                source, radius (one number, or [x, y]) and golden file of every case
Sources: the mask above and Tests/Fixtures/imaging/{gray,la,rgb,rgba}_37x23.png. Radii cover the
fractional box weights (0.5, 1.3), integer-ish radii, a radius larger than the image (both edge
loops of Pillow's line blur swap order) and separate x/y radii (one of them 0).
Run: tools/reference/.venv/bin/python tools/reference/gen_blur_fixtures.py
"""
import json
import os

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFilter

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures"))
OUT = os.path.join(FIX, "blur")
RADII = [0.5, 1.3, 2, 4, 7.5, 33, [3, 0], [0, 2.5], [1, 6]]


def mask_image():
    im = Image.new("L", (41, 29), 0)
    d = ImageDraw.Draw(im)
    d.ellipse((5, 4, 24, 22), fill=255)
    d.rectangle((28, 2, 33, 26), fill=255)
    d.point((38, 14), fill=255)
    return im


def save_png(im, path):
    im.save(path, format="PNG", optimize=False, compress_level=9)


def main():
    os.makedirs(OUT, exist_ok=True)
    sources = {"mask_41x29.png": mask_image()}
    save_png(sources["mask_41x29.png"], os.path.join(OUT, "mask_41x29.png"))
    for name in ["gray_37x23.png", "la_37x23.png", "rgb_37x23.png", "rgba_37x23.png"]:
        im = Image.open(os.path.join(FIX, "imaging", name))
        im.load()
        sources["../imaging/" + name] = im
    cases = []
    for source, im in sources.items():
        stem = os.path.basename(source)[:-4]
        for radius in RADII:
            r = tuple(radius) if isinstance(radius, list) else radius
            out = im.filter(ImageFilter.GaussianBlur(r))
            label = "x".join(str(v) for v in radius) if isinstance(radius, list) else str(radius)
            golden = f"{stem}-{label}.png"
            save_png(out, os.path.join(OUT, golden))
            assert np.array_equal(np.asarray(Image.open(os.path.join(OUT, golden))), np.asarray(out))
            cases.append({"source": source, "mode": im.mode, "radius": radius, "golden": golden})
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"pillow": PIL.__version__, "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases")


if __name__ == "__main__":
    main()
