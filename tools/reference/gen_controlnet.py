"""Tiny ControlNet fixtures and their golden tensors.

Writes
  Tests/Fixtures/tiny-controlnet/            ControlNet matching the tiny UNet (diffusers layout, fp16)
  Tests/Fixtures/tiny-controlnet-b/          same architecture, different weights (multi-ControlNet)
  Tests/Fixtures/tiny-controlnet-wrong-dim/  a minimal ControlNet with cross_attention_dim 24 (≠ 20)
  Tests/Fixtures/goldens/controlnet-modules.safetensors
      cn.sample [2,4,8,8], cn.context [2,77,20], cn.image [2,3,64,64] in [0,1] (NCHW inputs)
      cn.<case>.down.<i>, cn.<case>.mid      residuals of tiny-controlnet for each CASES entry
      b.s1.down.<i>, b.s1.mid                residuals of tiny-controlnet-b (scale 1, t 999)
      pool.down.<i>, pool.mid                tiny-controlnet with global_pool_conditions=True ([2,C,1,1])
      unet.controlled                        tiny UNet fed the cn.s07 residuals (t 999)
Every weight is random, the zero-initialised convolutions included (otherwise the residuals would
be zero and prove nothing); weights are rounded to fp16 before computing the goldens, so the
goldens are exactly what the stored fp16 checkpoint computes in fp32.
Run: tools/reference/.venv/bin/python tools/reference/gen_controlnet.py
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
GOLD = os.path.join(FIX, "goldens")

# Small and all different, so a transposed or mis-wired embedding conv cannot pass by accident.
# Four entries: three stride-2 convolutions, 64×64 control image → 8×8 latents.
EMBED_CHANNELS = (4, 6, 10, 12)
# name: (timestep, conditioning_scale, guess_mode)
CASES = {
    "s1": (999, 1.0, False),
    "s07": (999, 0.7, False),
    "guess": (946.4734, 0.8, True),
}


# Gain of the control-image embedding's convolutions: with unit-variance weights its SiLU chain
# shrinks the [0, 1] image to ~0.1 std, and the control image would barely move the residuals;
# ×1.8 per convolution makes its output comparable to conv_in(latents) (std ≈ 0.8).
EMBED_GAIN = 1.8


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    tiny_models.scale_parameters(model, g)
    tiny_models.randomise_norms(model, g)
    with torch.no_grad():
        for p in model.controlnet_cond_embedding.parameters():
            if p.ndim == 4:
                p.mul_(EMBED_GAIN)
        for p in model.parameters():
            p.copy_(p.half().float())  # what the fp16 checkpoint holds
        for name, p in model.named_parameters():
            assert p.abs().max() > 0, f"{name} is still zero"


def save(model, folder):
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    sd = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(folder, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    tiny_models.normalise_configs(folder)


def residuals(controlnet, sample, t, context, image, scale, guess):
    with torch.no_grad():
        down, mid = controlnet(
            sample, t, encoder_hidden_states=context, controlnet_cond=image,
            conditioning_scale=scale, guess_mode=guess, return_dict=False)
    return list(down), mid


def main():
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(os.path.join(FIX, "tiny-sd15", "unet"), torch_dtype=torch.float32).eval()

    a = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=EMBED_CHANNELS).eval()
    randomise(a, 11)
    b = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=EMBED_CHANNELS).eval()
    randomise(b, 12)
    wrong = ControlNetModel(
        block_out_channels=(8,), down_block_types=("CrossAttnDownBlock2D",), layers_per_block=1,
        cross_attention_dim=24, norm_num_groups=4, attention_head_dim=2,
        conditioning_embedding_out_channels=(4,)).eval()
    randomise(wrong, 13)
    save(a, os.path.join(FIX, "tiny-controlnet"))
    save(b, os.path.join(FIX, "tiny-controlnet-b"))
    save(wrong, os.path.join(FIX, "tiny-controlnet-wrong-dim"))

    g = torch.Generator().manual_seed(21)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    context = torch.randn(2, 77, 20, generator=g)
    image = torch.rand(2, 3, 64, 64, generator=g)
    out = {"cn.sample": sample, "cn.context": context, "cn.image": image}

    for name, (t, scale, guess) in CASES.items():
        down, mid = residuals(a, sample, t, context, image, scale, guess)
        for i, d in enumerate(down):
            out[f"cn.{name}.down.{i}"] = d
        out[f"cn.{name}.mid"] = mid

    down, mid = residuals(b, sample, 999, context, image, 1.0, False)
    for i, d in enumerate(down):
        out[f"b.s1.down.{i}"] = d
    out["b.s1.mid"] = mid

    # global_pool_conditions: guess mode is ignored by the model, residuals are spatial means.
    a.register_to_config(global_pool_conditions=True)
    down, mid = residuals(a, sample, 1, context, image, 0.9, True)
    for i, d in enumerate(down):
        out[f"pool.down.{i}"] = d
    out["pool.mid"] = mid
    a.register_to_config(global_pool_conditions=False)

    down = [out[f"cn.s07.down.{i}"] for i in range(len(a.controlnet_down_blocks))]
    with torch.no_grad():
        out["unet.controlled"] = unet(
            sample, 999, encoder_hidden_states=context,
            down_block_additional_residuals=down, mid_block_additional_residual=out["cn.s07.mid"]).sample

    os.makedirs(GOLD, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(GOLD, "controlnet-modules.safetensors"))
    with torch.no_grad():
        for name, m in (("a", a), ("b", b)):
            e = m.controlnet_cond_embedding(image)
            print(f"{name}: embedding std {float(e.std()):.3f}, conv_in std {float(m.conv_in(sample).std()):.3f}")
    print("residuals:", len(a.controlnet_down_blocks), "down; logspace:", torch.logspace(-1, 0, len(a.controlnet_down_blocks) + 1).tolist())


if __name__ == "__main__":
    main()
