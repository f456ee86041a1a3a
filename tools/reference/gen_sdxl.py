"""Tiny SDXL fixtures (hub folder layouts) and diffusers SDXL goldens.

Writes
  Tests/Fixtures/tiny-sdxl/                     StableDiffusionXLPipeline folder: two tokenizers (the second
                                                pads with `!`), CLIPTextModel + CLIPTextModelWithProjection of
                                                different widths, an SDXL-shaped UNet (DownBlock2D first,
                                                transformer_layers_per_block > 1, linear projections,
                                                text_time addition embedding), VAE with scaling 0.13025,
                                                EulerDiscreteScheduler
  Tests/Fixtures/tiny-ip-adapter/sdxl_models/   ip-adapter_sdxl (global, bigG-like encoder),
                                                ip-adapter_sdxl_vit-h (global, ViT-H-like encoder),
                                                ip-adapter-plus_sdxl_vit-h (Resampler); h94 layout, fp16
  Tests/Fixtures/tiny-sdxl-inpainting/          StableDiffusionXLInpaintPipeline folder: its own 9-channel UNet,
                                                every other component a relative symlink into tiny-sdxl/
  Tests/Fixtures/tiny-sdxl-refiner/             StableDiffusionXLImg2ImgPipeline refiner folder (no text_encoder,
                                                requires_aesthetics_score, a UNet with 5 time ids and the second
                                                encoder's width); tokenizer_2, text_encoder_2, vae, scheduler linked
  Tests/Fixtures/tiny-sdxl-controlnet/          ControlNetModel.from_unet(tiny-sdxl UNet): text_time embedding
  Tests/Fixtures/tiny-sdxl-latent-stats/         tiny-sdxl with a VAE config carrying latents_mean/latents_std
                                                (Playground v2.5 style; the weights are tiny-sdxl's, linked)
  Tests/Fixtures/tiny-unet-nested/              an SDXL-shaped UNet with per-layer transformer_layers_per_block and
                                                reverse_transformer_layers_per_block (SSD-1B style), fp16
  Tests/Fixtures/goldens/sdxl-nested-unet.safetensors   its inputs and output
  Tests/Fixtures/goldens/sdxl-modules.safetensors   text encoder 2, encode_prompt, UNet tensors
  Tests/Fixtures/goldens/sdxl/<case>.{png,safetensors} + cases.json   end-to-end diffusers results
Run after gen_sd15.py and gen_ip_adapter.py (it adds to tiny-ip-adapter/ and reuses its encoders):
  tools/reference/.venv/bin/python tools/reference/gen_sdxl.py
"""
import json
import os
import shutil
import sys

import torch
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
import clip_vocab  # noqa: E402
import gen_controlnet as cn  # noqa: E402
import gen_ip_adapter as ipa  # noqa: E402
import tiny_models  # noqa: E402

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures"))
PIPE = os.path.join(FIX, "tiny-sdxl")
INPAINT = os.path.join(FIX, "tiny-sdxl-inpainting")
REFINER = os.path.join(FIX, "tiny-sdxl-refiner")
CONTROLNET = os.path.join(FIX, "tiny-sdxl-controlnet")
IMAGES = os.path.join(FIX, "images")
GOLD = os.path.join(FIX, "goldens")
OUT = os.path.join(GOLD, "sdxl")
SDXL_MODELS = os.path.join(FIX, "tiny-ip-adapter", "sdxl_models")
PROMPT = "a red cube"
NEGATIVE = "blurry, low quality"
CASES = {}
HANDOFF = {}

TEXT_1 = dict(tiny_models.TEXT)  # width 20
TEXT_2 = dict(vocab_size=1000, hidden_size=30, intermediate_size=44, num_hidden_layers=3, num_attention_heads=3,
              max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=14,
              bos_token_id=0, eos_token_id=2, pad_token_id=1)
CROSS = TEXT_1["hidden_size"] + TEXT_2["hidden_size"]  # 50
TIME_DIM = 8
UNET = dict(
    sample_size=8, in_channels=4, out_channels=4,
    block_out_channels=[16, 24, 32],
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    layers_per_block=2, transformer_layers_per_block=[1, 2, 3], attention_head_dim=[2, 4, 8],
    use_linear_projection=True, cross_attention_dim=CROSS, norm_num_groups=8, norm_eps=1e-5,
    flip_sin_to_cos=True, freq_shift=0, addition_embed_type="text_time", addition_time_embed_dim=TIME_DIM,
    projection_class_embeddings_input_dim=6 * TIME_DIM + TEXT_2["projection_dim"], upcast_attention=False,
)
VAE = dict(tiny_models.VAE, scaling_factor=0.13025, force_upcast=True)
SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear", "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False, "skip_prk_steps": True,
    "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False,
}

# A 9-channel inpainting UNet (two blocks, so it stays small) and a refiner UNet: DownBlock2D
# first and last as the real refiner, cross-attention over the second encoder only, 5 time ids
# (original size, crop, aesthetic score) with a different sinusoid width.
INPAINT_UNET = dict(
    UNET, in_channels=9, block_out_channels=[16, 24], down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], layers_per_block=1, transformer_layers_per_block=[1, 2],
    attention_head_dim=[2, 4])
# Per-layer transformer counts (distilled SDXL models such as SSD-1B): down blocks list one count per
# layer, the up blocks theirs in reverse_transformer_layers_per_block, the middle takes the last entry's first.
NESTED_UNET = dict(
    UNET, block_out_channels=[8, 16, 24], norm_num_groups=4, attention_head_dim=[2, 2, 4],
    transformer_layers_per_block=[1, [1, 2], [2, 1]], reverse_transformer_layers_per_block=[[1, 2, 1], [2, 1, 3], 1])
REFINER_TIME_DIM = 6
REFINER_UNET = dict(
    UNET, block_out_channels=[16, 24, 32], down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], layers_per_block=1,
    transformer_layers_per_block=2, attention_head_dim=[2, 3, 4], cross_attention_dim=TEXT_2["hidden_size"],
    addition_time_embed_dim=REFINER_TIME_DIM,
    projection_class_embeddings_input_dim=5 * REFINER_TIME_DIM + TEXT_2["projection_dim"])


def randomised(model, seed):
    g = torch.Generator().manual_seed(seed)
    tiny_models.scale_parameters(model, g)
    tiny_models.randomise_norms(model, g)
    return model.eval()


def write_pipeline():
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    if os.path.isdir(PIPE):
        shutil.rmtree(PIPE)
    torch.manual_seed(40)
    text1 = randomised(CLIPTextModel(CLIPTextConfig(**TEXT_1)), 41)
    text2 = randomised(CLIPTextModelWithProjection(CLIPTextConfig(**TEXT_2)), 42)
    unet = randomised(UNet2DConditionModel(**UNET), 43)
    vae = randomised(AutoencoderKL(**VAE), 44)
    tok_dir = os.path.join(PIPE, "tokenizer")
    clip_vocab.write_tiny_tokenizer(tok_dir)
    tok1 = CLIPTokenizer.from_pretrained(tok_dir)
    tok2 = CLIPTokenizer.from_pretrained(tok_dir, pad_token="!")
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text1, text_encoder_2=text2, tokenizer=tok1, tokenizer_2=tok2, unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(SCHEDULER), force_zeros_for_empty_prompt=True,
        add_watermarker=False)
    pipe.save_pretrained(PIPE, safe_serialization=True)
    # tokenizer_2 in the hub's layout (vocab.json, merges.txt, configs), padding with `!`.
    tok2_dir = os.path.join(PIPE, "tokenizer_2")
    shutil.rmtree(tok2_dir)
    clip_vocab.write_tiny_tokenizer(tok2_dir)
    for f in ("tokenizer_config.json", "special_tokens_map.json"):
        path = os.path.join(tok2_dir, f)
        with open(path) as fh:
            data = json.load(fh)
        data["pad_token"] = "!"
        with open(path, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
    # fp16 UNet and VAE (as the hub's fp16 variant files); text encoders stay fp32.
    for sub, model in (("unet", unet), ("vae", vae)):
        sd = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
        save_file(sd, os.path.join(PIPE, sub, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    tiny_models.normalise_configs(PIPE)


def save_half(model, folder):
    """config.json + fp16 weights under the default file name (as the tiny-sdxl UNet)."""
    model.save_pretrained(folder, safe_serialization=True)
    sd = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(folder, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})


def linked_pipeline(folder, own, index):
    """A pipeline folder holding `own` components and relative symlinks to tiny-sdxl's others."""
    if os.path.lexists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None or name in own:
            continue
        os.symlink(os.path.join("..", "tiny-sdxl", name), os.path.join(folder, name))
    with open(os.path.join(folder, "model_index.json"), "w") as fh:
        json.dump(index, fh, indent=2, sort_keys=True)
        fh.write("\n")


def write_extras():
    from diffusers import ControlNetModel, UNet2DConditionModel

    with open(os.path.join(PIPE, "model_index.json")) as fh:
        base_index = json.load(fh)
    torch.manual_seed(60)
    inpaint_unet = randomised(UNet2DConditionModel(**INPAINT_UNET), 61)
    linked_pipeline(INPAINT, {"unet"}, dict(base_index, _class_name="StableDiffusionXLInpaintPipeline",
                                             requires_aesthetics_score=False))
    save_half(inpaint_unet, os.path.join(INPAINT, "unet"))
    tiny_models.normalise_configs(INPAINT, recursive=False)
    tiny_models.normalise_configs(os.path.join(INPAINT, "unet"))

    refiner_unet = randomised(UNet2DConditionModel(**REFINER_UNET), 62)
    refiner_index = dict(base_index, _class_name="StableDiffusionXLImg2ImgPipeline", force_zeros_for_empty_prompt=False,
                         requires_aesthetics_score=True, text_encoder=[None, None], tokenizer=[None, None])
    linked_pipeline(REFINER, {"unet"}, refiner_index)
    save_half(refiner_unet, os.path.join(REFINER, "unet"))
    tiny_models.normalise_configs(REFINER, recursive=False)
    tiny_models.normalise_configs(os.path.join(REFINER, "unet"))

    base_unet = UNet2DConditionModel.from_pretrained(os.path.join(PIPE, "unet"), torch_dtype=torch.float32).eval()
    controlnet = ControlNetModel.from_unet(base_unet, conditioning_embedding_out_channels=cn.EMBED_CHANNELS).eval()
    cn.randomise(controlnet, 63)
    cn.save(controlnet, CONTROLNET)


def load(cls="StableDiffusionXLPipeline", folder=PIPE, **kw):
    import diffusers

    pipe = getattr(diffusers, cls).from_pretrained(folder, torch_dtype=torch.float32, **kw)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def scheduler(pipe, name):
    import diffusers

    if name is None:
        return
    classes = {"pndm": "PNDMScheduler", "ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler",
               "euler-a": "EulerAncestralDiscreteScheduler", "dpmpp-2m": "DPMSolverMultistepScheduler",
               "dpmpp-2m-karras": "DPMSolverMultistepScheduler"}
    extra = {}
    if name.startswith("dpmpp"):
        extra = dict(algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=name.endswith("karras"))
    pipe.scheduler = getattr(diffusers, classes[name]).from_config(pipe.scheduler.config, **extra)


def module_goldens(pipe):
    t = {}
    with torch.no_grad():
        ids2 = pipe.tokenizer_2(PROMPT, padding="max_length", max_length=77, truncation=True,
                                return_tensors="pt").input_ids
        out = pipe.text_encoder_2(ids2, output_hidden_states=True)
        t["te2.ids"] = ids2.to(torch.int32)
        t["te2.text_embeds"] = out.text_embeds
        t["te2.last_hidden_state"] = out.last_hidden_state
        t["te2.hidden_states_-2"] = out.hidden_states[-2]
        cases = {
            "basic": dict(prompt=PROMPT, negative_prompt=NEGATIVE),
            "prompt2": dict(prompt=PROMPT, prompt_2="a blue sphere", negative_prompt=NEGATIVE,
                            negative_prompt_2="ugly"),
            "zeros": dict(prompt=PROMPT),
            "empty-negative": dict(prompt=PROMPT, negative_prompt=""),
            "clip-skip": dict(prompt=PROMPT, negative_prompt=NEGATIVE, clip_skip=1),
        }
        for name, kw in cases.items():
            pe, ne, pp, npool = pipe.encode_prompt(device="cpu", num_images_per_prompt=1,
                                                   do_classifier_free_guidance=True, **kw)
            t[f"encode.{name}.prompt_embeds"] = pe
            t[f"encode.{name}.negative_prompt_embeds"] = ne
            t[f"encode.{name}.pooled"] = pp
            t[f"encode.{name}.negative_pooled"] = npool
        g = torch.Generator().manual_seed(7)
        sample = torch.randn(2, 4, 6, 8, generator=g)
        context = torch.randn(2, 77, CROSS, generator=g)
        text_embeds = torch.randn(2, TEXT_2["projection_dim"], generator=g)
        time_ids = torch.tensor([[48.0, 64.0, 0.0, 0.0, 48.0, 64.0], [96.0, 80.0, 8.0, 4.0, 48.0, 64.0]])
        t["unet.sample"], t["unet.context"], t["unet.text_embeds"], t["unet.time_ids"] = (
            sample, context, text_embeds, time_ids)
        t["unet.out_t500"] = pipe.unet(sample, 500, encoder_hidden_states=context,
                                       added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(GOLD, "sdxl-modules.safetensors"))


def run(pipe, name, call, ip=None):
    captured = {}

    def grab(p, i, ts, kw):
        captured["latents"] = kw["latents"].clone()
        return kw

    kwargs = dict(call)
    kwargs.pop("scheduler", None)
    if "ip_adapter_image" in kwargs:
        kwargs["ip_adapter_image"] = Image.open(os.path.join(IMAGES, kwargs["ip_adapter_image"])).convert("RGB")
    for key in ("image", "mask_image"):
        if isinstance(kwargs.get(key), str):
            kwargs[key] = Image.open(os.path.join(IMAGES, kwargs[key]))
            kwargs[key] = kwargs[key].convert("L" if key == "mask_image" else "RGB")
    if "handoff" in kwargs:
        kwargs["image"] = HANDOFF[kwargs.pop("handoff")]
    for key in ("original_size", "target_size", "crops_coords_top_left", "negative_original_size",
                "negative_target_size", "negative_crops_coords_top_left"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    prompt = kwargs.pop("prompt", PROMPT)
    result = pipe(prompt, generator=torch.Generator("cpu").manual_seed(0), output_type="pil",
                  callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"], **kwargs)
    result.images[0].save(os.path.join(OUT, f"{name}.png"))
    save_file({"latents": captured["latents"].contiguous()}, os.path.join(OUT, f"{name}.safetensors"))
    CASES[name] = dict(call)
    if ip:
        CASES[name]["ip_adapter"] = ip


def write_adapters(pipe):
    """The h94 `sdxl_models/` files, in the original layout with fp16 values."""
    ipa.CROSS = CROSS
    g = torch.Generator().manual_seed(45)
    layers = lambda: ipa.ip_layers(pipe.unet, g)  # noqa: E731
    adapters = {
        "ip-adapter_sdxl": (ipa.global_proj(ipa.ENCODER_G["projection_dim"], 4, g), layers()),
        "ip-adapter_sdxl_vit-h": (ipa.global_proj(ipa.ENCODER_H["projection_dim"], 4, g), layers()),
        "ip-adapter-plus_sdxl_vit-h": (ipa.plus_proj(g, dim=34, depth=4, heads=3, queries=7,
                                                     embed=ipa.ENCODER_H["hidden_size"]), layers()),
    }
    ipa.MODELS = SDXL_MODELS
    for name, (proj, ip) in adapters.items():
        ipa.save_adapter(name, proj, ip, bin_too=(name == "ip-adapter-plus_sdxl_vit-h"))


def with_ip(pipe, name, scale, encoder):
    root = os.path.dirname(SDXL_MODELS)
    pipe.load_ip_adapter(root, subfolder="sdxl_models", weight_name=f"{name}.safetensors",
                         image_encoder_folder=encoder)
    pipe.set_ip_adapter_scale(scale)
    return {"file": f"sdxl_models/{name}.safetensors", "scale": scale, "encoder": encoder}


def main():
    os.makedirs(OUT, exist_ok=True)
    write_pipeline()
    pipe = load()
    module_goldens(pipe)
    write_adapters(pipe)

    size = {"width": 64, "height": 48}
    base = dict(size, num_inference_steps=4, guidance_scale=5.0, negative_prompt=NEGATIVE)
    for sched in (None, "ddim", "pndm", "euler-a", "dpmpp-2m", "dpmpp-2m-karras"):
        pipe = load()
        scheduler(pipe, sched)
        run(pipe, f"t2i-{sched or 'default'}", dict(base, scheduler=sched))
    cases = {
        "t2i-prompt2": dict(base, prompt_2="a blue sphere", negative_prompt_2="ugly"),
        "t2i-force-zeros": {k: v for k, v in base.items() if k != "negative_prompt"},
        "t2i-empty-negative": dict(base, negative_prompt=""),
        "t2i-micro": dict(base, original_size=[96, 80], crops_coords_top_left=[8, 4], target_size=[40, 56],
                          negative_original_size=[32, 40], negative_target_size=[48, 64],
                          negative_crops_coords_top_left=[2, 6]),
        "t2i-micro-positive-only": dict(base, original_size=[96, 80], crops_coords_top_left=[8, 4],
                                        negative_crops_coords_top_left=[2, 6]),
        "t2i-rescale": dict(base, guidance_rescale=0.7),
        "t2i-clip-skip": dict(base, clip_skip=1),
        "t2i-default-size": dict(num_inference_steps=3, guidance_scale=5.0, negative_prompt=NEGATIVE),
        "t2i-denoising-end": dict(base, num_inference_steps=6, denoising_end=0.6),
    }
    for name, call in cases.items():
        pipe = load()
        run(pipe, name, call)

    # Image-to-image with the base model (diffusers' img2img SDXL pipeline from the same folder).
    for strength, sched in ((0.6, None), (0.3, "ddim")):
        pipe = load("StableDiffusionXLImg2ImgPipeline")
        scheduler(pipe, sched)
        run(pipe, f"img2img-{sched or 'default'}-{strength}",
            dict(image="init-64.png", strength=strength, num_inference_steps=5, guidance_scale=5.0,
                 negative_prompt=NEGATIVE, scheduler=sched))

    # IP-Adapters.
    for name, encoder, scale in (("ip-adapter_sdxl", "image_encoder", 0.6),
                                 ("ip-adapter_sdxl_vit-h", "models/image_encoder", 0.7),
                                 ("ip-adapter-plus_sdxl_vit-h", "models/image_encoder", 0.5)):
        pipe = load()
        ip = with_ip(pipe, name, scale, encoder)
        run(pipe, f"ip-{name}", dict(base, ip_adapter_image="reference.png"), ip)
    pipe = load("StableDiffusionXLImg2ImgPipeline")
    ip = with_ip(pipe, "ip-adapter-plus_sdxl_vit-h", 0.8, "models/image_encoder")
    run(pipe, "img2img-ip-plus", dict(image="init-64.png", strength=0.7, num_inference_steps=4, guidance_scale=5.0,
                                      negative_prompt=NEGATIVE, ip_adapter_image="reference.png"), ip)

    extra_cases(base)

    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(CASES, f, indent=2, sort_keys=True, default=str)
        f.write("\n")


LATENT_STATS = dict(latents_mean=[0.2, -0.4, 0.1, 0.3], latents_std=[1.5, 0.7, 1.2, 0.9])


def write_latent_stats_pipeline():
    folder = os.path.join(FIX, "tiny-sdxl-latent-stats")
    with open(os.path.join(PIPE, "model_index.json")) as fh:
        index = json.load(fh)
    linked_pipeline(folder, {"vae"}, index)
    os.makedirs(os.path.join(folder, "vae"))
    with open(os.path.join(PIPE, "vae", "config.json")) as fh:
        config = json.load(fh)
    config.update(LATENT_STATS)
    with open(os.path.join(folder, "vae", "config.json"), "w") as fh:
        json.dump(config, fh, indent=2, sort_keys=True)
        fh.write("\n")
    name = "diffusion_pytorch_model.safetensors"
    os.symlink(os.path.join("..", "..", "tiny-sdxl", "vae", name), os.path.join(folder, "vae", name))
    return folder


def write_nested_unet():
    from diffusers import UNet2DConditionModel

    folder = os.path.join(FIX, "tiny-unet-nested")
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    torch.manual_seed(80)
    unet = randomised(UNet2DConditionModel(**NESTED_UNET), 81)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(p.half().float())
    save_half(unet, folder)
    tiny_models.normalise_configs(folder)
    g = torch.Generator().manual_seed(82)
    t = {"sample": torch.randn(2, 4, 6, 8, generator=g), "context": torch.randn(2, 77, CROSS, generator=g),
         "text_embeds": torch.randn(2, TEXT_2["projection_dim"], generator=g),
         "time_ids": torch.tensor([[48.0, 64.0, 0.0, 0.0, 48.0, 64.0], [96.0, 80.0, 8.0, 4.0, 48.0, 64.0]])}
    with torch.no_grad():
        t["out_t500"] = unet(t["sample"], 500, encoder_hidden_states=t["context"],
                             added_cond_kwargs={"text_embeds": t["text_embeds"], "time_ids": t["time_ids"]}).sample
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(GOLD, "sdxl-nested-unet.safetensors"))


def extra_cases(base):
    """Inpainting (4 and 9 channels), the refiner, the base → refiner hand-off, ControlNet, presets."""
    from diffusers import ControlNetModel

    write_extras()
    write_nested_unet()
    stats = write_latent_stats_pipeline()
    size = {"width": 64, "height": 48}
    inp = dict(size, image="init-64.png", mask_image="mask-64.png", num_inference_steps=5, negative_prompt=NEGATIVE)
    for name, folder, call in (
            ("inpaint-default", PIPE, inp),
            ("inpaint-0.6-ddim", PIPE, dict(inp, strength=0.6, guidance_scale=5.0, scheduler="ddim")),
            ("inpaint-denoising-end", PIPE, dict(inp, num_inference_steps=6, denoising_end=0.6, guidance_scale=5.0)),
            ("inpaint9-default", INPAINT, inp),
            ("inpaint9-0.7-rescale", INPAINT, dict(inp, strength=0.7, guidance_scale=5.0, guidance_rescale=0.5))):
        pipe = load("StableDiffusionXLInpaintPipeline", folder=folder)
        scheduler(pipe, call.get("scheduler"))
        run(pipe, name, call)
        CASES[name]["model"] = os.path.basename(folder)

    # StableDiffusionXLImg2ImgPipeline has no width/height: the output has the init image's size.
    ref = dict(image="init-64.png", num_inference_steps=10, negative_prompt=NEGATIVE)
    for name, call in (
            ("refiner-defaults", ref),
            ("refiner-aesthetic", dict(ref, num_inference_steps=5, strength=0.6, guidance_scale=5.0,
                                       aesthetic_score=7.0, negative_aesthetic_score=2.0,
                                       original_size=[96, 80], crops_coords_top_left=[8, 4],
                                       negative_original_size=[32, 40], negative_crops_coords_top_left=[2, 6]))):
        run(load("StableDiffusionXLImg2ImgPipeline", folder=REFINER), name, call)
        CASES[name]["model"] = "tiny-sdxl-refiner"

    # Base → refiner hand-off: the base stops at denoising_end and returns latents, the refiner
    # starts from them at the same fraction without adding noise.
    handoff = dict(size, num_inference_steps=8, guidance_scale=5.0, negative_prompt=NEGATIVE)
    latents = load()(PROMPT, generator=torch.Generator("cpu").manual_seed(0), output_type="latent",
                     denoising_end=0.7, **handoff).images
    save_file({"latents": latents.contiguous()}, os.path.join(OUT, "handoff-base.safetensors"))
    HANDOFF["base"] = latents
    run(load("StableDiffusionXLImg2ImgPipeline", folder=REFINER), "handoff-refiner",
        dict(handoff, denoising_start=0.7, handoff="base"))
    CASES["handoff-refiner"]["model"] = "tiny-sdxl-refiner"

    def controlnet_pipe():
        import diffusers

        net = ControlNetModel.from_pretrained(CONTROLNET, torch_dtype=torch.float32)
        pipe = diffusers.StableDiffusionXLControlNetPipeline.from_pretrained(
            PIPE, controlnet=net, torch_dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    ctrl = dict(base, image="control-64.png", controlnet_conditioning_scale=0.8)
    pipe = controlnet_pipe()
    scheduler(pipe, "ddim")
    run(pipe, "controlnet", dict(ctrl, scheduler="ddim"))
    run(controlnet_pipe(), "controlnet-guess-window",
        dict(ctrl, num_inference_steps=5, guess_mode=True, control_guidance_start=0.2, control_guidance_end=0.8))
    pipe = controlnet_pipe()
    ip = with_ip(pipe, "ip-adapter_sdxl", 0.6, "image_encoder")
    run(pipe, "controlnet-ip", dict(ctrl, ip_adapter_image="reference.png"), ip)

    # A VAE with latents_mean/latents_std: decoding (text-to-image) and image-to-image encoding use them.
    run(load(folder=stats), "latent-stats-t2i", dict(base))
    CASES["latent-stats-t2i"]["model"] = "tiny-sdxl-latent-stats"
    run(load("StableDiffusionXLImg2ImgPipeline", folder=stats), "latent-stats-img2img",
        dict(image="init-64.png", strength=0.6, num_inference_steps=5, guidance_scale=5.0, negative_prompt=NEGATIVE))
    CASES["latent-stats-img2img"]["model"] = "tiny-sdxl-latent-stats"

    # InstantStyle on SDXL's blocks (diffusers' documented dictionaries).
    for name, scale in (("ip-style", {"up": {"block_0": [0.0, 0.7, 0.0]}}),
                        ("ip-style-and-composition", {"up": {"block_0": [0.0, 0.7, 0.0]},
                                                      "down": {"block_2": [0.0, 0.7]}})):
        pipe = load()
        ip = with_ip(pipe, "ip-adapter-plus_sdxl_vit-h", 1.0, "models/image_encoder")
        pipe.set_ip_adapter_scale(scale)
        ip["scale"] = scale
        run(pipe, name, dict(base, ip_adapter_image="reference.png"), ip)


if __name__ == "__main__":
    main()
