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


def run_case(name, dtype, repeats, steps, storage=torch.float16):
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="*", default=ALL, help=f"default: the SD1.5 cases; SDXL: {' '.join(SDXL_CASES)}")
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
