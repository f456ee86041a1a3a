"""Goldens for the IP-Adapter control logic (Sources/IPAdapter/Controls, Tests/IPAdapterTests/Controls).

Writes
  Tests/Fixtures/ip-controls/sdxl-unet-config.json   SDXL base UNet config (diffusers defaults, no weights)
  Tests/Fixtures/ip-controls/scales.json             diffusers `_maybe_expand_lora_scales` + the
                                                     `set_ip_adapter_scale` startswith rule, per attn2 layer,
                                                     for SD1.5 / tiny / SDXL UNets and a set of dicts
  Tests/Fixtures/ip-controls/masks.json              IPAdapterMaskProcessor.downsample and .preprocess cases
  Tests/Fixtures/ip-controls/goldens.safetensors     the tensors those cases use, plus ComfyUI-formula
                                                     goldens (combine_embeds, embeds_scaling, IPAdapter Noise)
  Tests/Fixtures/masks/*.png                         small mask images for the preprocess test

The UNets are built with `torch.device("meta")` (no weights). diffusers 0.42.1 functions are called
directly. ComfyUI_IPAdapter_plus (@ 9d076a3) is not importable without ComfyUI, so its formulas
(combine_embeds, embeds_scaling, IPAdapter Noise; torchvision v2 gaussian_blur) are re-derived here
in torch from reading that code; the Swift side implements them independently.
Deterministic: fixed seeds, sorted keys. Run: tools/reference/.venv/bin/python tools/reference/gen_ip_controls.py
"""
import copy
import json
import math
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from diffusers import UNet2DConditionModel
from diffusers.image_processor import IPAdapterMaskProcessor
from diffusers.loaders.unet_loader_utils import _maybe_expand_lora_scales

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(REPO, "Tests", "Fixtures")
OUT = os.path.join(FIX, "ip-controls")
MASKS = os.path.join(FIX, "masks")
os.makedirs(OUT, exist_ok=True)
os.makedirs(MASKS, exist_ok=True)

SD15_CONFIG = os.path.join(REPO, "Sources", "Pipelines", "Resources", "configs", "stable-diffusion-v1-5", "unet", "config.json")
TINY_CONFIG = os.path.join(FIX, "tiny-sd15", "unet", "config.json")
SDXL_KWARGS = dict(
    sample_size=128, in_channels=4, out_channels=4,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    block_out_channels=[320, 640, 1280], layers_per_block=2, cross_attention_dim=2048,
    transformer_layers_per_block=[1, 2, 10], attention_head_dim=[5, 10, 20], use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
    upcast_attention=False,
)


def meta_unet(config):
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(config)


def cross_layer_names(unet):
    return [n[: -len(".processor")] for n in unet.attn_processors if n.endswith("attn2.processor")]


def per_layer(unet, scale):
    """set_ip_adapter_scale(scale) for one adapter, read back per attn2 layer (processor order)."""
    expanded = _maybe_expand_lora_scales(unet, [scale], default_scale=0.0)[0]
    names = [n for n in unet.attn_processors if n.endswith("attn2.processor")]
    if not isinstance(expanded, dict):
        return [float(expanded)] * len(names)
    out = []
    for name in names:
        value = None
        for k, s in expanded.items():  # later matches win, as in set_ip_adapter_scale
            if name.startswith(k):
                value = s
        assert value is not None, name
        out.append(float(value))
    return out


# name, dict, configs it runs on
CASES = [
    ("bare-number", 0.25, ["sd15", "tiny", "sdxl"]),
    ("numbers", {"down": 0.5, "mid": 0.25, "up": 0.75}, ["sd15", "tiny", "sdxl"]),
    ("up-block-number", {"up": {"block_1": 0.6}}, ["sd15", "tiny", "sdxl"]),
    ("up-block-list", {"up": {"block_1": [0.0, 1.0, 0.0]}}, ["sd15", "tiny", "sdxl"]),
    ("empty", {}, ["sd15", "tiny", "sdxl"]),
    ("mid-only", {"mid": 0.7}, ["sd15", "tiny", "sdxl"]),
    ("mid-single-list", {"down": {"block_1": [0.3, 0.4]}, "mid": [0.9]}, ["sd15", "tiny", "sdxl"]),
    ("single-element-list", {"up": {"block_2": [0.5]}}, ["sd15", "tiny"]),
    ("all-zero", {"down": 0, "mid": 0, "up": 0}, ["sd15", "tiny", "sdxl"]),
    ("down-only", {"down": 1.0}, ["sd15", "tiny", "sdxl"]),
    ("negative-and-large", {"up": -0.5, "down": 2.5, "mid": 1.25}, ["sd15", "tiny"]),
    ("mixed", {"down": {"block_0": 1.0, "block_1": [0.3, 0.4]}, "up": {"block_3": [0.1, 0.2, 0.3]}}, ["sd15"]),
    ("instantstyle-sd15-style", {"up": {"block_1": 1.0}}, ["sd15"]),
    ("instantstyle-sd15-composition", {"down": {"block_2": 1.0}, "mid": 1.0}, ["sd15"]),
    ("instantstyle-sdxl-style", {"up": {"block_0": [0.0, 1.0, 0.0]}}, ["sdxl"]),
    ("instantstyle-sdxl-composition", {"down": {"block_2": [0.0, 1.0]}}, ["sdxl"]),
    ("instantstyle-sdxl-both", {"down": {"block_2": [0.0, 1.0]}, "up": {"block_0": [0.0, 1.0, 0.0]}}, ["sdxl"]),
    # invalid: diffusers raises
    ("bad-up-length", {"up": {"block_1": [1.0, 2.0]}}, ["sd15", "tiny"]),
    ("bad-down-length", {"down": {"block_2": [1.0, 2.0, 3.0]}}, ["sd15"]),
    ("bad-mid-length", {"mid": [1.0, 2.0]}, ["sd15"]),
    ("bad-top-key", {"middle": 1.0}, ["sd15"]),
    # invalid names diffusers silently ignores (we refuse them)
    ("ignored-block-without-attention", {"down": {"block_3": 1.0}}, ["sd15"]),
    ("ignored-up-block-0", {"up": {"block_0": 1.0}}, ["sd15"]),
    ("ignored-bad-block-name", {"down": {"blk_1": 1.0}}, ["sd15"]),
    ("ignored-tiny-down-2", {"down": {"block_2": [1.0, 1.0]}}, ["tiny"]),
]


def gen_scales():
    sdxl = meta_unet(SDXL_KWARGS)
    cfg = {k: v for k, v in dict(sdxl.config).items() if not k.startswith("_")}
    with open(os.path.join(OUT, "sdxl-unet-config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    unets = {
        "sd15": meta_unet(json.load(open(SD15_CONFIG))),
        "tiny": meta_unet(json.load(open(TINY_CONFIG))),
        "sdxl": sdxl,
    }
    doc = {"configs": {k: {"layers": cross_layer_names(u)} for k, u in unets.items()}, "cases": []}
    for name, scale, configs in CASES:
        for c in configs:
            entry = {"name": name, "config": c, "json": json.dumps(scale, sort_keys=True)}
            try:
                entry["expected"] = per_layer(unets[c], copy.deepcopy(scale))
                entry["diffusers"] = "ok"
            except Exception as e:  # noqa: BLE001
                entry["expected"] = None
                entry["diffusers"] = f"{type(e).__name__}: {e}"
            entry["diffusers_ignores"] = name.startswith("ignored-")
            doc["cases"].append(entry)
    with open(os.path.join(OUT, "scales.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")


def gen_masks(tensors):
    g = torch.Generator().manual_seed(1234)
    cases = []
    # (mask H, W, Lq, kind)
    specs = [
        (64, 64, 4096, "binary"), (64, 64, 1024, "binary"), (64, 64, 256, "binary"), (64, 64, 64, "binary"),
        (64, 96, 6144, "binary"), (64, 96, 1536, "binary"), (64, 96, 384, "binary"), (64, 96, 96, "binary"),
        (96, 64, 1536, "binary"), (40, 100, 1000, "smooth"), (100, 30, 77, "smooth"), (64, 64, 1000, "binary"),
        (64, 64, 4000, "smooth"), (50, 70, 333, "smooth"), (8, 8, 4096, "smooth"), (200, 200, 64, "binary"),
        (64, 128, 96, "binary"), (30, 200, 120, "smooth"), (64, 64, 17, "smooth"),
    ]
    for i, (h, w, lq, kind) in enumerate(specs):
        if kind == "binary":
            m = (torch.rand((1, h, w), generator=g) > 0.5).float()
            m[:, : h // 3, : w // 2] = 1.0
            m[:, h // 2:, w // 3:] = 0.0
        else:
            m = torch.rand((1, h, w), generator=g) * 2.0 - 0.5
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = IPAdapterMaskProcessor.downsample(m, 1, lq, 1)
        warned = any("aspect ratio" in str(x.message) for x in caught)
        key = f"downsample.{i}"
        tensors[key + ".mask"] = m[0].contiguous()
        tensors[key + ".out"] = out.reshape(-1).contiguous()
        cases.append({"key": key, "height": h, "width": w, "queries": lq, "warned": warned})

    # mask images for preprocess
    imgs = {}
    a = Image.new("L", (75, 50), 0)
    d = ImageDraw.Draw(a)
    d.ellipse((10, 5, 60, 45), fill=255)
    d.rectangle((0, 0, 12, 12), fill=140)
    imgs["ellipse-l.png"] = a
    b = Image.new("RGB", (40, 60), (0, 0, 0))
    d = ImageDraw.Draw(b)
    d.rectangle((0, 0, 19, 59), fill=(255, 255, 255))
    d.rectangle((20, 20, 39, 40), fill=(120, 200, 60))
    imgs["halves-rgb.png"] = b
    grad = np.tile(np.linspace(0, 255, 33).astype(np.uint8), (33, 1))
    imgs["gradient-l.png"] = Image.fromarray(grad, mode="L")
    for name, im in imgs.items():
        im.save(os.path.join(MASKS, name), optimize=False)
    pre = []
    proc = IPAdapterMaskProcessor()
    for name, (hh, ww) in [("ellipse-l.png", (48, 72)), ("ellipse-l.png", (64, 64)), ("halves-rgb.png", (64, 40)),
                           ("gradient-l.png", (32, 32)), ("gradient-l.png", (16, 40))]:
        im = Image.open(os.path.join(MASKS, name))
        out = proc.preprocess([im], height=hh, width=ww)  # [1, 1, H, W]
        key = f"preprocess.{len(pre)}"
        tensors[key] = out[0, 0].contiguous().float()
        pre.append({"key": key, "file": name, "height": hh, "width": ww})
    with open(os.path.join(OUT, "masks.json"), "w") as f:
        json.dump({"downsample": cases, "preprocess": pre}, f, indent=1, sort_keys=True)
        f.write("\n")


def gen_combine(tensors):
    """combine_embeds of ComfyUI (ipadapter_execute) on [N, D] and [N, L, H] embeds."""
    g = torch.Generator().manual_seed(7)
    for shape in [(3, 5), (4, 3, 6), (2, 7)]:
        e = torch.randn(shape, generator=g)
        tag = "x".join(map(str, shape))
        tensors[f"combine.{tag}.in"] = e
        tensors[f"combine.{tag}.add"] = torch.sum(e, dim=0).unsqueeze(0)
        tensors[f"combine.{tag}.subtract"] = (e[0] - torch.mean(e[1:], dim=0)).unsqueeze(0)
        tensors[f"combine.{tag}.average"] = torch.mean(e, dim=0).unsqueeze(0)
        tensors[f"combine.{tag}.norm_average"] = torch.mean(e / torch.norm(e, dim=0, keepdim=True), dim=0).unsqueeze(0)
        tensors[f"combine.{tag}.max"] = torch.max(e, dim=0).values.unsqueeze(0)
        tensors[f"combine.{tag}.min"] = torch.min(e, dim=0).values.unsqueeze(0)


def sdpa(q, k, v, heads):
    b, lq, c = q.shape
    d = c // heads
    qh = q.view(b, -1, heads, d).transpose(1, 2)
    kh = k.view(b, -1, heads, d).transpose(1, 2)
    vh = v.view(b, -1, heads, d).transpose(1, 2)
    o = F.scaled_dot_product_attention(qh, kh, vh)
    return o.transpose(1, 2).reshape(b, -1, c)


def gen_scaling(tensors):
    """ComfyUI ipadapter_attention embeds_scaling on random q, K_ip, V_ip (out_ip, before the mask)."""
    g = torch.Generator().manual_seed(11)
    for c, heads in [(320, 5), (640, 10)]:
        q = torch.randn((2, 5, c), generator=g)
        k = torch.randn((2, 4, c), generator=g) * 0.5
        v = torch.randn((2, 4, c), generator=g)
        tensors[f"scaling.{c}.q"], tensors[f"scaling.{c}.k"], tensors[f"scaling.{c}.v"] = q, k, v
        for w in ([0.7, 1.6, -0.4] if c == 320 else [1.3]):
            tag = f"scaling.{c}.{w}"
            tensors[tag + ".v_only"] = sdpa(q, k, v, heads) * w
            tensors[tag + ".kv"] = sdpa(q, k * w, v * w, heads)
            wp = w * (c / 1280.0)
            tensors[tag + ".kv_penalty"] = sdpa(q, k * wp, v * wp, heads)
            m = torch.mean(v, dim=1, keepdim=True)
            tensors[tag + ".k_mean_v_penalty"] = sdpa(q, k * wp, (v - m) + m * wp, heads)


def comfy_noise(kind, strength, blur):
    """IPAdapter Noise node without image_optional: the black 224x224 base, seed = sum(image) = 0."""
    image = torch.zeros([1, 224, 224, 3])
    seed = int(torch.sum(image).item()) % 1000000007
    torch.manual_seed(seed)
    if kind == "fade":
        noise = image * (1 - strength) + torch.rand_like(image) * strength
    elif kind == "dissolve":
        mask = (torch.rand_like(image) < strength).float()
        noise = torch.rand_like(image)
        noise = image * (1 - mask) + noise * mask
    elif kind == "gaussian":
        noise = image + torch.randn_like(image) * strength
    noise = torch.clamp(noise, 0, 1)
    if blur > 0:
        if blur % 2 == 0:
            blur += 1
        # torchvision.transforms.v2.functional.gaussian_blur(img, blur) with sigma=None
        sigma = blur * 0.15 + 0.35
        lim = (blur - 1) / (2.0 * math.sqrt(2.0))
        x = torch.linspace(-lim, lim, steps=blur)
        k1 = torch.softmax(x.div(sigma).pow(2).neg(), dim=0)
        k2 = k1.unsqueeze(-1) * k1
        img = noise.permute([0, 3, 1, 2])
        kernel = k2.expand(3, 1, blur, blur)
        img = F.pad(img, [blur // 2] * 4, mode="reflect")
        noise = F.conv2d(img, kernel, groups=3).permute([0, 2, 3, 1])
    return noise[0]


def gen_noise(tensors):
    cases = [("fade", 0.3, 5), ("fade", 1.0, 0), ("dissolve", 0.4, 0), ("gaussian", 0.5, 0), ("gaussian", 0.25, 4)]
    meta = []
    for kind, s, blur in cases:
        n = comfy_noise(kind, s, blur)
        key = f"noise.{kind}.{s}.{blur}"
        tensors[key + ".rows"] = n[:12].contiguous()       # first 12 rows (reflect border included)
        tensors[key + ".sum"] = torch.tensor([n.double().sum().item()], dtype=torch.float32)
        if kind == "fade" and blur > 0:  # one full image, 8-bit as ComfyUI's clip_preprocess quantises it
            tensors[key + ".u8"] = torch.clip(255.0 * n, 0, 255).round().to(torch.uint8).contiguous()
        meta.append({"key": key, "type": kind, "strength": s, "blur": blur})
    with open(os.path.join(OUT, "noise.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")


def main():
    gen_scales()
    tensors = {}
    gen_masks(tensors)
    gen_combine(tensors)
    gen_scaling(tensors)
    gen_noise(tensors)
    save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, os.path.join(OUT, "goldens.safetensors"))


if __name__ == "__main__":
    main()
