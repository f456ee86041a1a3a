"""Golden tensors for TensorCore's per-op parity tests.

Writes Tests/Fixtures/ops/ops.safetensors: inputs and PyTorch outputs (PyTorch layouts: NCHW for
images, [B, H, L, D] for attention). Deterministic: fixed seeds, one thread.
Run: tools/reference/.venv/bin/python tools/reference/gen_ops.py
"""
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.set_num_threads(1)
torch.manual_seed(1234)
ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "Fixtures", "ops")


def r(*shape, scale=1.0):
    return torch.randn(*shape, dtype=torch.float32) * scale


def main():
    t = {}
    # Convolutions (NCHW here; the Swift tests transpose to NHWC).
    x = r(2, 5, 9, 11)
    t["conv3x3.x"] = x
    t["conv3x3.w"] = r(7, 5, 3, 3, scale=0.2)
    t["conv3x3.b"] = r(7)
    t["conv3x3.y"] = F.conv2d(x, t["conv3x3.w"], t["conv3x3.b"], padding=1)
    t["conv1x1.w"] = r(6, 5, 1, 1, scale=0.3)
    t["conv1x1.b"] = r(6)
    t["conv1x1.y"] = F.conv2d(x, t["conv1x1.w"], t["conv1x1.b"])
    t["conv_s2.w"] = r(4, 5, 3, 3, scale=0.2)
    t["conv_s2.b"] = r(4)
    t["conv_s2.y"] = F.conv2d(x, t["conv_s2.w"], t["conv_s2.b"], stride=2, padding=1)
    # diffusers Downsample2D with padding=0 (VAE encoder): pad right/bottom by 1, then stride 2.
    t["conv_asym.y"] = F.conv2d(F.pad(x, (0, 1, 0, 1)), t["conv_s2.w"], t["conv_s2.b"], stride=2)
    # Residual accumulate.
    t["conv3x3.res"] = r(2, 7, 9, 11)
    t["conv3x3.y_res"] = t["conv3x3.y"] + t["conv3x3.res"]

    # Linear (+ fused GELU, + residual).
    xl = r(2, 3, 13)
    t["linear.x"] = xl
    t["linear.w"] = r(17, 13, scale=0.3)
    t["linear.b"] = r(17)
    t["linear.y"] = F.linear(xl, t["linear.w"], t["linear.b"])
    t["linear.y_gelu"] = F.gelu(t["linear.y"])
    t["linear.res"] = r(2, 3, 17)
    t["linear.y_res"] = t["linear.y"] + t["linear.res"]
    t["linear.w_f16"] = t["linear.w"].half()
    t["linear.y_f16w"] = F.linear(xl, t["linear.w_f16"].float(), t["linear.b"])

    # Normalisations.
    xg = r(2, 12, 5, 7) * 3 + 1.5
    t["groupnorm.x"] = xg
    t["groupnorm.w"] = r(12)
    t["groupnorm.b"] = r(12)
    t["groupnorm.y"] = F.group_norm(xg, 4, t["groupnorm.w"], t["groupnorm.b"], eps=1e-5)
    t["groupnorm.y_silu"] = F.silu(t["groupnorm.y"])
    # Many channels per group (SIMD path) and eps 1e-6 like the VAE.
    xg2 = r(1, 64, 6, 6) * 2 - 0.5
    t["groupnorm2.x"] = xg2
    t["groupnorm2.w"] = r(64)
    t["groupnorm2.b"] = r(64)
    t["groupnorm2.y"] = F.group_norm(xg2, 2, t["groupnorm2.w"], t["groupnorm2.b"], eps=1e-6)
    xn = r(2, 9, 40) * 2 + 0.7
    t["layernorm.x"] = xn
    t["layernorm.w"] = r(40)
    t["layernorm.b"] = r(40)
    t["layernorm.y"] = F.layer_norm(xn, (40,), t["layernorm.w"], t["layernorm.b"], eps=1e-5)

    # Attention: [B, H, L, D].
    q = r(2, 3, 50, 8)
    k = r(2, 3, 37, 8)
    v = r(2, 3, 37, 8)
    t["sdpa.q"], t["sdpa.k"], t["sdpa.v"] = q, k, v
    t["sdpa.y"] = F.scaled_dot_product_attention(q, k, v)
    qc = r(2, 3, 21, 8)
    kc = r(2, 3, 21, 8)
    vc = r(2, 3, 21, 8)
    t["sdpa_causal.q"], t["sdpa_causal.k"], t["sdpa_causal.v"] = qc, kc, vc
    t["sdpa_causal.y"] = F.scaled_dot_product_attention(qc, kc, vc, is_causal=True)
    # Decoupled attention: text source + 0.6 × image source (same queries).
    k2 = r(2, 3, 4, 8)
    v2 = r(2, 3, 4, 8)
    t["sdpa_ip.k2"], t["sdpa_ip.v2"] = k2, v2
    t["sdpa_ip.y"] = t["sdpa.y"] + 0.6 * F.scaled_dot_product_attention(q, k2, v2)

    # Activations.
    xa = r(3, 37) * 4
    t["act.x"] = xa
    t["act.gelu"] = F.gelu(xa)
    t["act.silu"] = F.silu(xa)
    t["act.quick_gelu"] = xa * torch.sigmoid(1.702 * xa)
    xgg = r(2, 5, 2 * 24)
    t["geglu.x"] = xgg
    hidden, gate = xgg.chunk(2, dim=-1)
    t["geglu.y"] = hidden * F.gelu(gate)

    # Upsample.
    xu = r(2, 3, 4, 5)
    t["upsample.x"] = xu
    t["upsample.y"] = F.interpolate(xu, scale_factor=2.0, mode="nearest")

    # Timestep embedding (diffusers get_timestep_embedding, SD1.5 settings and another).
    from diffusers.models.embeddings import get_timestep_embedding

    ts = torch.tensor([0.0, 1.0, 500.0, 999.0, 946.4734], dtype=torch.float32)
    t["temb.t"] = ts
    t["temb.sd15"] = get_timestep_embedding(ts, 320, flip_sin_to_cos=True, downscale_freq_shift=0)
    t["temb.other"] = get_timestep_embedding(ts, 33, flip_sin_to_cos=False, downscale_freq_shift=1)

    os.makedirs(ROOT, exist_ok=True)
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(ROOT, "ops.safetensors"))


if __name__ == "__main__":
    main()
