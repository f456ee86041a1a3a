"""Tiny random-weight models in the real Hugging Face folder layouts.

Every dimension differs from every other so that a transposed or mis-split weight cannot pass a
parity test by accident; norm weights and biases are randomised too (PyTorch initialises them to
1 and 0, which would hide a missing affine step). Shared by the fixture generators.
"""
import json
import os
import shutil

import torch

# Tiny SD 1.x pipeline: same block structure as SD1.5 (3 cross-attention down blocks would be
# too big; we keep cross/plain blocks in the same pattern, two levels of each kind).
TEXT = dict(
    vocab_size=1000, hidden_size=20, intermediate_size=36, num_hidden_layers=3,
    num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
    layer_norm_eps=1e-5, projection_dim=20, bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
UNET = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=[16, 24, 32],
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    layers_per_block=2,
    attention_head_dim=[2, 4, 8],
    cross_attention_dim=20,
    norm_num_groups=8,
    norm_eps=1e-5,
    flip_sin_to_cos=True,
    freq_shift=0,
)
VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=[8, 12, 16, 16],
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    layers_per_block=2,
    norm_num_groups=4,
    sample_size=64,
    scaling_factor=0.18215,
)
SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}


def randomise_norms(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Gives every normalisation layer a non-trivial affine transform."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                if module.weight is not None:
                    module.weight.copy_(1 + 0.2 * torch.randn(module.weight.shape, generator=generator))
                if module.bias is not None:
                    module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))


def scale_parameters(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Re-draws every weight with a variance that keeps activations O(1) through deep stacks."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator) / fan_in**0.5)
            elif "norm" not in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))


def build_sd15_components(seed: int = 0):
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    text = CLIPTextModel(CLIPTextConfig(**TEXT)).eval()
    unet = UNet2DConditionModel(**UNET).eval()
    vae = AutoencoderKL(**VAE).eval()
    for m in (text, unet, vae):
        scale_parameters(m, g)
        randomise_norms(m, g)
    scheduler = PNDMScheduler.from_config(SCHEDULER)
    return text, unet, vae, scheduler


def write_sd15_pipeline(folder: str, seed: int = 0) -> None:
    """Writes a tiny StableDiffusionPipeline folder (model_index.json layout of the hub)."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPImageProcessor

    import clip_vocab

    text, unet, vae, scheduler = build_sd15_components(seed)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    tok_dir = os.path.join(folder, "tokenizer")
    clip_vocab.write_tiny_tokenizer(tok_dir)
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=CLIPImageProcessor(), requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    # The hub's SD1.5 ships fp16 UNet/VAE variants; store those two in fp16 (text encoder stays
    # fp32) so both load paths are exercised and the fixture stays small.
    for sub, model in (("unet", unet), ("vae", vae)):
        from safetensors.torch import save_file

        sd = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
        save_file(sd, os.path.join(folder, sub, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    normalise_configs(folder)


def normalise_configs(folder: str, recursive: bool = True) -> None:
    """Drops the environment-dependent fields diffusers/transformers write, for reproducibility."""
    for root, _, files in (os.walk(folder) if recursive else [(folder, None, os.listdir(folder))]):
        for f in files:
            if not f.endswith(".json") or not os.path.isfile(os.path.join(root, f)):
                continue
            path = os.path.join(root, f)
            with open(path) as fh:
                data = json.load(fh)
            for key in ("_name_or_path", "transformers_version", "is_local", "local_files_only"):
                data.pop(key, None)
            if "_diffusers_version" in data:
                data["_diffusers_version"] = "0.42.1"  # pinned, so reruns are byte-identical
            with open(path, "w") as fh:
                json.dump(data, fh, indent=2, sort_keys=True)
                fh.write("\n")
