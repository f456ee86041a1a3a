"""Tiny SD 1.5 pipeline fixture and its golden tensors/images.

Writes
  Tests/Fixtures/tiny-sd15/                 the pipeline folder (hub layout, model_index.json)
  Tests/Fixtures/goldens/sd15-modules.safetensors   text encoder / UNet / VAE parity tensors
  Tests/Fixtures/goldens/sd15-e2e/<scheduler>.png   diffusers' images for the end-to-end tests
  Tests/Fixtures/goldens/sd15-e2e/<scheduler>.safetensors   their final latents
Layouts are PyTorch's (NCHW); the Swift tests convert.
Run: tools/reference/.venv/bin/python tools/reference/gen_sd15.py
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
import tiny_models  # noqa: E402

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures"))
PIPE = os.path.join(FIX, "tiny-sd15")
GOLD = os.path.join(FIX, "goldens")

PROMPT = "a red cube"
NEGATIVE = "blurry, low quality"
SCHEDULERS = {
    "pndm": ("PNDMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp-2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "dpmpp-2m-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
}


def load_pipeline():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(PIPE, torch_dtype=torch.float32, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def module_goldens(pipe):
    g = torch.Generator().manual_seed(7)
    t = {}
    # Text encoder: the two prompts the pipeline encodes, padded to 77.
    ids = pipe.tokenizer([NEGATIVE, PROMPT], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    t["text.ids"] = ids.to(torch.int64)
    with torch.no_grad():
        out = pipe.text_encoder(ids, output_hidden_states=True)
    t["text.last_hidden_state"] = out.last_hidden_state
    t["text.hidden_states_-2"] = out.hidden_states[-2]
    t["text.clip_skip_1"] = pipe.text_encoder.text_model.final_layer_norm(out.hidden_states[-2]) if hasattr(pipe.text_encoder, "text_model") else pipe.text_encoder.final_layer_norm(out.hidden_states[-2])

    # UNet: two samples (CFG-shaped batch), three timesteps, random context.
    sample = torch.randn(2, 4, 8, 8, generator=g)
    context = torch.randn(2, 77, 20, generator=g)
    t["unet.sample"] = sample
    t["unet.context"] = context
    with torch.no_grad():
        for ts in (999, 500, 1):
            t[f"unet.out_t{ts}"] = pipe.unet(sample, ts, encoder_hidden_states=context).sample
        # A non-integer timestep, as the Euler schedulers produce.
        t["unet.out_t946.4734"] = pipe.unet(sample, torch.tensor(946.4734), encoder_hidden_states=context).sample

    # VAE.
    latents = torch.randn(1, 4, 8, 8, generator=g)
    image = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    t["vae.latents"] = latents
    t["vae.image"] = image
    with torch.no_grad():
        t["vae.decoded"] = pipe.vae.decode(latents).sample
        dist = pipe.vae.encode(image).latent_dist
        t["vae.mean"] = dist.mean
        t["vae.logvar"] = dist.logvar
    return t


def e2e_goldens(pipe):
    import diffusers

    out_dir = os.path.join(GOLD, "sd15-e2e")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(PIPE, "scheduler", "scheduler_config.json")) as fh:
        base_config = json.load(fh)
    cases = {}
    for name, (cls, extra) in SCHEDULERS.items():
        scheduler = getattr(diffusers, cls).from_config(base_config, **extra)
        pipe.scheduler = scheduler
        captured = {}

        def grab(p, i, t, kwargs):
            captured["latents"] = kwargs["latents"].clone()
            return kwargs

        result = pipe(
            PROMPT, negative_prompt=NEGATIVE, num_inference_steps=4, guidance_scale=7.5,
            generator=torch.Generator("cpu").manual_seed(0), output_type="pil",
            callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"],
        )
        result.images[0].save(os.path.join(out_dir, f"{name}.png"))
        save_file({"latents": captured["latents"].contiguous()}, os.path.join(out_dir, f"{name}.safetensors"))
        cases[name] = {"scheduler": cls, **extra}

    # Guidance 1.0 (no unconditional pass) and explicit --latents input, default scheduler.
    pipe.scheduler = getattr(diffusers, "PNDMScheduler").from_config(base_config)
    fixed = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(123))
    save_file({"latents": fixed}, os.path.join(out_dir, "input-latents.safetensors"))
    captured = {}

    def grab2(p, i, t, kwargs):
        captured["latents"] = kwargs["latents"].clone()
        return kwargs

    result = pipe(
        PROMPT, num_inference_steps=3, guidance_scale=1.0, latents=fixed.clone(), output_type="pil",
        callback_on_step_end=grab2, callback_on_step_end_tensor_inputs=["latents"],
    )
    result.images[0].save(os.path.join(out_dir, "pndm-nocfg-latents.png"))
    save_file({"latents": captured["latents"].contiguous()}, os.path.join(out_dir, "pndm-nocfg-latents.safetensors"))
    with open(os.path.join(out_dir, "cases.json"), "w") as fh:
        json.dump(
            {"prompt": PROMPT, "negative_prompt": NEGATIVE, "steps": 4, "guidance_scale": 7.5, "seed": 0,
             "cases": cases, "nocfg": {"steps": 3, "guidance_scale": 1.0, "latents": "input-latents.safetensors"}},
            fh, indent=2, sort_keys=True)
        fh.write("\n")


def main():
    tiny_models.write_sd15_pipeline(PIPE)
    pipe = load_pipeline()
    os.makedirs(GOLD, exist_ok=True)
    t = module_goldens(pipe)
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(GOLD, "sd15-modules.safetensors"))
    e2e_goldens(pipe)


if __name__ == "__main__":
    main()
