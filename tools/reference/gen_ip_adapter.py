"""Tiny IP-Adapter fixtures (h94/IP-Adapter folder layout) and diffusers goldens.

Writes
  Tests/Fixtures/tiny-ip-adapter/models/image_encoder/        ViT-H-like tiny CLIPVisionModelWithProjection
  Tests/Fixtures/tiny-ip-adapter/sdxl_models/image_encoder/   ViT-bigG-like tiny encoder (other widths)
  Tests/Fixtures/tiny-ip-adapter/models/ip-adapter_sd15.safetensors          global (ImageProjModel, 4 tokens)
  Tests/Fixtures/tiny-ip-adapter/models/ip-adapter-plus_sd15.{safetensors,bin}  Resampler
  Tests/Fixtures/tiny-ip-adapter/models/ip-adapter-full-face_sd15.safetensors   MLPProjModel
  Tests/Fixtures/tiny-ip-adapter/models/ip-adapter_sd15_vit-G.safetensors    global, needs the bigG-like encoder
  Tests/Fixtures/tiny-ip-adapter/models/ip-adapter-plus-posemb.safetensors   Resampler with pos_emb + mean-pooled latents
  Tests/Fixtures/images/*.png                                   reference images
  Tests/Fixtures/goldens/ip-adapter-modules.safetensors          encoder, projections, UNet-with-adapter tensors
  Tests/Fixtures/goldens/ip-adapter-e2e/*.{png,safetensors}      diffusers end-to-end results
The adapters are in the original checkpoint layout (`image_proj.*`, `ip_adapter.N.to_{k,v}_ip.weight`)
with fp16 values as the releases ship them. The official Resampler (for the pos_emb variant, which
diffusers cannot load) comes from the `ip-adapter` wheel on PyPI, downloaded to a temp folder.
Run: tools/reference/.venv/bin/python tools/reference/gen_ip_adapter.py (after gen_sd15.py)
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
import tiny_models  # noqa: E402

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures"))
PIPE = os.path.join(FIX, "tiny-sd15")
ROOT = os.path.join(FIX, "tiny-ip-adapter")
MODELS = os.path.join(ROOT, "models")
IMAGES = os.path.join(FIX, "images")
GOLD = os.path.join(FIX, "goldens")

ENCODER_H = dict(hidden_size=40, intermediate_size=56, projection_dim=28, num_hidden_layers=3,
                 num_attention_heads=5, image_size=224, patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5)
ENCODER_G = dict(hidden_size=44, intermediate_size=60, projection_dim=36, num_hidden_layers=2,
                 num_attention_heads=4, image_size=224, patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5)
CROSS = tiny_models.UNET["cross_attention_dim"]
PROMPT = "a red cube"
NEGATIVE = "blurry, low quality"


def official_resampler_module():
    """Imports resampler.py from the PyPI `ip-adapter` 0.1.0 wheel (the official code)."""
    tmp = tempfile.mkdtemp()
    subprocess.run([sys.executable, "-m", "pip", "download", "ip-adapter==0.1.0", "--no-deps", "-q", "-d", tmp], check=True)
    wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
    with zipfile.ZipFile(wheel) as z:
        z.extract("ip_adapter/resampler.py", tmp)
    sys.path.insert(0, os.path.join(tmp, "ip_adapter"))
    import resampler  # noqa

    return resampler


def rounded(t):
    """fp16 values (as the releases store them) in an fp32 tensor."""
    return t.half().float()


def cross_layers(unet):
    """(hidden) of every attn2, in diffusers' attention-processor order."""
    return [unet.attn_processors_hidden[name] for name in unet.attn_processors_hidden]


def ip_layers(unet, g):
    sd = {}
    key = 1
    for name, proc in unet.attn_processors.items():
        if name.endswith("attn1.processor"):
            continue
        block = unet.get_submodule(name[: -len(".processor")])
        hidden = block.to_q.out_features
        sd[f"{key}.to_k_ip.weight"] = rounded(torch.randn(hidden, CROSS, generator=g) / CROSS**0.5)
        sd[f"{key}.to_v_ip.weight"] = rounded(torch.randn(hidden, CROSS, generator=g) / CROSS**0.5)
        key += 2
    return sd


def norm(dim, g):
    return {"weight": rounded(1 + 0.2 * torch.randn(dim, generator=g)), "bias": rounded(0.2 * torch.randn(dim, generator=g))}


def lin(out_f, in_f, g, bias=True):
    d = {"weight": rounded(torch.randn(out_f, in_f, generator=g) / in_f**0.5)}
    if bias:
        d["bias"] = rounded(0.1 * torch.randn(out_f, generator=g))
    return d


def put(sd, prefix, d):
    for k, v in d.items():
        sd[f"{prefix}.{k}"] = v


def global_proj(embed_dim, tokens, g):
    sd = {}
    put(sd, "proj", lin(tokens * CROSS, embed_dim, g))
    put(sd, "norm", norm(CROSS, g))
    return sd


def full_proj(clip_dim, g):
    sd = {}
    put(sd, "proj.0", lin(clip_dim, clip_dim, g))
    put(sd, "proj.2", lin(CROSS, clip_dim, g))
    put(sd, "proj.3", norm(CROSS, g))
    return sd


def plus_proj(g, dim=36, depth=4, heads=2, queries=6, embed=40, ff=4, pos=None, pooled=0):
    inner = heads * 64
    sd = {"latents": rounded(torch.randn(1, queries, dim, generator=g) / dim**0.5)}
    put(sd, "proj_in", lin(dim, embed, g))
    put(sd, "proj_out", lin(CROSS, dim, g))
    put(sd, "norm_out", norm(CROSS, g))
    for i in range(depth):
        put(sd, f"layers.{i}.0.norm1", norm(dim, g))
        put(sd, f"layers.{i}.0.norm2", norm(dim, g))
        put(sd, f"layers.{i}.0.to_q", lin(inner, dim, g, bias=False))
        put(sd, f"layers.{i}.0.to_kv", lin(2 * inner, dim, g, bias=False))
        put(sd, f"layers.{i}.0.to_out", lin(dim, inner, g, bias=False))
        put(sd, f"layers.{i}.1.0", norm(dim, g))
        put(sd, f"layers.{i}.1.1", lin(dim * ff, dim, g, bias=False))
        put(sd, f"layers.{i}.1.3", lin(dim, dim * ff, g, bias=False))
    if pos:
        sd["pos_emb.weight"] = rounded(0.1 * torch.randn(pos, embed, generator=g))
    if pooled:
        put(sd, "to_latents_from_mean_pooled_seq.0", norm(dim, g))
        put(sd, "to_latents_from_mean_pooled_seq.1", lin(dim * pooled, dim, g))
    return sd


def save_adapter(name, image_proj, ip_adapter, bin_too=False):
    flat = {f"image_proj.{k}": v.half().contiguous() for k, v in image_proj.items()}
    flat.update({f"ip_adapter.{k}": v.half().contiguous() for k, v in ip_adapter.items()})
    save_file(flat, os.path.join(MODELS, f"{name}.safetensors"))
    if bin_too:
        # Like the released .bin files: fp32 image_proj, fp16 ip_adapter (same values as the
        # .safetensors, which stores everything in fp16).
        torch.save({"image_proj": {k: v.float().contiguous() for k, v in image_proj.items()},
                    "ip_adapter": {k: v.half().contiguous() for k, v in ip_adapter.items()}},
                   os.path.join(MODELS, f"{name}.bin"))


def write_encoder(folder, config, seed):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**config)).eval()
    tiny_models.scale_parameters(model, g)
    tiny_models.randomise_norms(model, g)
    model.save_pretrained(folder, safe_serialization=True)
    tiny_models.normalise_configs(folder)


def write_images():
    os.makedirs(IMAGES, exist_ok=True)
    rng = np.random.RandomState(5)
    # 300×200 RGB: gradients, a disc and noise (non-square: exercises resize + centre crop).
    y, x = np.mgrid[0:200, 0:300]
    a = np.stack([x * 255 / 299, y * 255 / 199, (x + y) * 255 / 498], -1)
    a = (a * 0.7 + rng.randint(0, 60, a.shape)).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(a, "RGB")
    d = ImageDraw.Draw(img)
    d.ellipse((90, 40, 210, 160), fill=(230, 40, 30))
    img.save(os.path.join(IMAGES, "reference.png"))
    # 160×240 second image: stripes.
    b = np.zeros((240, 160, 3), np.uint8)
    b[:, :, 0] = (np.arange(160) // 20 % 2 * 200)[None, :]
    b[:, :, 1] = (np.arange(240) // 30 % 2 * 180)[:, None]
    b[:, :, 2] = 90
    Image.fromarray(b, "RGB").save(os.path.join(IMAGES, "stripes.png"))


def load_pipeline():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(PIPE, torch_dtype=torch.float32, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_adapters(pipe, names, encoder="image_encoder"):
    pipe.load_ip_adapter(ROOT, subfolder=["models"] * len(names), weight_name=[f"{n}.safetensors" for n in names],
                         image_encoder_folder=encoder if "/" in encoder else encoder)


def main():
    torch.manual_seed(0)
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(MODELS)
    write_images()
    write_encoder(os.path.join(MODELS, "image_encoder"), ENCODER_H, 11)
    write_encoder(os.path.join(ROOT, "sdxl_models", "image_encoder"), ENCODER_G, 12)

    pipe = load_pipeline()
    g = torch.Generator().manual_seed(21)
    layers = lambda: ip_layers(pipe.unet, g)  # noqa: E731
    adapters = {
        "ip-adapter_sd15": (global_proj(ENCODER_H["projection_dim"], 4, g), layers()),
        "ip-adapter-plus_sd15": (plus_proj(g), layers()),
        "ip-adapter-full-face_sd15": (full_proj(ENCODER_H["hidden_size"], g), layers()),
        "ip-adapter_sd15_vit-G": (global_proj(ENCODER_G["projection_dim"], 4, g), layers()),
        "ip-adapter-plus-posemb": (plus_proj(g, depth=2, queries=5, pos=257, pooled=3), layers()),
    }
    for name, (proj, ip) in adapters.items():
        save_adapter(name, proj, ip, bin_too=(name == "ip-adapter-plus_sd15"))

    ref = Image.open(os.path.join(IMAGES, "reference.png")).convert("RGB")
    stripes = Image.open(os.path.join(IMAGES, "stripes.png")).convert("RGB")
    t = {}
    gg = torch.Generator().manual_seed(3)
    sample = torch.randn(2, 4, 8, 8, generator=gg)
    context = torch.randn(2, 77, CROSS, generator=gg)
    t["unet.sample"] = sample
    t["unet.context"] = context

    os.makedirs(os.path.join(GOLD, "ip-adapter-e2e"), exist_ok=True)
    for name in ["ip-adapter_sd15", "ip-adapter-plus_sd15", "ip-adapter-full-face_sd15"]:
        pipe = load_pipeline()
        load_adapters(pipe, [name])
        pipe.set_ip_adapter_scale(0.6)
        with torch.no_grad():
            if "encoder.image_embeds" not in t:
                pixel = pipe.feature_extractor([ref], return_tensors="pt").pixel_values
                out = pipe.image_encoder(pixel, output_hidden_states=True)
                t["encoder.image_embeds"] = out.image_embeds
                t["encoder.hidden_states_-2"] = out.hidden_states[-2]
                t["encoder.zero_hidden_states_-2"] = pipe.image_encoder(
                    torch.zeros_like(pixel), output_hidden_states=True).hidden_states[-2]
            embeds = pipe.prepare_ip_adapter_image_embeds([ref], None, "cpu", 1, True)
            tokens = pipe.unet.encoder_hid_proj(embeds)[0]  # [2, N, T, C], negative first
            t[f"{name}.tokens_uncond"] = tokens[0].reshape(1, -1, CROSS)
            t[f"{name}.tokens_cond"] = tokens[1].reshape(1, -1, CROSS)
            t[f"{name}.unet_out_t500"] = pipe.unet(
                sample, 500, encoder_hidden_states=context, added_cond_kwargs={"image_embeds": embeds}).sample
        run_e2e(pipe, name, ip_adapter_image=ref)

    # Two images for one adapter (tokens concatenated), and two adapters with their own scales.
    pipe = load_pipeline()
    load_adapters(pipe, ["ip-adapter-plus_sd15"])
    pipe.set_ip_adapter_scale(0.8)
    run_e2e(pipe, "plus-two-images", ip_adapter_image=[[ref, stripes]])
    pipe = load_pipeline()
    load_adapters(pipe, ["ip-adapter_sd15", "ip-adapter-plus_sd15"])
    pipe.set_ip_adapter_scale([0.7, 0.3])
    run_e2e(pipe, "global-and-plus", ip_adapter_image=[ref, stripes])

    # The vit-G global adapter needs the other encoder.
    pipe = load_pipeline()
    pipe.load_ip_adapter(ROOT, subfolder="models", weight_name="ip-adapter_sd15_vit-G.safetensors",
                         image_encoder_folder="sdxl_models/image_encoder")
    with torch.no_grad():
        embeds = pipe.prepare_ip_adapter_image_embeds([ref], None, "cpu", 1, True)
        tokens = pipe.unet.encoder_hid_proj(embeds)[0]
        t["vit-G.tokens_cond"] = tokens[1].reshape(1, -1, CROSS)

    # The official Resampler with pos_emb and mean-pooled latents (diffusers cannot load it).
    resampler = official_resampler_module()
    proj, _ = adapters["ip-adapter-plus-posemb"]
    model = resampler.Resampler(dim=36, depth=2, dim_head=64, heads=2, num_queries=5, embedding_dim=40,
                                output_dim=CROSS, ff_mult=4, max_seq_len=257, apply_pos_emb=True,
                                num_latents_mean_pooled=3).eval()
    model.load_state_dict({k: v.float() for k, v in proj.items()})
    with torch.no_grad():
        feats = t["encoder.hidden_states_-2"]
        t["posemb.tokens_cond"] = model(feats)

    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(GOLD, "ip-adapter-modules.safetensors"))


def run_e2e(pipe, name, **kwargs):
    captured = {}

    def grab(p, i, ts, kw):
        captured["latents"] = kw["latents"].clone()
        return kw

    result = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=4, guidance_scale=7.5,
                  generator=torch.Generator("cpu").manual_seed(0), output_type="pil",
                  callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"], **kwargs)
    out = os.path.join(GOLD, "ip-adapter-e2e")
    result.images[0].save(os.path.join(out, f"{name}.png"))
    save_file({"latents": captured["latents"].contiguous()}, os.path.join(out, f"{name}.safetensors"))


if __name__ == "__main__":
    main()
