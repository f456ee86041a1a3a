"""A single-file SDXL (SGM layout) fixture made from a tiny diffusers SDXL pipeline with diffusers' own
conversion script, verified by loading it back with diffusers' `from_single_file`.

The diffusers -> SGM direction is not in the pip package; it is diffusers'
`scripts/convert_diffusers_to_original_sdxl.py` from the GitHub repository, pinned to CONVERTER_COMMIT
(the same revision gen_single_file.py uses), read from a local clone (`--diffusers-repo DIR`, default
/work/.mirror/huggingface+diffusers/repo); its conversion functions are imported, nothing is
reimplemented here.

Writes (Tests/Fixtures/single-file/)
  tiny-sdxl-configs/                 the diffusers configs of the checkpoint: model_index.json, unet/config.json
                                     (its own small UNet, with SDXL's block structure — the converter hard-codes
                                     3 levels of 2 layers — and narrow channels), every other component a
                                     relative symlink into tiny-sdxl/
  tiny-sdxl.safetensors              that pipeline in the layout of sd_xl_base_1.0.safetensors:
                                     model.diffusion_model.* (with label_emb), first_stage_model.*,
                                     conditioner.embedders.0.transformer.text_model.*, conditioner.embedders.1.model.*
                                     (OpenCLIP: fused in_proj, text_projection stored transposed) plus logit_scale,
                                     which loaders ignore; UNet/VAE F16, text encoders F32
  sdxl-t2i.{png,safetensors}         StableDiffusionXLPipeline.from_single_file(…, config=tiny-sdxl-configs)
                                     generation: final latents and image
  manifest-sdxl.json                 sha256 and diffusers' model-type inference

Run (offline; needs the diffusers clone):
  tools/reference/.venv/bin/python tools/reference/gen_single_file_sdxl.py
"""
import argparse
import hashlib
import json
import types
import os
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(__file__))
import gen_single_file as sf  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

CONVERTER_PATH = "scripts/convert_diffusers_to_original_sdxl.py"
HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures"))
BASE = os.path.join(FIX, "tiny-sdxl")
OUT = os.path.join(FIX, "single-file")
FOLDER = os.path.join(OUT, "tiny-sdxl-configs")
OPENCLIP = "conditioner.embedders.1.model."
UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, block_out_channels=[8, 16, 24],
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], layers_per_block=2,
    transformer_layers_per_block=[1, 1, 2], attention_head_dim=[2, 2, 4], use_linear_projection=True,
    cross_attention_dim=50, norm_num_groups=4, norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0,
    addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 14)


def load_converter(repo):
    """diffusers' SDXL conversion script at the pinned revision (gen_single_file's loader)."""
    return sf.load_converter(types.SimpleNamespace(diffusers_repo=repo), path=CONVERTER_PATH,
                             name="convert_diffusers_to_original_sdxl")


def write_configs():
    """The configs folder and the UNet's weights (fp16 values), which only the single file holds."""
    import shutil

    import gen_sdxl
    from diffusers import UNet2DConditionModel

    if os.path.lexists(FOLDER):
        shutil.rmtree(FOLDER)
    os.makedirs(os.path.join(FOLDER, "unet"))
    with open(os.path.join(BASE, "model_index.json")) as fh:
        index = json.load(fh)
    for name, value in index.items():
        if not name.startswith("_") and isinstance(value, list) and value[0] is not None and name != "unet":
            os.symlink(os.path.join("..", "..", "tiny-sdxl", name), os.path.join(FOLDER, name))
    with open(os.path.join(FOLDER, "model_index.json"), "w") as fh:
        json.dump(index, fh, indent=2, sort_keys=True)
        fh.write("\n")
    torch.manual_seed(70)
    unet = gen_sdxl.randomised(UNet2DConditionModel(**UNET), 71)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(p.half().float())
    unet.save_config(os.path.join(FOLDER, "unet"))
    gen_sdxl.tiny_models.normalise_configs(FOLDER, recursive=False)
    gen_sdxl.tiny_models.normalise_configs(os.path.join(FOLDER, "unet"))
    return {k: v.detach().half().contiguous() for k, v in unet.state_dict().items()}


def folder_state_dicts(unet):
    def load(component, name):
        return load_file(os.path.join(BASE, component, name))
    text = load("text_encoder", "model.safetensors")
    text = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in text.items()}
    return unet, load("vae", "diffusion_pytorch_model.safetensors"), text, load("text_encoder_2", "model.safetensors")


def to_sgm(conv, unet_sd):
    """The script's __main__ block, as a function."""
    unet, vae, text, text2 = folder_state_dicts(unet_sd)
    u = {"model.diffusion_model." + k: v for k, v in conv.convert_unet_state_dict(unet).items()}
    v = {"first_stage_model." + k: t for k, t in conv.convert_vae_state_dict(vae).items()}
    c = {"conditioner.embedders.0.transformer." + k: t for k, t in conv.convert_openai_text_enc_state_dict(text).items()}
    c2 = {OPENCLIP + k: t for k, t in conv.convert_openclip_text_enc_state_dict(text2).items()}
    c2[OPENCLIP + "text_projection"] = c2.pop(OPENCLIP + "text_projection.weight").T.contiguous()
    assert len(u) == len(unet) and len(v) == len(vae) and len(c) == len(text)
    out = {**u, **v, **c, **c2}
    out[OPENCLIP + "logit_scale"] = torch.tensor(4.6052)  # in the real files; every loader ignores it
    return {k: t.contiguous() for k, t in out.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--diffusers-repo", default="/work/.mirror/huggingface+diffusers/repo")
    args = parser.parse_args()
    conv = load_converter(args.diffusers_repo)
    import diffusers
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    unet_sd = write_configs()
    sd = to_sgm(conv, unet_sd)
    path = os.path.join(OUT, "tiny-sdxl.safetensors")
    save_file(sd, path)
    pipe = diffusers.StableDiffusionXLPipeline.from_single_file(
        path, config=FOLDER, local_files_only=True, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    unet, vae, text, text2 = folder_state_dicts(unet_sd)
    sf.check_equal("unet", pipe.unet.state_dict(), unet, torch.float16)
    sf.check_equal("vae", pipe.vae.state_dict(), vae)
    sf.check_equal("text_encoder", pipe.text_encoder.state_dict(), text)
    sf.check_equal("text_encoder_2", pipe.text_encoder_2.state_dict(), text2)
    # diffusers infers xl_base from resblock 9 of the OpenCLIP encoder, which this 3-layer encoder lacks
    # ("v1"); with config= given the inference is not used.
    kind = infer_diffusers_model_type(sd)
    captured = {}

    def grab(p, i, ts, kw):
        captured["latents"] = kw["latents"].clone()
        return kw

    result = pipe("a red cube", negative_prompt="blurry, low quality", width=64, height=48, num_inference_steps=4,
                  guidance_scale=5.0, generator=torch.Generator("cpu").manual_seed(0), callback_on_step_end=grab,
                  callback_on_step_end_tensor_inputs=["latents"])
    result.images[0].save(os.path.join(OUT, "sdxl-t2i.png"))
    save_file({"latents": captured["latents"].contiguous()}, os.path.join(OUT, "sdxl-t2i.safetensors"))
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(OUT, "manifest-sdxl.json"), "w") as f:
        json.dump({"converter": f"huggingface/diffusers@{sf.CONVERTER_COMMIT}:{CONVERTER_PATH}",
                   "files": {"tiny-sdxl.safetensors": {
                       "from": "tiny-sdxl-configs (own UNet) + tiny-sdxl", "dtypes": "UNet/VAE F16, text encoders F32",
                       "tensors": len(sd), "sha256": digest, "diffusers_model_type": kind}}}, f, indent=2, sort_keys=True)
        f.write("\n")
    print("tiny-sdxl.safetensors", len(sd), "tensors", kind)


if __name__ == "__main__":
    main()
