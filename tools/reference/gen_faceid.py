"""Tiny IP-Adapter FaceID fixtures (h94/IP-Adapter-FaceID layout) and reference results.

Writes Tests/Fixtures/faceid/
  ip-adapter-faceid_sd15.bin               MLPProjModel (4 tokens) + to_k_ip/to_v_ip + FaceID LoRA on every processor
  ip-adapter-faceid_sd15_lora.safetensors  the same LoRA in the kohya layout h94 ships (no .alpha keys)
  ip-adapter-faceid-plus_sd15.bin          ProjPlusModel (MLP + FacePerceiverResampler over CLIP features) + LoRA
  ip-adapter-faceid-plusv2_sd15.bin        same architecture, other weights (used with shortcut=True) + LoRA
  ip-adapter-faceid-portrait_sd15.bin      MLPProjModel with 16 tokens per face, no LoRA
  ip-adapter-faceid_sdxl.bin, ip-adapter-faceid-plusv2_sdxl.bin, ip-adapter-faceid-portrait_sdxl.bin  (tiny-sdxl)
  face-a.npy [ID], face-b.npy [1, ID], faces-3.npy [3, ID]   L2-normalised like insightface `normed_embedding`
  face-crop.png                            224x224 RGB synthetic face (stands in for insightface norm_crop output)
  reference.safetensors + reference.json   projection tokens (official classes), CLIP features, UNet outputs, e2e latents
  e2e-*.png                                diffusers end-to-end images
All adapters are torch.save'd {"image_proj": {...}, "ip_adapter": {...}} with every tensor in fp16 (as the
releases are); the values are fp16-exact, every reference is computed in fp32.

The official code (tencent-ailab/IP-Adapter, pinned commit below) is read at run time from a git directory
(env IP_ADAPTER_REPO, default: the local mirror; else cloned from GitHub) into a temporary folder that is
deleted afterwards; nothing of it is stored in this repository.
Run after gen_sd15.py, gen_ip_adapter.py and gen_sdxl.py:
  tools/reference/.venv/bin/python tools/reference/gen_faceid.py
"""
import hashlib
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
import tiny_models  # noqa: E402

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures"))
OUT = os.path.join(FIX, "faceid")
SD15 = os.path.join(FIX, "tiny-sd15")
SDXL = os.path.join(FIX, "tiny-sdxl")
ENCODER = os.path.join(FIX, "tiny-ip-adapter", "models", "image_encoder")  # ViT-H-like, hidden 40

OFFICIAL_COMMIT = "62e4af9d0c1ac7d5f8dd386a0ccf2211346af1a2"
OFFICIAL_DEFAULT = "/work/.mirror/tencent-ailab+IP-Adapter/repo"
OFFICIAL_FILES = ["ip_adapter_faceid.py", "ip_adapter_faceid_separate.py", "attention_processor_faceid.py",
                  "attention_processor.py", "resampler.py", "utils.py"]

ID_DIM = 24          # face-ID embedding width (512 in the releases)
CLIP_DIM = 40        # hidden size of the tiny ViT-H-like encoder (1280 in ViT-H)
CROSS = {"sd15": 20, "sdxl": 50}
PROMPT = "a portrait"
NEGATIVE = "blurry"
IP_SCALE = 0.8
STEPS = 3
SIZE = 64
GUIDANCE = 7.5
SEED = 0

# name: (model, kind, IP tokens per face, FaceID LoRA rank or None, perceiver heads or None, seed).
# The perceiver's dim_head is hard-coded 64 (official and diffusers), so inner width = 64 * heads != cross.
# The SDXL LoRAs use rank 2 (sd15: 4) and the SDXL perceiver 1 head, to keep the fixture small.
ADAPTERS = {
    "ip-adapter-faceid_sd15": ("sd15", "faceid", 4, 4, None, 101),
    "ip-adapter-faceid-plus_sd15": ("sd15", "plus", 4, 4, 2, 102),
    "ip-adapter-faceid-plusv2_sd15": ("sd15", "plusv2", 4, 4, 1, 103),
    "ip-adapter-faceid-portrait_sd15": ("sd15", "portrait", 16, None, None, 104),
    "ip-adapter-faceid_sdxl": ("sdxl", "faceid", 4, 2, None, 105),
    "ip-adapter-faceid-plusv2_sdxl": ("sdxl", "plusv2", 4, 2, 1, 106),
    "ip-adapter-faceid-portrait_sdxl": ("sdxl", "portrait", 16, None, None, 107),
}
REF = {}     # tensors of reference.safetensors
INFO = {}    # reference.json


# ----------------------------------------------------------------------------------------------- official code

def official_modules():
    """Imports the official FaceID modules from the pinned commit, via a temporary package folder."""
    src = os.environ.get("IP_ADAPTER_REPO", OFFICIAL_DEFAULT)
    tmp = tempfile.mkdtemp(prefix="ip-adapter-official-")
    if not os.path.exists(src):
        src = os.path.join(tmp, "repo.git")
        subprocess.run(["git", "clone", "-q", "--bare", "https://github.com/tencent-ailab/IP-Adapter", src], check=True)
    git_dir = os.path.join(src, ".git") if os.path.isdir(os.path.join(src, ".git")) else src
    pkg = os.path.join(tmp, "ip_adapter")
    os.makedirs(pkg)
    open(os.path.join(pkg, "__init__.py"), "w").close()  # our own empty package init (the official one imports more)
    for f in OFFICIAL_FILES:
        text = subprocess.run(["git", "--git-dir", git_dir, "show", f"{OFFICIAL_COMMIT}:ip_adapter/{f}"],
                              check=True, capture_output=True).stdout
        with open(os.path.join(pkg, f), "wb") as fh:
            fh.write(text)
    # ip_adapter_faceid*.py import MultiControlNetModel (unused by FaceID) from its pre-0.30 location.
    import diffusers
    import diffusers.pipelines.controlnet as cn

    if not hasattr(cn, "MultiControlNetModel"):
        cn.MultiControlNetModel = diffusers.MultiControlNetModel
    sys.path.insert(0, tmp)
    mods = {name: importlib.import_module(f"ip_adapter.{name}") for name in
            ("ip_adapter_faceid", "ip_adapter_faceid_separate", "attention_processor_faceid", "attention_processor")}
    sys.path.remove(tmp)
    return tmp, mods


# ----------------------------------------------------------------------------------------------- inputs

def unit(v):
    v = v.astype(np.float32)
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def write_inputs():
    rng = np.random.RandomState(2024)
    face_a = unit(rng.randn(ID_DIM))
    face_b = unit(rng.randn(1, ID_DIM))
    faces3 = unit(rng.randn(3, ID_DIM))
    np.save(os.path.join(OUT, "face-a.npy"), face_a)
    np.save(os.path.join(OUT, "face-b.npy"), face_b)
    np.save(os.path.join(OUT, "faces-3.npy"), faces3)

    # A synthetic aligned face crop, 224x224 RGB (what insightface norm_crop(image_size=224) would hand over).
    y, x = np.mgrid[0:224, 0:224]
    bg = np.stack([60 + x * 0.3, 90 + y * 0.35, 150 - y * 0.2], -1)
    img = Image.fromarray(bg.clip(0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    d.rectangle((62, 180, 162, 224), fill=(70, 80, 120))          # shoulders
    d.rectangle((96, 150, 128, 190), fill=(205, 160, 130))        # neck
    d.ellipse((52, 18, 172, 130), fill=(60, 40, 25))              # hair
    d.ellipse((62, 40, 162, 178), fill=(225, 182, 150))           # face
    d.ellipse((56, 90, 70, 118), fill=(215, 170, 140))            # ears
    d.ellipse((154, 90, 168, 118), fill=(215, 170, 140))
    d.rectangle((80, 82, 102, 86), fill=(70, 45, 30))             # brows
    d.rectangle((122, 80, 144, 84), fill=(70, 45, 30))
    for cx in (91, 133):                                          # eyes
        d.ellipse((cx - 11, 93, cx + 11, 105), fill=(245, 245, 240))
        d.ellipse((cx - 5, 94, cx + 5, 104), fill=(80, 110, 60))
        d.ellipse((cx - 2, 97, cx + 2, 101), fill=(10, 10, 10))
    d.polygon([(112, 105), (103, 134), (121, 134)], fill=(205, 155, 125))  # nose
    d.chord((92, 140, 132, 162), 0, 180, fill=(170, 60, 70))      # mouth
    img.save(os.path.join(OUT, "face-crop.png"))
    INFO["inputs"] = {
        "face-a.npy": {"shape": [ID_DIM], "dtype": "float32", "rule": "unit L2 norm"},
        "face-b.npy": {"shape": [1, ID_DIM], "dtype": "float32", "rule": "unit L2 norm"},
        "faces-3.npy": {"shape": [3, ID_DIM], "dtype": "float32", "rule": "each row unit L2 norm"},
        "face-crop.png": {"size": [224, 224], "mode": "RGB"},
    }
    return torch.from_numpy(face_a), torch.from_numpy(face_b), torch.from_numpy(faces3), img


# ----------------------------------------------------------------------------------------------- weights

def fill(module, g, lora_up_scale=0.5):
    """Random, fp16-exact parameters (O(1) activations); LoRA up weights are non-zero (scaled by 0.5)."""
    tiny_models.scale_parameters(module, g)
    tiny_models.randomise_norms(module, g)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("lora.up.weight"):
                p.mul_(lora_up_scale)
            p.copy_(p.half().float())


def hidden_size(unet, name):
    """The official set_ip_adapter rule (block_out_channels by block)."""
    cfg = unet.config
    if name.startswith("mid_block"):
        return cfg.block_out_channels[-1]
    block_id = int(name[len("up_blocks."):].split(".")[0]) if name.startswith("up_blocks") else \
        int(name[len("down_blocks."):].split(".")[0])
    return list(reversed(cfg.block_out_channels))[block_id] if name.startswith("up_blocks") else \
        cfg.block_out_channels[block_id]


def official_processors(mods, unet, tokens, rank):
    """The processors the official classes install, in unet.attn_processors order (== the N of ip_adapter.N)."""
    fid = mods["attention_processor_faceid"]
    ap = mods["attention_processor"]
    procs = {}
    for name in unet.attn_processors.keys():
        cross = None if name.endswith("attn1.processor") else unet.config.cross_attention_dim
        h = hidden_size(unet, name)
        assert h == unet.get_submodule(name[: -len(".processor")]).to_q.out_features
        if rank:
            procs[name] = fid.LoRAAttnProcessor2_0(hidden_size=h, cross_attention_dim=cross, rank=rank) if cross is None \
                else fid.LoRAIPAttnProcessor2_0(hidden_size=h, cross_attention_dim=cross, scale=1.0, rank=rank,
                                                num_tokens=tokens)
        else:
            procs[name] = ap.AttnProcessor2_0() if cross is None else \
                ap.IPAttnProcessor2_0(hidden_size=h, cross_attention_dim=cross, scale=1.0, num_tokens=tokens)
    return procs


def face_resampler(mods, cross, heads):
    return mods["ip_adapter_faceid"].FacePerceiverResampler(
        dim=cross, depth=4, dim_head=64, heads=heads, embedding_dim=CLIP_DIM, output_dim=cross, ff_mult=4)


def projection_model(mods, name):
    """The official image_proj module. ProjPlusModel hard-codes heads = cross // 64 (0 for our tiny widths), so its
    FacePerceiverResampler is rebuilt with the same hard-coded depth 4 / dim_head 64 / ff_mult 4 and explicit heads."""
    m = mods["ip_adapter_faceid"]
    model, kind, tokens, _, heads, _ = ADAPTERS[name]
    cross = CROSS[model]
    if kind in ("faceid", "portrait"):
        return m.MLPProjModel(cross_attention_dim=cross, id_embeddings_dim=ID_DIM, num_tokens=tokens).eval()
    proj = m.ProjPlusModel(cross_attention_dim=cross, id_embeddings_dim=ID_DIM, clip_embeddings_dim=CLIP_DIM,
                           num_tokens=tokens)
    proj.perceiver_resampler = face_resampler(mods, cross, heads)
    return proj.eval()


def build_adapters(mods, unets):
    adapters = {}
    for name, (model, kind, tokens, rank, _, seed) in ADAPTERS.items():
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        proj = projection_model(mods, name)
        fill(proj, g)
        procs = official_processors(mods, unets[model], tokens, rank)
        layers = torch.nn.ModuleList(procs.values())
        fill(layers, g)
        sd = {"image_proj": {k: v.detach().half().contiguous() for k, v in proj.state_dict().items()},
              "ip_adapter": {k: v.detach().half().contiguous() for k, v in layers.state_dict().items()}}
        buf = io.BytesIO()
        torch.save(sd, buf)  # a buffer, so the zip's root folder is "archive/" (shorter entry names than the file stem)
        with open(os.path.join(OUT, f"{name}.bin"), "wb") as fh:
            fh.write(buf.getvalue())
        adapters[name] = sd
    return adapters


def kohya_lora(sd, unet):
    """`N.to_{q,k,v,out}_lora.{down,up}.weight` -> `lora_unet_<module path with _>_to_{q,k,v,out_0}.lora_{down,up}.weight`."""
    out = {}
    for n, name in enumerate(unet.attn_processors.keys()):
        path = name[: -len(".processor")].replace(".", "_")
        for proj, target in (("to_q", "to_q"), ("to_k", "to_k"), ("to_v", "to_v"), ("to_out", "to_out_0")):
            for part in ("down", "up"):
                out[f"lora_unet_{path}_{target}.lora_{part}.weight"] = sd["ip_adapter"][f"{n}.{proj}_lora.{part}.weight"]
    return out


def key_table(sd):
    """image_proj: every key; ip_adapter: the keys of processors 0 and 1 and the index ranges."""
    ip = sd["ip_adapter"]
    idx = sorted({int(k.split(".")[0]) for k in ip})
    kip = sorted({int(k.split(".")[0]) for k in ip if ".to_k_ip." in k})
    lora = sorted({int(k.split(".")[0]) for k in ip if "_lora." in k})
    return {"image_proj": {k: list(v.shape) for k, v in sd["image_proj"].items()},
            "ip_adapter_count": len(ip),
            "ip_adapter_N_with_to_k_ip": f"{kip[0]}..{kip[-1]} step 2 ({len(kip)})",
            "ip_adapter_N_with_lora": f"{lora[0]}..{lora[-1]} ({len(lora)})" if lora else "none",
            "ip_adapter_examples": {k: list(v.shape) for k, v in ip.items() if k.split(".")[0] in ("0", "1")},
            "ip_adapter_all_N": f"{idx[0]}..{idx[-1]}"}


# ----------------------------------------------------------------------------------------------- CLIP

def clip_features(face_img):
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    enc = CLIPVisionModelWithProjection.from_pretrained(ENCODER, torch_dtype=torch.float32).eval()
    processor = CLIPImageProcessor()  # what the official IPAdapterFaceIDPlus constructs (no arguments)
    pixels = processor(images=face_img, return_tensors="pt").pixel_values
    mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float64)
    std = np.array([0.26862954, 0.26130258, 0.27577711], np.float64)
    manual = ((np.asarray(face_img, np.float64) / 255.0 - mean) / std).transpose(2, 0, 1)[None]
    pix_diff = float(np.abs(pixels.double().numpy() - manual).max())
    with torch.no_grad():
        face = enc(pixels, output_hidden_states=True).hidden_states[-2]
        zero = enc(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
    REF["clip/face"] = face
    REF["clip/zero"] = zero
    REF["clip/pixel_values_row112"] = pixels[0, :, 112, :].contiguous()  # spot check of the preprocessing
    INFO["clip"] = {
        "encoder": "Tests/Fixtures/tiny-ip-adapter/models/image_encoder (CLIPVisionModelWithProjection, hidden 40, 3 layers)",
        "processor": f"transformers CLIPImageProcessor() defaults ({type(processor).__name__}): RGB, resize shortest "
                     "edge 224 bicubic, centre crop 224, x/255, normalise with the OpenAI CLIP mean/std; for the 224x224 "
                     "face-crop.png resize and crop are identities",
        "image": "face-crop.png loaded with PIL .convert('RGB') (RGB order, not the BGR numpy array of the official demo)",
        "mean": mean.tolist(), "std": std.tolist(),
        "pixel_values_vs_manual_float64_max_abs": pix_diff,
        "features": "hidden_states[-2] (output of encoder layer 2 of 3, no post_layernorm), [1, 257, 40]",
        "clip/zero": "same encoder on torch.zeros_like(pixel_values) (zero in normalised space)",
        "clip/pixel_values_row112": "pixel_values[0, :, 112, :] -> [3, 224]",
    }
    return face, zero


# ----------------------------------------------------------------------------------------------- tokens

def official_tokens(mods, adapters, faces, clip):
    face_a, _, faces3 = faces
    clip_face, clip_zero = clip
    for name, (model, kind, tokens, _, _, _) in ADAPTERS.items():
        proj = projection_model(mods, name)
        proj.load_state_dict(adapters[name]["image_proj"])  # strict
        with torch.no_grad():
            if kind == "faceid":
                REF[f"{name}/cond"] = proj(face_a[None])
                REF[f"{name}/uncond"] = proj(torch.zeros(1, ID_DIM))
                if name == "ip-adapter-faceid_sd15":
                    REF[f"{name}/cond_face-b"] = proj(faces[1])
            elif kind == "portrait":
                # ip_adapter_faceid_separate.get_image_embeds: [b, n, D] -> [b*n, D] -> proj -> [b, n*16, C]
                emb = faces3[None]
                b, n, c = emb.shape
                REF[f"{name}/cond"] = proj(emb.reshape(b * n, c)).reshape(b, -1, CROSS[model])
                REF[f"{name}/uncond"] = proj(torch.zeros(b * n, c)).reshape(b, -1, CROSS[model])
            else:
                x = proj.norm(proj.proj(face_a[None]).reshape(-1, tokens, CROSS[model]))
                REF[f"{name}/id_tokens"] = x
                if kind == "plus":
                    REF[f"{name}/cond"] = proj(face_a[None], clip_face, shortcut=False)
                    REF[f"{name}/uncond"] = proj(torch.zeros(1, ID_DIM), clip_zero, shortcut=False)
                else:
                    for s, tag in ((1.0, ""), (0.6, "_s0.6")):
                        REF[f"{name}/cond{tag}"] = proj(face_a[None], clip_face, shortcut=True, scale=s)
                        REF[f"{name}/uncond{tag}"] = proj(torch.zeros(1, ID_DIM), clip_zero, shortcut=True, scale=s)


# ----------------------------------------------------------------------------------------------- diffusers

def load_pipe(model):
    import diffusers

    if model == "sd15":
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(SD15, torch_dtype=torch.float32, safety_checker=None)
    else:
        pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(SDXL, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def with_adapter(model, name):
    pipe = load_pipe(model)
    pipe.load_ip_adapter(OUT, subfolder="", weight_name=f"{name}.bin", image_encoder_folder=None)
    pipe.set_ip_adapter_scale(IP_SCALE)
    return pipe


def id_embeds(kind, faces):
    """ip_adapter_image_embeds entry: [2 (negative first), N images, 1, ID]."""
    face_a, face_b, faces3 = faces
    if kind == "portrait":
        pos = faces3[None, :, None, :]            # [1, 3, 1, ID]: three "images" of one token each
    else:
        pos = face_a[None, None, None, :]         # [1, 1, 1, ID]
    return torch.cat([torch.zeros_like(pos), pos])


def diffusers_tokens(pipe, name, faces, clip):
    model, kind, tokens, _, _, _ = ADAPTERS[name]
    layer = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    face_a, _, faces3 = faces
    clip_face, clip_zero = clip
    diffs = {}
    with torch.no_grad():
        if kind == "plus" or kind == "plusv2":
            settings = [(False, 1.0, "")] if kind == "plus" else [(True, 1.0, ""), (True, 0.6, "_s0.6")]
            for shortcut, s, tag in settings:
                layer.shortcut, layer.shortcut_scale = shortcut, s
                layer.clip_embeds = clip_face[:, None]
                got = layer(face_a[None])
                diffs[f"cond{tag}"] = float((got - REF[f"{name}/cond{tag}"]).abs().max())
                layer.clip_embeds = clip_zero[:, None]
                got = layer(torch.zeros(1, ID_DIM))
                diffs[f"uncond{tag}"] = float((got - REF[f"{name}/uncond{tag}"]).abs().max())
            layer.clip_embeds, layer.shortcut, layer.shortcut_scale = None, False, 1.0
        else:
            emb = id_embeds(kind, faces)
            out = pipe.unet.encoder_hid_proj([emb])[0]           # [2, N, T, C]
            C = CROSS[model]
            diffs["cond"] = float((out[1:].reshape(1, -1, C) - REF[f"{name}/cond"]).abs().max())
            diffs["uncond"] = float((out[:1].reshape(1, -1, C) - REF[f"{name}/uncond"]).abs().max())
            diffs["diffusers_layer"] = type(layer).__name__
    return diffs


def plus_setup(pipe, clip, shortcut, s):
    layer = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    layer.clip_embeds = torch.cat([clip[1], clip[0]])[:, None]   # [2, 1, 257, 40], negative (zero image) first
    layer.shortcut = shortcut
    layer.shortcut_scale = s


def run_pipe(pipe, model, **kwargs):
    captured = {}

    def grab(p, i, t, kw):
        captured["latents"] = kw["latents"].clone()
        return kw

    result = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                  height=SIZE, width=SIZE, generator=torch.Generator("cpu").manual_seed(SEED), output_type="pil",
                  callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"], **kwargs)
    return result.images[0], captured["latents"]


CASES = [
    dict(name="e2e-faceid-sd15", model="sd15", adapter="ip-adapter-faceid_sd15", face="face-a.npy", lora_weight=1.0),
    dict(name="e2e-faceid-sd15-lora0.5", model="sd15", adapter="ip-adapter-faceid_sd15", face="face-a.npy",
         lora_weight=0.5),
    dict(name="e2e-plusv2-sd15", model="sd15", adapter="ip-adapter-faceid-plusv2_sd15", face="face-a.npy",
         lora_weight=1.0, shortcut=True, shortcut_scale=0.6, face_image="face-crop.png"),
    dict(name="e2e-portrait-sd15", model="sd15", adapter="ip-adapter-faceid-portrait_sd15", face="faces-3.npy"),
    dict(name="e2e-faceid-sdxl", model="sdxl", adapter="ip-adapter-faceid_sdxl", face="face-b.npy", lora_weight=1.0),
]


def case_embeds(case, faces):
    face_a, face_b, faces3 = faces
    pos = {"face-a.npy": face_a[None, None, None, :], "face-b.npy": face_b[None, None, :, :],
           "faces-3.npy": faces3[None, :, None, :]}[case["face"]]
    return torch.cat([torch.zeros_like(pos), pos])


def run_case(case, faces, clip):
    pipe = with_adapter(case["model"], case["adapter"])
    adapters = list(pipe.unet.peft_config.keys()) if hasattr(pipe.unet, "peft_config") else []
    if "lora_weight" in case and case["lora_weight"] != 1.0:
        pipe.set_adapters(["faceid_0"], adapter_weights=[case["lora_weight"]])
    if "shortcut" in case:
        plus_setup(pipe, clip, case["shortcut"], case["shortcut_scale"])
    emb = case_embeds(case, faces)
    image, latents = run_pipe(pipe, case["model"], ip_adapter_image_embeds=[emb])
    image.save(os.path.join(OUT, f"{case['name']}.png"))
    REF[f"{case['name']}/latents"] = latents
    rec = dict(case, pipeline=("StableDiffusionPipeline" if case["model"] == "sd15" else "StableDiffusionXLPipeline"),
               folder="Tests/Fixtures/" + ("tiny-sd15" if case["model"] == "sd15" else "tiny-sdxl"),
               scheduler=type(pipe.scheduler).__name__ + " (folder default)",
               prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
               height=SIZE, width=SIZE, seed=SEED, generator="torch.Generator('cpu').manual_seed(0)",
               ip_adapter_scale=IP_SCALE,
               load_ip_adapter=dict(path="Tests/Fixtures/faceid", subfolder="", weight_name=f"{case['adapter']}.bin",
                                    image_encoder_folder=None),
               ip_adapter_image_embeds_shape=list(emb.shape), peft_adapters=adapters,
               latents=f"{case['name']}/latents", image=f"{case['name']}.png")
    if "shortcut" in case:
        rec["clip_embeds"] = "cat([clip/zero, clip/face])[:, None] -> [2, 1, 257, 40]"
    return pipe, image, latents, rec


# ----------------------------------------------------------------------------------------------- official e2e

def official_case(mods, case, faces, face_img, adapters):
    """The same case through the official IPAdapterFaceID* classes (LoRA processors, concatenated tokens)."""
    m = mods["ip_adapter_faceid"]
    sep = mods["ip_adapter_faceid_separate"]
    name = case["adapter"]
    model, kind, tokens, rank, _, _ = ADAPTERS[name]
    make = lambda: projection_model(mods, name)  # noqa: E731 (id width 24 instead of the hard-coded 512)
    path = os.path.join(OUT, f"{name}.bin")
    pipe = load_pipe(model)
    kw = dict(device="cpu", torch_dtype=torch.float32)
    if kind == "portrait":
        base, kw = sep.IPAdapterFaceID, dict(kw, num_tokens=16, n_cond=3)
    elif kind == "plusv2":
        base, kw = m.IPAdapterFaceIDPlus, dict(kw, lora_rank=rank, num_tokens=4, image_encoder_path=ENCODER)
    else:
        base = m.IPAdapterFaceIDXL if model == "sdxl" else m.IPAdapterFaceID
        kw = dict(kw, lora_rank=rank, num_tokens=4)

    class Official(base):
        def init_proj(self):
            return make().to(self.device, dtype=self.torch_dtype)

    ip = Official(pipe, ip_ckpt=path, **kw)
    if kind == "portrait":  # the official loader is strict=False here; check the keys strictly ourselves
        torch.nn.ModuleList(ip.pipe.unet.attn_processors.values()).load_state_dict(adapters[name]["ip_adapter"])
    if case.get("lora_weight", 1.0) != 1.0:
        for p in ip.pipe.unet.attn_processors.values():
            if hasattr(p, "lora_scale"):
                p.lora_scale = case["lora_weight"]
    face_a, face_b, faces3 = faces
    emb = {"face-a.npy": face_a[None], "face-b.npy": face_b, "faces-3.npy": faces3[None]}[case["face"]]
    captured = {}

    def grab(p, i, t, kw):
        captured["latents"] = kw["latents"].clone()
        return kw

    extra = dict(face_image=face_img, s_scale=case["shortcut_scale"], shortcut=case["shortcut"]) if kind == "plusv2" else {}
    images = ip.generate(faceid_embeds=emb, prompt=PROMPT, negative_prompt=NEGATIVE, scale=IP_SCALE, num_samples=1,
                         seed=SEED, guidance_scale=GUIDANCE, num_inference_steps=STEPS, height=SIZE, width=SIZE,
                         callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"], **extra)
    return images[0], captured["latents"], base.__name__


# ----------------------------------------------------------------------------------------------- UNet goldens

def unet_goldens(faces):
    g = torch.Generator().manual_seed(7)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    context = torch.randn(2, 77, CROSS["sd15"], generator=g)
    REF["unet/sample"] = sample
    REF["unet/context"] = context
    name = "ip-adapter-faceid_sd15"
    pipe = with_adapter("sd15", name)
    emb = id_embeds("faceid", faces)
    with torch.no_grad():
        for w, tag in ((1.0, "out"), (0.5, "out_lora0.5"), (0.0, "out_lora0")):
            pipe.set_adapters(["faceid_0"], adapter_weights=[w])
            REF[f"unet/{name}/{tag}"] = pipe.unet(sample, 500, encoder_hidden_states=context,
                                                  added_cond_kwargs={"image_embeds": [emb]}).sample
        pipe.set_adapters(["faceid_0"], adapter_weights=[1.0])
    INFO["unet"] = {
        "model": "tiny-sd15 UNet with ip-adapter-faceid_sd15.bin loaded by diffusers, set_ip_adapter_scale(0.8)",
        "inputs": "unet/sample [2,4,8,8], timestep 500, unet/context [2,77,20] (random), "
                  "image_embeds [cat(zeros, face-a)] -> [2,1,1,24] (row 0 = zero id, row 1 = face-a)",
        "outputs": {"unet/ip-adapter-faceid_sd15/out": "FaceID LoRA weight 1.0",
                    "unet/ip-adapter-faceid_sd15/out_lora0.5": "LoRA weight 0.5 (set_adapters faceid_0)",
                    "unet/ip-adapter-faceid_sd15/out_lora0": "LoRA weight 0 (IP path only)"},
    }
    return pipe, sample, context, emb


def kohya_check(adapters, faces, bin_pipe, sample, context, emb, e2e_latents):
    """kohya file + load_lora_weights + fuse_lora + adapter without LoRA == the .bin's LoRA through PEFT."""
    name = "ip-adapter-faceid_sd15"
    pipe = load_pipe("sd15")
    base_w = pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight.detach().clone()
    pipe.load_lora_weights(OUT, weight_name="ip-adapter-faceid_sd15_lora.safetensors", adapter_name="kohya")
    q = pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q
    scaling = float(q.scaling["kohya"])
    peft_alpha = pipe.unet.peft_config["kohya"].lora_alpha
    peft_r = pipe.unet.peft_config["kohya"].r
    bin_q = bin_pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q
    bin_scaling = float(bin_q.scaling["faceid_0"])
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    fused = pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight.detach()
    ip = adapters[name]["ip_adapter"]
    expect = base_w + ip["0.to_q_lora.up.weight"].float() @ ip["0.to_q_lora.down.weight"].float()
    fused_diff = float((fused - expect).abs().max())
    no_lora = {"image_proj": adapters[name]["image_proj"],
               "ip_adapter": {k: v for k, v in ip.items() if "_lora." not in k}}
    pipe.load_ip_adapter(no_lora, subfolder="", weight_name="", image_encoder_folder=None)
    pipe.set_ip_adapter_scale(IP_SCALE)
    with torch.no_grad():
        out = pipe.unet(sample, 500, encoder_hidden_states=context, added_cond_kwargs={"image_embeds": [emb]}).sample
    unet_diff = float((out - REF[f"unet/{name}/out"]).abs().max())
    _, lat = run_pipe(pipe, "sd15", ip_adapter_image_embeds=[emb])
    e2e_diff = float((lat - e2e_latents).abs().max())
    INFO["kohya_lora"] = {
        "file": "ip-adapter-faceid_sd15_lora.safetensors",
        "rule": "for N, name in enumerate(unet.attn_processors): path = name without '.processor', dots -> '_'; "
                "'N.to_q_lora.down.weight' -> 'lora_unet_<path>_to_q.lora_down.weight', '.up.' -> '.lora_up.'; "
                "to_k, to_v likewise; to_out -> '_to_out_0'; values copied unchanged (fp16); no '.alpha' keys",
        "example": "0.to_out_lora.up.weight -> lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.lora_up.weight",
        "diffusers_peft_r": peft_r, "diffusers_peft_lora_alpha": peft_alpha,
        "diffusers_scaling_kohya_file": scaling, "diffusers_scaling_bin_faceid_0": bin_scaling,
        "fused_minus_(W+up@down)_max_abs": fused_diff,
        "unet_out_fused_kohya_vs_bin_peft_max_abs": unet_diff,
        "e2e_latents_fused_kohya_vs_e2e-faceid-sd15_max_abs": e2e_diff,
    }


# ----------------------------------------------------------------------------------------------- main

def processor_map(unet):
    rows = []
    for n, name in enumerate(unet.attn_processors.keys()):
        mod = unet.get_submodule(name[: -len(".processor")])
        rows.append(f"{n} {name[: -len('.processor')]} hidden={mod.to_q.out_features} "
                    f"to_k_in={mod.to_k.in_features} heads={mod.heads}")
        assert name.endswith("attn1.processor") == (n % 2 == 0)
    return rows


def main():
    from diffusers import UNet2DConditionModel

    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    tmp, mods = official_modules()
    try:
        faces = write_inputs()
        face_a, face_b, faces3, face_img = faces
        faces = (face_a, face_b, faces3)
        unets = {"sd15": UNet2DConditionModel.from_pretrained(os.path.join(SD15, "unet")),
                 "sdxl": UNet2DConditionModel.from_pretrained(os.path.join(SDXL, "unet"))}
        INFO["processor_order"] = {m: processor_map(u) for m, u in unets.items()}
        adapters = build_adapters(mods, unets)
        save_file(kohya_lora(adapters["ip-adapter-faceid_sd15"], unets["sd15"]),
                  os.path.join(OUT, "ip-adapter-faceid_sd15_lora.safetensors"))
        INFO["adapters"] = {}
        for name, (model, kind, tokens, rank, heads, seed) in ADAPTERS.items():
            rec = dict(model=model, kind=kind, tokens=tokens, lora_rank=rank, seed=seed,
                       id_dim=ID_DIM, mlp_hidden=2 * ID_DIM, cross_attention_dim=CROSS[model], dtype="float16",
                       keys=key_table(adapters[name]))
            if kind in ("plus", "plusv2"):
                rec.update(clip_dim=CLIP_DIM, perceiver=dict(depth=4, dim_head=64, heads=heads, inner=64 * heads,
                                                             ff_mult=4))
            INFO["adapters"][name] = rec

        clip = clip_features(face_img)
        official_tokens(mods, adapters, faces, clip)

        # diffusers: token cross-check (one pipeline per adapter) and end-to-end cases
        INFO["diffusers_token_max_abs_diff"] = {}
        INFO["cases"] = {}
        INFO["official_e2e"] = {}
        e2e = {}
        for case in CASES:
            pipe, image, latents, rec = run_case(case, faces, clip)
            e2e[case["name"]] = latents
            INFO["cases"][case["name"]] = rec
            if case["adapter"] not in INFO["diffusers_token_max_abs_diff"]:
                INFO["diffusers_token_max_abs_diff"][case["adapter"]] = diffusers_tokens(pipe, case["adapter"], faces, clip)
            o_img, o_lat, cls = official_case(mods, case, faces, face_img, adapters)
            INFO["official_e2e"][case["name"]] = {
                "official_class": cls + " (init_proj overridden for id width 24 / explicit perceiver heads)",
                "latents_max_abs": float((o_lat - latents).abs().max()),
                "image_max_abs_uint8": int(np.abs(np.asarray(o_img, np.int16) - np.asarray(image, np.int16)).max()),
            }
        for name, (model, *_rest) in ADAPTERS.items():
            if name not in INFO["diffusers_token_max_abs_diff"]:
                pipe = with_adapter(model, name)
                INFO["diffusers_token_max_abs_diff"][name] = diffusers_tokens(pipe, name, faces, clip)

        bin_pipe, sample, context, emb = unet_goldens(faces)
        kohya_check(adapters, faces, bin_pipe, sample, context, emb, e2e["e2e-faceid-sd15"])

        # portrait: which ip_adapter_image_embeds shapes diffusers accepts for several faces
        pipe = with_adapter("sd15", "ip-adapter-faceid-portrait_sd15")
        shapes = {}
        for label, pos in (("[2,3,1,ID]", faces3[None, :, None, :]), ("[2,3,ID]", faces3[None]),
                           ("[2,1,3,ID]", faces3[None, None])):
            try:
                _, lat = run_pipe(pipe, "sd15", ip_adapter_image_embeds=[torch.cat([torch.zeros_like(pos), pos])])
                shapes[label] = {"works": True,
                                 "latents_max_abs_vs_case": float((lat - e2e["e2e-portrait-sd15"]).abs().max())}
            except Exception as exc:  # noqa: BLE001
                shapes[label] = {"works": False, "error": f"{type(exc).__name__}: {str(exc)[:160]}"}
        INFO["portrait_embeds_shapes"] = shapes
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    INFO["references"] = {k: list(v.shape) for k, v in REF.items()}
    INFO["definitions"] = {
        "<adapter>/cond": "official image_proj module on face-a[None] ([1, ID]); portrait: faces-3 [1,3,ID] reshaped to "
                          "[3,ID], projected to [3,16,C], reshaped to [1,48,C] (face-major)",
        "<adapter>/uncond": "same module on zeros ([1,ID]; portrait [3,ID]); Plus/PlusV2 with clip/zero as CLIP input",
        "<plus>/cond": "ProjPlusModel(face-a, clip/face, shortcut=False)",
        "<plusv2>/cond": "ProjPlusModel(face-a, clip/face, shortcut=True, scale=1.0); cond_s0.6/uncond_s0.6 with scale 0.6",
        "<plus*>/id_tokens": "LayerNorm(reshape(MLP(face-a), [1,4,C])) — the perceiver queries and the shortcut term",
        "ip-adapter-faceid_sd15/cond_face-b": "the FaceID sd15 projection of face-b ([1, ID])",
    }
    INFO["official"] = {"repo": "tencent-ailab/IP-Adapter", "commit": OFFICIAL_COMMIT,
                        "files": ["ip_adapter/" + f for f in OFFICIAL_FILES]}
    INFO["versions"] = {"torch": torch.__version__.split("+")[0], "diffusers": "0.42.1"}
    save_file({k: v.detach().float().contiguous() for k, v in sorted(REF.items())},
              os.path.join(OUT, "reference.safetensors"))
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(INFO, f, indent=1, sort_keys=True)
        f.write("\n")
    for f in sorted(os.listdir(OUT)):
        p = os.path.join(OUT, f)
        print(f"{os.path.getsize(p):8d}  {hashlib.sha256(open(p, 'rb').read()).hexdigest()[:16]}  {f}")


if __name__ == "__main__":
    main()
