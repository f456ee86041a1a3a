"""Goldens for image-to-image, inpainting and ControlNet on the tiny SD1.5 pipeline (+ IP-Adapter).

Writes
  Tests/Fixtures/tiny-sd15-inpainting/          the tiny pipeline with a 9-channel inpainting UNet
  Tests/Fixtures/images/init-72x56.png, init-64.png, mask-64.png, mask-48x40.png, control-64.png
  Tests/Fixtures/goldens/pipelines/<case>.{png,safetensors}   diffusers' image and final latents
  Tests/Fixtures/goldens/pipelines/cases.json                  how each case was called
Run after gen_sd15.py, gen_ip_adapter.py and gen_controlnet.py:
  tools/reference/.venv/bin/python tools/reference/gen_sd15_pipelines.py
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
import tiny_models  # noqa: E402

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures"))
PIPE = os.path.join(FIX, "tiny-sd15")
INPAINT = os.path.join(FIX, "tiny-sd15-inpainting")
IMAGES = os.path.join(FIX, "images")
OUT = os.path.join(FIX, "goldens", "pipelines")
IP_ROOT = os.path.join(FIX, "tiny-ip-adapter")
PROMPT = "a red cube"
NEGATIVE = "blurry, low quality"
CASES = {}


def write_images():
    rng = np.random.RandomState(9)
    y, x = np.mgrid[0:56, 0:72]
    a = np.stack([x * 3.5, y * 4.5, 255 - x * 3.0], -1) + rng.randint(0, 40, (56, 72, 3))
    Image.fromarray(a.clip(0, 255).astype(np.uint8), "RGB").save(os.path.join(IMAGES, "init-72x56.png"))
    b = Image.new("RGB", (64, 64), (40, 90, 160))
    d = ImageDraw.Draw(b)
    d.rectangle((10, 12, 40, 50), fill=(220, 200, 30))
    d.ellipse((30, 5, 60, 35), fill=(200, 30, 60))
    b.save(os.path.join(IMAGES, "init-64.png"))
    m = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(m).rectangle((16, 8, 47, 39), fill=255)
    m.save(os.path.join(IMAGES, "mask-64.png"))
    m2 = Image.new("L", (48, 40), 0)
    ImageDraw.Draw(m2).ellipse((8, 6, 40, 34), fill=200)
    m2.save(os.path.join(IMAGES, "mask-48x40.png"))
    c = Image.new("RGB", (64, 64), (0, 0, 0))
    dc = ImageDraw.Draw(c)
    dc.line((5, 5, 58, 50), fill=(255, 255, 255), width=2)
    dc.rectangle((20, 30, 50, 60), outline=(255, 255, 255), width=2)
    c.save(os.path.join(IMAGES, "control-64.png"))


def write_inpainting_pipeline():
    """The tiny pipeline with a 9-channel UNet (other components shared with tiny-sd15)."""
    from diffusers import UNet2DConditionModel

    if os.path.isdir(INPAINT):
        shutil.rmtree(INPAINT)
    os.makedirs(INPAINT)
    # Everything but the UNet is the tiny-sd15 component, shared through relative symlinks.
    for sub in ("feature_extractor", "scheduler", "text_encoder", "tokenizer", "vae"):
        os.symlink(os.path.join("..", "tiny-sd15", sub), os.path.join(INPAINT, sub))
    shutil.copy(os.path.join(PIPE, "model_index.json"), INPAINT)
    g = torch.Generator().manual_seed(31)
    torch.manual_seed(31)
    cfg = dict(tiny_models.UNET, in_channels=9)  # same layout as tiny-sd15, so the tiny IP-Adapters fit
    unet = UNet2DConditionModel(**cfg).eval()
    tiny_models.scale_parameters(unet, g)
    tiny_models.randomise_norms(unet, g)
    unet.save_pretrained(os.path.join(INPAINT, "unet"), safe_serialization=True)
    from safetensors.torch import save_file as sf

    sd = {k: v.detach().half().contiguous() for k, v in unet.state_dict().items()}
    sf(sd, os.path.join(INPAINT, "unet", "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(INPAINT, "model_index.json")) as f:
        index = json.load(f)
    index["_class_name"] = "StableDiffusionInpaintPipeline"
    with open(os.path.join(INPAINT, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")
    tiny_models.normalise_configs(os.path.join(INPAINT, "unet"))
    tiny_models.normalise_configs(INPAINT, recursive=False)


def scheduler(pipe, name):
    import diffusers

    classes = {"pndm": "PNDMScheduler", "ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler",
               "euler-a": "EulerAncestralDiscreteScheduler", "lcm": "LCMScheduler", "tcd": "TCDScheduler"}
    with open(os.path.join(PIPE, "scheduler", "scheduler_config.json")) as f:
        base = json.load(f)
    pipe.scheduler = getattr(diffusers, classes[name]).from_config(base)


def load(cls, folder=PIPE, **kw):
    import diffusers

    pipe = getattr(diffusers, cls).from_pretrained(folder, torch_dtype=torch.float32, safety_checker=None, **kw)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, name, call, ip=None):
    captured = {}

    def grab(p, i, t, kw):
        captured["latents"] = kw["latents"].clone()
        return kw

    kwargs = dict(call)
    kwargs.pop("scheduler", None)
    kwargs.pop("model", None)
    if "ip_adapter_image" in kwargs:
        kwargs["ip_adapter_image"] = Image.open(os.path.join(IMAGES, "reference.png")).convert("RGB")
    images = {k: Image.open(os.path.join(IMAGES, v)) for k, v in kwargs.pop("images", {}).items()}
    for k, v in images.items():
        kwargs[k] = v.convert("RGB") if k != "mask_image" else v
    if "mask_blur" in kwargs:
        # What --mask-blur / GenerationParameters.maskBlur do: diffusers' documented mask blur.
        kwargs["mask_image"] = pipe.mask_processor.blur(kwargs["mask_image"], blur_factor=kwargs.pop("mask_blur"))
    if "resize_to" in kwargs:
        # The img2img pipeline has no width/height: resize as VaeImageProcessor.preprocess would
        # (Pillow LANCZOS) before handing the image over — what our --width/--height do.
        w, h = kwargs.pop("resize_to")
        kwargs["image"] = kwargs["image"].resize((w, h), resample=Image.LANCZOS)
    if "controls" in kwargs:
        controls = [Image.open(os.path.join(IMAGES, f)).convert("RGB") for f in kwargs.pop("controls")]
        kwargs["image"] = controls if len(controls) > 1 else controls[0]
    result = pipe(PROMPT, negative_prompt=NEGATIVE, generator=torch.Generator("cpu").manual_seed(0), output_type="pil",
                  callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"], **kwargs)
    result.images[0].save(os.path.join(OUT, f"{name}.png"))
    save_file({"latents": captured["latents"].contiguous()}, os.path.join(OUT, f"{name}.safetensors"))
    CASES[name] = dict(call)
    if ip:
        CASES[name]["ip_adapter"] = ip


def with_ip(pipe, name="ip-adapter-plus_sd15", scale=0.6):
    pipe.load_ip_adapter(IP_ROOT, subfolder="models", weight_name=f"{name}.safetensors")
    pipe.set_ip_adapter_scale(scale)
    return {"file": f"{name}.safetensors", "scale": scale, "image": "reference.png"}


def main():
    os.makedirs(OUT, exist_ok=True)
    write_images()
    write_inpainting_pipeline()
    ref = Image.open(os.path.join(IMAGES, "reference.png")).convert("RGB")

    # Image-to-image: two strengths × two schedulers; a non-multiple-of-8 init image (size rounding);
    # explicit width/height (resize); with an IP-Adapter.
    for sched in ("ddim", "euler"):
        for strength in (0.5, 0.8):
            pipe = load("StableDiffusionImg2ImgPipeline")
            scheduler(pipe, sched)
            run(pipe, f"img2img-{sched}-{strength}", {"images": {"image": "init-72x56.png"}, "strength": strength,
                                                       "num_inference_steps": 4, "guidance_scale": 7.5, "scheduler": sched})
    pipe = load("StableDiffusionImg2ImgPipeline")
    scheduler(pipe, "euler-a")
    run(pipe, "img2img-euler-a-resized", {"images": {"image": "init-72x56.png"}, "strength": 0.7, "num_inference_steps": 5,
                                          "guidance_scale": 7.5, "scheduler": "euler-a", "resize_to": [48, 64]})
    pipe = load("StableDiffusionImg2ImgPipeline")
    ip = with_ip(pipe)
    run(pipe, "img2img-pndm-ip", {"images": {"image": "init-64.png"}, "strength": 0.8, "num_inference_steps": 4,
                                  "guidance_scale": 7.5, "scheduler": "pndm", "ip_adapter_image": None}, ip)

    # Inpainting: 9-channel UNet (strength 1 and 0.6), 4-channel UNet with per-step blending
    # (strength 1 and 0.75), a mask of another size (resized), a blurred mask, and with an IP-Adapter.
    for strength in (1.0, 0.6):
        pipe = load("StableDiffusionInpaintPipeline", INPAINT)
        scheduler(pipe, "ddim")
        run(pipe, f"inpaint9-ddim-{strength}", {"images": {"image": "init-64.png", "mask_image": "mask-64.png"},
                                                 "strength": strength, "num_inference_steps": 4, "guidance_scale": 7.5,
                                                 "scheduler": "ddim", "model": "tiny-sd15-inpainting"})
    for strength, sched in ((1.0, "euler"), (0.75, "pndm")):
        pipe = load("StableDiffusionInpaintPipeline")
        scheduler(pipe, sched)
        run(pipe, f"inpaint4-{sched}-{strength}", {"images": {"image": "init-64.png", "mask_image": "mask-64.png"},
                                                    "strength": strength, "num_inference_steps": 4, "guidance_scale": 7.5,
                                                    "scheduler": sched, "width": 64, "height": 64})
    pipe = load("StableDiffusionInpaintPipeline")
    scheduler(pipe, "ddim")
    run(pipe, "inpaint4-ddim-mask-resized", {"images": {"image": "init-64.png", "mask_image": "mask-48x40.png"},
                                             "strength": 1.0, "num_inference_steps": 3, "guidance_scale": 7.5,
                                             "scheduler": "ddim", "width": 64, "height": 64})
    pipe = load("StableDiffusionInpaintPipeline")
    scheduler(pipe, "ddim")
    run(pipe, "inpaint4-ddim-mask-blur", {"images": {"image": "init-64.png", "mask_image": "mask-64.png"},
                                          "mask_blur": 6, "strength": 1.0, "num_inference_steps": 3,
                                          "guidance_scale": 7.5, "scheduler": "ddim", "width": 64, "height": 64})
    pipe = load("StableDiffusionInpaintPipeline", INPAINT)
    scheduler(pipe, "ddim")
    ip = with_ip(pipe, "ip-adapter_sd15", 0.7)
    run(pipe, "inpaint9-ddim-ip", {"images": {"image": "init-64.png", "mask_image": "mask-64.png"}, "strength": 1.0,
                                   "num_inference_steps": 4, "guidance_scale": 7.5, "scheduler": "ddim",
                                   "model": "tiny-sd15-inpainting", "ip_adapter_image": None}, ip)

    controlnet_cases(ref)
    few_step_cases()

    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(CASES, f, indent=2, sort_keys=True, default=str)
        f.write("\n")


def few_step_cases():
    """Few-step sampling as LCM-LoRA / TCD-LoRA users run it (LCMScheduler / TCDScheduler.from_config of the model's
    config): guidance 1 (one UNet batch, no unconditional pass) with an IP-Adapter; TCD with eta 0.3 (its seeded
    re-noising); LCM image-to-image with guidance 1.5 (CFG on)."""
    pipe = load("StableDiffusionPipeline")
    scheduler(pipe, "lcm")
    ip = with_ip(pipe)
    run(pipe, "lcm-ip-guidance1", {"num_inference_steps": 4, "guidance_scale": 1.0, "scheduler": "lcm", "width": 64,
                                   "height": 64, "ip_adapter_image": None}, ip)
    pipe = load("StableDiffusionPipeline")
    scheduler(pipe, "tcd")
    run(pipe, "tcd-eta0.3-guidance1", {"num_inference_steps": 4, "guidance_scale": 1.0, "eta": 0.3, "scheduler": "tcd",
                                       "width": 64, "height": 64})
    pipe = load("StableDiffusionImg2ImgPipeline")
    scheduler(pipe, "lcm")
    run(pipe, "img2img-lcm-0.6", {"images": {"image": "init-64.png"}, "strength": 0.6, "num_inference_steps": 6,
                                  "guidance_scale": 1.5, "scheduler": "lcm"})


def controlnet_cases(ref):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    cn_a = os.path.join(FIX, "tiny-controlnet")
    cn_b = os.path.join(FIX, "tiny-controlnet-b")
    if not os.path.isdir(cn_a):
        print("no tiny ControlNet fixtures yet; skipping ControlNet goldens")
        return
    Image.open(os.path.join(IMAGES, "control-64.png")).transpose(Image.FLIP_LEFT_RIGHT).save(
        os.path.join(IMAGES, "control-64-flipped.png"))

    def cn_pipe(folders):
        nets = [ControlNetModel.from_pretrained(f, torch_dtype=torch.float32) for f in folders]
        pipe = StableDiffusionControlNetPipeline.from_pretrained(
            PIPE, controlnet=nets if len(nets) > 1 else nets[0], torch_dtype=torch.float32, safety_checker=None)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    pipe = cn_pipe([cn_a])
    scheduler(pipe, "ddim")
    run(pipe, "controlnet-single", {"controls": ["control-64.png"], "num_inference_steps": 4, "guidance_scale": 7.5,
                                     "controlnet_conditioning_scale": 0.8, "scheduler": "ddim"})
    pipe = cn_pipe([cn_a, cn_b])
    scheduler(pipe, "ddim")
    run(pipe, "controlnet-double", {"controls": ["control-64.png", "control-64-flipped.png"], "num_inference_steps": 4,
                                     "guidance_scale": 7.5, "controlnet_conditioning_scale": [0.8, 0.5], "scheduler": "ddim"})
    pipe = cn_pipe([cn_a])
    scheduler(pipe, "euler")
    run(pipe, "controlnet-guess-window", {"controls": ["control-64.png"], "num_inference_steps": 5, "guidance_scale": 7.5,
                                           "controlnet_conditioning_scale": 1.0, "guess_mode": True,
                                           "control_guidance_start": 0.2, "control_guidance_end": 0.8, "scheduler": "euler"})
    pipe = cn_pipe([cn_a])
    scheduler(pipe, "ddim")
    ip = with_ip(pipe, "ip-adapter-plus_sd15", 0.6)
    run(pipe, "controlnet-single-ip", {"controls": ["control-64.png"], "num_inference_steps": 4, "guidance_scale": 7.5,
                                        "controlnet_conditioning_scale": 0.8, "scheduler": "ddim", "ip_adapter_image": None}, ip)


if __name__ == "__main__":
    main()
