"""Fixtures and goldens for the Swift `Imaging` target (ImagingTests).

Writes small test images into Tests/Fixtures/imaging/ and, next to them, `goldens.json` plus raw
little-endian golden buffers in golden/ (`.u8` = uint8, `.f32` = float32; shapes in the JSON):

  decode   Pillow 13 decode of every image, expressed as L/LA/RGB/RGBA the way the Swift decoder
           represents it (P -> RGB, tRNS -> alpha via convert("RGBA"/"LA"), I;16 -> convert("L"),
           CMYK -> convert("RGB")).
  convert  Pillow convert("L"/"RGB"/"LA"/"RGBA") and transformers' convert_to_rgb (alpha composited
           onto white).
  resize   Pillow Image.resize for every filter, up/down sizes, boxes and reducing_gap.
  clip     transformers 5.23 CLIPImageProcessor pixel_values (the PIL backend that diffusers gets
           without torchvision), transposed to NHWC.
  vae_pre  diffusers 0.42 VaeImageProcessor / IPAdapterMaskProcessor preprocess (NCHW -> NHWC).
  vae_post diffusers 0.42 VaeImageProcessor.postprocess(output_type="pil") of a fixed tensor.

Every golden has an FNV-1a 64 hash of its bytes (the bit-exact check); small ones are also stored
in full, large float32 ones as every `sample_stride`-th value (for the max-error check). Deterministic: fixed seeds, no timestamps.
Run: tools/reference/.venv/bin/python tools/reference/gen_imaging_fixtures.py
"""
import json
import os
import struct
import warnings
import zlib

import numpy as np
import torch
from PIL import Image, PngImagePlugin

warnings.filterwarnings("ignore")
import transformers  # noqa: E402
from transformers import CLIPImageProcessor  # noqa: E402
from transformers.image_transforms import convert_to_rgb  # noqa: E402
from diffusers.image_processor import IPAdapterMaskProcessor, VaeImageProcessor  # noqa: E402

transformers.logging.set_verbosity_error()
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures", "imaging")
GOLDEN = os.path.join(ROOT, "golden")
RAW_LIMIT = 4096  # bytes; bigger goldens are stored as a hash (+ samples for float32)
SAMPLE_STRIDE = 97


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def store(name: str, array: np.ndarray, force_raw: bool = False) -> dict:
    """Golden entry for a uint8 or float32 array (C order)."""
    array = np.ascontiguousarray(array)
    if array.dtype == np.uint8:
        ext, dtype = "u8", "uint8"
    else:
        array = array.astype("<f4")
        ext, dtype = "f32", "float32"
    data = array.tobytes()
    entry = {"name": name, "shape": list(array.shape), "dtype": dtype, "fnv1a64": fnv1a64(data)}
    if len(data) <= RAW_LIMIT or force_raw:
        path = f"golden/{name}.{ext}"
        with open(os.path.join(ROOT, path), "wb") as f:
            f.write(data)
        entry["raw"] = path
    elif dtype == "float32":
        path = f"golden/{name}.samples.{ext}"
        with open(os.path.join(ROOT, path), "wb") as f:
            f.write(array.reshape(-1)[::SAMPLE_STRIDE].tobytes())
        entry["samples"] = path
        entry["sample_stride"] = SAMPLE_STRIDE
    return entry


# ---------------------------------------------------------------------------------------------
# Synthetic content


def rgb_content(w, h, seed):
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(x / max(w, 1) * 7.0 + y / max(h, 1) * 2.0)
    g = 255.0 * x / max(w - 1, 1)
    b = 255.0 * ((x // 4 + y // 4) % 2)  # hard edges: exercise overshoot + clipping
    img = np.stack([r, g, b], axis=-1)
    # a noisy patch in the top-left quarter
    ph, pw = max(h // 3, 1), max(w // 3, 1)
    img[:ph, :pw] = rng.randint(0, 256, size=(ph, pw, 3))
    # pure black/white lines
    img[h // 2, :] = 0
    img[:, w // 2] = 255
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def alpha_content(w, h, seed):
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = (x * 255 // max(w - 1, 1)).astype(np.int64)
    a[y % 5 == 0] = 0
    a[y % 5 == 1] = 255
    a[(y % 5 == 2) & (x % 3 == 0)] = rng.randint(1, 255, size=a[(y % 5 == 2) & (x % 3 == 0)].shape)
    return a.astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# A tiny PNG writer for what Pillow cannot write (Adam7 interlace, 16-bit, low bit depths)

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _pack_rows(samples: np.ndarray, bit_depth: int) -> bytes:
    """samples: H x W x C ints -> filtered (type 0) scanlines."""
    out = bytearray()
    h = samples.shape[0]
    for row in samples.reshape(h, -1):
        out.append(0)
        if bit_depth == 16:
            out += row.astype(">u2").tobytes()
        elif bit_depth == 8:
            out += row.astype(np.uint8).tobytes()
        else:
            per = 8 // bit_depth
            for i in range(0, len(row), per):
                byte = 0
                for j in range(per):
                    v = int(row[i + j]) if i + j < len(row) else 0
                    byte |= v << (8 - bit_depth * (j + 1))
                out.append(byte)
    return bytes(out)


def write_png(path, samples, bit_depth, color_type, interlace=False, plte=None, trns=None):
    h, w = samples.shape[:2]
    if samples.ndim == 2:
        samples = samples[..., None]
    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += _pack_rows(sub, bit_depth)
    else:
        raw = _pack_rows(samples, bit_depth)
    data = b"\x89PNG\r\n\x1a\n"
    data += _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0))
    if plte is not None:
        data += _chunk(b"PLTE", bytes(plte))
    if trns is not None:
        data += _chunk(b"tRNS", bytes(trns))
    data += _chunk(b"IDAT", zlib.compress(raw, 9))
    data += _chunk(b"IEND", b"")
    with open(os.path.join(ROOT, path), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------------------------------------


def make_images():
    """Writes the test images; returns {file: expected Swift format}."""
    files = {}
    rgb37 = rgb_content(37, 23, 1)
    Image.fromarray(rgb37).save(os.path.join(ROOT, "rgb_37x23.png"))
    files["rgb_37x23.png"] = "RGB"
    Image.fromarray(rgb_content(300, 200, 2)).save(os.path.join(ROOT, "rgb_300x200.png"), optimize=True)
    files["rgb_300x200.png"] = "RGB"
    rgba = np.dstack([rgb37, alpha_content(37, 23, 3)])
    Image.fromarray(rgba, "RGBA").save(os.path.join(ROOT, "rgba_37x23.png"))
    files["rgba_37x23.png"] = "RGBA"
    gray = Image.fromarray(rgb37).convert("L")
    gray.save(os.path.join(ROOT, "gray_37x23.png"))
    files["gray_37x23.png"] = "L"
    la = Image.merge("LA", [gray, Image.fromarray(alpha_content(37, 23, 4))])
    la.save(os.path.join(ROOT, "la_37x23.png"))
    files["la_37x23.png"] = "LA"
    pal = Image.fromarray(rgb37).quantize(colors=40, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pal.save(os.path.join(ROOT, "palette_37x23.png"))
    files["palette_37x23.png"] = "RGB"
    alphas = bytes((i * 37) % 256 for i in range(40))
    pal.save(os.path.join(ROOT, "palette_trns_37x23.png"), transparency=alphas)
    files["palette_trns_37x23.png"] = "RGBA"
    Image.fromarray(rgb37).save(os.path.join(ROOT, "rgb_trns_37x23.png"), transparency=tuple(int(v) for v in rgb37[0, 0]))
    files["rgb_trns_37x23.png"] = "RGBA"
    gray.save(os.path.join(ROOT, "gray_trns_37x23.png"), transparency=int(np.array(gray)[5, 5]))
    files["gray_trns_37x23.png"] = "LA"

    rng = np.random.RandomState(5)
    # 16-bit: RGB, RGBA, gray (values straddling 255 to pin Pillow's I;16 -> L clipping), gray+alpha
    rgb16 = (rgb37.astype(np.uint16) * 257 + rng.randint(0, 257, size=rgb37.shape)).astype(np.uint16)
    write_png("rgb16_37x23.png", rgb16, 16, 2)
    files["rgb16_37x23.png"] = "RGB"
    rgba16 = np.dstack([rgb16, alpha_content(37, 23, 6).astype(np.uint16) * 257])
    write_png("rgba16_37x23.png", rgba16, 16, 6)
    files["rgba16_37x23.png"] = "RGBA"
    g16 = (np.array(gray).astype(np.int64) * 3 + rng.randint(0, 40, size=(23, 37)))
    g16[::3] *= 200
    write_png("gray16_37x23.png", np.clip(g16, 0, 65535).astype(np.uint16), 16, 0)
    files["gray16_37x23.png"] = "L"
    la16 = np.dstack([np.array(gray).astype(np.uint16) * 257 + 3, alpha_content(37, 23, 7).astype(np.uint16) * 257])
    write_png("la16_37x23.png", la16, 16, 4)
    files["la16_37x23.png"] = "LA"
    # low bit depths
    write_png("gray1_23x17.png", (np.indices((17, 23)).sum(0) % 3 == 0).astype(np.uint8), 1, 0)
    files["gray1_23x17.png"] = "L"
    write_png("gray2_23x17.png", (np.indices((17, 23)).sum(0) % 4).astype(np.uint8), 2, 0)
    files["gray2_23x17.png"] = "L"
    write_png("gray4_23x17.png", (np.indices((17, 23))[1] % 16).astype(np.uint8), 4, 0)
    files["gray4_23x17.png"] = "L"
    plte = [c for i in range(16) for c in (i * 16, 255 - i * 16, (i * 53) % 256)]
    write_png("palette4_23x17.png", (np.indices((17, 23)).sum(0) % 16).astype(np.uint8), 4, 3, plte=plte)
    files["palette4_23x17.png"] = "RGB"
    # Adam7 interlaced
    write_png("interlaced_rgb_37x23.png", rgb37, 8, 2, interlace=True)
    files["interlaced_rgb_37x23.png"] = "RGB"
    write_png("interlaced_rgba_37x23.png", rgba, 8, 6, interlace=True)
    files["interlaced_rgba_37x23.png"] = "RGBA"
    write_png("interlaced_gray2_23x17.png", (np.indices((17, 23)).sum(0) % 4).astype(np.uint8), 2, 0, interlace=True)
    files["interlaced_gray2_23x17.png"] = "L"
    write_png("interlaced_rgb16_37x23.png", rgb16, 16, 2, interlace=True)
    files["interlaced_rgb16_37x23.png"] = "RGB"

    # JPEG: baseline 4:2:0, 4:4:4, progressive, gray, CMYK (Adobe, inverted by libjpeg's writer)
    rgb64 = rgb_content(64, 48, 8)
    Image.fromarray(rgb64).save(os.path.join(ROOT, "jpeg_rgb_64x48.jpg"), quality=90)
    files["jpeg_rgb_64x48.jpg"] = "RGB"
    Image.fromarray(rgb37).save(os.path.join(ROOT, "jpeg_rgb444_37x23.jpg"), quality=95, subsampling=0)
    files["jpeg_rgb444_37x23.jpg"] = "RGB"
    Image.fromarray(rgb37).save(os.path.join(ROOT, "jpeg_progressive_37x23.jpg"), quality=85, progressive=True)
    files["jpeg_progressive_37x23.jpg"] = "RGB"
    gray.save(os.path.join(ROOT, "jpeg_gray_37x23.jpg"), quality=90)
    files["jpeg_gray_37x23.jpg"] = "L"
    Image.fromarray(rgb37).convert("CMYK").save(os.path.join(ROOT, "jpeg_cmyk_37x23.jpg"), quality=95)
    files["jpeg_cmyk_37x23.jpg"] = "RGB"

    # text chunks written by Pillow (tEXt + iTXt), read back by the Swift decoder
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a photo of a cat\nSteps: 30, Sampler: DDIM, CFG scale: 7.5, Seed: 42")
    info.add_text("Comment", "caf\u00e9 \u2013 \u732b")  # not Latin-1 -> iTXt
    Image.fromarray(rgb_content(8, 6, 9)).save(os.path.join(ROOT, "text_chunks.png"), pnginfo=info)
    files["text_chunks.png"] = "RGB"

    with open(os.path.join(ROOT, "not_a_png.png"), "w") as f:
        f.write("This is a text file with a .png extension.\n")
    return files


def swift_view(im: Image.Image, expected: str) -> Image.Image:
    """The Pillow image converted to the Swift decoder's representation."""
    if im.mode == "CMYK":
        return im.convert("RGB")
    if im.mode in ("1", "I;16"):
        return im.convert("L")
    if im.mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if "transparency" in im.info:
        return im.convert("RGBA" if im.mode == "RGB" else "LA")
    if im.mode == "RGBA" and expected == "LA":  # 16-bit gray+alpha opens as RGBA (LA;16B)
        return im.convert("LA")
    return im


def decoded(file):
    with Image.open(os.path.join(ROOT, file)) as im:
        im.load()
        return im.copy()


def main():
    os.makedirs(GOLDEN, exist_ok=True)
    for name in os.listdir(GOLDEN):
        os.remove(os.path.join(GOLDEN, name))
    files = make_images()
    goldens = {"versions": {
        "pillow": Image.__version__ if hasattr(Image, "__version__") else __import__("PIL").__version__,
        "transformers": transformers.__version__,
        "diffusers": __import__("diffusers").__version__,
        "numpy": np.__version__,
        "torch": torch.__version__,
    }}

    # --- decode
    entries = []
    views = {}
    for file, expected in sorted(files.items()):
        im = swift_view(decoded(file), expected)
        assert im.mode == expected, (file, im.mode, expected)
        views[file] = im
        e = store("decode_" + file.replace(".", "_"), np.array(im))
        e.update(file=file, format=im.mode, width=im.width, height=im.height)
        if file == "text_chunks.png":
            with Image.open(os.path.join(ROOT, file)) as raw:
                e["text"] = dict(raw.text)
        entries.append(e)
    goldens["decode"] = entries

    # --- convert
    entries = []
    for src, mode in [("rgb_37x23.png", "L"), ("rgba_37x23.png", "L"), ("rgba_37x23.png", "RGB"),
                      ("la_37x23.png", "RGB"), ("la_37x23.png", "L"), ("gray_37x23.png", "RGB"),
                      ("gray_37x23.png", "RGBA"), ("rgb_37x23.png", "LA"), ("rgba_37x23.png", "LA")]:
        out = views[src].convert(mode)
        e = store(f"convert_{src.split('.')[0]}_{mode}", np.array(out))
        e.update(source=src, kind="pillow", format=mode)
        entries.append(e)
    for src in ["rgba_37x23.png", "la_37x23.png", "palette_trns_37x23.png", "rgb_trns_37x23.png", "rgb_37x23.png"]:
        out = convert_to_rgb(decoded(src), return_numpy=True)  # transformers: composite onto white
        e = store(f"composite_{src.split('.')[0]}", out)
        e.update(source=src, kind="transformers_convert_to_rgb", format="RGB")
        entries.append(e)
    goldens["convert"] = entries

    # --- resize
    entries = []
    all_filters = [0, 4, 2, 5, 3, 1]  # NEAREST BOX BILINEAR HAMMING BICUBIC LANCZOS
    cases = []
    for f in all_filters:
        cases += [("rgb_300x200.png", (336, 224), f, None, None),  # CLIP shortest edge 224
                  ("rgb_300x200.png", (37, 23), f, None, None),
                  ("rgb_37x23.png", (102, 64), f, None, None),  # upsample 23 -> 64
                  ("rgb_37x23.png", (16, 9), f, None, None),
                  ("rgb_37x23.png", (37, 50), f, None, None),  # vertical pass only
                  ("rgb_37x23.png", (80, 23), f, None, None),  # horizontal pass only
                  ("gray_37x23.png", (64, 40), f, None, None),
                  ("gray_37x23.png", (11, 7), f, None, None),
                  ("rgba_37x23.png", (80, 50), f, None, None),
                  ("rgba_37x23.png", (16, 9), f, None, None),
                  ("la_37x23.png", (50, 30), f, None, None),
                  ("rgb_37x23.png", (20, 12), f, (3.5, 2.25, 30.75, 20.5), None),
                  # Pillow 13 runs the vertical pass first when inH - outH > 2 * (inW - outW)
                  ("rgb_37x23.png", (64, 9), f, None, None),
                  ("rgb_300x200.png", (280, 40), f, None, None),
                  ("gray_37x23.png", (30, 6), f, None, None)]
    cases += [("rgb_300x200.png", (250, 100), 3, None, None),  # 100 == 2 * 50: horizontal first
              ("rgb_300x200.png", (251, 100), 3, None, None),  # 100 > 2 * 49: vertical first
              ("rgb_300x200.png", (299, 201), 2, None, None),
              ("rgb_300x200.png", (150, 100), 3, None, None),
              ("rgb_300x200.png", (1, 1), 3, None, None),
              ("rgb_37x23.png", (37, 5), 3, (0, 0, 37, 0), None),  # zero-height box (resize_and_fill)
              ("rgb_37x23.png", (20, 23), 3, (37, 0, 37, 23), None),  # zero-width box at the right edge
              ("rgb_37x23.png", (10, 10), 1, (5, 3, 15, 13), None),  # integer box of output size: crop
              ("rgb_300x200.png", (37, 23), 3, None, 2.0),
              ("rgb_300x200.png", (37, 23), 1, None, 3.0),
              ("rgb_300x200.png", (100, 50), 2, None, 1.5),
              ("rgb_300x200.png", (60, 70), 3, None, 2.0),
              ("rgba_37x23.png", (9, 5), 3, None, 2.0),
              ("gray_37x23.png", (5, 4), 1, None, 1.0)]
    for src, size, f, box, gap in cases:
        out = views[src].resize(size, resample=f, box=box, reducing_gap=gap)
        tag = f"resize_{src.split('.')[0]}_{size[0]}x{size[1]}_f{f}" + ("_box" if box else "") + (f"_gap{gap}" if gap else "")
        e = store(tag, np.array(out))
        e.update(source=src, width=size[0], height=size[1], filter=f, box=box, reducing_gap=gap, format=out.mode)
        entries.append(e)
    goldens["resize"] = entries

    # --- CLIP (diffusers builds CLIPImageProcessor(size=224, crop_size=224) when loading IP-Adapter)
    entries = []
    default = CLIPImageProcessor(size=224, crop_size=224)
    assert type(default).__name__ == "CLIPImageProcessorPil", type(default)
    clip_cases = [(src, {}) for src in ["rgb_300x200.png", "rgba_37x23.png", "gray_37x23.png",
                                         "palette_trns_37x23.png", "la_37x23.png", "jpeg_rgb_64x48.jpg"]]
    clip_cases += [("rgb_300x200.png", {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}),
                   ("rgba_37x23.png", {"size": {"shortest_edge": 20}, "crop_size": {"height": 30, "width": 41}}),
                   ("rgb_37x23.png", {"size": {"height": 17, "width": 29}, "do_center_crop": False, "resample": 2}),
                   ("rgb_37x23.png", {"size": 30, "crop_size": 24, "image_mean": [0.5, 0.5, 0.5],
                                      "image_std": [0.5, 0.5, 0.5], "resample": 1}),
                   ("rgb_37x23.png", {"size": {"shortest_edge": 40, "longest_edge": 50}, "do_center_crop": False}),
                   ("rgb_37x23.png", {"do_rescale": False, "do_resize": False, "do_center_crop": False})]
    # every uint8 level through rescale + normalize: pins the float32/float64 arithmetic order
    levels = np.arange(768, dtype=np.int64).reshape(16, 16, 3)
    levels = ((levels * 7 + np.array([0, 85, 170])) % 256).astype(np.uint8)
    Image.fromarray(levels).save(os.path.join(ROOT, "levels_16x16.png"))
    clip_cases.append(("levels_16x16.png", {"do_resize": False, "do_center_crop": False}))
    for src, config in clip_cases:
        proc = CLIPImageProcessor(**config) if config else default
        pv = proc(decoded(src), return_tensors="pt").pixel_values
        assert pv.dtype == torch.float32
        nhwc = pv.permute(0, 2, 3, 1).contiguous().numpy()
        tag = f"clip_{src.split('.')[0]}" + (f"_cfg{len(entries)}" if config else "")
        e = store(tag, nhwc)
        e.update(source=src, config=config)
        entries.append(e)
    goldens["clip"] = entries

    # --- VaeImageProcessor.preprocess (NCHW -> NHWC)
    entries = []
    vae = VaeImageProcessor(vae_scale_factor=8)
    mask = VaeImageProcessor(vae_scale_factor=8, do_normalize=False, do_binarize=True, do_convert_grayscale=True)
    ipmask = IPAdapterMaskProcessor()
    pre_cases = [("image", "rgb_37x23.png", {}), ("image", "rgb_300x200.png", {}),
                 ("image", "rgb_37x23.png", {"height": 64, "width": 96}),
                 ("image", "rgba_37x23.png", {}),
                 ("image", "rgb_37x23.png", {"height": 32, "width": 48, "resize_mode": "fill"}),
                 ("image", "rgb_37x23.png", {"height": 48, "width": 24, "resize_mode": "fill"}),
                 ("image", "rgb_37x23.png", {"height": 32, "width": 32, "resize_mode": "crop"}),
                 ("image", "rgb_37x23.png", {"crops_coords": (2, 3, 30, 21)}),
                 ("mask", "gray_37x23.png", {}), ("mask", "rgba_37x23.png", {}),
                 ("ipmask", "rgb_37x23.png", {"height": 40, "width": 64})]
    for kind, src, kwargs in pre_cases:
        proc = {"image": vae, "mask": mask, "ipmask": ipmask}[kind]
        t = proc.preprocess(decoded(src), **kwargs)
        nhwc = t.permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32)
        e = store(f"vaepre_{kind}_{src.split('.')[0]}_{len(entries)}", nhwc)
        e.update(kind=kind, source=src, kwargs={k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()})
        entries.append(e)
    goldens["vae_pre"] = entries

    # --- VaeImageProcessor.postprocess
    entries = []
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 9, 13, generator=g) * 0.8
    flat = x.view(-1)
    # exact ties for round-half-to-even and clamping edges
    specials = [0.0, -1.0, 1.0, 1.5, -1.5, 1 / 255 - 1, 3 / 255 - 1, 2 * (0.5 / 255) - 1, 2 * (254.5 / 255) - 1]
    flat[: len(specials)] = torch.tensor(specials)
    x1 = torch.randn(1, 1, 5, 7, generator=g)
    for name, t in [("rgb", x), ("gray", x1)]:
        ims = vae.postprocess(t, output_type="pil")
        e_in = store(f"vaepost_{name}_input", t.permute(0, 2, 3, 1).contiguous().numpy(), force_raw=True)
        e_out = store(f"vaepost_{name}_output", np.stack([np.array(im) for im in ims]).reshape(t.shape[0], t.shape[2], t.shape[3], t.shape[1]), force_raw=True)
        entries.append({"name": name, "input": e_in, "output": e_out, "modes": [im.mode for im in ims]})
    goldens["vae_post"] = entries

    with open(os.path.join(ROOT, "goldens.json"), "w") as f:
        json.dump(goldens, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(ROOT) for fn in fns)
    print(f"wrote {ROOT}: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
