"""Tiny VAE and goldens for tiled VAE decoding and encoding (diffusers `AutoencoderKL.enable_tiling`).

Writes
  Tests/Fixtures/tiny-vae-tiling/                    config.json + diffusion_pytorch_model.safetensors
  Tests/Fixtures/goldens/vae-tiling.safetensors      inputs and outputs, NCHW as torch produces them

The VAE has three blocks (4 pixels per latent) and sample_size 48, so diffusers' tiling settings
are tile_sample_min_size 48, tile_latent_min_size 12, overlap 0.25: decoding strides 9 latents,
blends 12 pixels and keeps 36; encoding strides 36 pixels, blends 3 latents (weights 1, 2/3, 1/3)
and keeps 9. The test sizes (latents 22×29, image 88×116) are no multiple of either stride: the
last tile row is 4 latents / 16 pixels high and the last tile column only 2 latents / 8 pixels
wide, narrower than the blend extent (diffusers' `min(a.shape, b.shape, blend_extent)`).

Keys
  decode.latents          [1, 4, 22, 29]   input of `vae.decode` (already divided by scaling_factor)
  decode.tiled            [1, 3, 88, 116]  `vae.decode` after `vae.enable_tiling()`
  decode.untiled          [1, 3, 88, 116]  `vae.decode` without tiling
  encode.image            [1, 3, 88, 116]  input of `vae.encode`, in [-1, 1]
  encode.tiled.mean / encode.tiled.logvar       `vae.encode(...).latent_dist` with tiling
  encode.untiled.mean / encode.untiled.logvar   the same without tiling
Run: tools/reference/.venv/bin/python tools/reference/gen_vae_tiling.py
"""
import os
import shutil
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
import tiny_models  # noqa: E402

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures"))
MODEL = os.path.join(FIX, "tiny-vae-tiling")
GOLD = os.path.join(FIX, "goldens")

VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=[10, 14, 18],
    down_block_types=["DownEncoderBlock2D"] * 3,
    up_block_types=["UpDecoderBlock2D"] * 3,
    layers_per_block=1,
    norm_num_groups=2,
    sample_size=48,
    scaling_factor=0.18215,
)
LATENT_SIZE = (22, 29)
IMAGE_SIZE = (88, 116)


def build_vae():
    from diffusers import AutoencoderKL

    g = torch.Generator().manual_seed(11)
    torch.manual_seed(11)
    vae = AutoencoderKL(**VAE).eval()
    tiny_models.scale_parameters(vae, g)
    tiny_models.randomise_norms(vae, g)
    return vae


def main():
    vae = build_vae()
    if os.path.isdir(MODEL):
        shutil.rmtree(MODEL)
    vae.save_pretrained(MODEL, safe_serialization=True)
    tiny_models.normalise_configs(MODEL)

    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(MODEL, torch_dtype=torch.float32).eval()
    assert vae.tile_sample_min_size == 48 and vae.tile_latent_min_size == 12 and vae.tile_overlap_factor == 0.25

    g = torch.Generator().manual_seed(5)
    latents = torch.randn(1, VAE["latent_channels"], *LATENT_SIZE, generator=g)
    image = torch.rand(1, 3, *IMAGE_SIZE, generator=g) * 2 - 1
    t = {"decode.latents": latents, "encode.image": image}
    with torch.no_grad():
        vae.disable_tiling()
        t["decode.untiled"] = vae.decode(latents).sample
        dist = vae.encode(image).latent_dist
        t["encode.untiled.mean"], t["encode.untiled.logvar"] = dist.mean, dist.logvar
        vae.enable_tiling()
        t["decode.tiled"] = vae.decode(latents).sample
        dist = vae.encode(image).latent_dist
        t["encode.tiled.mean"], t["encode.tiled.logvar"] = dist.mean, dist.logvar
    os.makedirs(GOLD, exist_ok=True)
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(GOLD, "vae-tiling.safetensors"))


if __name__ == "__main__":
    main()
