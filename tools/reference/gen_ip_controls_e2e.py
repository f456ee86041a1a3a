"""End-to-end goldens for the IP-Adapter controls on the tiny SD1.5 pipeline (diffusers 0.42.1).

Writes Tests/Fixtures/goldens/ip-controls-e2e/<case>.{png,safetensors} and cases.json:
  block-scales     set_ip_adapter_scale({"down": {"block_1": [0.0, 1.0]}, "up": {"block_1": [0.0, 0.6, 0.0]}})
  window           a reference loop that sets the scale to 0 outside [0.25, 0.75] (official rule)
  masks            one adapter, two images, two regional masks (IPAdapterMaskProcessor)
  negative-image   a negative image prompt through ip_adapter_image_embeds ([2, N, S, D], negative first)
and Tests/Fixtures/goldens/ip-controls-e2e/diffusers-embeds.safetensors (that [2, N, S, D] tensor) for
the --ip-embeds diffusers-layout test.
Run after gen_ip_adapter.py: tools/reference/.venv/bin/python tools/reference/gen_ip_controls_e2e.py
"""
import json
import os

import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures"))
PIPE = os.path.join(FIX, "tiny-sd15")
IP_ROOT = os.path.join(FIX, "tiny-ip-adapter")
IMAGES = os.path.join(FIX, "images")
OUT = os.path.join(FIX, "goldens", "ip-controls-e2e")
PROMPT = "a red cube"
NEGATIVE = "blurry, low quality"
STEPS = 4


def load(adapter="ip-adapter-plus_sd15"):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(PIPE, torch_dtype=torch.float32, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(IP_ROOT, subfolder="models", weight_name=f"{adapter}.safetensors")
    return pipe


def run(pipe, name, cases, meta, extra_callback=None, **kwargs):
    captured = {}

    def grab(p, i, t, kw):
        captured["latents"] = kw["latents"].clone()
        if extra_callback:
            extra_callback(p, i)
        return kw

    result = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=7.5,
                  generator=torch.Generator("cpu").manual_seed(0), output_type="pil",
                  callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"], **kwargs)
    result.images[0].save(os.path.join(OUT, f"{name}.png"))
    save_file({"latents": captured["latents"].contiguous()}, os.path.join(OUT, f"{name}.safetensors"))
    cases[name] = meta


def main():
    os.makedirs(OUT, exist_ok=True)
    ref = Image.open(os.path.join(IMAGES, "reference.png")).convert("RGB")
    stripes = Image.open(os.path.join(IMAGES, "stripes.png")).convert("RGB")
    cases = {}

    pipe = load()
    blocks = {"down": {"block_1": [0.0, 1.0]}, "up": {"block_1": [0.0, 0.6, 0.0]}}
    pipe.set_ip_adapter_scale(blocks)
    run(pipe, "block-scales", cases, {"block_scales": blocks}, ip_adapter_image=ref)

    # Step window [0.25, 0.75] at scale 0.8: the reference loop switches the scale before each step.
    start, end, scale = 0.25, 0.75, 0.8
    pipe = load()
    # PNDM has STEPS + 1 timesteps; diffusers' loop runs over all of them.
    count = STEPS + 1

    def active(i):
        return not (i / count < start or (i + 1) / count > end)

    pipe.set_ip_adapter_scale(scale if active(0) else 0.0)

    def switch(p, i):
        if i + 1 < count:
            p.set_ip_adapter_scale(scale if active(i + 1) else 0.0)

    run(pipe, "window", cases, {"start": start, "end": end, "scale": scale}, extra_callback=switch, ip_adapter_image=ref)

    # Regional masks: one adapter, two images, left/right masks at the output size (64×64).
    from diffusers.image_processor import IPAdapterMaskProcessor

    left = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(left).rectangle((0, 0, 31, 63), fill=255)
    right = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(right).rectangle((24, 8, 63, 55), fill=255)
    left.save(os.path.join(IMAGES, "ip-mask-left.png"))
    right.save(os.path.join(IMAGES, "ip-mask-right.png"))
    masks = IPAdapterMaskProcessor().preprocess([left, right], height=64, width=64)
    masks = [masks.reshape(1, masks.shape[0], masks.shape[2], masks.shape[3])]
    pipe = load()
    pipe.set_ip_adapter_scale([[0.7, 0.7]])
    run(pipe, "masks", cases, {"scale": 0.7, "masks": ["ip-mask-left.png", "ip-mask-right.png"]},
        ip_adapter_image=[[ref, stripes]], cross_attention_kwargs={"ip_adapter_masks": masks})

    # Negative image prompt: CLIP hidden states of [negative ; positive] through ip_adapter_image_embeds.
    pipe = load()
    pipe.set_ip_adapter_scale(0.6)
    with torch.no_grad():
        pos = pipe.feature_extractor([ref], return_tensors="pt").pixel_values
        neg = pipe.feature_extractor([stripes], return_tensors="pt").pixel_values
        hp = pipe.image_encoder(pos, output_hidden_states=True).hidden_states[-2]
        hn = pipe.image_encoder(neg, output_hidden_states=True).hidden_states[-2]
    embeds = torch.stack([hn, hp])  # [2, N=1, 257, 40], negative first
    save_file({"image_embeds": embeds.contiguous()}, os.path.join(OUT, "diffusers-embeds.safetensors"))
    run(pipe, "negative-image", cases, {"scale": 0.6, "negative": "stripes.png"}, ip_adapter_image_embeds=[embeds])

    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(cases, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
