"""LoRA fixtures (the file formats users have) for the tiny SD1.5 / SDXL pipelines, and diffusers references.

Writes Tests/Fixtures/lora/
  sd15-kohya.safetensors     kohya/A1111 LoRA for tiny-sd15: `lora_unet_<diffusers path, . -> _>` for every
                             transformer linear (attn1/attn2 to_q,to_k,to_v,to_out_0, ff_net_0_proj, ff_net_2) and
                             proj_in/proj_out (1x1 convs: down [r,in,1,1], up [out,r,1,1]); `lora_te_text_model_encoder_
                             layers_<i>_self_attn_{q,k,v,out}_proj` / `_mlp_fc1|fc2`. `.lora_down.weight`,
                             `.lora_up.weight`, `.alpha` (0-dim). Ranks 2/3/4, alpha != rank for most modules, no
                             `.alpha` for three modules (scale 1), fp16 for most modules and fp32 for some.
  sd15-locon.safetensors     kohya LoCon (LyCORIS `locon` naming): resnet conv1/conv2 (3x3: down [r,in,3,3], up
                             [out,r,1,1]), conv_shortcut (1x1), time_emb_proj, down/upsamplers, conv_in, conv_out,
                             time_embedding_linear_1/2, the mid-block attention linears and a few text-encoder linears.
  sd15-peft.safetensors      diffusers/PEFT format exactly as StableDiffusionPipeline.save_lora_weights writes it in
                             this stack (`unet.<path>.lora_A.weight`, `text_encoder.<path>.lora_B.weight`, fp32) with
                             the `lora_adapter_metadata` safetensors header entry (LoraConfig.to_dict() per component,
                             keys prefixed `unet.` / `text_encoder.`): lora_alpha != r.
  sd15-old-diffusers.bin     torch.save of the diffusers 0.21-0.24 format: `unet.<path>.lora.down.weight` /
                             `.lora.up.weight` (linears, a 1x1 and a 3x3 conv) and `text_encoder.text_model.<path>.
                             lora_linear_layer.down.weight` / `.up.weight` (no alphas: scale 1).
  sd15-old-attnproc.bin      torch.save of the diffusers 0.14-0.20 attention-processor format:
                             `unet.<attn path>.processor.to_{q,k,v,out}_lora.{down,up}.weight` and
                             `text_encoder.text_model.encoder.layers.<i>.self_attn.to_{q,k,v,out}_lora.{down,up}.weight`.
  sdxl-kohya.safetensors     kohya SDXL LoRA for tiny-sdxl in the original SGM/LDM UNet naming (`lora_unet_input_blocks_
                             5_1_transformer_blocks_1_attn1_to_q`, `lora_unet_middle_block_...`, `lora_unet_output_
                             blocks_...`, resnets `in_layers_2` / `out_layers_3` / `emb_layers_1` / `skip_connection`,
                             `input_blocks_3_0_op`, `output_blocks_2_2_conv`, `input_blocks_0_0`, `out_2`,
                             `time_embed_0`, `label_emb_0_0`), `lora_te1_text_model_...` and `lora_te2_text_model_...`.
  sdxl-peft.safetensors      PEFT format as hub SDXL LoRAs have it (`unet.`, `text_encoder.text_model.`,
                             `text_encoder_2.text_model.` prefixes), fp16, mixed ranks, no metadata (scale 1).
  reference.safetensors      float32 references: fixed inputs `sd15/*`, `sdxl/*`; per case `<case>/unet_out`,
                             `<case>/text_hidden` (+ sdxl `<case>/text2_hidden` = text_encoder_2 hidden_states[-2],
                             `<case>/text2_embeds`), `<case>/param/<component>/<param key>` (fused values), and
                             `e2e-sd15-two/latents`, `e2e-sdxl-kohya/latents` (final latents of the golden runs).
  reference.json             cases (files, weights, the diffusers calls), per component the sorted parameter keys the
                             fusion changes, the scale formula, what diffusers does with the raw kohya files, the
                             key styles diffusers accepts/rejects (probed live), and the end-to-end call arguments.
  e2e-sd15-two.png, e2e-sdxl-kohya.png   the pipelines' images with sd15-two / sdxl-kohya fused.

Kohya alphas: diffusers 0.42.1 does not apply kohya's per-module alpha correctly (it uses the most common alpha for
every module whose alpha_pattern key it cannot match — all attention and text-encoder modules — and for modules
without `.alpha`). The references follow kohya / A1111 / ComfyUI semantics instead (scale = alpha / rank per module,
1 when `.alpha` is absent): diffusers is handed the same file with the scale baked into lora_up and `.alpha` dropped,
so its own kohya key converter still maps every key. What diffusers does with the raw files is recorded under
`diffusers_raw_load` in reference.json. Every fused parameter is checked against an independent float64
W + sum_i w_i * scale_i * up_i @ down_i, and the set of changed parameters against the intended module list.

Run after gen_sd15.py and gen_sdxl.py (needs peft, see requirements.txt):
  tools/reference/.venv/bin/python tools/reference/gen_lora.py
"""
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import warnings

import torch
from safetensors import safe_open
from safetensors.torch import save_file

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures"))
SD15 = os.path.join(FIX, "tiny-sd15")
SDXL = os.path.join(FIX, "tiny-sdxl")
OUT = os.path.join(FIX, "lora")
PROMPT = "a red cube"
NEGATIVE = "blurry"
TIMESTEP = 437.0
REF = {}  # reference.safetensors
CASES = {}

# ----------------------------------------------------------------------------------------------------------------
# Pipelines


def quiet():
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()


def load(family):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if family == "sd15":
        pipe = StableDiffusionPipeline.from_pretrained(SD15, torch_dtype=torch.float32, safety_checker=None)
    else:
        pipe = StableDiffusionXLPipeline.from_pretrained(SDXL, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def components(pipe):
    out = {"unet": pipe.unet, "text_encoder": pipe.text_encoder}
    if getattr(pipe, "text_encoder_2", None) is not None:
        out["text_encoder_2"] = pipe.text_encoder_2
    return out


def params(pipe):
    """Every component's parameters under their plain names (PEFT's `.base_layer.` removed, LoRA tensors skipped)."""
    out = {}
    for c, m in components(pipe).items():
        out[c] = {k.replace(".base_layer.", "."): v.detach().clone() for k, v in m.state_dict().items() if "lora_" not in k}
    return out


# ----------------------------------------------------------------------------------------------------------------
# LoRA module specs: one entry per adapted layer, the single source of truth for writing files and checking fusion.


class Mod:
    def __init__(self, component, path, key, rank, alpha, dtype, down, up, scale):
        self.component, self.path, self.key = component, path, key  # key: the file's module name (format specific)
        self.rank, self.alpha, self.dtype = rank, alpha, dtype
        self.down, self.up = down, up  # as stored (dtype)
        self.scale = scale  # effective per-module scale: kohya alpha/rank (1 without alpha), PEFT lora_alpha/r

    @property
    def param(self):
        return self.path + ".weight"

    def delta(self):
        """scale * up @ down in float64, shaped like the base weight."""
        a, b = self.down.double(), self.up.double()
        return self.scale * (b.flatten(1) @ a.flatten(1))


def draw(gen, weight, rank, scale, rel, dtype):
    """down/up with random non-zero values such that |scale * up @ down| ~ rel * |W| (element-wise std)."""
    std_w = weight.detach().double().std().item()
    sigma = (rel * std_w / (scale * rank**0.5)) ** 0.5
    out_f, in_f = weight.shape[0], weight.shape[1]
    if weight.ndim == 4:
        down = torch.randn(rank, in_f, *weight.shape[2:], generator=gen) * sigma
        up = torch.randn(out_f, rank, 1, 1, generator=gen) * sigma
    else:
        down = torch.randn(rank, in_f, generator=gen) * sigma
        up = torch.randn(out_f, rank, generator=gen) * sigma
    return down.to(dtype), up.to(dtype)


def build(pipe, seed, entries, keyfn):
    """entries: (component, module path, rank, alpha-or-None-or-'peft:<lora_alpha>', dtype)."""
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    mods = []
    comps = components(pipe)
    for component, path, rank, alpha, dtype in entries:
        weight = dict(comps[component].named_modules())[path].weight
        if isinstance(alpha, str):  # PEFT: lora_alpha / r
            scale = float(alpha.split(":")[1]) / rank
            alpha = float(alpha.split(":")[1])
        else:
            scale = 1.0 if alpha is None else alpha / rank
        rel = rng.uniform(0.02, 0.08)
        down, up = draw(gen, weight, rank, scale, rel, dtype)
        mods.append(Mod(component, path, keyfn(component, path), rank, alpha, dtype, down, up, scale))
    return mods


def transformer_paths(unet, with_proj=True, names=("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                                                      "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
                                                      "ff.net.0.proj", "ff.net.2"), prefixes=None):
    out = []
    for name, m in unet.named_modules():
        if name.endswith("attentions.0") or name[:-1].endswith("attentions."):
            if prefixes is not None and not any(name == p for p in prefixes):
                continue
            if with_proj:
                out.append(name + ".proj_in")
            for tb, _ in m.transformer_blocks.named_children():
                out += [f"{name}.transformer_blocks.{tb}.{n}" for n in names]
            if with_proj:
                out.append(name + ".proj_out")
    return out


def te_paths(prefix, layers, names=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                                      "mlp.fc1", "mlp.fc2")):
    return [f"{prefix}encoder.layers.{i}.{n}" for i in layers for n in names]


def kohya_choices(seed, paths_by_comp, no_alpha, fp32_every=5, ranks=(2, 3, 4)):
    """(component, path, rank, alpha, dtype) with ranks 2-4, alpha != rank for most, no alpha for `no_alpha`."""
    rng = random.Random(seed)
    out = []
    n = 0
    for component, paths in paths_by_comp:
        for path in paths:
            rank = rng.choice(ranks)
            alpha = rng.choice([a for a in (0.5, 1.0, 1.5, 2.0, 3.0, 8.0) if a != rank])
            if n % 17 == 3:
                alpha = float(rank)  # a few with alpha == rank (scale 1)
            if path in no_alpha:
                alpha = None
            dtype = torch.float32 if n % fp32_every == 2 else torch.float16
            out.append((component, path, rank, alpha, dtype))
            n += 1
    return out


def kohya_dict(mods):
    sd = {}
    for m in mods:
        sd[m.key + ".lora_down.weight"] = m.down.contiguous()
        sd[m.key + ".lora_up.weight"] = m.up.contiguous()
        if m.alpha is not None:
            sd[m.key + ".alpha"] = torch.tensor(m.alpha, dtype=m.dtype)
    return sd


def kohya_baked(mods):
    """What diffusers is given for the references: same keys, lora_up *= alpha/rank, no `.alpha` (diffusers scale 1)."""
    sd = {}
    for m in mods:
        sd[m.key + ".lora_down.weight"] = m.down.float().contiguous()
        sd[m.key + ".lora_up.weight"] = (m.up.double() * m.scale).float().contiguous()
    return sd


def sort_header_metadata(path):
    """safetensors writes `__metadata__` from a Rust HashMap, so with more than one entry the order (and the file's
    bytes) changes from run to run: rewrite the header with the entries sorted (offsets are relative to the data)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + raw[8 + n:])


def save_st(tensors, path, metadata):
    save_file(tensors, path, metadata=metadata)
    sort_header_metadata(path)


KOHYA_META = {"ss_network_module": "networks.lora", "ss_network_dim": "4", "ss_network_alpha": "2.0"}


def sd15_kohya_key(component, path):
    return ("lora_unet_" if component == "unet" else "lora_te_text_model_") + path.replace(".", "_")


# SGM/LDM names of the tiny SDXL UNet (layers_per_block 2; blocks: Down, CrossAttnDown, CrossAttnDown / CrossAttnUp,
# CrossAttnUp, Up) — written independently of diffusers' converter, which the fusion check then validates.
SGM_RESNET = {"conv1": "in_layers_2", "conv2": "out_layers_3", "time_emb_proj": "emb_layers_1",
              "conv_shortcut": "skip_connection"}
SGM_TOP = {"conv_in": "input_blocks_0_0", "conv_out": "out_2", "time_embedding.linear_1": "time_embed_0",
           "time_embedding.linear_2": "time_embed_2", "add_embedding.linear_1": "label_emb_0_0",
           "add_embedding.linear_2": "label_emb_0_2"}


def sgm_name(path):
    if path in SGM_TOP:
        return SGM_TOP[path]
    p = path.split(".")
    if p[0] == "down_blocks":
        d = int(p[1])
        if p[2] == "downsamplers":
            return f"input_blocks_{3 * d + 3}_0_op"
        j = int(p[3])
        head, rest = f"input_blocks_{1 + 3 * d + j}_{0 if p[2] == 'resnets' else 1}", p[4:]
    elif p[0] == "mid_block":
        head = "middle_block_" + {"resnets.0": "0", "attentions.0": "1", "resnets.1": "2"}[".".join(p[1:3])]
        rest = p[3:]
    else:
        u = int(p[1])
        if p[2] == "upsamplers":
            return f"output_blocks_{3 * u + 2}_{2 if u < 2 else 1}_conv"
        j = int(p[3])
        head, rest = f"output_blocks_{3 * u + j}_{0 if p[2] == 'resnets' else 1}", p[4:]
    if "resnets" in path:
        rest = [SGM_RESNET[rest[0]]]
    return head + "_" + "_".join(rest)


def sdxl_kohya_key(component, path):
    if component == "unet":
        return "lora_unet_" + sgm_name(path)
    if component == "text_encoder":
        return "lora_te1_text_model_" + path.replace(".", "_")
    return "lora_te2_" + path.replace(".", "_")  # text_encoder_2 paths already start with text_model.


# ----------------------------------------------------------------------------------------------------------------
# The LoRA files


def make_sd15_kohya(pipe):
    unet_paths = transformer_paths(pipe.unet)
    te = te_paths("", range(3))
    no_alpha = {"down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_v", "up_blocks.2.attentions.1.proj_out",
                "encoder.layers.1.mlp.fc2"}
    entries = kohya_choices(11, [("unet", unet_paths), ("text_encoder", te)], no_alpha)
    mods = build(pipe, 11, entries, sd15_kohya_key)
    save_st(kohya_dict(mods), os.path.join(OUT, "sd15-kohya.safetensors"),
            dict(KOHYA_META, ss_base_model_version="sd_v1"))
    return mods


def make_sd15_locon(pipe):
    unet = pipe.unet
    convs = ["conv_in", "time_embedding.linear_1", "time_embedding.linear_2"]
    for name, m in unet.named_modules():
        cls = type(m).__name__
        if cls == "ResnetBlock2D":
            convs += [f"{name}.conv1", f"{name}.time_emb_proj", f"{name}.conv2"]
            if m.conv_shortcut is not None:
                convs.append(f"{name}.conv_shortcut")
        elif cls in ("Downsample2D", "Upsample2D"):
            convs.append(f"{name}.conv")
    convs.append("conv_out")
    attn = transformer_paths(unet, prefixes=["mid_block.attentions.0"])
    te = ["encoder.layers.2.self_attn.q_proj", "encoder.layers.2.self_attn.out_proj", "encoder.layers.0.mlp.fc1"]
    no_alpha = {"down_blocks.1.resnets.0.conv1", "encoder.layers.0.mlp.fc1"}
    entries = kohya_choices(12, [("unet", convs + attn), ("text_encoder", te)], no_alpha)
    mods = build(pipe, 12, entries, sd15_kohya_key)
    meta = {"ss_network_module": "lycoris.kohya", "ss_network_dim": "4", "ss_network_alpha": "1.0",
            "ss_network_args": json.dumps({"algo": "locon", "conv_dim": "4", "conv_alpha": "1"}),
            "ss_base_model_version": "sd_v1"}
    save_st(kohya_dict(mods), os.path.join(OUT, "sd15-locon.safetensors"), meta)
    return mods


def peft_metadata(r, lora_alpha, target_modules):
    from peft import LoraConfig

    d = LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=target_modules, init_lora_weights="gaussian").to_dict()
    # save_lora_weights json-dumps sets as list(set): sort them so reruns write identical bytes.
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in d.items()}


def make_sd15_peft(pipe):
    from diffusers import StableDiffusionPipeline

    unet_targets = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out"]
    te_targets = ["q_proj", "k_proj", "v_proj", "out_proj"]
    U_R, U_ALPHA, T_R, T_ALPHA = 4, 2, 2, 4
    unet_paths = [n for n, _ in pipe.unet.named_modules() if any(n.endswith("." + t) for t in unet_targets)]
    te = [n for n, _ in pipe.text_encoder.named_modules() if any(n.endswith("." + t) for t in te_targets)]
    entries = [("unet", p, U_R, f"peft:{U_ALPHA}", torch.float32) for p in unet_paths]
    entries += [("text_encoder", p, T_R, f"peft:{T_ALPHA}", torch.float32) for p in te]
    mods = build(pipe, 13, entries, lambda c, p: p)
    unet_layers, te_layers = {}, {}
    for m in mods:
        layers = unet_layers if m.component == "unet" else te_layers
        layers[m.path + ".lora_A.weight"] = m.down.contiguous()
        layers[m.path + ".lora_B.weight"] = m.up.contiguous()
    with tempfile.TemporaryDirectory() as tmp:
        StableDiffusionPipeline.save_lora_weights(
            tmp, unet_lora_layers=unet_layers, text_encoder_lora_layers=te_layers,
            weight_name="sd15-peft.safetensors", safe_serialization=True,
            unet_lora_adapter_metadata=peft_metadata(U_R, U_ALPHA, unet_targets),
            text_encoder_lora_adapter_metadata=peft_metadata(T_R, T_ALPHA, te_targets))
        shutil.copy(os.path.join(tmp, "sd15-peft.safetensors"), os.path.join(OUT, "sd15-peft.safetensors"))
    sort_header_metadata(os.path.join(OUT, "sd15-peft.safetensors"))
    for m in mods:
        m.key = f"{m.component}.{m.path}"
    return mods


def make_sd15_old(pipe):
    unet_paths = [f"down_blocks.0.attentions.{i}.transformer_blocks.0.{a}.{p}" for i in (0, 1)
                  for a in ("attn1", "attn2") for p in ("to_q", "to_k", "to_v", "to_out.0")]
    unet_paths += ["up_blocks.2.attentions.0.transformer_blocks.0.ff.net.0.proj", "up_blocks.2.attentions.0.proj_in",
                   "down_blocks.0.resnets.0.conv1", "up_blocks.2.resnets.0.conv_shortcut"]
    te = te_paths("", (0, 1), names=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"))
    te.append("encoder.layers.1.mlp.fc1")
    entries = [("unet", p, 4, None, torch.float32) for p in unet_paths]
    entries += [("text_encoder", p, 4 if i % 2 else 2, None, torch.float32) for i, p in enumerate(te)]

    def key(component, path):
        return f"unet.{path}.lora" if component == "unet" else f"text_encoder.text_model.{path}.lora_linear_layer"

    mods = build(pipe, 14, entries, key)
    sd = {}
    for m in mods:
        sd[m.key + ".down.weight"] = m.down.contiguous()
        sd[m.key + ".up.weight"] = m.up.contiguous()
    torch.save(sd, os.path.join(OUT, "sd15-old-diffusers.bin"))
    return mods


def make_sd15_old_attnproc(pipe):
    attns = ["mid_block.attentions.0.transformer_blocks.0.attn1", "mid_block.attentions.0.transformer_blocks.0.attn2",
             "up_blocks.1.attentions.2.transformer_blocks.0.attn1"]
    unet_paths = [f"{a}.{p}" for a in attns for p in ("to_q", "to_k", "to_v", "to_out.0")]
    te = te_paths("", (2,), names=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"))
    entries = [("unet", p, 4, None, torch.float32) for p in unet_paths]
    entries += [("text_encoder", p, 4, None, torch.float32) for p in te]
    proc = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out.0": "to_out",
            "q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "out_proj": "to_out"}

    def key(component, path):
        if component == "unet":
            attn, proj = (path[:-len(".to_out.0")], "to_out.0") if path.endswith("to_out.0") else path.rsplit(".", 1)
            return f"unet.{attn}.processor.{proc[proj]}_lora"
        attn, proj = path.rsplit(".", 1)
        return f"text_encoder.text_model.{attn}.{proc[proj]}_lora"

    mods = build(pipe, 15, entries, key)
    sd = {}
    for m in mods:
        sd[m.key + ".down.weight"] = m.down.contiguous()
        sd[m.key + ".up.weight"] = m.up.contiguous()
    torch.save(sd, os.path.join(OUT, "sd15-old-attnproc.bin"))
    return mods


def make_sdxl_kohya(pipe):
    attn = transformer_paths(pipe.unet, prefixes=["down_blocks.1.attentions.1", "mid_block.attentions.0",
                                                  "up_blocks.0.attentions.2"])
    res = ["conv_in", "time_embedding.linear_1", "add_embedding.linear_1",
           "down_blocks.0.resnets.0.conv1", "down_blocks.0.resnets.0.time_emb_proj", "down_blocks.0.resnets.0.conv2",
           "down_blocks.0.downsamplers.0.conv", "down_blocks.1.resnets.0.conv1", "down_blocks.1.resnets.0.conv_shortcut",
           "mid_block.resnets.0.conv1", "mid_block.resnets.1.conv2", "up_blocks.0.upsamplers.0.conv",
           "up_blocks.2.resnets.1.conv2", "up_blocks.2.resnets.1.conv_shortcut", "conv_out"]
    te1 = te_paths("", range(3))
    te2 = te_paths("text_model.", range(3))
    no_alpha = {"mid_block.attentions.0.transformer_blocks.1.attn2.to_k", "down_blocks.1.resnets.0.conv_shortcut",
                "text_model.encoder.layers.0.self_attn.v_proj"}
    entries = kohya_choices(16, [("unet", attn + res), ("text_encoder", te1), ("text_encoder_2", te2)], no_alpha)
    mods = build(pipe, 16, entries, sdxl_kohya_key)
    save_st(kohya_dict(mods), os.path.join(OUT, "sdxl-kohya.safetensors"),
            dict(KOHYA_META, ss_base_model_version="sdxl_base_v1-0"))
    return mods


def make_sdxl_peft(pipe):
    unet_targets = ["to_q", "to_k", "to_v", "to_out.0"]
    te_targets = ["q_proj", "k_proj", "v_proj", "out_proj"]
    entries = []
    for n, _ in pipe.unet.named_modules():
        if any(n.endswith("." + t) for t in unet_targets):
            entries.append(("unet", n, 2 if ".attn2." in n else 4, None, torch.float16))
    for c in ("text_encoder", "text_encoder_2"):
        for n, _ in getattr(pipe, c).named_modules():
            if any(n.endswith("." + t) for t in te_targets):
                entries.append((c, n, 4 if "layers.1." in n else 2, None, torch.float16))

    def key(component, path):
        if component == "text_encoder":
            path = "text_model." + path  # hub files (transformers 4.x) carry the text_model. prefix
        return f"{component}.{path}"

    mods = build(pipe, 17, entries, key)
    sd = {}
    for m in mods:
        sd[m.key + ".lora_A.weight"] = m.down.contiguous()
        sd[m.key + ".lora_B.weight"] = m.up.contiguous()
    save_file(sd, os.path.join(OUT, "sdxl-peft.safetensors"), metadata={"format": "pt"})
    return mods


# ----------------------------------------------------------------------------------------------------------------
# Applying LoRAs with diffusers


LORAS = {}  # file -> dict(mods, kind, family)


def diffusers_source(file):
    """(argument for load_lora_weights, kwargs, description) — kohya files are handed over alpha-baked."""
    info = LORAS[file]
    if info["kind"] == "kohya":
        return kohya_baked(info["mods"]), {}, "alpha-baked state dict of " + file
    return OUT, {"weight_name": file}, f"load_lora_weights({os.path.relpath(OUT, FIX)!r}, weight_name={file!r})"


def apply(pipe, loras):
    """loras: [(file, adapter_name, weight)]. Returns the recorded calls."""
    calls = []
    for file, name, _ in loras:
        src, kw, desc = diffusers_source(file)
        pipe.load_lora_weights(src, adapter_name=name, **kw)
        calls.append(f"pipe.load_lora_weights(<{desc}>, adapter_name={name!r})")
    if len(loras) == 1:
        pipe.fuse_lora(lora_scale=loras[0][2])
        calls.append(f"pipe.fuse_lora(lora_scale={loras[0][2]})")
    else:
        names, weights = [n for _, n, _ in loras], [w for _, _, w in loras]
        pipe.set_adapters(names, weights)
        pipe.fuse_lora()
        calls += [f"pipe.set_adapters({names}, {weights})", "pipe.fuse_lora()"]
    pipe.unload_lora_weights()  # keeps the fused weights, removes the PEFT wrappers
    calls.append("pipe.unload_lora_weights()")
    return calls


def expected_changes(loras):
    exp = {}
    for file, _, w in loras:
        for m in LORAS[file]["mods"]:
            key = (m.component, m.param)
            exp[key] = exp.get(key, 0) + w * m.delta()
    return exp


def check_fusion(base, fused, loras, label):
    exp = expected_changes(loras)
    changed = {c: sorted(k for k in fused[c] if not torch.equal(fused[c][k], base[c][k])) for c in fused}
    got = {(c, k) for c, ks in changed.items() for k in ks}
    assert got == set(exp), f"{label}: changed {sorted(got ^ set(exp))[:6]} differ from the intended modules"
    worst = 0.0
    for (c, k), d in exp.items():
        err = ((fused[c][k].double() - base[c][k].double()) - d.reshape(base[c][k].shape)).abs().max().item()
        worst = max(worst, err)
    assert worst < 2e-6, f"{label}: fused - base deviates from sum w*scale*up@down by {worst}"
    rel = [((d.norm() / base[c][k].double().norm()).item()) for (c, k), d in exp.items()]
    return changed, worst, (min(rel), max(rel))


# ----------------------------------------------------------------------------------------------------------------
# Inputs and outputs


def tokenize(tok, prompt=PROMPT):
    return tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids


def make_inputs(pipe, family):
    g = torch.Generator().manual_seed(500 if family == "sd15" else 600)
    cross = pipe.unet.config.cross_attention_dim
    inp = {"sample": torch.randn(1, 4, 8, 8, generator=g), "timestep": torch.tensor([TIMESTEP]),
           "encoder_hidden_states": torch.randn(1, 77, cross, generator=g)}
    inp["input_ids"] = tokenize(pipe.tokenizer)
    if family == "sdxl":
        inp["text_embeds"] = torch.randn(1, pipe.text_encoder_2.config.projection_dim, generator=g)
        inp["time_ids"] = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])
        inp["input_ids_2"] = tokenize(pipe.tokenizer_2)
    for k, v in inp.items():
        REF[f"{family}/{k}"] = v.float().contiguous()
    return inp


@torch.no_grad()
def outputs(pipe, family, inp, case):
    kw = {}
    if family == "sdxl":
        kw["added_cond_kwargs"] = {"text_embeds": inp["text_embeds"], "time_ids": inp["time_ids"]}
    REF[f"{case}/unet_out"] = pipe.unet(inp["sample"], inp["timestep"], inp["encoder_hidden_states"], **kw).sample
    REF[f"{case}/text_hidden"] = pipe.text_encoder(inp["input_ids"]).last_hidden_state
    if family == "sdxl":
        o = pipe.text_encoder_2(inp["input_ids_2"], output_hidden_states=True)
        REF[f"{case}/text2_hidden"] = o.hidden_states[-2]
        REF[f"{case}/text2_embeds"] = o.text_embeds


def pick_params(base, changed):
    """One attention linear, one 3x3 conv, one 1x1 conv (if changed) and one linear per text encoder."""
    picks = []
    unet = [(base["unet"][k].numel(), k) for k in changed["unet"]]
    for pred in (lambda k: ".attn" in k and base["unet"][k].ndim == 2,
                 lambda k: base["unet"][k].ndim == 4 and base["unet"][k].shape[-1] == 3,
                 lambda k: base["unet"][k].ndim == 4 and base["unet"][k].shape[-1] == 1):
        cands = sorted((n, k) for n, k in unet if pred(k))
        if cands:
            picks.append(("unet", cands[0][1]))
    for c in ("text_encoder", "text_encoder_2"):
        if changed.get(c):
            picks.append((c, sorted((base[c][k].numel(), k) for k in changed[c])[0][1]))
    return picks


def run_case(family, case, loras, inp):
    pipe = load(family)
    base = params(pipe)
    calls = apply(pipe, loras)
    fused = params(pipe)
    changed, worst, rel = check_fusion(base, fused, loras, case)
    outputs(pipe, family, inp, case)
    picks = pick_params(base, changed)
    for c, k in picks:
        REF[f"{case}/param/{c}/{k}"] = fused[c][k]
    CASES[case] = {
        "family": family, "model": os.path.basename(SD15 if family == "sd15" else SDXL),
        "loras": [{"file": f, "adapter_name": n, "weight": w, "format": LORAS[f]["kind"]} for f, n, w in loras],
        "calls": calls, "changed": changed, "params": [f"{case}/param/{c}/{k}" for c, k in picks],
        "check": {"max_abs_err_vs_float64_formula": worst, "relative_change_per_module_at_weight": list(rel)},
    }
    print(f"{case}: changed {', '.join(f'{c} {len(v)}' for c, v in changed.items())}; max err {worst:.1e}")


# ----------------------------------------------------------------------------------------------------------------
# What diffusers itself does with the raw kohya files, and which key styles it accepts


RAW_RULE = ("pipe.load_lora_weights(file) + fuse_lora(lora_scale=1.0) on the raw kohya file. diffusers 0.42.1 builds "
            "one LoraConfig per component with lora_alpha = the most common .alpha value of that component and an "
            "alpha_pattern for the others, but the pattern keys it derives for UNet attention linears "
            "(attn1/attn2 to_q/to_k/to_v/to_out.0) and for all text-encoder modules match no module (peft warns and "
            "ignores them): those modules, and every module without .alpha, get most-common-alpha / rank. Other modules "
            "(ff, proj_in/out, convs, time_emb_proj, ...) get their own alpha / rank. Every key is still mapped.")


def raw_kohya_behaviour(family, file):
    pipe = load(family)
    base = params(pipe)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.load_lora_weights(OUT, weight_name=file, adapter_name="raw")
    pipe.fuse_lora(lora_scale=1.0)
    fused = params(pipe)
    mods = LORAS[file]["mods"]
    intended = {(m.component, m.param) for m in mods}
    got = {(c, k) for c in fused for k in fused[c] if not torch.equal(fused[c][k], base[c][k])}
    wrong = {}
    for m in mods:
        d = (fused[m.component][m.param].double() - base[m.component][m.param].double()).flatten()
        unit = (m.up.double().flatten(1) @ m.down.double().flatten(1)).flatten()
        s = (d @ unit / (unit @ unit)).item()
        if abs(s - m.scale) > 1e-5:
            wrong[f"{m.component}/{m.param}"] = (f"rank {m.rank}, alpha {m.alpha}: kohya scale {m.scale:.6g}, "
                                                 f"diffusers {s:.6g}")
    msgs = sorted({str(w.message).split(":")[0] for w in caught if "alpha_pattern" in str(w.message)})
    return {"rule": RAW_RULE, "same_modules_changed": got == intended, "modules": len(mods),
            "modules_with_a_different_scale": len(wrong), "different_scales": wrong, "peft_warnings": msgs}


def probe(family, sd):
    pipe = load(family)
    base = params(pipe)
    try:
        pipe.load_lora_weights(sd, adapter_name="probe")
        pipe.fuse_lora()
    except Exception as e:  # noqa: BLE001
        return {"accepted": False, "error": f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"}
    fused = params(pipe)
    changed = sorted(f"{c}/{k}" for c in fused for k in fused[c] if not torch.equal(fused[c][k], base[c][k]))
    return {"accepted": bool(changed), "changed": changed} if changed else {"accepted": False,
                                                                          "error": "loaded nothing (keys ignored)"}


def key_style_probes():
    g = torch.Generator().manual_seed(99)
    att = "down_blocks.0.attentions.0.transformer_blocks.0.attn1"

    def ab(shape_out, shape_in, conv=False):
        if conv:
            return torch.randn(2, shape_in, 3, 3, generator=g) * 0.05, torch.randn(shape_out, 2, 1, 1, generator=g) * 0.05
        return torch.randn(2, shape_in, generator=g) * 0.05, torch.randn(shape_out, 2, generator=g) * 0.05

    def pair(prefix, down, up, a, b):
        return {prefix + down: a, prefix + up: b}

    probes = {}
    a, b = ab(16, 16)
    probes["unet.<path>.lora.down.weight (diffusers 0.21-0.24)"] = pair(f"unet.{att}.to_q", ".lora.down.weight", ".lora.up.weight", a, b)
    probes["unet.<path>.lora_linear_layer.down.weight"] = pair(f"unet.{att}.to_q", ".lora_linear_layer.down.weight",
                                                              ".lora_linear_layer.up.weight", a, b)
    probes["unet.<attn>.processor.to_q_lora.down.weight (attention processors)"] = pair(
        f"unet.{att}.processor.to_q_lora", ".down.weight", ".up.weight", a, b)
    probes["unet.<attn>.to_q_lora.down.weight (no .processor.)"] = pair(f"unet.{att}.to_q_lora", ".down.weight", ".up.weight", a, b)
    probes["<attn>.processor.to_q_lora.down.weight (no unet. prefix)"] = pair(f"{att}.processor.to_q_lora", ".down.weight",
                                                                              ".up.weight", a, b)
    probes["unet.<path>.lora_A.weight (PEFT)"] = pair(f"unet.{att}.to_q", ".lora_A.weight", ".lora_B.weight", a, b)
    a, b = ab(20, 20)
    a2, b2 = ab(20, 20)
    te = "text_encoder.text_model.encoder.layers.0.self_attn"
    probes["text_encoder.text_model.<path>.lora_linear_layer.down.weight"] = {
        **pair(f"{te}.q_proj.lora_linear_layer", ".down.weight", ".up.weight", a, b)}
    probes["text_encoder.<path without text_model.>.lora_linear_layer.down.weight"] = {
        **pair("text_encoder.encoder.layers.0.self_attn.q_proj.lora_linear_layer", ".down.weight", ".up.weight", a, b)}
    probes["text_encoder.text_model.<attn>.to_q_lora + to_out_lora (old)"] = {
        **pair(f"{te}.to_q_lora", ".down.weight", ".up.weight", a, b),
        **pair(f"{te}.to_out_lora", ".down.weight", ".up.weight", a2, b2)}
    probes["text_encoder.text_model.<attn>.to_q_lora only (old, no to_out_lora)"] = {
        **pair(f"{te}.to_q_lora", ".down.weight", ".up.weight", a, b)}
    probes["text_encoder.text_model.<path>.lora.down.weight"] = {**pair(f"{te}.q_proj.lora", ".down.weight", ".up.weight", a, b)}
    probes["text_encoder.text_model.<path>.lora_A.weight (PEFT, hub style)"] = {
        **pair(f"{te}.q_proj", ".lora_A.weight", ".lora_B.weight", a, b)}
    probes["lora_te_..._self_attn_q_proj only (kohya, no out_proj / mlp module)"] = {
        **pair("lora_te_text_model_encoder_layers_0_self_attn_q_proj", ".lora_down.weight", ".lora_up.weight", a, b)}
    a, b = ab(16, 16, conv=True)
    probes["lora_unet_..._conv1 with .lora_mid.weight (LyCORIS Tucker)"] = {
        "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight": a[:, :, :1, :1].clone(),
        "lora_unet_down_blocks_0_resnets_0_conv1.lora_mid.weight": torch.randn(2, 2, 3, 3, generator=g) * 0.05,
        "lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight": b}
    probes["lora_unet_..._conv1 with .dora_scale (DoRA)"] = {
        "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight": a,
        "lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight": b,
        "lora_unet_down_blocks_0_resnets_0_conv1.dora_scale": torch.ones(1, 16, 1, 1)}
    out = {k: probe("sd15", dict(v)) for k, v in probes.items()}
    # SDXL: a file mixing SGM (input_blocks) and diffusers (down_blocks) kohya names
    a, b = ab(24, 24)
    mixed = {**pair("lora_unet_input_blocks_5_1_transformer_blocks_0_attn1_to_q", ".lora_down.weight", ".lora_up.weight", a, b),
             **pair("lora_unet_down_blocks_1_attentions_1_transformer_blocks_0_attn1_to_k", ".lora_down.weight",
                    ".lora_up.weight", a.clone(), b.clone())}
    out["sdxl: kohya file mixing input_blocks_* and down_blocks_* names"] = probe("sdxl", mixed)
    return out


# ----------------------------------------------------------------------------------------------------------------
# End-to-end goldens


E2E = {}


def e2e(family, name, loras, call):
    pipe = load(family)
    calls = apply(pipe, loras)
    captured = {}

    def grab(p, i, t, kw):
        captured["latents"] = kw["latents"].clone()
        return kw

    result = pipe(PROMPT, negative_prompt=NEGATIVE, generator=torch.Generator().manual_seed(0), output_type="pil",
                  callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"], **call)
    result.images[0].save(os.path.join(OUT, f"{name}.png"))
    REF[f"{name}/latents"] = captured["latents"]
    E2E[name] = {"model": os.path.basename(SD15 if family == "sd15" else SDXL),
                 "pipeline": type(pipe).__name__, "scheduler": type(pipe.scheduler).__name__,
                 "loras": [{"file": f, "adapter_name": n, "weight": w} for f, n, w in loras], "lora_calls": calls,
                 "call": dict(prompt=PROMPT, negative_prompt=NEGATIVE, generator="torch.Generator().manual_seed(0)",
                              output_type="pil", **call),
                 "image": f"{name}.png", "latents": f"{name}/latents (after the last step, before VAE decoding)"}


# ----------------------------------------------------------------------------------------------------------------


def main():
    import diffusers
    import peft
    import transformers

    quiet()
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)

    p15, pxl = load("sd15"), load("sdxl")
    LORAS["sd15-kohya.safetensors"] = dict(kind="kohya", family="sd15", mods=make_sd15_kohya(p15))
    LORAS["sd15-locon.safetensors"] = dict(kind="kohya", family="sd15", mods=make_sd15_locon(p15))
    LORAS["sd15-peft.safetensors"] = dict(kind="peft", family="sd15", mods=make_sd15_peft(p15))
    LORAS["sd15-old-diffusers.bin"] = dict(kind="diffusers-old", family="sd15", mods=make_sd15_old(p15))
    LORAS["sd15-old-attnproc.bin"] = dict(kind="diffusers-attnproc", family="sd15", mods=make_sd15_old_attnproc(p15))
    LORAS["sdxl-kohya.safetensors"] = dict(kind="kohya", family="sdxl", mods=make_sdxl_kohya(pxl))
    LORAS["sdxl-peft.safetensors"] = dict(kind="peft", family="sdxl", mods=make_sdxl_peft(pxl))
    inputs = {"sd15": make_inputs(p15, "sd15"), "sdxl": make_inputs(pxl, "sdxl")}
    with torch.no_grad():
        outputs(p15, "sd15", inputs["sd15"], "base-sd15")
        outputs(pxl, "sdxl", inputs["sdxl"], "base-sdxl")
    del p15, pxl

    cases = {
        "sd15-kohya": ("sd15", [("sd15-kohya.safetensors", "kohya", 0.8)]),
        "sd15-locon": ("sd15", [("sd15-locon.safetensors", "locon", 1.0)]),
        "sd15-peft": ("sd15", [("sd15-peft.safetensors", "peft", 0.6)]),
        "sd15-old": ("sd15", [("sd15-old-diffusers.bin", "old", 1.0)]),
        "sd15-old-attnproc": ("sd15", [("sd15-old-attnproc.bin", "attnproc", 1.0)]),
        "sd15-two": ("sd15", [("sd15-kohya.safetensors", "kohya", 0.8), ("sd15-locon.safetensors", "locon", -0.5)]),
        "sdxl-kohya": ("sdxl", [("sdxl-kohya.safetensors", "kohya", 0.7)]),
        "sdxl-peft": ("sdxl", [("sdxl-peft.safetensors", "peft", 1.0)]),
        "sdxl-two": ("sdxl", [("sdxl-kohya.safetensors", "kohya", 0.5), ("sdxl-peft.safetensors", "peft", 0.5)]),
    }
    for case, (family, loras) in cases.items():
        run_case(family, case, loras, inputs[family])

    raw = {f: raw_kohya_behaviour(info["family"], f) for f, info in LORAS.items() if info["kind"] == "kohya"}
    for f, r in raw.items():
        print(f"raw diffusers load of {f}: same modules {r['same_modules_changed']}, "
              f"{r['modules_with_a_different_scale']}/{r['modules']} modules with a non-kohya scale")
    probes = key_style_probes()
    for k, v in probes.items():
        print(f"probe {k}: {'accepted' if v['accepted'] else 'REJECTED ' + v['error']}")

    e2e("sd15", "e2e-sd15-two", cases["sd15-two"][1],
        dict(num_inference_steps=3, guidance_scale=7.5, height=64, width=64))
    e2e("sdxl", "e2e-sdxl-kohya", cases["sdxl-kohya"][1],
        dict(num_inference_steps=3, guidance_scale=7.5, height=64, width=64))

    save_file({k: v.detach().float().contiguous() for k, v in REF.items()}, os.path.join(OUT, "reference.safetensors"),
              metadata={"format": "pt"})

    files = {}
    for f, info in LORAS.items():
        mods = info["mods"]
        files[f] = {
            "format": info["kind"], "model": "tiny-sd15" if info["family"] == "sd15" else "tiny-sdxl",
            "modules": len(mods),
            "modules_per_component": {c: sum(m.component == c for m in mods) for c in
                                      ("unet", "text_encoder", "text_encoder_2") if any(m.component == c for m in mods)},
            "ranks": sorted({m.rank for m in mods}),
            "dtypes": sorted({str(m.dtype).replace("torch.", "") for m in mods}),
            "modules_without_alpha": sorted(m.key for m in mods if m.alpha is None) if info["kind"] == "kohya" else None,
        }
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(OUT, f), "pt") as fh:
                meta = fh.metadata() or {}
            files[f]["safetensors_metadata_keys"] = sorted(meta)
    files["sd15-peft.safetensors"]["lora_adapter_metadata"] = {
        k: v for k, v in json.loads(safe_open(os.path.join(OUT, "sd15-peft.safetensors"), "pt").metadata()
                                    ["lora_adapter_metadata"]).items() if k.split(".", 1)[1] in
        ("r", "lora_alpha", "rank_pattern", "alpha_pattern", "use_rslora", "use_dora", "target_modules")}

    doc = {
        "generator": "tools/reference/gen_lora.py",
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__},
        "scale_formula": (
            "fused W = W + lora_scale * sum_i (w_i * scale_i * up_i @ down_i); single LoRA: "
            "load_lora_weights + fuse_lora(lora_scale=w) (w_i = 1); two LoRAs: set_adapters(names, [w_a, w_b]) + "
            "fuse_lora() (lora_scale = 1; fuse_lora(lora_scale=s) would multiply every adapter by s as well). "
            "scale_i: kohya alpha/rank with rank = lora_down.shape[0] (1.0 without .alpha); PEFT with "
            "lora_adapter_metadata lora_alpha/r (alpha_pattern/rank_pattern override per module, "
            "use_rslora: lora_alpha/sqrt(r)); PEFT without metadata and old diffusers formats 1.0. "
            "Conv LoRA: delta[o,i,kh,kw] = sum_r up[o,r,0,0] * down[r,i,kh,kw] (up.flatten(1) @ down.flatten(1) "
            "reshaped to the conv weight). fp16 LoRA tensors are upcast to float32 before the product; the fused "
            "weight is base (float32 upcast of the fixture's weight) + delta in float32. fuse_lora fuses the text "
            "encoders too (components unet, text_encoder[, text_encoder_2])."),
        "kohya_alpha_note": (
            "References use kohya/A1111/ComfyUI semantics (scale = alpha / rank per module, 1 without .alpha): "
            "diffusers is given the kohya file with lora_up pre-multiplied by alpha/rank and .alpha removed "
            "(its scale is then 1 for every module), so its key conversion is still exercised. diffusers 0.42.1 on "
            "the raw files applies other scales to some modules: see diffusers_raw_load."),
        "inputs": {
            "prompt": PROMPT, "timestep": TIMESTEP,
            "sd15": {"input_ids": inputs["sd15"]["input_ids"][0].tolist(),
                     "tensors": {k: list(v.shape) for k, v in REF.items() if k.startswith("sd15/")}},
            "sdxl": {"input_ids": inputs["sdxl"]["input_ids"][0].tolist(),
                     "input_ids_2": inputs["sdxl"]["input_ids_2"][0].tolist(),
                     "tensors": {k: list(v.shape) for k, v in REF.items() if k.startswith("sdxl/")}},
            "unet_call": "unet(sample, timestep, encoder_hidden_states[, added_cond_kwargs={text_embeds, time_ids}]).sample",
            "text_hidden": "text_encoder(input_ids).last_hidden_state",
            "text2_hidden": "text_encoder_2(input_ids_2, output_hidden_states=True).hidden_states[-2]",
            "text2_embeds": "text_encoder_2(input_ids_2).text_embeds",
        },
        "param_keys": ("component state_dict names: unet as in diffusion_pytorch_model.safetensors, text_encoder "
                       "flattened CLIPTextModel names (encoder.layers.N...; no text_model. prefix, as in the fixture's "
                       "model.safetensors), text_encoder_2 CLIPTextModelWithProjection names (text_model.encoder...)"),
        "files": files,
        "cases": CASES,
        "diffusers_raw_load": raw,
        "diffusers_key_style_probes": probes,
        "e2e": E2E,
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")

    total = 0
    for name in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, name))
        total += size
        with open(os.path.join(OUT, name), "rb") as fh:
            print(f"{size:9d}  {hashlib.sha256(fh.read()).hexdigest()[:16]}  {name}")
    print(f"{total:9d}  total")


if __name__ == "__main__":
    main()
