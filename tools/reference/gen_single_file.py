"""Single-file (CompVis/LDM layout) fixtures made from the tiny diffusers pipelines with diffusers' own
conversion script, verified by loading them back with diffusers' `from_single_file`.

The diffusers -> LDM direction is not in the pip package; it is diffusers'
`scripts/convert_diffusers_to_original_stable_diffusion.py` from the GitHub repository, pinned to
commit CONVERTER_COMMIT. The script is read from a local clone (`--converter FILE` or
`--diffusers-repo DIR`, default /work/.mirror/huggingface+diffusers/repo) and its conversion functions
are imported; nothing is reimplemented here.

Writes (Tests/Fixtures/single-file/)
  tiny-sd15.safetensors             tiny-sd15 in LDM layout: UNet and VAE fp16, CLIP fp32 (exactly the
                                    folder's stored dtypes, so the Swift loader can be compared bit for bit)
  tiny-sd15-inpainting.ckpt         tiny-sd15-inpainting, every tensor bf16, torch.save of
                                    {"state_dict": ..., "epoch": 1, "global_step": 7} with LDM extras:
                                    one flattened EMA copy (model_ema.diffusion_modelinput_blocks00bias,
                                    deliberately different), model_ema.decay (f32 scalar),
                                    model_ema.num_updates (int32), the CLIP position_ids (int64) and the
                                    DDPM buffer alphas_cumprod (f32)
  tiny-vae-ldm.safetensors          the tiny VAE alone, LDM layout without prefix (encoder.down.0...), fp16
  inpaint9-ddim-1.0-bf16.{png,safetensors}
                                    diffusers' StableDiffusionInpaintPipeline.from_single_file(ckpt)
                                    generation (the gen_sd15_pipelines.py case inpaint9-ddim-1.0)
  sd15-key-map.json                 every UNet and VAE key of the real Stable Diffusion 1.5 architecture
                                    (bundled configs, meta tensors) with the LDM key the converter gives it
  manifest.json                     what was written, with sha256 and diffusers' model-type inference
The diffusers-layout VAE file the tests use is tiny-sd15/vae/diffusion_pytorch_model.safetensors.

Every file is loaded back with diffusers' `from_single_file(path, config=<tiny folder>)` (no
`original_config`: the tiny folder's diffusers configs describe the architecture, so nothing is
downloaded) and each tensor compared with the folder's, bit for bit (after the BF16 cast for the
.ckpt). The .ckpt is BF16 rather than F32 to keep the fixtures near 3 MB (an F32 copy of the tiny
pipeline alone is 2.4 MB); F32 storage is covered by the CLIP weights of tiny-sd15.safetensors.

Run (offline; needs the diffusers clone):
  tools/reference/.venv/bin/python tools/reference/gen_single_file.py
"""
import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

CONVERTER_COMMIT = "58eb52c0803ea9af3abec60841c2a093bdf1f951"
CONVERTER_PATH = "scripts/convert_diffusers_to_original_stable_diffusion.py"
HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures"))
PIPE = os.path.join(FIX, "tiny-sd15")
INPAINT = os.path.join(FIX, "tiny-sd15-inpainting")
IMAGES = os.path.join(FIX, "images")
OUT = os.path.join(FIX, "single-file")


def load_converter(args, path=CONVERTER_PATH, name="convert_diffusers_to_original"):
    """Imports one of diffusers' conversion scripts (`path` in the repo, at the pinned revision)."""
    local = getattr(args, "converter", None) if path == CONVERTER_PATH else None
    if local is None:
        source = subprocess.run(
            ["git", "-C", args.diffusers_repo, "show", f"{CONVERTER_COMMIT}:{path}"],
            check=True, capture_output=True, text=True).stdout
        tmp = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
        tmp.write(source)
        tmp.close()
        local = tmp.name
    spec = importlib.util.spec_from_file_location(name, local)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def folder_state_dicts(folder):
    unet = load_file(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"))
    vae = load_file(os.path.join(folder, "vae", "diffusion_pytorch_model.safetensors"))
    text = load_file(os.path.join(folder, "text_encoder", "model.safetensors"))
    # transformers 5 saves CLIPTextModel without the `text_model.` wrapper; real SD1.x text encoders
    # (and diffusers' single-file CLIP detection) have it.
    text = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in text.items()}
    return unet, vae, text


def to_ldm(conv, folder):
    """The script's __main__ block, as functions: UNet, VAE and (SD1.x) text encoder."""
    unet, vae, text = folder_state_dicts(folder)
    assert "text_model.encoder.layers.22.layer_norm2.bias" not in text  # an SD1.x text encoder
    u = {"model.diffusion_model." + k: v for k, v in conv.convert_unet_state_dict(unet).items()}
    v = {"first_stage_model." + k: t for k, t in conv.convert_vae_state_dict(vae).items()}
    c = {"cond_stage_model.transformer." + k: t for k, t in conv.convert_text_enc_state_dict(text).items()}
    assert len(u) == len(unet) and len(v) == len(vae) and len(c) == len(text)
    return {**u, **v, **c}


def contiguous(sd):
    return {k: t.contiguous() for k, t in sd.items()}


def check_equal(name, got, want, cast=None):
    """Every tensor of `want` (a folder component, optionally cast) is in `got`, bit for bit."""
    got = {k.removeprefix("text_model."): t for k, t in got.items() if not k.endswith("position_ids")}
    want = {k.removeprefix("text_model."): t for k, t in want.items()}
    assert set(got) == set(want), f"{name}: keys differ: {sorted(set(got) ^ set(want))[:10]}"
    for k, w in want.items():
        if cast is not None:
            w = w.to(cast)
        g = got[k]
        assert g.shape == w.shape, f"{name}.{k}: shape {tuple(g.shape)} != {tuple(w.shape)}"
        assert torch.equal(g.to(w.dtype), w), f"{name}.{k}: values differ"
    print(f"  {name}: {len(want)} tensors identical")


def verify_pipeline(path, folder, cls_name, cast=None):
    """diffusers loads the single file back to the folder's tensors (cast to the file's dtype)."""
    import diffusers

    pipe = getattr(diffusers, cls_name).from_single_file(
        path, config=folder, local_files_only=True, safety_checker=None, torch_dtype=torch.float32)
    unet, vae, text = folder_state_dicts(folder)
    check_equal("unet", pipe.unet.state_dict(), unet, cast)
    check_equal("vae", pipe.vae.state_dict(), vae, cast)
    check_equal("text_encoder", pipe.text_encoder.state_dict(), text, cast)
    return pipe


class KeyOnly:
    """A stand-in tensor that remembers its diffusers key through the converter's renames and reshapes."""

    def __init__(self, key, shape):
        self.key, self.shape = key, list(shape)

    @property
    def ndim(self):
        return len(self.shape)

    def reshape(self, *shape):
        return KeyOnly(self.key, shape)


def write_sd15_key_map(conv):
    import contextlib
    import io

    from diffusers import AutoencoderKL, UNet2DConditionModel

    configs = os.path.normpath(os.path.join(HERE, "..", "..", "Sources", "Pipelines", "Resources", "configs",
                                            "stable-diffusion-v1-5"))
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(os.path.join(configs, "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(os.path.join(configs, "vae")))
    unet_map = conv.convert_unet_state_dict({k: k for k in unet.state_dict()})
    vae_sd = {k: KeyOnly(k, t.shape) for k, t in vae.state_dict().items()}
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints every rename
        vae_map = conv.convert_vae_state_dict(vae_sd)
    out = {
        "unet": sorted([ldm, diffusers] for ldm, diffusers in unet_map.items()),
        # [LDM key, LDM shape, diffusers key, diffusers shape]
        "vae": sorted([ldm, t.shape, t.key, list(vae_sd[t.key].shape)] for ldm, t in vae_map.items()),
    }
    assert len(out["unet"]) == 686 and len(out["vae"]) == 248
    with open(os.path.join(OUT, "sd15-key-map.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--converter", help="path of convert_diffusers_to_original_stable_diffusion.py")
    parser.add_argument("--diffusers-repo", default="/work/.mirror/huggingface+diffusers/repo")
    args = parser.parse_args()
    conv = load_converter(args)
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    os.makedirs(OUT, exist_ok=True)
    manifest = {"converter": f"huggingface/diffusers@{CONVERTER_COMMIT}:{CONVERTER_PATH}", "files": {}}

    # 1. Text-to-image, safetensors, the folder's dtypes (UNet/VAE fp16, CLIP fp32).
    main_sd = contiguous(to_ldm(conv, PIPE))
    main_path = os.path.join(OUT, "tiny-sd15.safetensors")
    save_file(main_sd, main_path)
    print("tiny-sd15.safetensors")
    verify_pipeline(main_path, PIPE, "StableDiffusionPipeline")
    manifest["files"]["tiny-sd15.safetensors"] = {
        "from": "tiny-sd15", "dtypes": "UNet/VAE F16, CLIP F32", "tensors": len(main_sd),
        "diffusers_model_type": infer_diffusers_model_type(main_sd)}

    # 2. Inpainting, .ckpt (torch zip), bf16, state_dict wrapper and LDM extras.
    sd = {k: t.to(torch.bfloat16) for k, t in to_ldm(conv, INPAINT).items()}
    ema_key = "model_ema.diffusion_modelinput_blocks00bias"  # LitEma's flattened name of ...input_blocks.0.0.bias
    sd[ema_key] = (sd["model.diffusion_model.input_blocks.0.0.bias"].float() * 2 + 1).to(torch.bfloat16)
    sd["model_ema.decay"] = torch.tensor(0.9999, dtype=torch.float32)
    sd["model_ema.num_updates"] = torch.tensor(7, dtype=torch.int32)
    sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None]
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    sd["alphas_cumprod"] = torch.cumprod(1 - betas, 0).float()
    ckpt_path = os.path.join(OUT, "tiny-sd15-inpainting.ckpt")
    torch.save({"state_dict": contiguous(sd), "epoch": 1, "global_step": 7}, ckpt_path)
    print("tiny-sd15-inpainting.ckpt")
    pipe = verify_pipeline(ckpt_path, INPAINT, "StableDiffusionInpaintPipeline", cast=torch.bfloat16)
    manifest["files"]["tiny-sd15-inpainting.ckpt"] = {
        "from": "tiny-sd15-inpainting", "dtypes": "BF16 (+ extras: F32, I32, I64)", "tensors": len(sd),
        "wrapper": {"state_dict": "...", "epoch": 1, "global_step": 7},
        "extras": [ema_key, "model_ema.decay", "model_ema.num_updates",
                   "cond_stage_model.transformer.text_model.embeddings.position_ids", "alphas_cumprod"],
        "diffusers_model_type": infer_diffusers_model_type(sd)}

    # Its generation, as gen_sd15_pipelines.py's inpaint9-ddim-1.0 (4 DDIM steps, seed 0).
    import diffusers

    with open(os.path.join(PIPE, "scheduler", "scheduler_config.json")) as f:
        pipe.scheduler = diffusers.DDIMScheduler.from_config(json.load(f))
    pipe.set_progress_bar_config(disable=True)
    captured = {}

    def grab(p, i, t, kw):
        captured["latents"] = kw["latents"].clone()
        return kw

    result = pipe("a red cube", negative_prompt="blurry, low quality",
                  image=Image.open(os.path.join(IMAGES, "init-64.png")).convert("RGB"),
                  mask_image=Image.open(os.path.join(IMAGES, "mask-64.png")), strength=1.0,
                  num_inference_steps=4, guidance_scale=7.5, generator=torch.Generator("cpu").manual_seed(0),
                  output_type="pil", callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"])
    result.images[0].save(os.path.join(OUT, "inpaint9-ddim-1.0-bf16.png"))
    save_file({"latents": captured["latents"].contiguous()}, os.path.join(OUT, "inpaint9-ddim-1.0-bf16.safetensors"))
    manifest["goldens"] = {"inpaint9-ddim-1.0-bf16": {
        "pipeline": "StableDiffusionInpaintPipeline.from_single_file(tiny-sd15-inpainting.ckpt, torch_dtype=float32)",
        "prompt": "a red cube", "negative_prompt": "blurry, low quality", "image": "init-64.png",
        "mask_image": "mask-64.png", "strength": 1.0, "num_inference_steps": 4, "guidance_scale": 7.5,
        "scheduler": "DDIMScheduler", "seed": 0}}

    # 3. The VAE alone in LDM layout without prefix (as vae-ft-mse-840000-ema-pruned.safetensors), fp16
    #    (the folder's dtype).
    _, vae, _ = folder_state_dicts(PIPE)
    vae_ldm = contiguous(conv.convert_vae_state_dict(vae))
    vae_path = os.path.join(OUT, "tiny-vae-ldm.safetensors")
    save_file(vae_ldm, vae_path)
    print("tiny-vae-ldm.safetensors")
    loaded = diffusers.AutoencoderKL.from_single_file(
        vae_path, config=os.path.join(PIPE, "vae"), local_files_only=True, torch_dtype=torch.float32)
    check_equal("vae", loaded.state_dict(), vae)
    manifest["files"]["tiny-vae-ldm.safetensors"] = {"from": "tiny-sd15/vae", "dtypes": "F16", "tensors": len(vae_ldm)}

    # 4. The converter's key map at the real SD1.5 size (4 blocks; the tiny UNet has 3).
    write_sd15_key_map(conv)
    manifest["files"]["sd15-key-map.json"] = {"from": "Sources/Pipelines/Resources/configs/stable-diffusion-v1-5"}

    for name, entry in manifest["files"].items():
        entry["sha256"] = sha256(os.path.join(OUT, name))
        entry["bytes"] = os.path.getsize(os.path.join(OUT, name))
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
