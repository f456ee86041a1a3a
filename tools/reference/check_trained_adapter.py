"""Loads adapters the engine trained (`ipadapter train`) into diffusers and generates with them.

  tools/reference/.venv/bin/python tools/reference/check_trained_adapter.py [--sdxl] ADAPTER [ADAPTER…]

Each ADAPTER (.safetensors or .bin, written by `ipadapter train`, for the tiny SD1.5 fixture and its
image encoder; with --sdxl for the tiny SDXL and tiny-ip-adapter/sdxl_models/image_encoder) goes through
`StableDiffusionPipeline.load_ip_adapter` (`StableDiffusionXLPipeline`'s with --sdxl; diffusers 0.42.1) and a
2-step generation with an image prompt; prints the detected projection and the image's mean.
"""
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "Tests", "Fixtures")


def main():
    args = sys.argv[1:]
    sdxl = "--sdxl" in args
    args = [a for a in args if a != "--sdxl"]
    if sdxl:
        pipe = StableDiffusionXLPipeline.from_pretrained(os.path.join(FIXTURES, "tiny-sdxl"))
    else:
        pipe = StableDiffusionPipeline.from_pretrained(os.path.join(FIXTURES, "tiny-sd15"), safety_checker=None)
    encoder = os.path.join(FIXTURES, "tiny-ip-adapter", "sdxl_models" if sdxl else "models", "image_encoder")
    for adapter in args:
        folder = tempfile.mkdtemp()
        os.makedirs(os.path.join(folder, "models"))
        shutil.copy(adapter, os.path.join(folder, "models", os.path.basename(adapter)))
        shutil.copytree(encoder, os.path.join(folder, "models", "image_encoder"))
        pipe.load_ip_adapter(folder, subfolder="models", weight_name=os.path.basename(adapter))
        image = Image.open(os.path.join(FIXTURES, "images", "reference.png")).convert("RGB")
        out = pipe(prompt="a red square", ip_adapter_image=image, num_inference_steps=2, height=64, width=64,
                   generator=torch.Generator().manual_seed(0), output_type="np").images[0]
        projection = type(pipe.unet.encoder_hid_proj.image_projection_layers[0]).__name__
        print(f"{adapter}: loaded ({projection}), image mean {float(np.mean(out)):.4f}")
        pipe.unload_ip_adapter()


if __name__ == "__main__":
    main()
