"""Reference gradients for the training module (Sources/Training), from torch.autograd and torch.optim.

  tools/reference/.venv/bin/python tools/reference/gen_training.py

Writes Tests/Fixtures/training/autograd.safetensors (deterministic; float32), keys "<case>.<tensor>":
  per operation: its inputs, the upstream gradient "dy", the output "y" and every input's gradient "d<input>"
  (torch.autograd.grad of (y * dy).sum()):
    linear       x [2,3,5], weight [7,5], bias [7]                          F.linear
    layer_norm   x [4,6] (offset mean), weight [6], bias [6], eps 1e-5      F.layer_norm
    group_norm   x [2,3,5,8] channels-last, 4 groups, weight/bias [8]       F.group_norm on the NCHW transpose
    gelu, silu   x [3,9]                                                    F.gelu (exact), F.silu
    attention    q [2,5,12], k/v [2,7,12], 3 heads                          F.scaled_dot_product_attention on [B,H,L,d]
    mse          prediction, target [3,4]                                   F.mse_loss (mean), a scalar: no dy
    conv3x3      x [2,6,5,4] channels-last, weight [7,4,3,3], bias; padding 1   F.conv2d on the NCHW transpose
    conv_down    x [2,7,6,4], weight [5,4,3,3], bias; stride 2, padding 1       (diffusers Downsample2D)
    conv1x1      x [2,3,4,6], weight [5,6,1,1], no bias
    upsample     x [2,3,4,5]                                                F.interpolate(scale_factor=2, nearest)
    mul          a, b [3,7]
    chain        x [2,6,10]: layer_norm -> linear(10->12) -> gelu -> linear(12->12) as queries over
                 keys/values linear(10->12) of x, 4 heads -> linear(12->8) -> mse against a target; gradients of every
                 weight (a Resampler-like block end to end)
  adamw: a [5,3] parameter, 6 steps of torch.optim.AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-2)
         with given gradients "adamw.grad.<t>"; the parameter after each step "adamw.param.<t>"

Writes Tests/Fixtures/training/resampler.safetensors: the official IP-Adapter Resampler (resampler.py of the PyPI
`ip-adapter` 0.1.0 wheel, as gen_ip_adapter.py imports it) at dim 32, depth 2, 2 heads of 64, 6 queries, embedding 24,
output 50, ff_mult 2, random weights ("param.<key>"), features "x" [2,5,24] and a target [2,6,50]: the output "y", the MSE "loss",
every parameter's gradient "grad.<key>" and "dx"; then 20 AdamW steps (lr 1e-3, weight decay 1e-2) on that loss:
"step20.<key>" and the losses "losses" [20] before each step.

Writes Tests/Fixtures/training/projections.safetensors: the official ImageProjModel (global, 20-d embeds -> 3 tokens of
50), MLPProjModel (full-face, [2,5,20] tokens -> 50) and FaceID MLPProjModel (24-d id -> 4 tokens of 50, hidden 48) from
the same wheel (ip_adapter.py, ip_adapter_faceid.py; diffusers' moved MultiControlNetModel shimmed for the import):
"<kind>.param.<key>", the input "<kind>.x", output "<kind>.y", the MSE against "<kind>.target" and every gradient
"<kind>.grad.<key>", "<kind>.dx".

Writes Tests/Fixtures/training/decoupled_attention.safetensors: a diffusers Attention (query 40, cross 50, 5 heads of 8,
to_out with bias; frozen) with the official IPAttnProcessor2_0 (attention_processor.py of the wheel; scale 0.7, 4 image
tokens; to_k_ip/to_v_ip trainable): weights "to_q", "to_k", "to_v", "to_out", "to_out_bias", "to_k_ip", "to_v_ip";
inputs "hidden" [2,9,40], "text" [2,6,50], "image" [2,4,50]; output "y"; upstream "dy"; gradients "dhidden", "dtext",
"dimage", "dto_k_ip", "dto_v_ip".

Writes Tests/Fixtures/training/blocks.safetensors: frozen UNet blocks with random weights, differentiated with respect to
their inputs — a diffusers ResnetBlock2D (6 -> 8 channels, 2 groups, time embedding 10; "resnet.param.<key>", input
"resnet.x" [2,5,4,6] channels-last, "resnet.temb" [2,10]) and a BasicTransformerBlock (dim 16, 2 heads of 8, cross 12,
GEGLU) with the official IPAttnProcessor2_0 on attn2 (scale 0.6, 3 image tokens; "transformer.param.<key>" including
"attn2.processor.to_k_ip.weight"; inputs "x" [2,7,16], "text" [2,5,12], "image" [2,3,12]): outputs "y", upstream "dy",
gradients "d<input>" (and "dto_k_ip", "dto_v_ip").

`gen_training.py data` writes Tests/Fixtures/training/data.safetensors and the three small PNGs it reads
(Tests/Fixtures/training/images/{wide,tall,gray}.png): tutorial_train.py's target transform (torchvision Resize(r,
BILINEAR), CenterCrop(r), ToTensor, Normalize([0.5], [0.5]) after convert("RGB")) as "pixels.<image>.<r>" [r,r,3];
clip_grad_norm_(max 0.5) of three parameters (the second without a gradient): "<case>.grad<i>", "<case>.total",
"<case>.clipped<i>" for a clipped and an unclipped case; diffusers get_scheduler(<name>, warm-up 3, 12 steps) rates at
optimiser steps 0..14 as "lr.<name>"; the tiny SD1.5 DDPMScheduler's add_noise and get_velocity of "noise.latents",
"noise.noise" at "noise.timesteps", and the offset noise noise + 0.1 * offset[:, :, None, None] ("noise.offset_noise").

`gen_training.py step-sdxl` writes Tests/Fixtures/training/step_sdxl.safetensors: tutorial_train_sdxl.py's step on the
tiny SDXL (Tests/Fixtures/tiny-sdxl) and its image encoder (tiny-ip-adapter/sdxl_models/image_encoder), batch 2 at 64²
with "time_ids" [2,6] (original size, crop, target size), per step "step<s>.vae_noise", ".noise", ".timesteps", ".drop"
(0 keep, 1 drop image, 2 drop text, 3 both): for the script's ImageProjModel ("linear") "linear.init.image_proj.<key>",
the first prediction "linear.pred0", the first gradients "linear.grad0.<param>", the losses of 20 AdamW steps (lr 1e-3)
"linear.losses" and the parameters after them "linear.final.<param>"; and MyDataset's SDXL transform (Resize, ToTensor, Normalize, crop at delta // 2) of the data
images: "sdxl_pixels.<image>.<r>" [r,r,3] and "sdxl_time_ids.<image>.<r>" [6].
"""
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(os.path.dirname(HERE)), "Tests", "Fixtures", "training")


def grads(y, inputs, dy):
    return torch.autograd.grad((y * dy).sum(), inputs)


def main():
    torch.manual_seed(1700)
    g = torch.Generator().manual_seed(1701)
    r = lambda *shape: torch.randn(*shape, generator=g)
    out = {}

    def case(name, fn, **inputs):
        leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
        y = fn(**leaves)
        dy = r(*y.shape) if y.numel() > 1 else torch.ones_like(y)
        gs = grads(y, list(leaves.values()), dy)
        for k, v in inputs.items():
            out[f"{name}.{k}"] = v
        out[f"{name}.y"] = y.detach()
        out[f"{name}.dy"] = dy
        for k, gk in zip(leaves, gs):
            out[f"{name}.d{k}"] = gk

    case("linear", lambda x, weight, bias: F.linear(x, weight, bias), x=r(2, 3, 5), weight=r(7, 5), bias=r(7))
    case("layer_norm", lambda x, weight, bias: F.layer_norm(x, [6], weight, bias, 1e-5),
         x=r(4, 6) * 2 + 3, weight=1 + 0.3 * r(6), bias=0.3 * r(6))
    case("group_norm", lambda x, weight, bias: F.group_norm(x.permute(0, 3, 1, 2), 4, weight, bias, 1e-5)
         .permute(0, 2, 3, 1), x=r(2, 3, 5, 8) + 1, weight=1 + 0.3 * r(8), bias=0.3 * r(8))
    case("gelu", lambda x: F.gelu(x), x=2 * r(3, 9))
    case("silu", lambda x: F.silu(x), x=2 * r(3, 9))

    def attention(q, k, v, heads=3):
        def split(t):
            b, n, w = t.shape
            return t.reshape(b, n, heads, w // heads).transpose(1, 2)
        o = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return o.transpose(1, 2).reshape(q.shape)

    case("attention", attention, q=r(2, 5, 12), k=r(2, 7, 12), v=r(2, 7, 12))
    case("mse", lambda prediction, target: F.mse_loss(prediction, target).reshape(1), prediction=r(3, 4), target=r(3, 4))

    def conv(stride, padding):
        return lambda x, weight, bias=None: F.conv2d(x.permute(0, 3, 1, 2), weight, bias, stride=stride,
                                                     padding=padding).permute(0, 2, 3, 1)

    case("conv3x3", conv(1, 1), x=r(2, 6, 5, 4), weight=r(7, 4, 3, 3) / 6, bias=0.1 * r(7))
    case("conv_down", conv(2, 1), x=r(2, 7, 6, 4), weight=r(5, 4, 3, 3) / 6, bias=0.1 * r(5))
    case("conv1x1", conv(1, 0), x=r(2, 3, 4, 6), weight=r(5, 6, 1, 1) / 2.5)
    case("upsample", lambda x: F.interpolate(x.permute(0, 3, 1, 2), scale_factor=2.0, mode="nearest").permute(0, 2, 3, 1),
         x=r(2, 3, 4, 5))
    case("mul", lambda a, b: a * b, a=r(3, 7), b=r(3, 7))

    def chain(x, ln_w, ln_b, w1, b1, w2, wk, wv, wo, bo, target):
        h = F.layer_norm(x, [10], ln_w, ln_b, 1e-5)
        q = F.linear(F.gelu(F.linear(h, w1, b1)), w2)
        a = attention(q, F.linear(h, wk), F.linear(h, wv), heads=4)
        return F.mse_loss(F.linear(a, wo, bo), target).reshape(1)

    case("chain", chain, x=r(2, 6, 10), ln_w=1 + 0.2 * r(10), ln_b=0.2 * r(10), w1=r(12, 10) / 10**0.5,
         b1=0.1 * r(12), w2=r(12, 12) / 12**0.5, wk=r(12, 10) / 10**0.5, wv=r(12, 10) / 10**0.5,
         wo=r(8, 12) / 12**0.5, bo=0.1 * r(8), target=r(2, 6, 8))

    p = torch.nn.Parameter(r(5, 3))
    out["adamw.param.0"] = p.detach().clone()
    opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    for t in range(1, 7):
        grad = r(5, 3) * (0.1 if t % 2 else 3.0)
        out[f"adamw.grad.{t}"] = grad
        p.grad = grad.clone()
        opt.step()
        out[f"adamw.param.{t}"] = p.detach().clone()

    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.detach().float().contiguous() for k, v in sorted(out.items())}, os.path.join(OUT, "autograd.safetensors"))
    print(f"{len(out)} tensors into {OUT}/autograd.safetensors")
    write_resampler()
    write_projections()
    write_decoupled_attention()
    write_blocks()
    write_step()
    write_step_sdxl()
    write_qwen()


def write_blocks():
    import sys
    sys.path.insert(0, HERE)
    import tiny_models
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.resnet import ResnetBlock2D
    official_modules()
    import ip_adapter.attention_processor as processors
    torch.manual_seed(1740)
    g = torch.Generator().manual_seed(1741)
    out = {}
    resnet = ResnetBlock2D(in_channels=6, out_channels=8, temb_channels=10, groups=2, eps=1e-5).eval()
    tiny_models.scale_parameters(resnet, g)
    tiny_models.randomise_norms(resnet, g)
    resnet.requires_grad_(False)
    x = torch.randn(2, 5, 4, 6, generator=g).requires_grad_(True)
    temb = torch.randn(2, 10, generator=g).requires_grad_(True)
    y = resnet(x.permute(0, 3, 1, 2), temb).permute(0, 2, 3, 1)
    dy = torch.randn(*y.shape, generator=g)
    dx, dtemb = torch.autograd.grad((y * dy).sum(), [x, temb])
    out.update({f"resnet.param.{k}": v for k, v in resnet.state_dict().items()})
    out.update({"resnet.x": x, "resnet.temb": temb, "resnet.y": y, "resnet.dy": dy, "resnet.dx": dx, "resnet.dtemb": dtemb})

    block = BasicTransformerBlock(dim=16, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=12,
                                  activation_fn="geglu").eval()
    proc = processors.IPAttnProcessor2_0(hidden_size=16, cross_attention_dim=12, scale=0.6, num_tokens=3)
    block.attn2.set_processor(proc)
    tiny_models.scale_parameters(block, g)
    tiny_models.randomise_norms(block, g)
    block.requires_grad_(False)
    proc.requires_grad_(True)
    x = torch.randn(2, 7, 16, generator=g).requires_grad_(True)
    text = torch.randn(2, 5, 12, generator=g).requires_grad_(True)
    image = torch.randn(2, 3, 12, generator=g).requires_grad_(True)
    y = block(x, encoder_hidden_states=torch.cat([text, image], dim=1))
    dy = torch.randn(*y.shape, generator=g)
    gs = torch.autograd.grad((y * dy).sum(), [x, text, image, proc.to_k_ip.weight, proc.to_v_ip.weight])
    out.update({f"transformer.param.{k}": v for k, v in block.state_dict().items()})
    out.update({"transformer.x": x, "transformer.text": text, "transformer.image": image, "transformer.y": y,
                "transformer.dy": dy})
    out.update({f"transformer.d{k}": v for k, v in zip(["x", "text", "image", "to_k_ip", "to_v_ip"], gs)})
    save_file({k: v.detach().float().contiguous() for k, v in sorted(out.items())}, os.path.join(OUT, "blocks.safetensors"))
    print(f"{len(out)} tensors into {OUT}/blocks.safetensors")


def write_decoupled_attention():
    import sys
    from diffusers.models.attention_processor import Attention
    official_modules()
    import ip_adapter.attention_processor as processors
    torch.manual_seed(1730)
    g = torch.Generator().manual_seed(1731)
    attn = Attention(query_dim=40, cross_attention_dim=50, heads=5, dim_head=8, bias=False, out_bias=True).eval()
    proc = processors.IPAttnProcessor2_0(hidden_size=40, cross_attention_dim=50, scale=0.7, num_tokens=4)
    with torch.no_grad():
        for m in (attn, proc):
            for _, p in m.named_parameters():
                p.copy_(torch.randn(p.shape, generator=g) / (p.shape[-1] ** 0.5 if p.ndim == 2 else 10))
    attn.set_processor(proc)
    for p in attn.parameters():
        p.requires_grad_(False)
    for p in proc.parameters():
        p.requires_grad_(True)
    hidden = torch.randn(2, 9, 40, generator=g).requires_grad_(True)
    text = torch.randn(2, 6, 50, generator=g).requires_grad_(True)
    image = torch.randn(2, 4, 50, generator=g).requires_grad_(True)
    y = attn(hidden, encoder_hidden_states=torch.cat([text, image], dim=1))
    dy = torch.randn(*y.shape, generator=g)
    gs = torch.autograd.grad((y * dy).sum(), [hidden, text, image, proc.to_k_ip.weight, proc.to_v_ip.weight])
    out = {"to_q": attn.to_q.weight, "to_k": attn.to_k.weight, "to_v": attn.to_v.weight, "to_out": attn.to_out[0].weight,
           "to_out_bias": attn.to_out[0].bias, "to_k_ip": proc.to_k_ip.weight, "to_v_ip": proc.to_v_ip.weight,
           "hidden": hidden, "text": text, "image": image, "y": y, "dy": dy}
    out.update({f"d{k}": v for k, v in zip(["hidden", "text", "image", "to_k_ip", "to_v_ip"], gs)})
    save_file({k: v.detach().float().contiguous() for k, v in sorted(out.items())},
              os.path.join(OUT, "decoupled_attention.safetensors"))
    print(f"{len(out)} tensors into {OUT}/decoupled_attention.safetensors")


def official_modules():
    """ip_adapter.py and ip_adapter_faceid.py of the PyPI `ip-adapter` 0.1.0 wheel, imported as a package."""
    import glob
    import subprocess
    import sys
    import tempfile
    import zipfile
    tmp = tempfile.mkdtemp()
    subprocess.run([sys.executable, "-m", "pip", "download", "ip-adapter==0.1.0", "--no-deps", "-q", "-d", tmp], check=True)
    with zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0]) as z:
        z.extractall(tmp)
    sys.path.insert(0, tmp)
    # ip_adapter.py imports MultiControlNetModel from where diffusers kept it before 0.33.
    import diffusers.pipelines.controlnet as controlnet_pipelines
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel
    controlnet_pipelines.MultiControlNetModel = MultiControlNetModel
    import ip_adapter.ip_adapter as plain
    import ip_adapter.ip_adapter_faceid as faceid
    return plain, faceid


def write_projections():
    import sys
    sys.path.insert(0, HERE)
    import tiny_models
    plain, faceid = official_modules()
    torch.manual_seed(1720)
    g = torch.Generator().manual_seed(1721)
    models = {
        "global": (plain.ImageProjModel(cross_attention_dim=50, clip_embeddings_dim=20, clip_extra_context_tokens=3), [2, 20]),
        "full_face": (plain.MLPProjModel(cross_attention_dim=50, clip_embeddings_dim=20), [2, 5, 20]),
        "faceid": (faceid.MLPProjModel(cross_attention_dim=50, id_embeddings_dim=24, num_tokens=4), [2, 24]),
    }
    out = {}
    for kind, (model, shape) in models.items():
        tiny_models.scale_parameters(model, g)
        tiny_models.randomise_norms(model, g)
        out.update({f"{kind}.param.{k}": v.detach().clone() for k, v in model.state_dict().items()})
        x = torch.randn(*shape, generator=g).requires_grad_(True)
        y = model(x)
        target = torch.randn(*y.shape, generator=g)
        loss = F.mse_loss(y, target)
        names = [k for k, _ in model.named_parameters()]
        gs = torch.autograd.grad(loss, [x] + list(model.parameters()))
        out.update({f"{kind}.x": x.detach(), f"{kind}.y": y.detach(), f"{kind}.target": target,
                    f"{kind}.loss": loss.detach().reshape(1), f"{kind}.dx": gs[0]})
        out.update({f"{kind}.grad.{k}": gk for k, gk in zip(names, gs[1:])})
    save_file({k: v.detach().float().contiguous() for k, v in sorted(out.items())},
              os.path.join(OUT, "projections.safetensors"))
    print(f"{len(out)} tensors into {OUT}/projections.safetensors")


def write_resampler():
    import sys
    sys.path.insert(0, HERE)
    import gen_ip_adapter
    import tiny_models
    resampler = gen_ip_adapter.official_resampler_module()
    torch.manual_seed(1710)
    model = resampler.Resampler(dim=32, depth=2, dim_head=64, heads=2, num_queries=6, embedding_dim=24, output_dim=50,
                                ff_mult=2)
    g = torch.Generator().manual_seed(1711)
    tiny_models.scale_parameters(model, g)
    tiny_models.randomise_norms(model, g)
    with torch.no_grad():
        model.latents.copy_(torch.randn(model.latents.shape, generator=g) / 32 ** 0.5)
    out = {f"param.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 5, 24, generator=g).requires_grad_(True)
    target = torch.randn(2, 6, 50, generator=g)
    y = model(x)
    loss = F.mse_loss(y, target)
    names = [k for k, _ in model.named_parameters()]
    gs = torch.autograd.grad(loss, [x] + list(model.parameters()))
    out.update(x=x.detach(), target=target, y=y.detach(), loss=loss.detach().reshape(1), dx=gs[0])
    out.update({f"grad.{k}": gk for k, gk in zip(names, gs[1:])})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = F.mse_loss(model(x.detach()), target)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    out["losses"] = torch.tensor(losses)
    out.update({f"step20.{k}": v.detach().clone() for k, v in model.state_dict().items()})
    save_file({k: v.detach().float().contiguous() for k, v in sorted(out.items())}, os.path.join(OUT, "resampler.safetensors"))
    print(f"{len(out)} tensors into {OUT}/resampler.safetensors (loss {losses[0]:.5f} -> {losses[-1]:.5f})")


QWEN_COMMIT = "498e1d92baffad55ced3f661ecaa9c4c53b400c6"


def qwen_reference():
    """Qwen-VL's `Resampler` and its helpers from the `visual.py` that Yuliang-Liu/Monkey carries verbatim
    (monkey_model/visual.py, "Copyright (c) Alibaba Cloud."; Qwen-VL's own lives on the Hugging Face hub), cloned
    into tools/reference/third_party/Monkey (git-ignored) from $QWEN_VISUAL_GIT (default
    https://github.com/Yuliang-Liu/Monkey) and compiled from its source: the module imports torchvision and
    requests, which the Resampler does not use."""
    import ast
    import math
    import subprocess
    from functools import partial  # noqa: F401
    import numpy as np
    from torch import nn
    from torch.nn.init import trunc_normal_
    third = os.path.join(HERE, "third_party", "Monkey")
    if not os.path.isdir(third):
        url = os.environ.get("QWEN_VISUAL_GIT", "https://github.com/Yuliang-Liu/Monkey")
        os.makedirs(os.path.dirname(third), exist_ok=True)
        subprocess.check_call(["git", "clone", "--quiet", "--no-checkout", url, third])
    subprocess.check_call(["git", "-C", third, "checkout", "--quiet", QWEN_COMMIT, "--", "monkey_model/visual.py"])
    path = os.path.join(third, "monkey_model", "visual.py")
    tree = ast.parse(open(path).read(), path)
    wanted = {"get_abs_pos", "get_2d_sincos_pos_embed", "get_2d_sincos_pos_embed_from_grid",
              "get_1d_sincos_pos_embed_from_grid", "Resampler"}
    body = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in wanted]
    assert {n.name for n in body} == wanted, "visual.py changed"
    namespace = {"np": np, "math": math, "torch": torch, "nn": nn, "F": F, "trunc_normal_": trunc_normal_}
    exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec"), namespace)
    return namespace


def write_qwen():
    """Qwen-VL's Resampler (+ VisionTransformer's ln_post and `@ proj`) as an image projection, forward and backward."""
    from functools import partial
    ref = qwen_reference()
    out = {}
    # (case, grid, key grid, embed_dim, heads, kv_dim): a resized key table up and down, none, identity kv_proj.
    cases = [("g2k3", 2, 3, 64, 1, 40), ("g3k3", 3, 3, 64, 1, 40), ("g4k3", 4, 3, 64, 1, 40), ("g2k5", 2, 5, 128, 2, 128)]
    for i, (name, grid, kgrid, dim, heads, kv) in enumerate(cases):
        torch.manual_seed(1750 + i)
        g = torch.Generator().manual_seed(1760 + i)
        pool = ref["Resampler"](grid_size=grid, embed_dim=dim, num_heads=heads, kv_dim=kv,
                                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
        ln_post = torch.nn.LayerNorm(dim, eps=1e-6)
        proj = torch.nn.Parameter(dim ** -0.5 * torch.randn(dim, 20, generator=g))
        with torch.no_grad():  # non-trivial LayerNorms and biases
            for m in (pool.ln_q, pool.ln_kv, ln_post):
                m.weight.copy_(1 + 0.2 * torch.randn(dim, generator=g))
                m.bias.copy_(0.2 * torch.randn(dim, generator=g))
            pool.attn.in_proj_bias.copy_(0.1 * torch.randn(3 * dim, generator=g))
            pool.attn.out_proj.bias.copy_(0.1 * torch.randn(dim, generator=g))
            pool.query.copy_(torch.randn(pool.query.shape, generator=g))
        x = torch.randn(2, kgrid * kgrid, kv, generator=g).requires_grad_(True)
        y = ln_post(pool(x)) @ proj
        target = torch.randn(*y.shape, generator=g)
        loss = F.mse_loss(y, target)
        params = [(k, p) for k, p in pool.named_parameters() if p.requires_grad]
        params += [("ln_post.weight", ln_post.weight), ("ln_post.bias", ln_post.bias), ("proj", proj)]
        gs = torch.autograd.grad(loss, [x] + [p for _, p in params])
        state = dict(pool.state_dict())
        state.update({"ln_post.weight": ln_post.weight, "ln_post.bias": ln_post.bias, "proj": proj})
        out.update({f"{name}.param.{k}": v.detach().clone() for k, v in state.items()})
        out.update({f"{name}.x": x.detach(), f"{name}.y": y.detach(), f"{name}.target": target,
                    f"{name}.loss": loss.detach().reshape(1), f"{name}.dx": gs[0],
                    f"{name}.kpos": ref["get_abs_pos"](pool.pos_embed, kgrid * kgrid).detach()})
        out.update({f"{name}.grad.{k}": gk for (k, _), gk in zip(params, gs[1:])})
    save_file({k: v.detach().float().contiguous() for k, v in sorted(out.items())}, os.path.join(OUT, "qwen_resampler.safetensors"))
    print(f"{len(out)} tensors into {OUT}/qwen_resampler.safetensors")


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def draw_steps(g, scheduler, steps=20):
    """Each step's draws for a batch of 2 at 8x8 latents (VAE posterior noise, noise, timesteps) and its dropout
    codes (0 keep, 1 drop image, 2 drop text, 3 drop both; every combination occurs in four steps)."""
    per_step = []
    for s in range(steps):
        codes = [(2 * s + b) % 4 for b in range(2)]
        per_step.append(dict(vae_noise=torch.randn(2, 4, 8, 8, generator=g), noise=torch.randn(2, 4, 8, 8, generator=g),
                             timesteps=torch.randint(0, scheduler.config.num_train_timesteps, (2,), generator=g),
                             codes=codes))
    return per_step


def install_ip_processors(unet, processors, cross, num_tokens):
    """tutorial_train*.py's adapter set-up: attn1 keeps the plain processor, every attn2 gets IPAttnProcessor2_0 with
    to_k_ip/to_v_ip copied from the layer's to_k/to_v. Returns the adapter's ModuleList (the trainable processors)."""
    unet_sd = unet.state_dict()
    procs = {}
    for name in unet.attn_processors.keys():
        if name.endswith("attn1.processor"):
            procs[name] = processors.AttnProcessor2_0()
            continue
        if name.startswith("mid_block"):
            size = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            size = list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            size = unet.config.block_out_channels[int(name[len("down_blocks.")])]
        layer = name[:-len(".processor")]
        procs[name] = processors.IPAttnProcessor2_0(hidden_size=size, cross_attention_dim=cross, num_tokens=num_tokens)
        procs[name].load_state_dict({"to_k_ip.weight": unet_sd[layer + ".to_k.weight"],
                                     "to_v_ip.weight": unet_sd[layer + ".to_v.weight"]})
    unet.set_attn_processor(procs)
    return torch.nn.ModuleList(unet.attn_processors.values())


def write_step():
    """20 training steps of tutorial_train.py / tutorial_train_plus.py on the tiny SD1.5 and image encoder fixtures."""
    import copy
    import sys
    sys.path.insert(0, HERE)
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection
    import gen_ip_adapter
    plain, _ = official_modules()
    import ip_adapter.attention_processor as processors
    resampler = gen_ip_adapter.official_resampler_module()
    fixtures = os.path.dirname(OUT)
    base = os.path.join(fixtures, "tiny-sd15")
    unet0 = UNet2DConditionModel.from_pretrained(base, subfolder="unet").eval()
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae").eval()
    text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder").eval()
    tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer")
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(
        os.path.join(fixtures, "tiny-ip-adapter", "models", "image_encoder")).eval()
    scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
    for m in (unet0, vae, text_encoder, image_encoder):
        m.requires_grad_(False)
    g = torch.Generator().manual_seed(1740)
    texts = ["a red square on grey", "two blue circles"]
    images = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    clip_pixels = torch.randn(2, 3, 224, 224, generator=g).half().float()  # stored as float16, exactly
    per_step = draw_steps(g, scheduler)
    out = {"images": nhwc(images), "clip_pixels": nhwc(clip_pixels)}
    for s, d in enumerate(per_step):
        out.update({f"step{s}.vae_noise": nhwc(d["vae_noise"]), f"step{s}.noise": nhwc(d["noise"]),
                    f"step{s}.timesteps": d["timesteps"].float(), f"step{s}.drop": torch.tensor(d["codes"]).float()})

    cross, hidden, projection_dim = 20, 40, 28
    kinds = {
        "linear": lambda: plain.ImageProjModel(cross_attention_dim=cross, clip_embeddings_dim=projection_dim,
                                              clip_extra_context_tokens=4),
        # tutorial_train_plus.py's Resampler with depth 2 and 2 heads (4 and 12 there) to keep the fixture small.
        "plus": lambda: resampler.Resampler(dim=cross, depth=2, dim_head=64, heads=2, num_queries=16,
                                            embedding_dim=hidden, output_dim=cross, ff_mult=4),
        "full_face": lambda: plain.MLPProjModel(cross_attention_dim=cross, clip_embeddings_dim=hidden),
    }
    for kind, make in kinds.items():
        torch.manual_seed({"linear": 1741, "plus": 1742, "full_face": 1743}[kind])
        unet = copy.deepcopy(unet0)
        proj = make()
        adapter = install_ip_processors(unet, processors, cross, {"linear": 4, "plus": 16, "full_face": 257}[kind])
        out.update({f"{kind}.init.image_proj.{k}": v.detach().clone() for k, v in proj.state_dict().items()})
        params = list(proj.parameters()) + list(adapter.parameters())
        names = [f"image_proj.{k}" for k, _ in proj.named_parameters()] + [f"ip_adapter.{k}" for k, _ in adapter.named_parameters()]
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
        losses = []
        for s, d in enumerate(per_step):
            with torch.no_grad():
                dist = vae.encode(images).latent_dist
                latents = (dist.mean + dist.std * d["vae_noise"]) * vae.config.scaling_factor
                noisy = scheduler.add_noise(latents, d["noise"], d["timesteps"])
                drop_text = [c >= 2 for c in d["codes"]]
                drop_image = [c in (1, 3) for c in d["codes"]]
                ids = tokenizer(["" if dt else t for t, dt in zip(texts, drop_text)], max_length=tokenizer.model_max_length,
                                padding="max_length", truncation=True, return_tensors="pt").input_ids
                text = text_encoder(ids)[0]
                if kind == "linear":  # tutorial_train.py: the image embeds of a dropped image are zeros
                    embeds = image_encoder(clip_pixels).image_embeds
                    embeds = torch.stack([torch.zeros_like(e) if di else e for e, di in zip(embeds, drop_image)])
                else:  # tutorial_train_plus.py: a dropped image is a zero image, through the encoder
                    pixels = torch.stack([torch.zeros_like(p) if di else p for p, di in zip(clip_pixels, drop_image)])
                    embeds = image_encoder(pixels, output_hidden_states=True).hidden_states[-2]
            tokens = proj(embeds)
            pred = unet(noisy, d["timesteps"], torch.cat([text, tokens], dim=1)).sample
            loss = F.mse_loss(pred.float(), d["noise"].float(), reduction="mean")
            opt.zero_grad()
            loss.backward()
            if s == 0:
                out[f"{kind}.pred0"] = nhwc(pred.detach())
                out["step0.latents"] = nhwc(latents)
                out.update({f"{kind}.grad0.{n}": p.grad.detach().clone() for n, p in zip(names, params)})
            losses.append(loss.item())
            opt.step()
        out[f"{kind}.losses"] = torch.tensor(losses)
        out.update({f"{kind}.final.{n}": p.detach().clone() for n, p in zip(names, params)})
        print(f"{kind}: loss {losses[0]:.5f} -> {losses[-1]:.5f}")
    save_file({k: (v.detach().half() if k == "clip_pixels" else v.detach().float()).contiguous() for k, v in sorted(out.items())},
              os.path.join(OUT, "step.safetensors"))
    print(f"{len(out)} tensors into {OUT}/step.safetensors")


def write_step_sdxl():
    """tutorial_train_sdxl.py on the tiny SDXL and image encoder fixtures: 20 steps (batch 2) of the linear adapter (the
    script's ImageProjModel on image_embeds, a dropped image = zero embeds); both text encoders' hidden_states[-2] concatenated,
    text_encoder_2's pooled output and add_time_ids as added_cond_kwargs; "" for both tokenizers where the text is
    dropped. Also MyDataset's SDXL transform (Resize, ToTensor, Normalize, crop at delta // 2) and its time ids on the
    images of write_data."""
    import copy
    sys.path.insert(0, HERE)
    from PIL import Image
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection
    transforms = torchvision_transforms()
    plain, _ = official_modules()
    import ip_adapter.attention_processor as processors
    fixtures = os.path.dirname(OUT)
    base = os.path.join(fixtures, "tiny-sdxl")
    unet0 = UNet2DConditionModel.from_pretrained(base, subfolder="unet").eval()
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae").eval()
    text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder").eval()
    text_encoder_2 = CLIPTextModelWithProjection.from_pretrained(base, subfolder="text_encoder_2").eval()
    tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer")
    tokenizer_2 = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer_2")
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(
        os.path.join(fixtures, "tiny-ip-adapter", "sdxl_models", "image_encoder")).eval()
    scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
    for m in (unet0, vae, text_encoder, text_encoder_2, image_encoder):
        m.requires_grad_(False)
    out = {}

    # MyDataset's transform and micro-conditioning (center_crop=True)
    for name, r in [("wide", 16), ("tall", 16), ("gray", 40), ("wide", 23), ("tall", 7)]:
        transform = transforms.Compose([transforms.Resize(r, interpolation=transforms.InterpolationMode.BILINEAR),
                                        transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
        with Image.open(os.path.join(OUT, "images", f"{name}.png")) as raw:
            original_width, original_height = raw.size
            t = transform(raw.convert("RGB"))
        delta_h, delta_w = t.shape[1] - r, t.shape[2] - r
        assert not all([delta_h, delta_w])
        top, left = delta_h // 2, delta_w // 2
        crop = transforms.functional.crop(t, top=top, left=left, height=r, width=r)
        out[f"sdxl_pixels.{name}.{r}"] = nhwc(crop[None])[0]
        out[f"sdxl_time_ids.{name}.{r}"] = torch.tensor([original_height, original_width, top, left, r, r]).float()

    g = torch.Generator().manual_seed(1760)
    texts = ["a red square on grey", "two blue circles"]
    images = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    clip_pixels = torch.randn(2, 3, 224, 224, generator=g).half().float()  # stored as float16, exactly
    time_ids = torch.tensor([[96, 64, 16, 0, 64, 64], [64, 100, 0, 18, 64, 64]]).float()
    per_step = draw_steps(g, scheduler)
    out.update({"images": nhwc(images), "clip_pixels": nhwc(clip_pixels), "time_ids": time_ids})
    for s, d in enumerate(per_step):
        out.update({f"step{s}.vae_noise": nhwc(d["vae_noise"]), f"step{s}.noise": nhwc(d["noise"]),
                    f"step{s}.timesteps": d["timesteps"].float(), f"step{s}.drop": torch.tensor(d["codes"]).float()})

    cross = unet0.config.cross_attention_dim
    vision = image_encoder.config
    # The script's projection only: what SDXL changes (text, pooled, time ids) is the same for every projection, and
    # each projection's step is in step.safetensors.
    kinds = {
        "linear": lambda: plain.ImageProjModel(cross_attention_dim=cross, clip_embeddings_dim=vision.projection_dim,
                                              clip_extra_context_tokens=4),
    }
    for kind, make in kinds.items():
        torch.manual_seed(1761)
        unet = copy.deepcopy(unet0)
        proj = make()
        adapter = install_ip_processors(unet, processors, cross, 4)
        out.update({f"{kind}.init.image_proj.{k}": v.detach().clone() for k, v in proj.state_dict().items()})
        params = list(proj.parameters()) + list(adapter.parameters())
        names = [f"image_proj.{k}" for k, _ in proj.named_parameters()] + [f"ip_adapter.{k}" for k, _ in adapter.named_parameters()]
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
        losses = []
        for s, d in enumerate(per_step):
            with torch.no_grad():
                dist = vae.encode(images).latent_dist
                latents = (dist.mean + dist.std * d["vae_noise"]) * vae.config.scaling_factor
                noisy = scheduler.add_noise(latents, d["noise"], d["timesteps"])
                drop_text = [c >= 2 for c in d["codes"]]
                drop_image = [c in (1, 3) for c in d["codes"]]
                captions = ["" if dt else t for t, dt in zip(texts, drop_text)]
                ids = tokenizer(captions, max_length=tokenizer.model_max_length, padding="max_length", truncation=True,
                                return_tensors="pt").input_ids
                ids_2 = tokenizer_2(captions, max_length=tokenizer_2.model_max_length, padding="max_length",
                                    truncation=True, return_tensors="pt").input_ids
                encoder_output = text_encoder(ids, output_hidden_states=True)
                text_embeds = encoder_output.hidden_states[-2]
                encoder_output_2 = text_encoder_2(ids_2, output_hidden_states=True)
                pooled_text_embeds = encoder_output_2[0]
                text_embeds = torch.concat([text_embeds, encoder_output_2.hidden_states[-2]], dim=-1)
                # tutorial_train_sdxl.py: the image embeds of a dropped image are zeros
                embeds = image_encoder(clip_pixels).image_embeds
                embeds = torch.stack([torch.zeros_like(e) if di else e for e, di in zip(embeds, drop_image)])
            tokens = proj(embeds)
            cond = {"text_embeds": pooled_text_embeds, "time_ids": time_ids}
            pred = unet(noisy, d["timesteps"], torch.cat([text_embeds, tokens], dim=1), added_cond_kwargs=cond).sample
            loss = F.mse_loss(pred.float(), d["noise"].float(), reduction="mean")
            opt.zero_grad()
            loss.backward()
            if s == 0:
                out[f"{kind}.pred0"] = nhwc(pred.detach())
                out.update({f"{kind}.grad0.{n}": p.grad.detach().clone() for n, p in zip(names, params)})
            losses.append(loss.item())
            opt.step()
        out[f"{kind}.losses"] = torch.tensor(losses)
        out.update({f"{kind}.final.{n}": p.detach().clone() for n, p in zip(names, params)})
        print(f"sdxl {kind}: loss {losses[0]:.5f} -> {losses[-1]:.5f}")
    save_file({k: (v.detach().half() if k == "clip_pixels" else v.detach().float()).contiguous() for k, v in sorted(out.items())},
              os.path.join(OUT, "step_sdxl.safetensors"))
    print(f"{len(out)} tensors into {OUT}/step_sdxl.safetensors")


def torchvision_transforms():
    """torchvision.transforms, pure Python on PIL images, from the PyPI wheel unpacked into tools/reference/third_party/
    torchvision-0.28.0 (git-ignored; fetched here on first use). Not installed into the venv: diffusers and transformers
    would then detect and import the whole package, whose compiled ops are built for the CUDA torch it pins."""
    import glob
    import importlib
    import subprocess
    import tempfile
    import types
    import zipfile
    root = os.path.join(HERE, "third_party", "torchvision-0.28.0")
    if not os.path.isdir(os.path.join(root, "torchvision", "transforms")):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp,
                            "torchvision==0.28.0"], check=True)
            with zipfile.ZipFile(glob.glob(os.path.join(tmp, "torchvision-*.whl"))[0]) as wheel:
                wheel.extractall(root, [n for n in wheel.namelist() if n.endswith(".py")])
    package = types.ModuleType("torchvision")  # the package without its __init__ (which loads the compiled ops)
    package.__path__ = [os.path.join(root, "torchvision")]
    saved = sys.modules.get("torchvision")
    sys.modules["torchvision"] = package
    try:
        return importlib.import_module("torchvision.transforms")
    finally:
        if saved is None:
            sys.modules.pop("torchvision")  # diffusers' find_spec("torchvision") must keep seeing no package


def write_data():
    """tutorial_train.py's image transform, clip_grad_norm_, diffusers' learning-rate schedules and noise targets."""
    import numpy as np
    from PIL import Image
    transforms = torchvision_transforms()
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    folder = os.path.join(OUT, "images")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(1750)
    # Smooth random images (a coarse grid upsampled, plus noise): resampling differences would show.
    def picture(w, h, channels):
        coarse = rng.rand(4, 4, channels) * 255
        ys, xs = np.meshgrid(np.linspace(0, 3, h), np.linspace(0, 3, w), indexing="ij")
        y0, x0 = np.floor(ys).astype(int).clip(0, 2), np.floor(xs).astype(int).clip(0, 2)
        fy, fx = (ys - y0)[..., None], (xs - x0)[..., None]
        top = coarse[y0, x0] * (1 - fx) + coarse[y0, x0 + 1] * fx
        bottom = coarse[y0 + 1, x0] * (1 - fx) + coarse[y0 + 1, x0 + 1] * fx
        v = top * (1 - fy) + bottom * fy + rng.randn(h, w, channels) * 12
        return v.clip(0, 255).round().astype(np.uint8)
    images = {"wide": Image.fromarray(picture(37, 23, 3), "RGB"),
              "tall": Image.fromarray(picture(19, 44, 4), "RGBA"),
              "gray": Image.fromarray(picture(30, 30, 1)[..., 0], "L")}
    for name, image in images.items():
        image.save(os.path.join(folder, f"{name}.png"))
    out = {}
    for name, r in [("wide", 16), ("tall", 16), ("gray", 40), ("wide", 23), ("tall", 7)]:
        transform = transforms.Compose([
            transforms.Resize(r, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(r), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
        with Image.open(os.path.join(folder, f"{name}.png")) as raw:
            out[f"pixels.{name}.{r}"] = nhwc(transform(raw.convert("RGB"))[None])[0]

    # clip_grad_norm_ (max norm 0.5) of three gradients, one of them absent; and one below the limit.
    g = torch.Generator().manual_seed(1751)
    for case, scale in [("clip", 1.0), ("noclip", 0.01)]:
        params = [torch.nn.Parameter(torch.zeros(s)) for s in [(4, 3), (5,), (2, 2, 3)]]
        for i, p in enumerate(params):
            if i != 1:
                p.grad = torch.randn(p.shape, generator=g) * scale
                out[f"{case}.grad{i}"] = p.grad.clone()
        total = torch.nn.utils.clip_grad_norm_(params, 0.5)
        out[f"{case}.total"] = total.reshape(1)
        for i, p in enumerate(params):
            if p.grad is not None:
                out[f"{case}.clipped{i}"] = p.grad.clone()

    # get_scheduler(name, warm-up 3, 12 training steps): the rate at optimiser steps 0..14 (base rate 1).
    for name in ["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        schedule = get_scheduler(name, opt, num_warmup_steps=3, num_training_steps=12)
        rates = []
        for _ in range(15):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            schedule.step()
        out[f"lr.{name}"] = torch.tensor(rates, dtype=torch.float64).float()

    # The tiny SD1.5 scheduler's add_noise and get_velocity; the offset noise of diffusers' train scripts
    # (noise += noise_offset * randn(B, C, 1, 1)).
    scheduler = DDPMScheduler.from_pretrained(os.path.join(os.path.dirname(OUT), "tiny-sd15"), subfolder="scheduler")
    latents = torch.randn(3, 4, 5, 6, generator=g)
    noise = torch.randn(3, 4, 5, 6, generator=g)
    offset = torch.randn(3, 4, 1, 1, generator=g)
    timesteps = torch.tensor([0, 517, scheduler.config.num_train_timesteps - 1])
    out.update({"noise.latents": nhwc(latents), "noise.noise": nhwc(noise), "noise.offset": offset.reshape(3, 4),
                "noise.timesteps": timesteps.float(),
                "noise.noisy": nhwc(scheduler.add_noise(latents, noise, timesteps)),
                "noise.velocity": nhwc(scheduler.get_velocity(latents, noise, timesteps)),
                "noise.offset_noise": nhwc(noise + 0.1 * offset)})
    save_file({k: v.detach().float().contiguous() for k, v in sorted(out.items())}, os.path.join(OUT, "data.safetensors"))
    print(f"{len(out)} tensors into {OUT}/data.safetensors, {len(images)} images into {folder}")


if __name__ == "__main__":
    if sys.argv[1:] == ["step"]:
        write_step()
    elif sys.argv[1:] == ["step-sdxl"]:
        write_step_sdxl()
    elif sys.argv[1:] == ["data"]:
        write_data()
    elif sys.argv[1:] == ["qwen"]:
        write_qwen()
    else:
        main()
