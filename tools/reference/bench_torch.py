"""PyTorch + diffusers side of the benchmark: the same cases as `ipadapter bench models`.

Real-size SD1.5 components built from the bundled configs with random weights (no download),
2 threads, warm-up then the median of --repeats runs; prints one JSON object per case:
  {"case": ..., "engine": "torch", "precision": "fp32"|"bf16", "seconds": ..., "peak_rss_mb": ...}
bf16 runs the models in torch.bfloat16 (weights and activations), the usual CPU bf16 path.
Run: tools/reference/.venv/bin/python tools/reference/bench_torch.py --cases unet-64 [--precision bf16]
"""
import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.normpath(os.path.join(HERE, "..", "..", "Sources", "Pipelines", "Resources", "configs"))
SD15 = os.path.join(CONFIGS, "stable-diffusion-v1-5")
SDXL = os.path.join(CONFIGS, "stable-diffusion-xl-base-1.0")
ALL = ["unet-64", "unet-64-ip4", "unet-64-ip16", "unet-32", "unet-32-ip4", "unet-32-ip16", "vae-decode", "vit-h", "generate-512"]
SDXL_CASES = ["sdxl-unet-128", "sdxl-unet-128-ip16", "sdxl-vae-decode-1024", "vit-bigg", "sdxl-generate-1024"]
LORA_CASES = ["lora-fuse-sd15", "lora-fuse-sdxl"]
# InstantID (instantX-research/InstantID, fetched by gen_instantid.py into a git-ignored folder).
INSTANTID_CASES = ["sdxl-controlnet-128", "instantid-128", "instantid-generate-1024"]
# Adapter training (Sources/ipadapter/BenchTraining.swift).
TRAINING_CASES = ["train-step-512", "train-step-512-checkpointing"]


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return 0


def load_json(path):
    with open(path) as f:
        return json.load(f)


def unet(dtype, root=SD15):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_config(load_json(os.path.join(root, "unet", "config.json"))).eval().to(dtype)


def text_config(path):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(**{k: v for k, v in load_json(path).items() if k not in ("architectures", "model_type", "torch_dtype")})


def vision_config(name):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(**{k: v for k, v in load_json(os.path.join(CONFIGS, name, "config.json")).items()
                               if k not in ("architectures", "model_type", "torch_dtype")})


def ip_state_dict(unet_model, tokens, cross=768, dim=768):
    """A random IP-Adapter state dict in the original layout (global 4-token or Plus 16-query;
    SDXL Plus: cross 2048, dim 1280)."""
    g = torch.Generator().manual_seed(5)
    proj = {}
    if tokens == 16:
        inner = dim
        proj["latents"] = torch.randn(1, 16, dim, generator=g) / dim**0.5
        proj["proj_in.weight"] = torch.randn(dim, 1280, generator=g) / 1280**0.5
        proj["proj_in.bias"] = torch.zeros(dim)
        proj["proj_out.weight"] = torch.randn(cross, dim, generator=g) / dim**0.5
        proj["proj_out.bias"] = torch.zeros(cross)
        proj["norm_out.weight"] = torch.ones(cross)
        proj["norm_out.bias"] = torch.zeros(cross)
        for i in range(4):
            for n in ("norm1", "norm2"):
                proj[f"layers.{i}.0.{n}.weight"] = torch.ones(dim)
                proj[f"layers.{i}.0.{n}.bias"] = torch.zeros(dim)
            proj[f"layers.{i}.0.to_q.weight"] = torch.randn(inner, dim, generator=g) / dim**0.5
            proj[f"layers.{i}.0.to_kv.weight"] = torch.randn(2 * inner, dim, generator=g) / dim**0.5
            proj[f"layers.{i}.0.to_out.weight"] = torch.randn(dim, inner, generator=g) / inner**0.5
            proj[f"layers.{i}.1.0.weight"] = torch.ones(dim)
            proj[f"layers.{i}.1.0.bias"] = torch.zeros(dim)
            proj[f"layers.{i}.1.1.weight"] = torch.randn(4 * dim, dim, generator=g) / dim**0.5
            proj[f"layers.{i}.1.3.weight"] = torch.randn(dim, 4 * dim, generator=g) / (4 * dim) ** 0.5
    else:
        proj["proj.weight"] = torch.randn(tokens * 768, 1024, generator=g) / 32
        proj["proj.bias"] = torch.zeros(tokens * 768)
        proj["norm.weight"] = torch.ones(768)
        proj["norm.bias"] = torch.zeros(768)
    ip = {}
    key = 1
    for name in unet_model.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        block = unet_model.get_submodule(name[: -len(".processor")])
        h = block.to_q.out_features
        ip[f"{key}.to_k_ip.weight"] = torch.randn(h, cross, generator=g) / cross**0.5
        ip[f"{key}.to_v_ip.weight"] = torch.randn(h, cross, generator=g) / cross**0.5
        key += 2
    return {"image_proj": proj, "ip_adapter": ip}


def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# LoRA layers as in Sources/ipadapter/BenchLoRA.swift: every transformer linear and proj_in/proj_out of
# the UNet, every CLIP text-encoder linear.
LORA_UNET_LAYERS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out")
LORA_TEXT_LAYERS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def sgm_name(path, layers_per_block):
    """kohya's SDXL block names: `down_blocks.1.attentions.0.x` -> `input_blocks.4.1.x` (mid -> `middle_block.1`,
    `up_blocks.i.attentions.j` -> `output_blocks.{i*(L+1)+j}.1`)."""
    p = path.split(".")
    n = layers_per_block + 1
    if p[0] == "down_blocks" and p[2] == "attentions":
        return ".".join(["input_blocks", str(1 + int(p[1]) * n + int(p[3])), "1"] + p[4:])
    if p[0] == "mid_block" and p[1] == "attentions":
        return ".".join(["middle_block", "1"] + p[3:])
    if p[0] == "up_blocks" and p[2] == "attentions":
        return ".".join(["output_blocks", str(int(p[1]) * n + int(p[3])), "1"] + p[4:])
    return path


def kohya_lora(model, prefix, layers, rank, seed, name=lambda n: n):
    """A random kohya LoRA (fp16 `.lora_down.weight` / `.lora_up.weight`, 0-dim `.alpha` = rank / 2) for the
    linears and convolutions of `model` whose names end with one of `layers` (BenchLoRA.tensors in Swift:
    same keys, shapes, dtypes and scales; other random values)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for path, m in sorted(model.named_modules()):
        if not isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) or not any(path.endswith("." + l) for l in layers):
            continue
        w = m.weight
        columns = w[0].numel()
        key = prefix + name(path).replace(".", "_")
        down = [rank, *w.shape[1:]] if w.dim() == 4 else [rank, columns]
        up = [w.shape[0], rank, 1, 1] if w.dim() == 4 else [w.shape[0], rank]
        out[key + ".lora_down.weight"] = ((torch.rand(down, generator=g) * 2 - 1) / columns**0.5).half()
        out[key + ".lora_up.weight"] = ((torch.rand(up, generator=g) * 2 - 1) * 0.1 / rank**0.5).half()
        out[key + ".alpha"] = torch.tensor(rank / 2, dtype=torch.float16)
    return out


def lora_fuse(name, repeats):
    """The time diffusers takes to put a LoRA file into the weights, as its docs do it:
    `pipe.load_lora_weights(file)` (read, kohya key conversion, PEFT layer injection) + `pipe.fuse_lora()`,
    restored with `unfuse_lora()` + `unload_lora_weights()` (untimed) after each run; the median
    (`statistics.median_high`, as the Swift side's) of `repeats` runs after a first one (`first_s`).
    lora-fuse-sd15: rank 128 on the UNet and the text encoder (151 MB); the pipeline is built from the
    random real-size UNet and text encoder (no VAE: the LoRA does not touch it). lora-fuse-sdxl: rank 32 on
    the UNet only, kohya SGM names (170 MB); no text encoders or VAE. Matches BenchLoRA.swift `fuseFromFile`."""
    import shutil
    import tempfile

    from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import logging as dlog
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTokenizer

    dlog.set_verbosity_error()
    sdxl = name == "lora-fuse-sdxl"
    root = SDXL if sdxl else SD15
    u = unet(torch.float32, root)
    sched = DDIMScheduler.from_config(load_json(os.path.join(root, "scheduler", "scheduler_config.json")))
    if sdxl:
        rank = 32
        lpb = u.config.layers_per_block
        sd = kohya_lora(u, "lora_unet_", LORA_UNET_LAYERS, rank, 45, name=lambda n: sgm_name(n, lpb))
        pipe = StableDiffusionXLPipeline(vae=None, text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None,
                                         unet=u, scheduler=sched, add_watermarker=False)
    else:
        rank = 128
        te = CLIPTextModel(text_config(os.path.join(SD15, "text_encoder", "config.json"))).eval()
        sd = kohya_lora(u, "lora_unet_", LORA_UNET_LAYERS, rank, 41)
        sd.update(kohya_lora(te, "lora_te_", LORA_TEXT_LAYERS, rank, 43,
                             name=lambda n: n if n.startswith("text_model.") else "text_model." + n))
        tok = CLIPTokenizer.from_pretrained(os.path.join(HERE, "..", "..", "Sources", "Tokenizers", "Resources", "clip-vit-large-patch14"))
        pipe = StableDiffusionPipeline(vae=None, text_encoder=te, tokenizer=tok, unet=u, scheduler=sched, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "lora.safetensors")
    save_file(sd, path)
    megabytes = sum(t.numel() * t.element_size() for t in sd.values()) / 1e6
    layers = len(sd) // 3
    del sd
    gc.collect()
    reset_peak()
    loads, fuses = [], []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        pipe.load_lora_weights(path, adapter_name="bench")
        t1 = time.perf_counter()
        pipe.fuse_lora()
        loads.append(t1 - t0)
        fuses.append(time.perf_counter() - t1)
        models = [pipe.unet] if sdxl else [pipe.unet, pipe.text_encoder]
        fused = sum(1 for m in models for layer in m.modules() if getattr(layer, "merged_adapters", None))
        if fused != layers:
            raise SystemExit(f"fused {fused} of {layers} LoRA layers")
        pipe.unfuse_lora()
        pipe.unload_lora_weights()
        gc.collect()
    shutil.rmtree(tmp, ignore_errors=True)
    totals = [l + f for l, f in zip(loads, fuses)]
    return statistics.median_high(totals[1:]), {
        "first_s": totals[0], "load_s": statistics.median_high(loads[1:]), "fuse_s": statistics.median_high(fuses[1:]),
        "lora_mb": megabytes, "layers": layers}


def run_case(name, dtype, repeats, steps, storage=torch.float16):
    if name in LORA_CASES:
        return lora_fuse(name, repeats)  # outside inference mode, as a user loads a LoRA
    if name in TRAINING_CASES:
        return train_step(dtype, repeats, checkpointing=name.endswith("checkpointing")), {}
    with torch.inference_mode():
        if name.startswith("unet-"):
            size = 64 if name.startswith("unet-64") else 32
            tokens = 4 if name.endswith("ip4") else 16 if name.endswith("ip16") else 0
            m = unet(torch.float32)
            kwargs = {}
            if tokens:
                m._load_ip_adapter_weights([ip_state_dict(m, tokens)])
                if tokens == 16:
                    embeds = torch.randn(2, 1, 257, 1280)
                else:
                    embeds = torch.randn(2, 1, 1024)
                kwargs["added_cond_kwargs"] = {"image_embeds": [embeds.to(dtype)]}
            m = m.to(dtype)
            sample = torch.randn(2, 4, size, size, dtype=dtype)
            text = torch.randn(2, 77, 768, dtype=dtype)
            return timed(lambda: m(sample, 500, encoder_hidden_states=text, **kwargs), repeats), {}
        if name == "vae-decode":
            from diffusers import AutoencoderKL

            vae = AutoencoderKL.from_config(load_json(os.path.join(SD15, "vae", "config.json"))).eval().to(dtype)
            z = torch.randn(1, 4, 64, 64, dtype=dtype)
            return timed(lambda: vae.decode(z), repeats), {}
        if name == "vit-h":
            from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

            cfg = CLIPVisionConfig(**{k: v for k, v in load_json(os.path.join(CONFIGS, "clip-vit-h-14", "config.json")).items()
                                      if k not in ("architectures", "model_type", "torch_dtype")})
            enc = CLIPVisionModelWithProjection(cfg).eval().to(dtype)
            px = torch.randn(1, 3, 224, 224, dtype=dtype)
            return timed(lambda: enc(px), repeats), {}
        if name == "generate-512":
            return generate(dtype, steps, storage)
        if name.startswith("sdxl-unet-128"):
            m = unet(torch.float32, SDXL)
            kwargs = {}
            added = {"text_embeds": torch.randn(2, 1280, dtype=dtype),
                     "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * 2, dtype=dtype)}
            if name.endswith("ip16"):
                m._load_ip_adapter_weights([ip_state_dict(m, 16, cross=2048, dim=1280)])
                added["image_embeds"] = [torch.randn(2, 1, 257, 1280, dtype=dtype)]
            m = m.to(dtype)
            sample = torch.randn(2, 4, 128, 128, dtype=dtype)
            text = torch.randn(2, 77, 2048, dtype=dtype)
            return timed(lambda: m(sample, 500, encoder_hidden_states=text, added_cond_kwargs=added), repeats), {}
        if name == "sdxl-vae-decode-1024":
            from diffusers import AutoencoderKL

            vae = AutoencoderKL.from_config(load_json(os.path.join(SDXL, "vae", "config.json"))).eval().to(dtype)
            z = torch.randn(1, 4, 128, 128, dtype=dtype)
            return timed(lambda: vae.decode(z), repeats), {}
        if name == "vit-bigg":
            from transformers import CLIPVisionModelWithProjection

            enc = CLIPVisionModelWithProjection(vision_config("clip-vit-bigg-14")).eval().to(dtype)
            px = torch.randn(1, 3, 224, 224, dtype=dtype)
            return timed(lambda: enc(px), repeats), {}
        if name == "sdxl-generate-1024":
            return generate_sdxl(dtype, steps, storage)
        if name in ("sdxl-controlnet-128", "instantid-128"):
            return controlled_step(name, dtype, repeats)
        if name == "instantid-generate-1024":
            return generate_instantid(dtype, steps, storage)
    raise SystemExit(f"unknown case {name}")


def generate_sdxl(dtype, steps, storage=torch.float16):
    """As generate(), for SDXL base at 1024² with `ip-adapter-plus_sdxl_vit-h`'s shape (ViT-H encoder)."""
    import shutil
    import tempfile

    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection

    tmp = tempfile.mkdtemp()
    u = unet(torch.float32, SDXL)
    ip = ip_state_dict(u, 16, cross=2048, dim=1280)
    u.to(storage).save_pretrained(os.path.join(tmp, "unet"))
    del u
    gc.collect()
    AutoencoderKL.from_config(load_json(os.path.join(SDXL, "vae", "config.json"))).to(storage).save_pretrained(os.path.join(tmp, "vae"))
    CLIPTextModel(text_config(os.path.join(SDXL, "text_encoder", "config.json"))).to(storage).save_pretrained(
        os.path.join(tmp, "text_encoder"))
    CLIPTextModelWithProjection(text_config(os.path.join(SDXL, "text_encoder_2", "config.json"))).to(storage).save_pretrained(
        os.path.join(tmp, "text_encoder_2"))
    CLIPVisionModelWithProjection(vision_config("clip-vit-h-14")).to(storage).save_pretrained(os.path.join(tmp, "image_encoder"))
    gc.collect()
    reset_peak()

    start = time.perf_counter()
    u = UNet2DConditionModel.from_pretrained(os.path.join(tmp, "unet"), torch_dtype=dtype)
    vae = AutoencoderKL.from_pretrained(os.path.join(tmp, "vae"), torch_dtype=dtype)
    text = CLIPTextModel.from_pretrained(os.path.join(tmp, "text_encoder"), torch_dtype=dtype)
    text2 = CLIPTextModelWithProjection.from_pretrained(os.path.join(tmp, "text_encoder_2"), torch_dtype=dtype)
    enc = CLIPVisionModelWithProjection.from_pretrained(os.path.join(tmp, "image_encoder"), torch_dtype=dtype)
    vocab = os.path.join(HERE, "..", "..", "Sources", "Tokenizers", "Resources", "clip-vit-large-patch14")
    tok = CLIPTokenizer.from_pretrained(vocab)
    tok2 = CLIPTokenizer.from_pretrained(vocab, pad_token="!")
    sched = DPMSolverMultistepScheduler.from_config(load_json(os.path.join(SDXL, "scheduler", "scheduler_config.json")),
                                                    algorithm_type="dpmsolver++", solver_order=2)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text, text_encoder_2=text2, tokenizer=tok, tokenizer_2=tok2,
                                     unet=u, scheduler=sched, image_encoder=enc, feature_extractor=CLIPImageProcessor(),
                                     add_watermarker=False)
    pipe.load_ip_adapter(ip, subfolder="", weight_name="", image_encoder_folder=None)
    pipe.set_ip_adapter_scale(0.6)
    pipe = pipe.to(dtype)
    pipe.set_progress_bar_config(disable=True)
    loaded = time.perf_counter() - start
    first = {}

    def mark_first_step(module, args):
        first.setdefault("t", time.perf_counter())

    pipe.unet.register_forward_pre_hook(mark_first_step)
    image = Image.new("RGB", (1024, 1024), (128, 128, 128))
    with torch.inference_mode():
        pipe("a photo of a cat", ip_adapter_image=image, num_inference_steps=steps, width=1024, height=1024,
             generator=torch.Generator().manual_seed(0))
    total = time.perf_counter() - start
    shutil.rmtree(tmp, ignore_errors=True)
    return total, {"load_s": loaded, "first_step_s": first.get("t", start) - start}


def instantid_reference():
    """The InstantID repository's pipeline module (fetched and shimmed by gen_instantid.py)."""
    sys.path.insert(0, HERE)
    import gen_instantid

    pipeline_module, Resampler, _ = gen_instantid.instantid_modules()
    return pipeline_module, Resampler


def processor_width(name, cfg):
    """Channels of the UNet attention behind processor `name` (the reference's set_ip_adapter rule)."""
    if name.startswith("mid_block"):
        return cfg.block_out_channels[-1]
    if name.startswith("up_blocks"):
        return list(reversed(cfg.block_out_channels))[int(name[len("up_blocks.")])]
    return cfg.block_out_channels[int(name[len("down_blocks.")])]


def instantid_attention(unet_model, tokens=16, scale=0.8):
    """The reference's `set_ip_adapter`: its IPAttnProcessor (2_0) on every cross-attention layer
    (random to_k_ip/to_v_ip), its AttnProcessor on the self-attention ones."""
    pipeline_module, _ = instantid_reference()
    procs = {}
    cfg = unet_model.config
    for name in unet_model.attn_processors.keys():
        if name.endswith("attn1.processor"):
            procs[name] = pipeline_module.AttnProcessor()
            continue
        procs[name] = pipeline_module.IPAttnProcessor(hidden_size=processor_width(name, cfg), cross_attention_dim=cfg.cross_attention_dim,
                                                      scale=scale, num_tokens=tokens)
    unet_model.set_attn_processor(procs)


def controlled_step(name, dtype, repeats):
    """One CFG step at 128×128 of the SDXL UNet and a ControlNet (`ControlNetModel.from_unet`, as
    IdentityNet), as the pipelines call them. sdxl-controlnet-128: the ControlNet reads the text;
    instantid-128: the reference's attention processors on the UNet (text + 16 face tokens, split
    by its IPAttnProcessor) and the ControlNet reading the face tokens."""
    from diffusers import ControlNetModel

    m = unet(torch.float32, SDXL)
    net = ControlNetModel.from_unet(m)
    if name == "instantid-128":
        instantid_attention(m)
    m = m.to(dtype)
    net = net.eval().to(dtype)
    added = {"text_embeds": torch.randn(2, 1280, dtype=dtype),
             "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * 2, dtype=dtype)}
    sample = torch.randn(2, 4, 128, 128, dtype=dtype)
    text = torch.randn(2, 77, 2048, dtype=dtype)
    hint = torch.rand(2, 3, 1024, 1024, dtype=dtype)
    face = torch.randn(2, 16, 2048, dtype=dtype)
    unet_context = torch.cat([text, face], dim=1) if name == "instantid-128" else text
    control_context = face if name == "instantid-128" else text

    def step():
        down, mid = net(sample, 500, encoder_hidden_states=control_context, controlnet_cond=hint, conditioning_scale=0.8,
                        added_cond_kwargs=added, return_dict=False)
        m(sample, 500, encoder_hidden_states=unet_context, added_cond_kwargs=added, down_block_additional_residuals=down,
          mid_block_additional_residual=mid)

    return timed(step, repeats), {}


def generate_instantid(dtype, steps, storage=torch.float16):
    """As generate_sdxl(), with the InstantID reference pipeline (StableDiffusionXLInstantIDPipeline
    of instantX-research/InstantID 2145b67): random weights saved first (untimed; `ip-adapter.bin` in
    the released layout, IdentityNet = ControlNetModel.from_unet), then timed: loading, text
    encoding and face tokens, `steps` DPM++ 2M steps at 1024² (guidance 5, adapter and IdentityNet
    at 0.8), VAE decode. The face is given (embedding + keypoint image), as the pipeline takes it."""
    import shutil
    import tempfile

    from diffusers import AutoencoderKL, ControlNetModel, DPMSolverMultistepScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    pipeline_module, Resampler = instantid_reference()
    tmp = tempfile.mkdtemp()
    u = unet(torch.float32, SDXL)
    ControlNetModel.from_unet(u).to(storage).save_pretrained(os.path.join(tmp, "ControlNetModel"))
    proj = Resampler(dim=1280, depth=4, dim_head=64, heads=20, num_queries=16, embedding_dim=512, output_dim=2048, ff_mult=4)
    ip = {}
    for i, name in enumerate(u.attn_processors.keys()):
        if name.endswith("attn1.processor"):
            continue
        for kv in ("k", "v"):
            ip[f"{i}.to_{kv}_ip.weight"] = (torch.randn(processor_width(name, u.config), 2048) / 2048**0.5).to(storage)
    torch.save({"image_proj": {k: v.to(storage) for k, v in proj.state_dict().items()}, "ip_adapter": ip},
               os.path.join(tmp, "ip-adapter.bin"))
    u.to(storage).save_pretrained(os.path.join(tmp, "unet"))
    del u, proj, ip
    gc.collect()
    AutoencoderKL.from_config(load_json(os.path.join(SDXL, "vae", "config.json"))).to(storage).save_pretrained(os.path.join(tmp, "vae"))
    CLIPTextModel(text_config(os.path.join(SDXL, "text_encoder", "config.json"))).to(storage).save_pretrained(
        os.path.join(tmp, "text_encoder"))
    CLIPTextModelWithProjection(text_config(os.path.join(SDXL, "text_encoder_2", "config.json"))).to(storage).save_pretrained(
        os.path.join(tmp, "text_encoder_2"))
    gc.collect()
    face = torch.randn(512)  # a raw ArcFace embedding (norm about 20; here about 22.6)
    kps = [(400, 420), (620, 420), (510, 540), (430, 650), (600, 650)]
    from PIL import Image
    kps_image = pipeline_module.draw_kps(Image.new("RGB", (1024, 1024)), kps)
    reset_peak()

    start = time.perf_counter()
    net = ControlNetModel.from_pretrained(os.path.join(tmp, "ControlNetModel"), torch_dtype=dtype)
    u = UNet2DConditionModel.from_pretrained(os.path.join(tmp, "unet"), torch_dtype=dtype)
    vae = AutoencoderKL.from_pretrained(os.path.join(tmp, "vae"), torch_dtype=dtype)
    text = CLIPTextModel.from_pretrained(os.path.join(tmp, "text_encoder"), torch_dtype=dtype)
    text2 = CLIPTextModelWithProjection.from_pretrained(os.path.join(tmp, "text_encoder_2"), torch_dtype=dtype)
    vocab = os.path.join(HERE, "..", "..", "Sources", "Tokenizers", "Resources", "clip-vit-large-patch14")
    tok = CLIPTokenizer.from_pretrained(vocab)
    tok2 = CLIPTokenizer.from_pretrained(vocab, pad_token="!")
    sched = DPMSolverMultistepScheduler.from_config(load_json(os.path.join(SDXL, "scheduler", "scheduler_config.json")),
                                                    algorithm_type="dpmsolver++", solver_order=2)
    pipe = pipeline_module.StableDiffusionXLInstantIDPipeline(
        vae=vae, text_encoder=text, text_encoder_2=text2, tokenizer=tok, tokenizer_2=tok2, unet=u, controlnet=net,
        scheduler=sched, add_watermarker=False)
    pipe.load_ip_adapter_instantid(os.path.join(tmp, "ip-adapter.bin"))
    pipe.set_progress_bar_config(disable=True)
    loaded = time.perf_counter() - start
    first = {}

    def mark_first_step(module, args):
        first.setdefault("t", time.perf_counter())

    pipe.unet.register_forward_pre_hook(mark_first_step)
    with torch.inference_mode():
        pipe("a photo of a person", image_embeds=face, image=kps_image, controlnet_conditioning_scale=0.8,
             ip_adapter_scale=0.8, num_inference_steps=steps, guidance_scale=5.0, width=1024, height=1024,
             generator=torch.Generator().manual_seed(0))
    total = time.perf_counter() - start
    shutil.rmtree(tmp, ignore_errors=True)
    return total, {"load_s": loaded, "first_step_s": first.get("t", start) - start}


def generate(dtype, steps, storage=torch.float16):
    """Random weights saved as checkpoint files first (untimed; in `storage`, fp16 or fp32, as the
    Swift benchmark's --checkpoint-dtype, so both engines read the same bytes), then timed: loading
    them the way a diffusers user does (`torch_dtype` = the compute precision), image + text encoding, `steps`
    DPM++ 2M steps with CFG and a Plus adapter (scale 0.6), VAE decode."""
    import tempfile

    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)
    from PIL import Image

    tmp = tempfile.mkdtemp()
    u = unet(torch.float32)
    ip = ip_state_dict(u, 16)
    u.to(storage).save_pretrained(os.path.join(tmp, "unet"))
    del u
    AutoencoderKL.from_config(load_json(os.path.join(SD15, "vae", "config.json"))).to(storage).save_pretrained(os.path.join(tmp, "vae"))
    tcfg = {k: v for k, v in load_json(os.path.join(SD15, "text_encoder", "config.json")).items()
            if k not in ("architectures", "model_type", "torch_dtype")}
    CLIPTextModel(CLIPTextConfig(**tcfg)).to(storage).save_pretrained(os.path.join(tmp, "text_encoder"))
    vcfg = {k: v for k, v in load_json(os.path.join(CONFIGS, "clip-vit-h-14", "config.json")).items()
            if k not in ("architectures", "model_type", "torch_dtype")}
    CLIPVisionModelWithProjection(CLIPVisionConfig(**vcfg)).to(storage).save_pretrained(os.path.join(tmp, "image_encoder"))
    gc.collect()
    reset_peak()  # writing the random checkpoints is set-up, not part of a user's generation

    start = time.perf_counter()
    u = UNet2DConditionModel.from_pretrained(os.path.join(tmp, "unet"), torch_dtype=dtype)
    vae = AutoencoderKL.from_pretrained(os.path.join(tmp, "vae"), torch_dtype=dtype)
    text = CLIPTextModel.from_pretrained(os.path.join(tmp, "text_encoder"), torch_dtype=dtype)
    enc = CLIPVisionModelWithProjection.from_pretrained(os.path.join(tmp, "image_encoder"), torch_dtype=dtype)
    tok = CLIPTokenizer.from_pretrained(os.path.join(HERE, "..", "..", "Sources", "Tokenizers", "Resources", "clip-vit-large-patch14"))
    sched = DPMSolverMultistepScheduler.from_config(load_json(os.path.join(SD15, "scheduler", "scheduler_config.json")),
                                                    algorithm_type="dpmsolver++", solver_order=2)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=u, scheduler=sched, safety_checker=None,
                                   feature_extractor=CLIPImageProcessor(), image_encoder=enc, requires_safety_checker=False)
    pipe.load_ip_adapter(ip, subfolder="", weight_name="", image_encoder_folder=None)
    pipe.set_ip_adapter_scale(0.6)
    pipe = pipe.to(dtype)
    pipe.set_progress_bar_config(disable=True)
    loaded = time.perf_counter() - start
    first = {}

    def mark_first_step(module, args):
        first.setdefault("t", time.perf_counter())  # returns None: the arguments are unchanged

    pipe.unet.register_forward_pre_hook(mark_first_step)
    image = Image.new("RGB", (512, 512), (128, 128, 128))
    with torch.inference_mode():
        pipe("a photo of a cat", ip_adapter_image=image, num_inference_steps=steps, width=512, height=512,
             generator=torch.Generator().manual_seed(0))
    total = time.perf_counter() - start
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return total, {"load_s": loaded, "first_step_s": first.get("t", start) - start}


def train_step(dtype, repeats, checkpointing=False):
    """One optimiser step of a new SD1.5 Plus adapter at 512², batch 1, as tutorial_train_plus.py takes it:
    frozen VAE / text encoder / ViT-H, diffusers' IP-Adapter Plus projection and IPAdapterAttnProcessor2_0
    (the official processor's math) trainable, AdamW(lr 1e-4, weight decay 1e-2). bf16: the forward pass under
    torch.autocast("cpu", torch.bfloat16), fp32 master weights (accelerate's mixed precision). checkpointing:
    unet.enable_gradient_checkpointing() (every ResNet and transformer recomputed in the backward pass)."""
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler
    from transformers import CLIPTextModel, CLIPVisionModelWithProjection

    m = unet(torch.float32)
    m._load_ip_adapter_weights([ip_state_dict(m, 16)])
    if checkpointing:
        m.enable_gradient_checkpointing()
        m.train()  # diffusers checkpoints only in training mode (no dropout in the SD1.5 UNet)
    vae = AutoencoderKL.from_config(load_json(os.path.join(SD15, "vae", "config.json"))).eval()
    text_encoder = CLIPTextModel(text_config(os.path.join(SD15, "text_encoder", "config.json"))).eval()
    image_encoder = CLIPVisionModelWithProjection(vision_config("clip-vit-h-14")).eval()
    for module in (m, vae, text_encoder, image_encoder):
        module.requires_grad_(False)
    m.encoder_hid_proj.requires_grad_(True)
    for proc in m.attn_processors.values():
        if isinstance(proc, torch.nn.Module):
            proc.requires_grad_(True)
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    scheduler = DDPMScheduler.from_config(load_json(os.path.join(SD15, "scheduler", "scheduler_config.json")))
    images = torch.randn(1, 3, 512, 512)
    clip = torch.randn(1, 3, 224, 224)
    ids = torch.randint(0, 49408, (1, 77))
    autocast = dtype == torch.bfloat16

    def step():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            latents = vae.encode(images).latent_dist.sample() * 0.18215
            noise = torch.randn_like(latents)
            t = torch.randint(0, 1000, (1,))
            noisy = scheduler.add_noise(latents, noise, t)
            text = text_encoder(ids)[0]
            embeds = image_encoder(clip, output_hidden_states=True).hidden_states[-2]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            pred = m(noisy, t, text, added_cond_kwargs={"image_embeds": [embeds.unsqueeze(1)]}).sample
        loss = F.mse_loss(pred.float(), noise.float())
        opt.zero_grad()
        loss.backward()
        opt.step()

    return timed(step, repeats)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="*", default=ALL,
                    help=f"default: the SD1.5 cases; SDXL: {' '.join(SDXL_CASES)}; LoRA: {' '.join(LORA_CASES)}; "
                         f"InstantID: {' '.join(INSTANTID_CASES)}; training: {' '.join(TRAINING_CASES)}")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoint-dtype", default="fp16", choices=["fp16", "fp32"],
                    help="storage dtype of the checkpoint files generate-512 loads")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dtype = torch.float32 if a.precision == "fp32" else torch.bfloat16
    for name in a.cases:
        reset_peak()
        storage = torch.float16 if a.checkpoint_dtype == "fp16" else torch.float32
        seconds, notes = run_case(name, dtype, a.repeats, a.steps, storage)
        out = {"case": name, "engine": "torch", "precision": a.precision, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}
        out.update(notes)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
