"""InstantID fixtures, computed with the InstantID repository's own code.

  tools/reference/.venv/bin/python tools/reference/gen_instantid.py

The InstantID code (instantX-research/InstantID at commit 2145b67, Apache-2.0) is cloned into
tools/reference/third_party/InstantID (git-ignored, never committed) from $INSTANTID_GIT (default
https://github.com/instantX-research/InstantID). Writes into Tests/Fixtures/instantid/ (deterministic):

  kps/cases.json     keypoint sets (float32 values, insightface order) and canvas sizes
  kps/case_NN.png    draw_kps(Image.new("RGB", (w, h)), kps) for each case (RGB PNG)
  tiny-instantid/    an InstantX/InstantID-shaped folder for the tiny SDXL model (Tests/Fixtures/tiny-sdxl):
                     ip-adapter.bin ({"image_proj": Resampler(dim 40, depth 2, 2 heads of 64, 6 queries, embedding_dim
                     24, output 50), "ip_adapter": to_k_ip/to_v_ip of every cross-attention processor, numbered as
                     the UNet's attn_processors}, fp32, random) and ControlNetModel/ (links to tiny-sdxl-controlnet:
                     ControlNetModel.from_unet with random weights, as IdentityNet is an SDXL ControlNet)
  tiny-instantid-single-file/  the same for the SDXL single-file fixture's own UNet (Tests/Fixtures/single-file/), fp16:
                     ip-adapter.bin (tiny-instantid's Resampler, new to_k_ip/to_v_ip) and ControlNetModel/
                     (ControlNetModel.from_unet of that UNet, randomised as gen_controlnet.py does)
  pipeline/<case>.png + .safetensors (final latents) + cases.json: StableDiffusionXLInstantIDPipeline (the repository's
                     class; its set_image_proj_model builds the released 1280-wide Resampler, so the tiny one is built
                     by the same code with the tiny sizes) on given embeddings + keypoints, and end to end from a photo
                     through insightface FaceAnalysis on the tiny 24-d pack (Tests/Fixtures/face/packs/tiny_faceid24);
                     "multi" (IdentityNet + a second ControlNet) with the _full pipeline's class, as the official
                     multi-ControlNet app runs it; "lora": the same class with Tests/Fixtures/lora/sdxl-kohya.safetensors
                     fused at 0.8 (load_lora_weights + fuse_lora, the kohya alphas baked in first, as gen_lora.py
                     hands kohya files to diffusers); "inpaint": the repository has no inpainting pipeline, so
                     diffusers' StableDiffusionXLControlNetInpaintPipeline with the repository's own pieces —
                     set_ip_adapter (its IPAttnProcessor on the UNet), _encode_prompt_image_emb (the face tokens,
                     appended to the text embeddings as its pipeline does) and IdentityNet given the face tokens as
                     its encoder_hidden_states (as its pipeline calls it); "single-file": the class built from the
                     components diffusers' from_single_file reads from Tests/Fixtures/single-file/tiny-sdxl.safetensors,
                     with tiny-instantid-single-file/

  ... gen_instantid.py --check-with /path/to/other/python   redraws the cases with another environment's
  OpenCV (e.g. a 4.x venv with numpy, opencv-python-headless, Pillow) and counts differing samples (0 with 4.12)

draw_kps is taken from pipeline_stable_diffusion_xl_instantid.py by its source (the module itself imports
diffusers pipeline classes this script does not need) and run with numpy float32 keypoints, as the pipeline
runs it on insightface's `face_info["kps"]`.
"""
import ast
import json
import math
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "instantid")
THIRD = os.path.join(HERE, "third_party", "InstantID")
COMMIT = "2145b67"


def instantid_source():
    if not os.path.isdir(THIRD):
        url = os.environ.get("INSTANTID_GIT", "https://github.com/instantX-research/InstantID")
        os.makedirs(os.path.dirname(THIRD), exist_ok=True)
        subprocess.check_call(["git", "clone", "--quiet", "--no-checkout", url, THIRD])
    # Only the Python sources (the repository's images and report are large and not needed).
    subprocess.check_call(["git", "-C", THIRD, "checkout", "--quiet", COMMIT, "--", "*.py"])
    return THIRD


def load_draw_kps():
    """The draw_kps function of the InstantID pipeline file, compiled from its own source."""
    path = os.path.join(instantid_source(), "pipeline_stable_diffusion_xl_instantid.py")
    tree = ast.parse(open(path).read(), path)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "draw_kps")
    import cv2
    import PIL.Image
    namespace = {"np": np, "math": math, "cv2": cv2, "PIL": PIL}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), path, "exec"), namespace)
    return namespace["draw_kps"]


def kps_cases():
    rng = np.random.RandomState(16)
    face = [[250.3, 210.7], [330.9, 205.2], [291.4, 262.5], [258.8, 310.1], [322.6, 306.4]]
    cases = [
        dict(w=640, h=480, kps=face),                                            # a frontal face
        dict(w=320, h=256, kps=[[p[0] - 240, p[1] - 180] for p in face]),         # near the top-left corner
        dict(w=200, h=150, kps=[[-30.5, 20.2], [60.1, -12.9], [40.0, 70.5], [215.7, 160.3], [190.2, 149.9]]),  # outside
        dict(w=17, h=13, kps=[[2.2, 3.3], [14.9, 2.8], [8.5, 7.1], [3.1, 11.6], [13.7, 12.2]]),  # tiny canvas
        dict(w=160, h=200, kps=[[80.0, 40.0], [80.0, 40.0], [80.0, 100.0], [80.0, 160.0], [80.0, 160.5]]),  # vertical, zero length
        dict(w=128, h=128, kps=[[100.7, 30.2], [20.4, 90.9], [64.5, 64.5], [110.1, 100.8], [30.3, 20.6]]),  # negative angles
        dict(w=300, h=300, kps=[[-500.0, -500.0], [800.0, 900.0], [150.5, 150.5], [151.0, 1200.0], [-900.0, 150.0]]),
    ]
    for _ in range(9):
        w, h = int(rng.randint(24, 260)), int(rng.randint(24, 260))
        c = rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h])
        s = rng.uniform(5, 0.6 * min(w, h))
        a = rng.uniform(-math.pi, math.pi)
        base = np.array([[-0.35, -0.2], [0.35, -0.2], [0.0, 0.1], [-0.28, 0.45], [0.28, 0.45]])
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        pts = c + s * (base @ rot.T) + rng.normal(0, 1.5, (5, 2))
        cases.append(dict(w=w, h=h, kps=pts.tolist()))
    for c in cases:
        c["kps"] = np.asarray(c["kps"], dtype=np.float32)
    return cases


def write_kps(log=print):
    import PIL.Image
    draw_kps = load_draw_kps()
    out = os.path.join(OUT, "kps")
    os.makedirs(out, exist_ok=True)
    listing = []
    for i, c in enumerate(kps_cases()):
        img = draw_kps(PIL.Image.new("RGB", (c["w"], c["h"])), c["kps"])
        name = f"case_{i:02d}.png"
        img.save(os.path.join(out, name), optimize=True)
        # float32 values written exactly (repr of the float32 as a double is exact)
        listing.append(dict(file=name, width=c["w"], height=c["h"], kps=[[float(v) for v in p] for p in c["kps"]]))
    with open(os.path.join(out, "cases.json"), "w") as fh:
        json.dump(dict(commit=COMMIT, cases=listing), fh, indent=1)
    if log:
        log(f"{len(listing)} draw_kps cases into {out}")


FIX = os.path.join(ROOT, "Tests", "Fixtures")
PIPE = os.path.join(FIX, "tiny-sdxl")
IDNET = os.path.join(FIX, "tiny-sdxl-controlnet")
ADAPTER = os.path.join(OUT, "tiny-instantid")
PROMPT = "a portrait of a person"
NEGATIVE = "blurry, low quality"
SINGLE = os.path.join(FIX, "single-file", "tiny-sdxl.safetensors")
SINGLE_CONFIGS = os.path.join(FIX, "single-file", "tiny-sdxl-configs")
SINGLE_ADAPTER = os.path.join(OUT, "tiny-instantid-single-file")
TINY_RESAMPLER = dict(dim=40, depth=2, dim_head=64, heads=2, num_queries=6, embedding_dim=24, output_dim=50, ff_mult=4)


def instantid_modules():
    """The repository's pipeline module and Resampler (with a shim for a module diffusers moved since)."""
    import types
    import diffusers
    src = instantid_source()
    if src not in sys.path:
        sys.path.insert(0, src)
    # diffusers >= 0.33 moved MultiControlNetModel; the pipeline file imports it from the old place.
    name = "diffusers.pipelines.controlnet.multicontrolnet"
    if name not in sys.modules:
        shim = types.ModuleType(name)
        from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel
        shim.MultiControlNetModel = MultiControlNetModel
        sys.modules[name] = shim
    import pipeline_stable_diffusion_xl_instantid as pipeline_module
    import pipeline_stable_diffusion_xl_instantid_full as full_module
    from ip_adapter.resampler import Resampler
    return pipeline_module, Resampler, full_module


def random_ip_layers(unet, g):
    """Random to_k_ip/to_v_ip for every cross-attention processor of `unet`, numbered as its attn_processors."""
    import torch
    cross = unet.config.cross_attention_dim
    channels = unet.config.block_out_channels
    ip = {}
    for i, name in enumerate(unet.attn_processors.keys()):
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        for kv in ("k", "v"):
            ip[f"{i}.to_{kv}_ip.weight"] = 1.5 * torch.randn(hidden, cross, generator=g) / cross ** 0.5
    return ip


def write_adapter():
    """tiny-instantid/: ip-adapter.bin in the released layout and ControlNetModel/ linked to the tiny SDXL ControlNet."""
    import torch
    from diffusers import UNet2DConditionModel
    _, Resampler, _ = instantid_modules()
    os.makedirs(ADAPTER, exist_ok=True)
    g = torch.Generator().manual_seed(1601)
    proj = Resampler(**TINY_RESAMPLER).eval()
    with torch.no_grad():
        for name, p in proj.named_parameters():
            if name == "latents":
                p.copy_(torch.randn(p.shape, generator=g) / TINY_RESAMPLER["dim"] ** 0.5)
            elif p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    unet = UNet2DConditionModel.from_pretrained(os.path.join(PIPE, "unet"))
    ip = random_ip_layers(unet, g)
    torch.save({"image_proj": proj.state_dict(), "ip_adapter": ip}, os.path.join(ADAPTER, "ip-adapter.bin"))
    net = os.path.join(ADAPTER, "ControlNetModel")
    os.makedirs(net, exist_ok=True)
    for f in ("config.json", "diffusion_pytorch_model.safetensors"):
        link = os.path.join(net, f)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.join("..", "..", "..", "tiny-sdxl-controlnet", f), link)


def single_file_base():
    """The single-file fixture read by diffusers' from_single_file (its own small UNet, tiny-sdxl's other parts)."""
    import torch
    import diffusers
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pipe = diffusers.StableDiffusionXLPipeline.from_single_file(SINGLE, config=SINGLE_CONFIGS, local_files_only=True,
                                                                torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_single_file_adapter():
    """tiny-instantid-single-file/: InstantID files for the single-file fixture's UNet, in fp16 — ip-adapter.bin (the
    Resampler of tiny-instantid, new to_k_ip/to_v_ip) and ControlNetModel/ (ControlNetModel.from_unet of that UNet,
    randomised as gen_controlnet.py does)."""
    import torch
    from diffusers import ControlNetModel
    sys.path.insert(0, HERE)
    threads = torch.get_num_threads()
    import gen_controlnet as cn
    torch.set_num_threads(threads)  # gen_controlnet sets 1 on import; the goldens below were made with the default
    unet = single_file_base().unet
    g = torch.Generator().manual_seed(1603)
    ip = {k: v.half() for k, v in random_ip_layers(unet, g).items()}
    proj = torch.load(os.path.join(ADAPTER, "ip-adapter.bin"), map_location="cpu")["image_proj"]
    os.makedirs(SINGLE_ADAPTER, exist_ok=True)
    torch.save({"image_proj": {k: v.half() for k, v in proj.items()}, "ip_adapter": ip},
               os.path.join(SINGLE_ADAPTER, "ip-adapter.bin"))
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=cn.EMBED_CHANNELS).eval()
    cn.randomise(net, 1604)
    cn.save(net, os.path.join(SINGLE_ADAPTER, "ControlNetModel"))


def instantid_pipe(extra_controlnet=False, img2img=False, full=False, single_file=False):
    import torch
    from diffusers import ControlNetModel
    pipeline_module, Resampler, full_module = instantid_modules()
    if img2img:
        import pipeline_stable_diffusion_xl_instantid_img2img as img2img_module
        pipeline_module = img2img_module
        Resampler = img2img_module.Resampler   # the file's own copy
    elif extra_controlnet or full:
        # The official apps (gradio_demo/app.py, app-multicontrolnet.py, infer_full.py) use the _full pipeline: with
        # several ControlNets, IdentityNet (the first) reads the face tokens and the others the text.
        pipeline_module = full_module
    cls = getattr(pipeline_module, "StableDiffusionXLInstantIDImg2ImgPipeline" if img2img
                  else "StableDiffusionXLInstantIDPipeline")
    adapter = SINGLE_ADAPTER if single_file else ADAPTER
    net = ControlNetModel.from_pretrained(os.path.join(adapter, "ControlNetModel"), torch_dtype=torch.float32)
    if extra_controlnet:   # the multicontrolnet app's [IdentityNet, another ControlNet] (here the same tiny weights)
        net = [net, ControlNetModel.from_pretrained(IDNET, torch_dtype=torch.float32)]
    if single_file:
        # The single-file checkpoint's components, in the InstantID class (from_single_file of the base class).
        base = single_file_base()
        pipe = cls(vae=base.vae, text_encoder=base.text_encoder, text_encoder_2=base.text_encoder_2,
                   tokenizer=base.tokenizer, tokenizer_2=base.tokenizer_2, unet=base.unet, controlnet=net,
                   scheduler=base.scheduler)
    else:
        pipe = cls.from_pretrained(PIPE, controlnet=net, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)

    def set_image_proj_model(model_ckpt, image_emb_dim=512, num_tokens=16):
        # The repository's method with the tiny Resampler's sizes in place of the released ones.
        image_proj_model = Resampler(**TINY_RESAMPLER)
        image_proj_model.eval()
        pipe.image_proj_model = image_proj_model.to(pipe.device, dtype=pipe.dtype)
        state_dict = torch.load(model_ckpt, map_location="cpu")
        if "image_proj" in state_dict:
            state_dict = state_dict["image_proj"]
        pipe.image_proj_model.load_state_dict(state_dict)
        pipe.image_proj_model_in_features = image_emb_dim

    pipe.set_image_proj_model = set_image_proj_model
    pipe.load_ip_adapter_instantid(os.path.join(adapter, "ip-adapter.bin"), image_emb_dim=TINY_RESAMPLER["embedding_dim"],
                                   num_tokens=TINY_RESAMPLER["num_queries"])
    return pipe, pipeline_module


def face_from_photo(path):
    """The InstantID README's face: insightface FaceAnalysis on the photo, the largest face, raw embedding."""
    import cv2
    from insightface.app import FaceAnalysis
    import contextlib
    import io
    import tempfile
    root = tempfile.mkdtemp(prefix="face-root-")
    os.symlink(os.path.join(FIX, "face", "packs"), os.path.join(root, "models"))   # insightface's root/models/<name>
    with contextlib.redirect_stdout(io.StringIO()):
        app = FaceAnalysis(name="tiny_faceid24", root=root, allowed_modules=["detection", "recognition"],
                           providers=["CPUExecutionProvider"])
        app.prepare(ctx_id=-1, det_size=(640, 640))
    image = cv2.imread(path)
    faces = app.get(image)
    face = sorted(faces, key=lambda x: (x["bbox"][2] - x["bbox"][0]) * (x["bbox"][3] - x["bbox"][1]))[-1]
    return face["embedding"], face["kps"]


def write_pipeline(log=print):
    import torch
    import PIL.Image
    from safetensors.torch import save_file
    out = os.path.join(OUT, "pipeline")
    os.makedirs(out, exist_ok=True)
    g = np.random.RandomState(1602)
    embedding = (8 * g.randn(24)).astype(np.float32)        # raw ArcFace embeddings have norms of ~20
    kps = np.array([[22.4, 15.8], [41.2, 16.3], [31.7, 25.2], [24.1, 34.6], [39.5, 34.0]], dtype=np.float32)
    base = dict(width=64, height=48, num_inference_steps=4, guidance_scale=5.0, negative_prompt=NEGATIVE)
    photo = os.path.join(FIX, "face", "img_a.png")
    photo_emb, photo_kps = face_from_photo(photo)
    cases = {
        "given": dict(base, embedding=embedding, kps=kps, canvas=[64, 48], ip_adapter_scale=0.8,
                      controlnet_conditioning_scale=0.8),
        "window": dict(base, embedding=embedding, kps=kps, canvas=[80, 60], ip_adapter_scale=0.5,
                       controlnet_conditioning_scale=1.1, control_guidance_start=0.25, control_guidance_end=0.75),
        "photo": dict(base, embedding=photo_emb, kps=photo_kps, photo="face/img_a.png", ip_adapter_scale=0.8,
                      controlnet_conditioning_scale=0.8),
        # IdentityNet plus a second ControlNet, in the _full pipeline of the multi-ControlNet app (the second net reads
        # the text, IdentityNet the face tokens).
        # StableDiffusionXLInstantIDImg2ImgPipeline: the output and the keypoint canvas have the init image's size.
        "img2img": dict({k: v for k, v in base.items() if k not in ("width", "height")}, embedding=embedding,
                        kps=kps, canvas=[64, 64], ip_adapter_scale=0.8, controlnet_conditioning_scale=0.8,
                        init_image="images/init-64.png", strength=0.6, num_inference_steps=5),
        # The official apps' enhance_face_region (the _full pipeline's control_mask: the face box at the output size;
        # the adapter's attention output and IdentityNet's residuals masked), alone and with a second ControlNet.
        # 64x64: the mask must downsample to every attention resolution (8x8, 4x4, 2x2 latents).
        "enhance": dict(base, width=64, height=64, embedding=embedding, kps=kps + [0, 8], canvas=[64, 64],
                        ip_adapter_scale=0.8, controlnet_conditioning_scale=0.8, box=[16.7, 17.2, 47.9, 49.6]),
        "enhance-multi": dict(base, width=64, height=64, embedding=embedding, kps=kps + [0, 8], canvas=[64, 64],
                              ip_adapter_scale=0.8, controlnet_conditioning_scale=[0.8, 0.5], box=[16.7, 17.2, 47.9, 49.6],
                              extra_control="images/control-64.png"),
        # A kohya SDXL LoRA fused into the UNet (and text encoders) of the InstantID pipeline.
        "lora": dict(base, embedding=embedding, kps=kps, canvas=[64, 48], ip_adapter_scale=0.8,
                     controlnet_conditioning_scale=0.8, lora="lora/sdxl-kohya.safetensors", lora_scale=0.8),
        # The SDXL single-file fixture (its own UNet) with InstantID files made for it.
        "single-file": dict(base, embedding=embedding, kps=kps, canvas=[64, 48], ip_adapter_scale=0.8,
                            controlnet_conditioning_scale=0.8, single_file=True),
        # Inpainting with the base (4-channel) UNet: the output and the keypoint canvas have the init image's size.
        "inpaint": dict({k: v for k, v in base.items() if k not in ("width", "height")}, embedding=embedding,
                        kps=kps + [0, 8], canvas=[64, 64], ip_adapter_scale=0.8, controlnet_conditioning_scale=0.8,
                        init_image="images/init-64.png", mask_image="images/mask-64.png", strength=0.9,
                        num_inference_steps=5),
        "multi": dict(base, embedding=embedding, kps=kps, canvas=[64, 48], ip_adapter_scale=0.8,
                      controlnet_conditioning_scale=[0.8, 0.5], extra_control="images/control-64.png",
                      control_guidance_start=[0.0, 0.25], control_guidance_end=[1.0, 1.0]),
    }
    listing = {}
    for name, call in cases.items():
        # The _full pipeline leaves its face mask in a module-level global of the repository's attention processors
        # (region_control), which the plain pipeline never resets: start every case from the initial state.
        instantid_modules()
        import ip_adapter.attention_processor as processors
        processors.region_control.prompt_image_conditioning = []
        if "mask_image" in call:
            listing[name] = write_inpaint_case(name, call, out)
            continue
        pipe, module = instantid_pipe(extra_controlnet="extra_control" in call, img2img="init_image" in call,
                                      full="box" in call, single_file=call.get("single_file", False))
        call = dict(call)
        single_file = call.pop("single_file", False)
        lora = call.pop("lora", None)
        lora_scale = call.pop("lora_scale", None)
        if lora is not None:
            pipe.load_lora_weights(kohya_alpha_baked(os.path.join(FIX, lora)))
            pipe.fuse_lora(lora_scale=lora_scale)
            pipe.unload_lora_weights()
        box = call.pop("box", None)
        extra = call.pop("extra_control", None)
        init = call.pop("init_image", None)
        emb, points = call.pop("embedding"), call.pop("kps")
        if "photo" in call:
            canvas_image = PIL.Image.open(photo).convert("RGB")
            call.pop("photo")
        else:
            canvas_image = PIL.Image.new("RGB", tuple(call.pop("canvas")))
        control = module.draw_kps(canvas_image, points)
        image = control if extra is None else [control, PIL.Image.open(os.path.join(FIX, extra)).convert("RGB")]
        if init is not None:
            call["control_image"] = image
            image = PIL.Image.open(os.path.join(FIX, init)).convert("RGB")
            # (the img2img class takes no ip_adapter_scale argument; its example calls set_ip_adapter_scale)
            pipe.set_ip_adapter_scale(call.pop("ip_adapter_scale"))
        captured = {}

        def grab(p, i, ts, kw):
            captured["latents"] = kw["latents"].clone()
            return kw

        if box is not None:
            # gradio_demo/app.py's control_mask, at the output size
            mask = np.zeros([call["height"], call["width"], 3])
            x1, y1, x2, y2 = (int(v) for v in np.asarray(box, dtype=np.float32))
            mask[y1:y2, x1:x2] = 255
            call["control_mask"] = PIL.Image.fromarray(mask.astype(np.uint8))
        text = dict(prompt=PROMPT)
        if extra is not None or box is not None:
            # The _full pipeline encodes the prompt with its long-prompt-weighting helper, whose hard-coded CLIP ids
            # (49406/49407) do not exist in the tiny tokenizer; given all four embeddings it uses them as they are, so
            # they come from diffusers' encode_prompt (what the engine and the plain InstantID pipeline compute).
            pe, npe, ppe, nppe = pipe.encode_prompt(PROMPT, device="cpu", num_images_per_prompt=1,
                                                    do_classifier_free_guidance=True,
                                                    negative_prompt=call.pop("negative_prompt"))
            text = dict(prompt=None, prompt_embeds=pe, negative_prompt_embeds=npe, pooled_prompt_embeds=ppe,
                        negative_pooled_prompt_embeds=nppe)
        result = pipe(image_embeds=emb, image=image, generator=torch.Generator("cpu").manual_seed(0),
                      callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"], **text, **call)
        result.images[0].save(os.path.join(out, f"{name}.png"))
        save_file({"latents": captured["latents"].contiguous(), "control": torch.from_numpy(np.array(control)),
                   "embedding": torch.from_numpy(np.asarray(emb, dtype=np.float32))},
                  os.path.join(out, f"{name}.safetensors"))
        entry = {k: v for k, v in call.items()}
        entry.setdefault("negative_prompt", NEGATIVE)
        entry.update(prompt=PROMPT, kps=[[float(v) for v in p] for p in points],
                     canvas=list(canvas_image.size), seed=0)
        if name == "photo":
            entry["photo"] = "face/img_a.png"
        entry.pop("control_mask", None)
        if box is not None:
            entry["box"] = [float(v) for v in np.asarray(box, dtype=np.float32)]
        if extra is not None:
            entry["extra_control"] = extra
        if lora is not None:
            entry.update(lora=lora, lora_scale=lora_scale)
        if single_file:
            entry["single_file"] = True
        if init is not None:
            entry["ip_adapter_scale"] = cases[name]["ip_adapter_scale"]
            entry["init_image"] = init
            entry.pop("control_image")
            entry["width"], entry["height"] = canvas_image.size
        listing[name] = entry
    with open(os.path.join(out, "cases.json"), "w") as fh:
        json.dump(listing, fh, indent=1, sort_keys=True)
        fh.write("\n")
    if log:
        log(f"{len(listing)} InstantID pipeline cases into {out}")


def kohya_alpha_baked(path):
    """A kohya LoRA file as gen_lora.py gives it to diffusers: lora_up *= alpha / rank, no `.alpha` keys."""
    from safetensors.torch import load_file
    sd = load_file(path)
    out = {}
    for key, t in sd.items():
        if key.endswith(".alpha"):
            continue
        if key.endswith(".lora_up.weight"):
            stem = key[: -len(".lora_up.weight")]
            rank = sd[stem + ".lora_down.weight"].shape[0]
            alpha = sd[stem + ".alpha"].double().item() if stem + ".alpha" in sd else rank
            t = (t.double() * (alpha / rank)).float()
        out[key] = t.float().contiguous()
    return out


def write_inpaint_case(name, call, out):
    """InstantID inpainting: StableDiffusionXLControlNetInpaintPipeline with the repository's adapter pieces (see the
    module docstring). Returns the cases.json entry."""
    import torch
    import PIL.Image
    import diffusers
    from diffusers import ControlNetModel
    from safetensors.torch import save_file
    pipeline_module, Resampler, _ = instantid_modules()
    cls = pipeline_module.StableDiffusionXLInstantIDPipeline
    net = ControlNetModel.from_pretrained(os.path.join(ADAPTER, "ControlNetModel"), torch_dtype=torch.float32)
    pipe = diffusers.StableDiffusionXLControlNetInpaintPipeline.from_pretrained(PIPE, controlnet=net,
                                                                                torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    path = os.path.join(ADAPTER, "ip-adapter.bin")
    proj = Resampler(**TINY_RESAMPLER).eval()
    state = torch.load(path, map_location="cpu")
    proj.load_state_dict(state["image_proj"])
    pipe.image_proj_model = proj
    pipe.image_proj_model_in_features = TINY_RESAMPLER["embedding_dim"]
    cls.set_ip_adapter(pipe, path, TINY_RESAMPLER["num_queries"], call["ip_adapter_scale"])
    tokens = TINY_RESAMPLER["num_queries"]
    original = net.forward

    def identity_net(*args, encoder_hidden_states=None, **kw):
        # The InstantID pipeline gives IdentityNet the face tokens only: the last `tokens` of what the UNet reads.
        return original(*args, encoder_hidden_states=encoder_hidden_states[:, -tokens:], **kw)

    net.forward = identity_net
    emb, points = call["embedding"], call["kps"]
    init = PIL.Image.open(os.path.join(FIX, call["init_image"])).convert("RGB")
    mask = PIL.Image.open(os.path.join(FIX, call["mask_image"])).convert("L")
    control = pipeline_module.draw_kps(PIL.Image.new("RGB", init.size), points)
    with torch.no_grad():
        face = cls._encode_prompt_image_emb(pipe, emb, "cpu", 1, torch.float32, True)
        pe, npe, ppe, nppe = pipe.encode_prompt(PROMPT, device="cpu", num_images_per_prompt=1,
                                                do_classifier_free_guidance=True, negative_prompt=call["negative_prompt"])
    captured = {}

    def grab(p, i, ts, kw):
        captured["latents"] = kw["latents"].clone()
        return kw

    result = pipe(prompt_embeds=torch.cat([pe, face[1:]], dim=1), negative_prompt_embeds=torch.cat([npe, face[:1]], dim=1),
                  pooled_prompt_embeds=ppe, negative_pooled_prompt_embeds=nppe, image=init, mask_image=mask,
                  control_image=control, strength=call["strength"], num_inference_steps=call["num_inference_steps"],
                  guidance_scale=call["guidance_scale"], controlnet_conditioning_scale=call["controlnet_conditioning_scale"],
                  generator=torch.Generator("cpu").manual_seed(0), callback_on_step_end=grab,
                  callback_on_step_end_tensor_inputs=["latents"])
    result.images[0].save(os.path.join(out, f"{name}.png"))
    save_file({"latents": captured["latents"].contiguous(), "control": torch.from_numpy(np.array(control)),
               "embedding": torch.from_numpy(np.asarray(emb, dtype=np.float32))},
              os.path.join(out, f"{name}.safetensors"))
    entry = {k: v for k, v in call.items() if k not in ("embedding", "kps")}
    entry.update(prompt=PROMPT, kps=[[float(v) for v in p] for p in points], canvas=list(init.size), seed=0,
                 width=init.size[0], height=init.size[1])
    return entry


def check_kps(log=print):
    """Redraws every listed case in this interpreter; returns the number of samples that differ."""
    import PIL.Image
    import cv2
    draw_kps = load_draw_kps()
    out = os.path.join(OUT, "kps")
    listing = json.load(open(os.path.join(out, "cases.json")))["cases"]
    bad = 0
    for c in listing:
        img = np.array(draw_kps(PIL.Image.new("RGB", (c["width"], c["height"])), np.asarray(c["kps"], dtype=np.float32)))
        bad += int((img != np.array(PIL.Image.open(os.path.join(out, c["file"])))).sum())
    log(f"OpenCV {cv2.__version__}: {bad} samples differ over {len(listing)} draw_kps cases")
    return bad


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-with":
        sys.exit(subprocess.call([sys.argv[2], os.path.abspath(__file__), "--check"]))
    if sys.argv[1:] == ["--check"]:
        sys.exit(1 if check_kps() else 0)
    write_kps()
    write_adapter()
    write_single_file_adapter()
    write_pipeline()
