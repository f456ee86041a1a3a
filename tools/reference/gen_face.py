"""Native face analysis fixtures: tiny insightface-architecture ONNX graphs, onnxruntime / insightface references, and
bit-exactness cases for the two OpenCV calls insightface makes (cv2.resize, cv2.warpAffine).

Writes Tests/Fixtures/face/ (deterministic; about 4.7 MB):
  packs/tiny_buffalo_l/det_10g.onnx, w600k_r50.onnx          the buffalo_l layout (FaceAnalysis(name=..., root=...))
  packs/tiny_antelopev2/glintr100.onnx, scrfd_10g_bnkps.onnx  the antelopev2 layout; scrfd_10g_bnkps.onnx is a relative
                          symlink to ../tiny_buffalo_l/det_10g.onnx (the same detector, no second copy)
  det_opset9.onnx, det_opset13.onnx, det_bn.onnx  the same detector weights exported with opset 9 (Upsample; static
                          96x128 input: opset 9 AveragePool has no ceil_mode, so the exporter needs the size), opset 13
                          (Unsqueeze axes / optional Resize inputs as inputs), and BatchNormalization left unfolded
                          (TrainingMode.PRESERVE on an eval model)
  ops_*.onnx              op-coverage micro graphs (onnx.helper, the node forms torch writes); fp16_cast.onnx (fp16
                          initializers -> Cast(to=FLOAT) -> fp32 compute) and fp16_full.onnx (onnxconverter-common's
                          keep_io_types form: Cast at input/output, fp16 compute); unsupported_op.onnx (LSTM),
                          truncated.onnx (first half of ops_conv.onnx), external_data.onnx (initializer W with
                          data_location EXTERNAL -> external_data.bin, deliberately not shipped)
  img_a.png (200x150 RGB), img_b.jpg (120x260, quality 90), img_c_gray.png (96x128, 1 channel),
  img_d_16bit.png (144x112, 16-bit RGB)   test images; insightface users load them with cv2.imread (BGR, 3 channels;
                          16-bit -> high byte, gray -> replicated)
  ort_det.safetensors     canvas_odd [80,112,3] (img_a letterboxed at det size 112x80: odd feature sizes 10x14 ->
                          5x7 -> 3x4, non-integer nearest up-sampling), canvas_even [96,128,3] (img_b at 128x96), uint8
                          BGR; input.1 = det_blob(canvas) = ((canvas[..., ::-1] - 127.5) / 128) as NCHW float32, exact.
                          <graph>/<odd|even>/{score,bbox,kps}_{8,16,32}: the 9 outputs in graph order
                          (every graph on both canvases, except det_opset9: even only)
  ort_iresnet.safetensors crops_bgr [2,112,112,3] (norm_crop of the first det640 face of img_a and img_b);
                          input.1 = arcface_blob(crops_bgr) = (RGB - 127.5) * float32(1/127.5), NCHW, exact;
                          w600k_r50/output, glintr100/output [2,512]
  ort_ops.safetensors     <graph>/in/<input>, <graph>/out/<output> for every ops_* and fp16_* graph
  e2e.safetensors         insightface 0.7.3 FaceAnalysis(allowed_modules=['detection','recognition'], CPU),
                          prepare(ctx_id=-1, det_thresh=0.5, det_size=(S,S)), get(cv2.imread(image)), per
                          <pack>/<image>/det<S> (tiny_buffalo_l: S = 640 and 320; tiny_antelopev2: 640), faces in
                          insightface's order (score descending after NMS): bbox [F,4], det_score [F], kps [F,5,2],
                          embedding [F,512] (raw), normed_embedding, M112/M224/M256 [F,2,3] float64
                          (face_align.estimate_norm); buffalo runs also: raw detector outputs for anchors scoring >= 0.5
                          (pos_index_<s> = row in the [K,C] output, pos_score/pos_bbox/pos_kps_<s>), raw_stats [9,4]
                          (sum, sum |x|, max, min of each output), pre_nms [P,5] (x1,y1,x2,y2 in image pixels, score;
                          insightface's sorted order), pre_nms_kps [P,5,2], keep (indices into pre_nms); buffalo det640:
                          crop112_face0 (norm_crop, OpenCV 5), embedding_cv4 (embeddings of OpenCV-4.x crops), img a/b:
                          crop112_cv4_face0, img a: crop224_largest (+ OpenCV 4.x rows). b/decoded, d/decoded:
                          what cv2.imread returns.
  cv_resize.safetensors   caseNN/src, caseNN/dst: cv2.resize(src, (w, h)) on small random images; letterbox_<img>_<WxH>:
                          rows / row_values (a few whole rows; the full result's sha256 is in reference.json)
  alignment.safetensors   kps [76,5,2] float32 (alignment_cases: random rotations/scales/positions, mirrored and
                          collinear sets) and M112/M128/M224/M256/M384 [76,2,3] float64 = face_align.estimate_norm
                          (scikit-image's float32 Umeyama, bit for bit in the engine); --only-alignment rewrites it
  cv_warp.safetensors     caseNN/src, caseNN/M (float64), dst (OpenCV 5.0) and dst_cv4 (OpenCV 4.x) for case00 and
                          case13, else rows / row_values / row_values_cv4 (+ sha256 of both whole results in the JSON)
  packs/tiny_faceid24/det_10g.onnx, w600k_r50.onnx   "FaceID straight from a photo": det_10g.onnx is a relative
                          symlink to ../tiny_buffalo_l/det_10g.onnx; w600k_r50.onnx is the tiny r50 iresnet (R50_TINY,
                          112x112 input, so insightface routes it to ArcFaceONNX) with a 24-d head (Linear -> 24,
                          BatchNorm1d(24); seed FACEID24_SEED), the id width of gen_faceid.py's tiny FaceID adapters
  faceid_e2e.safetensors  FaceAnalysis(name='tiny_faceid24', allowed_modules=['detection','recognition'], CPU),
                          prepare(ctx_id=-1, det_thresh=0.5, det_size=(640,640)), get(cv2.imread(img_a.png)); faces in
                          insightface's order: bbox [F,4], det_score [F], kps [F,5,2], embedding, normed_embedding
                          [F,24] (asserted equal to e2e tiny_buffalo_l/a/det640 for bbox/score/kps); embedding_cv4,
                          normed_embedding_cv4 [F,24] (the recogniser on OpenCV-4.x 112 crops, e / ||e||);
                          crop224_face0_M [2,3] float64 = face_align.estimate_norm(faces[0].kps, 224), crop224_face0
                          [224,224,3] uint8 RGB = warp_affine_cv4(img, M, 224) (OpenCV 4.x, as the Swift engine), BGR ->
                          RGB. Official tencent-ailab classes (gen_faceid.official_modules / projection_model;
                          Tests/Fixtures/faceid must exist: run gen_faceid.py first): faceid_tokens [1,4,20] =
                          ip-adapter-faceid_sd15 image_proj (MLPProjModel(20, 24, 4)) on normed_embedding[0:1],
                          faceid_tokens_cv4 on normed_embedding_cv4[0:1], faceid_uncond_tokens on zeros [1,24];
                          faceid_plus_tokens(_cv4) [1,4,20] = ip-adapter-faceid-plus_sd15 image_proj (ProjPlusModel)
                          on (that embedding, hidden_states[-2] of the tiny CLIP encoder
                          (tiny-ip-adapter/models/image_encoder) on CLIPImageProcessor() of crop224_face0 as a PIL RGB
                          image), shortcut=False; faceid_plus_uncond_tokens on (zeros, CLIP of zero pixel_values);
                          clip_pixel_values_row112 [3,224]
  faceid_e2e.json         its metadata: versions, the pack's graph, insightface's model classes, face count, scores,
                          boxes, key shapes and definitions, cv4-vs-cv5 crop / embedding / token differences, and
                          checks that the same modules reproduce Tests/Fixtures/faceid/reference.safetensors
                          (not part of reference.json, so the older files are unchanged by it)
  aux_2d106det.onnx, aux_1k3d68.onnx, aux_genderage.onnx, ops_group_conv.onnx, ort_aux.safetensors
                          the other buffalo_l graphs (2-D 106 / 3-D 68 landmarks, gender-age) as tiny MXNet-export-style
                          stand-ins (Sub/Mul or Identity + bn_data input normalisation, depthwise convs, standalone
                          BatchNormalization, PRelu / Relu, Flatten + Gemm, two-branch Concat head), grouped convs
                          alone, and their onnxruntime references: written by gen_face_aux.py (its docstring lists
                          what is known about the released files and the sources); not in reference.json
  reference.json          versions, every graph's opset / inputs / outputs / op types / initializer storage, the key
                          names and shapes of each safetensors file, per e2e run the letterbox (det_scale, resized
                          size),
                          face count, largest_index (argmax of box area), instantid_index (InstantID's sort key,
                          last), robustness margins (score vs 0.5, NMS IoU vs 0.4, gaps between positive scores), crop
                          hashes, cv4-vs-cv5 differences; the letterbox arithmetic for some image sizes.

The graphs are written here from the published architectures (no third-party source text): SCRFD-10G-bnkps
(ResNetV1e backbone: deep stem, BasicBlocks (3,4,2,3), ResNet-D avg-pool shortcut; PAFPN with size-based nearest
up-sampling; per-stride heads of 3 conv+BN+ReLU, cls (2 anchors, sigmoid), reg (x learned scale), kps; outputs
permute(0,2,3,1).reshape(-1, C), rows (y, x, anchor)) and the arcface_torch iresnet (r50 / r100 block layouts), tiny
widths (DET_TINY, R50_TINY, R100_TINY), exported with torch.onnx.export(dynamo=False), opset 11, eval mode. Random
weights from fixed seeds; BN statistics calibrated on the test images, then perturbed; the detector's cls biases are
tuned so each run has 3..7 anchors >= 0.5 on the image, NMS removes some, and no score / IoU is near a threshold.

The numpy functions resize_linear_cv, warp_affine_cv5 and warp_affine_cv4 model OpenCV bit for bit (x86-64 builds);
every fixture case asserts them against cv2. With --cv4-python (or env CV4_PYTHON) naming an interpreter that has
opencv-python(-headless) 4.x and safetensors, the 4.x model and the resize / imread results are also checked there.

  tools/reference/.venv/bin/python tools/reference/gen_face.py [--cv4-python /tmp/cv4venv/bin/python]
  tools/reference/.venv/bin/python tools/reference/gen_face.py --only-faceid24 [--cv4-python ...]   # the tiny_faceid24
                          pack, faceid_e2e.safetensors and faceid_e2e.json alone (same bytes as the full run; needs
                          the other fixtures in place; with --cv4-python the JSON also records the OpenCV 4.x check)
  tools/reference/.venv/bin/python tools/reference/gen_face.py --only-aux   # the aux_* / ops_group_conv graphs and
                          ort_aux.safetensors alone (same bytes as the full run; = gen_face_aux.py; nothing else)
  tools/reference/.venv/bin/python tools/reference/gen_face.py --real /tmp/face-real   # real-size graphs, not the repo
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures"))
OUT = os.path.join(FIX, "face")
F32 = np.float32
IR_FOR_OPSET = {9: 4, 11: 6, 13: 7, 17: 8}   # what torch's TorchScript exporter writes

# Tiny widths: every width differs from every other one (a transposed weight cannot pass by accident).
DET_TINY = dict(stem=(5, 6, 7), planes=(7, 8, 9, 10), blocks=(3, 4, 2, 3), neck=6, head=5)
DET_REAL = dict(stem=(28, 28, 56), planes=(56, 88, 88, 224), blocks=(3, 4, 2, 3), neck=56, head=80)
R50_TINY = dict(layers=(3, 4, 14, 3), planes=(4, 5, 6, 2))       # fc 2*7*7 -> 512
R100_TINY = dict(layers=(3, 13, 30, 3), planes=(3, 4, 5, 2))      # fc 2*7*7 -> 512
R50_REAL = dict(layers=(3, 4, 14, 3), planes=(64, 128, 256, 512))
R100_REAL = dict(layers=(3, 13, 30, 3), planes=(64, 128, 256, 512))
EMBED = 512
DET_SEED = 1109
STRIDES = (8, 16, 32)
ANCHORS = 2


# ================================================================================================
# Bit-exact numpy models of the two OpenCV calls insightface makes on uint8 BGR images (our code).
# Verified against cv2 on every fixture case (asserted when the fixtures are written).
# ================================================================================================

def fma32(a, b, c):
    """float32 fused multiply-add a*b+c with one rounding (round to nearest even), vectorised."""
    a = np.asarray(a, F32).astype(np.float64)
    b = np.asarray(b, F32).astype(np.float64)
    c = np.asarray(c, F32).astype(np.float64)
    p = a * b                        # exact (24 + 24 significant bits)
    s = p + c                        # rounded to float64
    bb = s - p
    e = (p - (s - bb)) + (c - bb)    # TwoSum: p + c == s + e exactly
    r = s.astype(F32)
    r64 = r.astype(np.float64)
    other = np.nextafter(r, np.where(s > r64, np.inf, -np.inf).astype(F32))
    mid = (r64 + other.astype(np.float64)) * 0.5
    # Only when s sits exactly on a float32 midpoint can the dropped error e change the rounding.
    fix = (s == mid) & (e != 0) & (s != r64)
    return np.where(fix, np.where(e > 0, np.maximum(r, other), np.minimum(r, other)), r).astype(F32)


def invert_affine(M):
    """cv::warpAffine's inversion of the 2x3 matrix (double precision, its exact operation order)."""
    m = np.asarray(M, np.float64).reshape(6).copy()
    d = m[0] * m[4] - m[1] * m[3]
    d = 1.0 / d if d != 0 else 0.0
    a11, a22 = m[4] * d, m[0] * d
    m[0] = a11
    m[1] *= -d
    m[3] *= -d
    m[4] = a22
    b1 = -m[0] * m[2] - m[1] * m[5]
    b2 = -m[3] * m[2] - m[4] * m[5]
    m[2], m[5] = b1, b2
    return m


def _taps(img, iy, ix):
    h, w = img.shape[:2]
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    v = img[np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)]
    return np.where(inside[..., None], v, 0)          # borderValue 0 (BORDER_CONSTANT)


def warp_affine_cv5(img, M, size):
    """cv2.warpAffine(img, M, (size, size), borderValue=0.0), uint8 HWC, INTER_LINEAR, OpenCV 5.0 (x86-64 AVX2)."""
    m = invert_affine(M).astype(F32)
    x = np.arange(size, dtype=F32)[None, :]
    y = np.arange(size, dtype=F32)[:, None]
    row_x = ((y * m[1]).astype(F32) + m[2]).astype(F32)      # two roundings (not fused)
    row_y = ((y * m[4]).astype(F32) + m[5]).astype(F32)
    sx = fma32(m[0], x, row_x)                                # fused
    sy = fma32(m[3], x, row_y)
    ix = np.floor(sx).astype(np.int64)
    iy = np.floor(sy).astype(np.int64)
    ax = (sx - ix.astype(F32)).astype(F32)[..., None]
    ay = (sy - iy.astype(F32)).astype(F32)[..., None]
    p00, p01 = _taps(img, iy, ix).astype(F32), _taps(img, iy, ix + 1).astype(F32)
    p10, p11 = _taps(img, iy + 1, ix).astype(F32), _taps(img, iy + 1, ix + 1).astype(F32)
    top = fma32(ax, p01 - p00, p00)
    bottom = fma32(ax, p11 - p10, p10)
    v = fma32(ay, (bottom - top).astype(F32), top)
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def warp_affine_cv4(img, M, size):
    """The same call in OpenCV 4.x (checked: 4.10.0.84 and 4.12.0.88): 1/32-pixel fixed point, 15-bit weights."""
    m = invert_affine(M)
    x = np.arange(size, dtype=np.float64)
    y = np.arange(size, dtype=np.float64)
    adelta = np.rint(m[0] * x * 1024).astype(np.int64)
    bdelta = np.rint(m[3] * x * 1024).astype(np.int64)
    x0 = np.rint((m[1] * y + m[2]) * 1024).astype(np.int64) + 16
    y0 = np.rint((m[4] * y + m[5]) * 1024).astype(np.int64) + 16
    X = (x0[:, None] + adelta[None, :]) >> 5
    Y = (y0[:, None] + bdelta[None, :]) >> 5
    ix, fx = X >> 5, (X & 31)[..., None]
    iy, fy = Y >> 5, (Y & 31)[..., None]
    p00, p01 = _taps(img, iy, ix).astype(np.int64), _taps(img, iy, ix + 1).astype(np.int64)
    p10, p11 = _taps(img, iy + 1, ix).astype(np.int64), _taps(img, iy + 1, ix + 1).astype(np.int64)
    acc = (p00 * (32 - fx) * (32 - fy) + p01 * fx * (32 - fy) + p10 * (32 - fx) * fy + p11 * fx * fy) * 32
    return np.clip((acc + (1 << 14)) >> 15, 0, 255).astype(np.uint8)


def resize_linear_cv(img, dw, dh):
    """cv2.resize(img, (dw, dh)) (INTER_LINEAR) for uint8 HWC; identical in OpenCV 4.10, 4.12 and 5.0 (x86-64)."""
    sh, sw, cn = img.shape
    if (dw, dh) == (sw, sh):
        return img.copy()
    scale_x = 1.0 / (dw / sw)
    scale_y = 1.0 / (dh / sh)
    eps = np.finfo(np.float64).eps
    if abs(scale_x - 2) < eps and abs(scale_y - 2) < eps:      # exact 2x down: INTER_AREA fast path
        s = img[:dh * 2, :dw * 2].astype(np.int64)
        return ((s[0::2, 0::2] + s[0::2, 1::2] + s[1::2, 0::2] + s[1::2, 1::2] + 2) >> 2).astype(np.uint8)
    fx = ((np.arange(dw) + 0.5) * scale_x - 0.5).astype(F32)
    sx = np.floor(fx).astype(np.int64)
    fx = (fx - sx.astype(F32)).astype(F32)
    left = sx < 0
    fx[left], sx[left] = 0, 0
    right = sx >= sw - 1
    fx[right], sx[right] = 0, sw - 1
    a0 = np.rint((F32(1) - fx).astype(F32) * F32(2048)).astype(np.int64)
    a1 = np.rint(fx * F32(2048)).astype(np.int64)
    fy = ((np.arange(dh) + 0.5) * scale_y - 0.5).astype(F32)
    sy = np.floor(fy).astype(np.int64)
    fy = (fy - sy.astype(F32)).astype(F32)
    b0 = np.rint((F32(1) - fy).astype(F32) * F32(2048)).astype(np.int64)[:, None]
    b1 = np.rint(fy * F32(2048)).astype(np.int64)[:, None]
    s = img.astype(np.int64)

    def horizontal(rows):
        r = s[rows]
        out = r[:, sx] * a0[None, :, None] + r[:, np.minimum(sx + 1, sw - 1)] * a1[None, :, None]
        out[:, right] = r[:, sx[right]] * 2048
        return out.reshape(dh, dw * cn)

    h0 = horizontal(np.clip(sy, 0, sh - 1))
    h1 = horizontal(np.clip(sy + 1, 0, sh - 1))
    out = ((((h0 >> 4) * b0) >> 16) + (((h1 >> 4) * b1) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8).reshape(dh, dw, cn)


# ================================================================================================
# Models (written here from the published architectures; no third-party source text)
# ================================================================================================

def conv_bn_relu(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """ResNet basic block; ResNet-D shortcut (2x2 average pool, then 1x1 conv + BN) when the shape changes."""

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                nn.Conv2d(cin, planes, 1, 1, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Scale(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x):
        return x * self.scale


class SCRFD(nn.Module):
    """SCRFD-10G-bnkps: ResNetV1e backbone (deep stem, avg-down), 3-level PAFPN, per-stride BN heads, 2 anchors.

    forward(x) -> 9 tensors: scores s8,s16,s32 [K,1] (sigmoid), boxes [K,4] (distances in stride units),
    keypoints [K,10]; K = H/s * W/s * 2, rows ordered (y, x, anchor), like insightface's det_10g.onnx."""

    def __init__(self, stem, planes, blocks, neck, head):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(3, stem[0], 2), conv_bn_relu(stem[0], stem[1]),
                                  conv_bn_relu(stem[1], stem[2]))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], stem[2]
        for i, (p, n) in enumerate(zip(planes, blocks)):
            stage = []
            for j in range(n):
                stage.append(BasicBlock(cin, p, (1 if i == 0 else 2) if j == 0 else 1))
                cin = p
            layers.append(nn.Sequential(*stage))
        self.layers = nn.ModuleList(layers)
        ins = planes[1:]                                       # start_level=1: strides 8, 16, 32
        self.lateral = nn.ModuleList([nn.Conv2d(c, neck, 1) for c in ins])
        self.fpn = nn.ModuleList([nn.Conv2d(neck, neck, 3, 1, 1) for _ in ins])
        self.down = nn.ModuleList([nn.Conv2d(neck, neck, 3, 2, 1) for _ in ins[1:]])
        self.pafpn = nn.ModuleList([nn.Conv2d(neck, neck, 3, 1, 1) for _ in ins[1:]])
        self.towers = nn.ModuleList([nn.Sequential(conv_bn_relu(neck, head), conv_bn_relu(head, head),
                                                   conv_bn_relu(head, head)) for _ in STRIDES])
        self.cls = nn.ModuleList([nn.Conv2d(head, ANCHORS, 3, 1, 1) for _ in STRIDES])
        self.reg = nn.ModuleList([nn.Conv2d(head, 4 * ANCHORS, 3, 1, 1) for _ in STRIDES])
        self.kps = nn.ModuleList([nn.Conv2d(head, 10 * ANCHORS, 3, 1, 1) for _ in STRIDES])
        self.scales = nn.ModuleList([Scale(1.0) for _ in STRIDES])

    def features(self, x):
        x = self.maxpool(self.stem(x))
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        lat = [conv(outs[i + 1]) for i, conv in enumerate(self.lateral)]
        for i in range(len(lat) - 1, 0, -1):                   # top-down, size-based nearest (as mmdet's FPN)
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[2:], mode="nearest")
        inter = [conv(lat[i]) for i, conv in enumerate(self.fpn)]
        for i in range(len(inter) - 1):                        # bottom-up path aggregation
            inter[i + 1] = inter[i + 1] + self.down[i](inter[i])
        return [inter[0]] + [conv(inter[i + 1]) for i, conv in enumerate(self.pafpn)]

    def head_logits(self, x):
        """cls logits per stride, [N, 2, h, w] (used to tune the cls bias)."""
        return [self.cls[i](self.towers[i](f)) for i, f in enumerate(self.features(x))]

    def forward(self, x):
        scores, boxes, kps = [], [], []
        for i, f in enumerate(self.features(x)):
            t = self.towers[i](f)
            scores.append(self.cls[i](t).permute(0, 2, 3, 1).reshape(-1, 1).sigmoid())
            boxes.append(self.scales[i](self.reg[i](t)).permute(0, 2, 3, 1).reshape(-1, 4))
            kps.append(self.kps[i](t).permute(0, 2, 3, 1).reshape(-1, 10))
        return tuple(scores + boxes + kps)


class IBasicBlock(nn.Module):
    """ArcFace iresnet block: BN, conv3x3, BN, PReLU, conv3x3 (stride), BN; + shortcut; no activation after."""

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """insightface arcface_torch iresnet (r50: 3,4,14,3; r100: 3,13,30,3); 112x112 input, 512-d output."""

    def __init__(self, layers, planes, features=EMBED):
        super().__init__()
        self.conv1 = nn.Conv2d(3, planes[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.prelu = nn.PReLU(planes[0])
        stages, cin = [], planes[0]
        for p, n in zip(planes, layers):
            blocks = []
            for j in range(n):
                blocks.append(IBasicBlock(cin, p, 2 if j == 0 else 1))
                cin = p
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.bn2 = nn.BatchNorm2d(cin)
        self.dropout = nn.Dropout(p=0.0, inplace=True)
        self.fc = nn.Linear(cin * 7 * 7, features)
        self.features = nn.BatchNorm1d(features)

    def forward(self, x):
        x = self.stages(self.prelu(self.bn1(self.conv1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def randomize(model, seed, conv_gain=1.0):
    """Deterministic non-trivial parameters: He-normal convs/linears, BN affine and statistics not 0/1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * conv_gain * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                n = m.num_features
                m.weight.copy_(0.7 + 0.6 * torch.rand(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(0.6 + 0.8 * torch.rand(n, generator=g))
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(0.1 + 0.3 * torch.rand(m.weight.shape, generator=g))
    return model


def calibrate_bn(model, batches, seed):
    """Sets BN statistics from data (keeps activations well scaled), then perturbs them deterministically."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d))]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None                      # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for b in batches:
            model(b)
        for m in bns:
            n = m.num_features
            m.running_mean.add_(torch.randn(n, generator=g) * 0.05 * m.running_var.sqrt())
            m.running_var.mul_(0.85 + 0.3 * torch.rand(n, generator=g))
            m.momentum = 0.1
    return model.eval()


# ================================================================================================
# ONNX helpers
# ================================================================================================

def export(model, sample, opset, dynamic, output_names=None, training=None):
    """TorchScript exporter (dynamo=False) in eval mode, like the released insightface files; returns bytes."""
    import onnx
    f = io.BytesIO()
    kwargs = {}
    if training is not None:
        kwargs["training"] = training
    torch.onnx.export(model.eval(), (sample,), f, dynamo=False, opset_version=opset, input_names=["input.1"],
                      output_names=output_names, dynamic_axes=dynamic, do_constant_folding=True, **kwargs)
    data = f.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    return data


def op_types(model):
    counts = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def graph_summary(model):
    import onnx

    def shape(vi):
        return [d.dim_param if d.dim_param else d.dim_value for d in vi.type.tensor_type.shape.dim]

    inits = {}
    for t in model.graph.initializer:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name
        inits[t.name] = dict(dims=list(t.dims), dtype=dtype, storage="raw_data" if t.HasField("raw_data") else (
            "external" if t.data_location == onnx.TensorProto.EXTERNAL else "typed"))
    return dict(
        opset=[dict(domain=o.domain, version=o.version) for o in model.opset_import],
        ir_version=model.ir_version,
        inputs=[dict(name=i.name, shape=shape(i)) for i in model.graph.input if i.name not in inits],
        outputs=[dict(name=o.name, shape=shape(o)) for o in model.graph.output],
        op_types=op_types(model),
        nodes=len(model.graph.node),
        initializers=len(inits),
        typed_initializers=sorted(k for k, v in inits.items() if v["storage"] == "typed"),
        initializer_dtypes=sorted({v["dtype"] for v in inits.values()}),
    )


def ort_session(path_or_bytes):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])


def ort_run(path_or_bytes, feeds):
    s = ort_session(path_or_bytes)
    names = [o.name for o in s.get_outputs()]
    return names, s.run(names, feeds)


def to_float_data(model, names):
    """Rewrites the named float32 initializers from raw_data to the typed float_data field (same values)."""
    from onnx import numpy_helper
    for t in model.graph.initializer:
        if t.name in names:
            arr = numpy_helper.to_array(t).astype(F32)
            t.ClearField("raw_data")
            del t.float_data[:]
            t.float_data.extend(arr.ravel().tolist())
    return model


def write_bytes(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def sha256(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


# ================================================================================================
# Op-coverage micro graphs (onnx.helper, the node forms torch's exporter writes)
# ================================================================================================

def _model(name, nodes, inputs, outputs, inits, opset):
    import onnx
    from onnx import helper, numpy_helper
    g = helper.make_graph(nodes, name,
                          [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
                           for n, a in inputs.items()],
                          [helper.make_tensor_value_info(n, 0, None) for n in outputs],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="gen_face.py")
    m.ir_version = IR_FOR_OPSET[opset]
    # Output types/shapes as ORT infers them (graph outputs need a type to load).
    inferred = onnx.shape_inference.infer_shapes(m)
    vi = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    del m.graph.output[:]
    for n in outputs:
        if n in vi and vi[n].type.tensor_type.elem_type:
            m.graph.output.append(vi[n])
        else:
            m.graph.output.append(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    onnx.checker.check_model(m)
    return m


def _const(name, value):
    from onnx import helper, numpy_helper
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def op_graphs():
    """name -> (onnx ModelProto, feeds). Random inputs from a fixed seed."""
    from onnx import TensorProto
    from onnx import helper as h
    rng = np.random.RandomState(7)
    rnd = lambda *s: rng.randn(*s).astype(F32)  # noqa: E731
    out = {}

    x = rnd(1, 3, 9, 11)
    nodes = [
        h.make_node("Conv", ["X", "Wa", "Ba"], ["conv_s2_p1"], kernel_shape=[3, 3], strides=[2, 2],
                    pads=[1, 1, 1, 1], dilations=[1, 1], group=1),
        h.make_node("Conv", ["X", "Wb"], ["conv_asym_nobias"], kernel_shape=[3, 2], strides=[1, 2],
                    pads=[0, 1, 2, 0]),
        h.make_node("Conv", ["X", "Wc", "Bc"], ["conv_1x1"]),
        h.make_node("Conv", ["conv_s2_p1", "Wd", "Bd"], ["conv_chain_valid"], kernel_shape=[3, 3]),
    ]
    out["ops_conv"] = (_model("ops_conv", nodes, {"X": x}, ["conv_s2_p1", "conv_asym_nobias", "conv_1x1",
                                                           "conv_chain_valid"],
                              {"Wa": rnd(4, 3, 3, 3), "Ba": rnd(4), "Wb": rnd(5, 3, 3, 2), "Wc": rnd(2, 3, 1, 1),
                               "Bc": rnd(2), "Wd": rnd(6, 4, 3, 3), "Bd": rnd(6)}, 11), {"X": x})

    x = rnd(2, 4, 5, 6)
    z = rnd(3, 7)
    nodes = [
        h.make_node("BatchNormalization", ["X", "s4", "b4", "m4", "v4"], ["bn4d"], epsilon=1e-5, momentum=0.9),
        h.make_node("PRelu", ["bn4d", "slope_c11"], ["prelu_c11"]),
        h.make_node("PRelu", ["X", "slope_1"], ["prelu_scalar"]),
        h.make_node("Relu", ["X"], ["relu"]),
        h.make_node("Sigmoid", ["X"], ["sigmoid"]),
        _const("clip_min", np.array(-0.5, F32)), _const("clip_max", np.array(0.7, F32)),
        h.make_node("Clip", ["X", "clip_min", "clip_max"], ["clip"]),
        h.make_node("Clip", ["X", "", "clip_max"], ["clip_max_only"]),
        h.make_node("Exp", ["X"], ["exp"]),
        h.make_node("BatchNormalization", ["Z", "s7", "b7", "m7", "v7"], ["bn2d"], epsilon=1e-3),
    ]
    out["ops_norm_act"] = (_model("ops_norm_act", nodes, {"X": x, "Z": z},
                                  ["bn4d", "prelu_c11", "prelu_scalar", "relu", "sigmoid", "clip", "clip_max_only",
                                   "exp", "bn2d"],
                                  {"s4": 0.5 + rng.rand(4).astype(F32), "b4": rnd(4), "m4": rnd(4),
                                   "v4": 0.5 + rng.rand(4).astype(F32), "slope_c11": rng.rand(4, 1, 1).astype(F32),
                                   "slope_1": np.array([0.25], F32), "s7": 0.5 + rng.rand(7).astype(F32),
                                   "b7": rnd(7), "m7": rnd(7), "v7": 0.5 + rng.rand(7).astype(F32)}, 11),
                           {"X": x, "Z": z})

    s = rnd(2, 3, 4) * 2
    t = rnd(3, 5) * 2
    for opset in (11, 13):
        nodes = [h.make_node("Softmax", ["S"], ["softmax_axis1"], axis=1),
                 h.make_node("Softmax", ["S"], ["softmax_axis_m1"], axis=-1),
                 h.make_node("Softmax", ["T"], ["softmax_default_2d"])]
        out[f"ops_softmax{opset}"] = (_model(f"ops_softmax{opset}", nodes, {"S": s, "T": t},
                                             ["softmax_axis1", "softmax_axis_m1", "softmax_default_2d"], {}, opset),
                                      {"S": s, "T": t})

    a = rnd(2, 3, 4, 5)
    c = rnd(5)
    e = (0.5 + rng.rand(2, 1, 4, 1)).astype(F32)
    nodes = [h.make_node("Add", ["A", "B_c11"], ["add_c11"]),
             h.make_node("Mul", ["A", "C"], ["mul_last"]),
             h.make_node("Sub", ["D_scalar", "A"], ["sub_scalar_first"]),
             h.make_node("Div", ["A", "E"], ["div_b1w1"]),
             h.make_node("Add", ["E", "C"], ["add_both_broadcast"]),
             h.make_node("Mul", ["A", "A"], ["mul_same"])]
    out["ops_binary"] = (_model("ops_binary", nodes, {"A": a, "C": c, "E": e},
                                ["add_c11", "mul_last", "sub_scalar_first", "div_b1w1", "add_both_broadcast",
                                 "mul_same"],
                                {"B_c11": rnd(3, 1, 1), "D_scalar": np.array(1.5, F32)}, 11),
                         {"A": a, "C": c, "E": e})

    x = rnd(2, 3, 2, 2)
    p = rnd(2, 3, 4)
    nodes = [h.make_node("Flatten", ["X"], ["flatten"], axis=1),
             h.make_node("Gemm", ["flatten", "W1", "C1"], ["gemm_transB_alpha_beta"], alpha=0.5, beta=2.0, transB=1),
             h.make_node("Gemm", ["flatten", "W2", "C2"], ["gemm_plain_bias2d"]),
             h.make_node("Gemm", ["flatten", "W1"], ["gemm_no_c"], transB=1),
             h.make_node("MatMul", ["flatten", "M1"], ["matmul_2d"]),
             h.make_node("MatMul", ["P", "M2"], ["matmul_3d_2d"]),
             h.make_node("MatMul", ["P", "M3"], ["matmul_batched"])]
    out["ops_linear"] = (_model("ops_linear", nodes, {"X": x, "P": p},
                                ["flatten", "gemm_transB_alpha_beta", "gemm_plain_bias2d", "gemm_no_c", "matmul_2d",
                                 "matmul_3d_2d", "matmul_batched"],
                                {"W1": rnd(5, 12), "C1": rnd(5), "W2": rnd(12, 4), "C2": rnd(2, 4), "M1": rnd(12, 3),
                                 "M2": rnd(4, 5), "M3": rnd(2, 4, 2)}, 11), {"X": x, "P": p})

    for opset in (11, 13):
        x = rnd(2, 3, 4, 5)
        x2 = rnd(2, 1, 4, 5)
        x3 = rnd(2, 3, 4, 2)
        axes = lambda name, v: ([_const(name, np.array(v, np.int64))], {})  # noqa: E731
        if opset >= 13:
            sq_nodes, _ = axes("sq_axes", [2])
            un_nodes, _ = axes("un_axes", [0])
            squeeze = h.make_node("Squeeze", ["row0", "sq_axes"], ["squeeze_axis2"])
            unsq_g = h.make_node("Unsqueeze", ["g2", "un_axes"], ["g2u"])
            unsq_x = h.make_node("Unsqueeze", ["X", "un_axes"], ["unsqueeze_axis0"])
            resize = h.make_node("Resize", ["X", "", "", "sizes"], ["resize_sizes_from_shape"],
                                 coordinate_transformation_mode="asymmetric", cubic_coeff_a=-0.75, mode="nearest",
                                 nearest_mode="floor")
            extra = sq_nodes + un_nodes
        else:
            squeeze = h.make_node("Squeeze", ["row0"], ["squeeze_axis2"], axes=[2])
            unsq_g = h.make_node("Unsqueeze", ["g2"], ["g2u"], axes=[0])
            unsq_x = h.make_node("Unsqueeze", ["X"], ["unsqueeze_axis0"], axes=[0])
            resize = h.make_node("Resize", ["X", "roi", "scales", "sizes"], ["resize_sizes_from_shape"],
                                 coordinate_transformation_mode="asymmetric", cubic_coeff_a=-0.75, mode="nearest",
                                 nearest_mode="floor")
            extra = [_const("roi", np.zeros(0, F32)), _const("scales", np.zeros(0, F32))]
        nodes = extra + [
            _const("shape_0m1", np.array([0, -1, 5], np.int64)),
            h.make_node("Reshape", ["X", "shape_0m1"], ["reshape_0_m1"]),
            h.make_node("Transpose", ["X"], ["transpose_0231"], perm=[0, 2, 3, 1]),
            h.make_node("Concat", ["X", "X2"], ["concat_axis1"], axis=1),
            h.make_node("Concat", ["X", "X3"], ["concat_axis_m1"], axis=-1),
            h.make_node("Shape", ["X"], ["shape"]),
            _const("i2", np.array(2, np.int64)),
            h.make_node("Gather", ["shape", "i2"], ["g2"], axis=0),
            unsq_g,
            _const("i01", np.array([0, 1], np.int64)),
            h.make_node("Gather", ["shape", "i01"], ["g01"], axis=0),
            _const("st", np.array([2], np.int64)), _const("en", np.array([4], np.int64)),
            _const("ax0", np.array([0], np.int64)),
            h.make_node("Slice", ["shape", "st", "en", "ax0"], ["hw"]),
            h.make_node("Cast", ["hw"], ["hwf"], to=TensorProto.FLOAT),
            _const("k15", np.array(1.5, F32)),
            h.make_node("Mul", ["hwf", "k15"], ["hwf15"]),
            h.make_node("Cast", ["hwf15"], ["hw15"], to=TensorProto.INT64),
            h.make_node("Concat", ["g01", "hw15"], ["sizes"], axis=0),
            resize,
            h.make_node("Concat", ["g2u", "g2u"], ["shape_chain"], axis=0),
            _const("gidx", np.array([2, 0], np.int64)),
            h.make_node("Gather", ["X", "gidx"], ["gather_axis1"], axis=1),
            _const("gneg", np.array([-1], np.int64)),
            h.make_node("Gather", ["X", "gneg"], ["gather_neg_axis3"], axis=3),
            _const("r0s", np.array([0], np.int64)), _const("r0e", np.array([1], np.int64)),
            _const("r0a", np.array([2], np.int64)),
            h.make_node("Slice", ["X", "r0s", "r0e", "r0a"], ["row0"]),
            squeeze,
            unsq_x,
            _const("ls", np.array([-3], np.int64)), _const("le", np.array([9223372036854775807], np.int64)),
            _const("la", np.array([3], np.int64)), _const("lstep", np.array([1], np.int64)),
            h.make_node("Slice", ["X", "ls", "le", "la", "lstep"], ["slice_last3"]),
            _const("ss", np.array([0, 4], np.int64)), _const("se", np.array([3, 0], np.int64)),
            _const("sa", np.array([1, 3], np.int64)), _const("sst", np.array([2, -2], np.int64)),
            h.make_node("Slice", ["X", "ss", "se", "sa", "sst"], ["slice_steps"]),
            h.make_node("Identity", ["X"], ["identity"]),
        ]
        outs = ["reshape_0_m1", "transpose_0231", "concat_axis1", "concat_axis_m1", "shape", "shape_chain",
                "sizes", "resize_sizes_from_shape", "gather_axis1", "gather_neg_axis3", "squeeze_axis2",
                "unsqueeze_axis0", "slice_last3", "slice_steps", "identity"]
        out[f"ops_shape{opset}"] = (_model(f"ops_shape{opset}", nodes, {"X": x, "X2": x2, "X3": x3}, outs, {}, opset),
                                    {"X": x, "X2": x2, "X3": x3})

    x = rnd(1, 2, 7, 9)
    nodes = [h.make_node("MaxPool", ["X"], ["maxpool_k3s2p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             h.make_node("MaxPool", ["X"], ["maxpool_k3s2_ceil"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
             h.make_node("MaxPool", ["X"], ["maxpool_k2s2_asym"], kernel_shape=[2, 2], strides=[2, 2],
                         pads=[0, 0, 1, 1]),
             h.make_node("AveragePool", ["X"], ["avgpool_k2s2_ceil_excl"], kernel_shape=[2, 2], strides=[2, 2],
                         ceil_mode=1, count_include_pad=0),
             h.make_node("AveragePool", ["X"], ["avgpool_k3s2p1_incl"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1], count_include_pad=1),
             h.make_node("AveragePool", ["X"], ["avgpool_k3s2p1_excl"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
             h.make_node("AveragePool", ["X"], ["avgpool_k3s2p1_ceil_excl"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1], ceil_mode=1),
             h.make_node("GlobalAveragePool", ["X"], ["global_avgpool"])]
    out["ops_pool"] = (_model("ops_pool", nodes, {"X": x}, [n.output[0] for n in nodes], {}, 11), {"X": x})

    x = rnd(1, 2, 3, 4)
    attrs = dict(coordinate_transformation_mode="asymmetric", cubic_coeff_a=-0.75, mode="nearest",
                 nearest_mode="floor")
    nodes = [_const("roi", np.zeros(0, F32)), _const("noscales", np.zeros(0, F32)),
             _const("sc2", np.array([1, 1, 2, 2], F32)), _const("sc_frac", np.array([1, 1, 1.5, 2.5], F32)),
             _const("sz", np.array([1, 2, 5, 7], np.int64)),
             h.make_node("Resize", ["X", "roi", "sc2"], ["resize_scales_2x"], **attrs),
             h.make_node("Resize", ["X", "roi", "sc_frac"], ["resize_scales_frac"], **attrs),
             h.make_node("Resize", ["X", "roi", "noscales", "sz"], ["resize_sizes"], **attrs)]
    out["ops_resize11"] = (_model("ops_resize11", nodes, {"X": x},
                                  ["resize_scales_2x", "resize_scales_frac", "resize_sizes"], {}, 11), {"X": x})
    nodes = [_const("sc2", np.array([1, 1, 2, 2], F32)), _const("sz", np.array([1, 2, 5, 7], np.int64)),
             h.make_node("Resize", ["X", "", "sc2"], ["resize_scales_2x"], **attrs),
             h.make_node("Resize", ["X", "", "", "sz"], ["resize_sizes"], **attrs)]
    out["ops_resize13"] = (_model("ops_resize13", nodes, {"X": x}, ["resize_scales_2x", "resize_sizes"], {}, 13),
                           {"X": x})
    nodes = [_const("sc2", np.array([1, 1, 2, 2], F32)), _const("sc3", np.array([1, 1, 3, 2], F32)),
             h.make_node("Upsample", ["X", "sc2"], ["upsample_2x"], mode="nearest"),
             h.make_node("Upsample", ["X", "sc3"], ["upsample_3x2"], mode="nearest")]
    out["ops_upsample9"] = (_model("ops_upsample9", nodes, {"X": x}, ["upsample_2x", "upsample_3x2"], {}, 9),
                            {"X": x})
    return out


def unsupported_graph():
    from onnx import helper as h
    rng = np.random.RandomState(8)
    nodes = [h.make_node("Relu", ["X"], ["r"]),
             h.make_node("LSTM", ["r", "W", "R"], ["Y"], hidden_size=4)]
    return _model("unsupported_op", nodes, {"X": rng.randn(2, 1, 3).astype(F32)}, ["Y"],
                  {"W": rng.randn(1, 16, 3).astype(F32), "R": rng.randn(1, 16, 4).astype(F32)}, 11)


def external_data_graph():
    """Gemm whose weight initializer says data_location EXTERNAL (location external_data.bin, not shipped)."""
    import onnx
    from onnx import helper as h
    from onnx import numpy_helper
    rng = np.random.RandomState(9)
    w = rng.randn(4, 6).astype(F32)
    m = _model("external_data", [h.make_node("Gemm", ["X", "W", "B"], ["Y"], transB=1)],
               {"X": rng.randn(2, 6).astype(F32)}, ["Y"], {"W": w, "B": rng.randn(4).astype(F32)}, 11)
    t = next(t for t in m.graph.initializer if t.name == "W")
    t.CopyFrom(numpy_helper.from_array(w, "W"))
    t.ClearField("raw_data")
    t.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", "external_data.bin"), ("offset", "0"), ("length", str(w.nbytes))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return m


def fp16_graphs():
    """Two small conv nets with float16 weights: 'cast' = fp16 initializers each followed by Cast(to=FLOAT), fp32
    compute; 'full' = the onnxconverter-common float16 form (keep_io_types): Cast at the graph input and output,
    fp16 initializers and fp16 compute in between."""
    from onnx import TensorProto
    from onnx import helper as h
    rng = np.random.RandomState(10)
    w = (rng.randn(5, 3, 3, 3) * 0.3).astype(np.float16)
    b = (rng.randn(5) * 0.1).astype(np.float16)
    g = (rng.randn(4, 5) * 0.5).astype(np.float16)
    gb = (rng.randn(4) * 0.1).astype(np.float16)
    x = rng.randn(1, 3, 8, 8).astype(F32)
    inits = {"conv.weight": w, "conv.bias": b, "fc.weight": g, "fc.bias": gb}
    cast = [h.make_node("Cast", [k], [k + "_f32"], to=TensorProto.FLOAT) for k in inits]
    body = lambda sfx: [  # noqa: E731
        h.make_node("Conv", ["x" + sfx, "conv.weight" + sfx, "conv.bias" + sfx], ["c"], kernel_shape=[3, 3],
                    pads=[1, 1, 1, 1], strides=[2, 2]),
        h.make_node("Relu", ["c"], ["r"]),
        h.make_node("GlobalAveragePool", ["r"], ["p"]),
        h.make_node("Flatten", ["p"], ["f"], axis=1),
        h.make_node("Gemm", ["f", "fc.weight" + sfx, "fc.bias" + sfx], ["y" + sfx], transB=1)]
    m_cast = _model("fp16_cast", cast + [h.make_node("Identity", ["input.1"], ["x_f32"])] + body("_f32")[:-1] +
                    [h.make_node("Gemm", ["f", "fc.weight_f32", "fc.bias_f32"], ["output"], transB=1)],
                    {"input.1": x}, ["output"], inits, 11)
    full_nodes = [h.make_node("Cast", ["input.1"], ["x_h"], to=TensorProto.FLOAT16, name="graph_input_cast_0")]
    full_nodes += [n for n in body("_h")]
    for n in full_nodes:
        n.input[:] = [i[:-2] if i.endswith("_h") and i != "x_h" else i for i in n.input]
    full_nodes.append(h.make_node("Cast", ["y_h"], ["output"], to=TensorProto.FLOAT, name="graph_output_cast_0"))
    m_full = _model("fp16_full", full_nodes, {"input.1": x}, ["output"], inits, 11)
    return {"fp16_cast": (m_cast, {"input.1": x}), "fp16_full": (m_full, {"input.1": x})}


# ================================================================================================
# Test images (drawn; written in the formats users feed insightface)
# ================================================================================================

def _draw_face(img, cx, cy, rx, ry, skin, angle=0.0):
    import cv2
    aa = cv2.LINE_AA
    cv2.ellipse(img, (cx, cy - ry // 3), (int(rx * 1.1), int(ry * 0.9)), angle, 180, 360, (40, 30, 20), -1, aa)
    cv2.ellipse(img, (cx, cy), (rx, ry), angle, 0, 360, skin, -1, aa)
    ex, ey = int(rx * 0.42), int(ry * 0.22)
    for sgn in (-1, 1):
        cv2.ellipse(img, (cx + sgn * ex, cy - ey), (max(2, rx // 6), max(1, ry // 12)), angle, 0, 360,
                    (250, 250, 250), -1, aa)
        cv2.circle(img, (cx + sgn * ex, cy - ey), max(1, rx // 12), (30, 20, 10), -1, aa)
        cv2.line(img, (cx + sgn * ex - rx // 6, cy - ey - ry // 7), (cx + sgn * ex + rx // 6, cy - ey - ry // 6),
                 (30, 25, 20), max(1, rx // 20), aa)
    cv2.line(img, (cx, cy - ey // 2), (cx - rx // 10, cy + ry // 6), (skin[0] * 0.7, skin[1] * 0.7, skin[2] * 0.7),
             max(1, rx // 16), aa)
    cv2.ellipse(img, (cx, cy + int(ry * 0.42)), (int(rx * 0.35), max(2, ry // 8)), angle, 0, 180, (60, 40, 150),
                max(1, rx // 10), aa)


def make_images():
    """name -> (file name, array written). Deterministic drawings + mild noise (exercises rounding)."""
    import cv2
    rng = np.random.RandomState(11)
    images = {}

    h, w = 150, 200
    yy, xx = np.mgrid[0:h, 0:w].astype(F32)
    a = np.stack([90 + 60 * xx / w, 120 + 40 * yy / h, 170 - 50 * xx / w], -1)
    a = np.clip(a + rng.randn(h, w, 3) * 3, 0, 255).astype(np.uint8)
    _draw_face(a, 62, 78, 34, 44, (120, 160, 215))
    _draw_face(a, 148, 66, 22, 29, (100, 140, 190), angle=12)
    cv2.rectangle(a, (110, 118), (196, 146), (30, 90, 40), -1, cv2.LINE_AA)
    images["a"] = ("img_a.png", a)

    h, w = 260, 120
    yy, xx = np.mgrid[0:h, 0:w].astype(F32)
    b = np.stack([200 - 80 * yy / h, 180 - 30 * xx / w, 150 + 60 * yy / h], -1)
    b = np.clip(b + rng.randn(h, w, 3) * 4, 0, 255).astype(np.uint8)
    _draw_face(b, 60, 100, 40, 52, (110, 150, 205), angle=-8)
    cv2.rectangle(b, (10, 170), (110, 255), (120, 60, 50), -1, cv2.LINE_AA)
    images["b"] = ("img_b.jpg", b)

    h, w = 128, 96
    yy, xx = np.mgrid[0:h, 0:w].astype(F32)
    c = np.stack([60 + 100 * yy / h] * 3, -1)
    c = np.clip(c + rng.randn(h, w, 1) * 3, 0, 255).astype(np.uint8)
    _draw_face(c, 48, 60, 30, 38, (170, 170, 170))
    images["c"] = ("img_c_gray.png", np.ascontiguousarray(c[:, :, 0]))

    h, w = 112, 144
    yy, xx = np.mgrid[0:h, 0:w].astype(F32)
    d8 = np.stack([140 + 50 * np.sin(xx / 17), 110 + 40 * yy / h, 90 + 60 * np.cos(yy / 23)], -1)
    d8 = np.clip(d8 + rng.randn(h, w, 3) * 2, 0, 255).astype(np.uint8)
    _draw_face(d8, 52, 58, 28, 36, (125, 165, 220))
    _draw_face(d8, 112, 50, 18, 24, (105, 150, 200), angle=-15)
    d16 = d8.astype(np.uint16) * 257 + rng.randint(-128, 128, d8.shape)   # low byte non-trivial
    images["d"] = ("img_d_16bit.png", np.clip(d16, 0, 65535).astype(np.uint16))
    return images


def write_images(images, folder):
    import cv2
    for name, (fname, arr) in images.items():
        params = [cv2.IMWRITE_JPEG_QUALITY, 90] if fname.endswith(".jpg") else [cv2.IMWRITE_PNG_COMPRESSION, 9]
        assert cv2.imwrite(os.path.join(folder, fname), arr, params)


# ================================================================================================
# Detector: insightface's letterbox and blob, head initialisation, cls-bias tuning
# ================================================================================================

def letterbox(img, det_w, det_h):
    """insightface RetinaFace.detect: aspect-preserving cv2.resize into the top-left of a zero canvas."""
    import cv2
    im_ratio = float(img.shape[0]) / img.shape[1]
    model_ratio = float(det_h) / det_w
    if im_ratio > model_ratio:
        new_h = det_h
        new_w = int(new_h / im_ratio)
    else:
        new_w = det_w
        new_h = int(new_w * im_ratio)
    det_scale = float(new_h) / img.shape[0]
    resized = cv2.resize(img, (new_w, new_h))
    canvas = np.zeros((det_h, det_w, 3), np.uint8)
    canvas[:new_h, :new_w] = resized
    return canvas, resized, det_scale, (new_w, new_h)


def det_blob(canvas):
    """cv2.dnn.blobFromImage(canvas, 1/128, size, (127.5,)*3, swapRB=True) == ((RGB - 127.5) / 128), exact."""
    return ((canvas[:, :, ::-1].astype(F32) - F32(127.5)) / F32(128.0)).transpose(2, 0, 1)[None].copy()


KPS_TEMPLATE = np.array([[-0.55, -0.45], [0.55, -0.45], [0.0, 0.1], [-0.45, 0.6], [0.45, 0.6]], F32)


def init_detector_head(det, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i in range(len(STRIDES)):
            det.reg[i].weight.mul_(0.12)
            det.reg[i].bias.copy_(2.6 + 0.8 * torch.rand(4 * ANCHORS, generator=g))
            det.kps[i].weight.mul_(0.08)
            tpl = [KPS_TEMPLATE * 3.0, KPS_TEMPLATE * 3.4]               # anchor 0 / anchor 1 face sizes
            det.kps[i].bias.copy_(torch.from_numpy(np.concatenate([t.ravel() for t in tpl])) +
                                  0.05 * torch.randn(10 * ANCHORS, generator=g))
            det.scales[i].scale.fill_((0.85, 1.15, 1.05)[i])
            # cls: the two anchors alike (both fire at a spot -> overlapping boxes -> NMS has work to do)
            w = det.cls[i].weight
            w[1] = 0.6 * w[0] + 0.4 * w[1]
            w.mul_(1.5)


def _nms_keep(boxes, scores, thresh=0.4):
    """insightface RetinaFace.nms (greedy, +1 pixel areas) -> (kept indices, min |IoU - thresh| seen)."""
    order = scores.argsort()[::-1]
    b = boxes[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    idx, keep, margin = np.arange(len(b)), [], np.inf
    while idx.size:
        i = idx[0]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[idx[1:]]) - np.maximum(x1[i], x1[idx[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[idx[1:]]) - np.maximum(y1[i], y1[idx[1:]]) + 1)
        inter = w * h
        ovr = inter / (areas[i] + areas[idx[1:]] - inter)
        if ovr.size:
            margin = min(margin, float(np.abs(ovr - thresh).min()))
        idx = idx[1:][ovr <= thresh]
    return keep, margin


def tune_cls_bias(det, runs, lo=3, hi=14):
    """One bias per stride (added to both anchors' cls logits) such that every run (blob, resized w, h) has lo..hi
    scores >= 0.5, all on anchors whose centre lies on the image (not the letterbox padding), no logit within 2e-3
    of 0, no two positive scores within 2e-5 and no NMS IoU within 1e-3 of 0.4 (robust to float differences);
    among those, the one where NMS removes the most boxes. None if impossible."""
    per_run = []
    with torch.no_grad():
        for blob, nw, nh, det_scale in runs:
            outs = det(blob)
            items = []
            for i, l in enumerate(det.head_logits(blob)):
                h, w = l.shape[2:]
                v = l[0].permute(1, 2, 0).reshape(-1).numpy().astype(np.float64)
                yy, xx = np.divmod(np.arange(h * w), w)
                inside = np.repeat((xx * STRIDES[i] < nw) & (yy * STRIDES[i] < nh), ANCHORS)
                cx = np.repeat(xx * STRIDES[i], ANCHORS).astype(np.float64)
                cy = np.repeat(yy * STRIDES[i], ANCHORS).astype(np.float64)
                d = outs[3 + i].numpy().astype(np.float64) * STRIDES[i]
                boxes = np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], 1) / det_scale
                items.append((v, np.sort(v), inside, boxes))
            per_run.append(items)
    qs = 1 - np.geomspace(2e-2, 2e-5, 40)
    cand = [np.unique(np.quantile(np.concatenate([r[i][0] for r in per_run]), qs)) for i in range(len(STRIDES))]
    stats = []            # per stride: [n_cand, n_runs] counts, margins, positives on the padding
    for i in range(len(STRIDES)):
        cnt = np.zeros((len(cand[i]), len(runs)), int)
        mar = np.zeros((len(cand[i]), len(runs)))
        bad = np.zeros((len(cand[i]), len(runs)), bool)
        for r, items in enumerate(per_run):
            v, order, inside, _ = items[i]
            k = np.searchsorted(order, cand[i])
            cnt[:, r] = len(order) - k
            lo_d = np.abs(order[np.clip(k - 1, 0, len(order) - 1)] - cand[i])
            hi_d = np.abs(order[np.clip(k, 0, len(order) - 1)] - cand[i])
            mar[:, r] = np.minimum(lo_d, hi_d)
            out_max = v[~inside].max() if (~inside).any() else -np.inf
            bad[:, r] = out_max >= cand[i]
        stats.append((cnt, mar, bad))
    passing = []
    for a in range(len(cand[0])):
        for b in range(len(cand[1])):
            c01 = stats[0][0][a] + stats[1][0][b]
            if (c01 > hi).any():
                continue
            for c in range(len(cand[2])):
                counts = c01 + stats[2][0][c]
                if counts.min() < lo or counts.max() > hi:
                    continue
                if min(stats[0][1][a].min(), stats[1][1][b].min(), stats[2][1][c].min()) < 2e-3:
                    continue
                if stats[0][2][a].any() or stats[1][2][b].any() or stats[2][2][c].any():
                    continue
                passing.append((a, b, c, counts))
    best = None
    for a, b, c, counts in passing:
        t = (cand[0][a], cand[1][b], cand[2][c])
        gap, faces, removed, nms_margin = np.inf, [], 0, np.inf
        for items in per_run:
            sc, bx = [], []
            for i in range(len(STRIDES)):
                m = items[i][0] >= t[i]
                sc.append(1 / (1 + np.exp(-(items[i][0][m] - t[i]))))
                bx.append(items[i][3][m])
            sc, bx = np.concatenate(sc), np.concatenate(bx)
            if len(sc) > 1:
                gap = min(gap, np.diff(np.sort(sc)).min())
            keep, m = _nms_keep(bx, sc)
            n = len(keep)
            nms_margin = min(nms_margin, m)
            faces.append(n)
            removed += len(sc) - n
        if gap < 2e-5 or nms_margin < 1e-3:
            continue
        strides_used = sum(int(stats[i][0][(a, b, c)[i]].sum() > 0) for i in range(len(STRIDES)))
        score = (strides_used >= 2, removed, -max(faces))
        if best is None or score > best[0]:
            best = (score, t, counts, faces)
    if best is None:
        return None
    _, t, counts, faces = best
    with torch.no_grad():
        for i in range(len(STRIDES)):
            det.cls[i].bias.sub_(float(t[i]))
    return dict(thresholds=[float(x) for x in t], positives=[int(x) for x in counts], faces_after_nms=faces)


# ================================================================================================
# Fixture writing
# ================================================================================================

class Store:
    """Collects tensors for one safetensors file (numpy, any dtype) and writes it sorted by key."""

    def __init__(self):
        self.t = {}

    def __setitem__(self, key, value):
        assert key not in self.t, key
        self.t[key] = np.ascontiguousarray(np.asarray(value))

    def save(self, path):
        from safetensors.numpy import save_file
        save_file(dict(sorted(self.t.items())), path)
        os.chmod(path, 0o644)

    def shapes(self):
        return {k: [list(v.shape), v.dtype.name] for k, v in sorted(self.t.items())}


def sample_rows(arr, n=4):
    """A few full rows (first, evenly spaced, last) of an HWC image, for debugging a hash mismatch."""
    rows = sorted(set(np.linspace(0, arr.shape[0] - 1, n).round().astype(int).tolist()))
    return np.asarray(rows, np.int64), arr[rows]


def digest(arr):
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def kps_of_drawn_faces():
    """Approximate 5 landmarks of the faces make_images draws (eye centres, nose tip, mouth corners)."""
    def lm(cx, cy, rx, ry):
        return np.array([[cx - 0.42 * rx, cy - 0.22 * ry], [cx + 0.42 * rx, cy - 0.22 * ry],
                         [cx - 0.1 * rx, cy + ry / 6], [cx - 0.35 * rx, cy + 0.45 * ry],
                         [cx + 0.35 * rx, cy + 0.45 * ry]], F32)
    return {"a": [lm(62, 78, 34, 44), lm(148, 66, 22, 29)], "b": [lm(60, 100, 40, 52)], "c": [lm(48, 60, 30, 38)],
            "d": [lm(52, 58, 28, 36), lm(112, 50, 18, 24)]}


def arcface_blob(crops_bgr):
    """cv2.dnn.blobFromImages(crops, 1/127.5, (112,112), (127.5,)*3, swapRB=True), bit for bit."""
    x = np.stack([c[:, :, ::-1] for c in crops_bgr]).astype(F32).transpose(0, 3, 1, 2)
    return ((x - F32(127.5)) * F32(1.0 / 127.5)).astype(F32)


def recognizer_calibration(imgs):
    """The recognisers' BN calibration batch: norm_crop (112) of the drawn faces' rough landmarks, and mirrored."""
    from insightface.utils import face_align
    crops = [face_align.norm_crop(imgs[n], k, 112) for n, ks in kps_of_drawn_faces().items() for k in ks]
    crops += [np.ascontiguousarray(c[:, ::-1]) for c in crops]                 # mirrored: 12 calibration crops
    return torch.from_numpy(arcface_blob(crops))


def build_models(imgs, log):
    """The tiny detector (tuned) and the two recognisers, all in eval mode."""
    runs = []
    for img in imgs.values():
        for size in (640, 320):
            canvas, _, det_scale, (nw, nh) = letterbox(img, size, size)
            runs.append((torch.from_numpy(det_blob(canvas)), nw, nh, det_scale))
    # DET_SEED was found by scanning 1000..1199 (the most NMS work, few faces); the scan is the fallback.
    for seed in [DET_SEED] + list(range(1000, 1200)):
        det = randomize(SCRFD(**DET_TINY), seed)
        calibrate_bn(det, [r[0] for r in runs], seed + 1)
        init_detector_head(det, seed + 2)
        tuned = tune_cls_bias(det, runs)
        if tuned is not None:
            log["detector_seed"] = seed
            log["cls_bias_tuning"] = tuned
            break
    else:
        raise RuntimeError("no detector seed works")

    calib = recognizer_calibration(imgs)
    recs = {}
    for name, cfg, seed in (("w600k_r50", R50_TINY, 501), ("glintr100", R100_TINY, 1001)):
        m = randomize(IResNet(**cfg), seed)
        recs[name] = calibrate_bn(m, [calib], seed + 1)
    return det, recs


DET_OUTPUT_KEYS = [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in STRIDES]


def export_detector(det, opset, training=None, dynamic=True):
    """Dynamic H and W like det_10g.onnx. Opset 9 has no ceil_mode on AveragePool, so the exporter needs the input
    size to turn the ResNet-D shortcut's ceil-mode pooling into explicit pads: that variant is fixed at 96x128."""
    import onnx
    sample = torch.zeros(1, 3, 96, 128)
    dyn = {"input.1": {2: "?", 3: "?"}} if dynamic else None
    m = onnx.load_from_string(export(det, sample, opset, dyn, training=training))
    if dynamic:  # the exporter names outputs by number (as in the released files); make the row count symbolic
        for o, key in zip(m.graph.output, DET_OUTPUT_KEYS):
            o.type.tensor_type.shape.dim[0].dim_param = "K" + key.split("_")[1]
    return m


def export_recognizer(model):
    import onnx
    data = export(model, torch.zeros(1, 3, 112, 112), 11, {"input.1": {0: "None"}})
    m = onnx.load_from_string(data)
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "None"
    return m


def insightface_e2e(pack_root, imgs, store, log):
    """FaceAnalysis on every image, det_size 640 and 320, tiny_buffalo_l; det_size 640 with tiny_antelopev2 too."""
    import insightface
    from insightface.app import FaceAnalysis
    from insightface.utils import face_align
    from insightface.model_zoo.retinaface import RetinaFace

    root = tempfile.mkdtemp(prefix="face-root-")
    os.symlink(pack_root, os.path.join(root, "models"))      # FaceAnalysis looks in <root>/models/<name>
    result = {}
    try:
        for pack, size in (("tiny_buffalo_l", 640), ("tiny_buffalo_l", 320), ("tiny_antelopev2", 640)):
            # A fresh FaceAnalysis per det_size: RetinaFace.prepare ignores a second, different input_size.
            app = FaceAnalysis(name=pack, root=root, allowed_modules=["detection", "recognition"],
                               providers=["CPUExecutionProvider"])
            det_model, rec_model = app.models["detection"], app.models["recognition"]
            assert isinstance(det_model, RetinaFace) and det_model.use_kps and det_model.fmc == 3
            log[f"{pack}_models"] = dict(
                detection=dict(file=os.path.basename(det_model.model_file), cls=type(det_model).__name__,
                               fmc=det_model.fmc, use_kps=det_model.use_kps, num_anchors=det_model._num_anchors,
                               input_mean=det_model.input_mean, input_std=det_model.input_std,
                               input_shape=[str(d) for d in det_model.input_shape]),
                recognition=dict(file=os.path.basename(rec_model.model_file), cls=type(rec_model).__name__,
                                 input_mean=rec_model.input_mean, input_std=rec_model.input_std,
                                 input_size=list(rec_model.input_size), output_shape=[str(d) for d in
                                                                                      rec_model.output_shape]))
            app.prepare(ctx_id=-1, det_thresh=0.5, det_size=(size, size))
            assert det_model.input_size == (size, size)
            for n, img in imgs.items():
                key = f"{pack}/{n}/det{size}"
                result[key] = _one_run(app, det_model, rec_model, img, size, key, store, face_align,
                                       full=(pack == "tiny_buffalo_l"))
        log["insightface_version"] = insightface.__version__
    finally:
        shutil.rmtree(root)
    return result


def _one_run(app, det_model, rec_model, img, size, key, store, face_align, full):
    canvas, resized, det_scale, (nw, nh) = letterbox(img, size, size)
    info = dict(det_scale=det_scale, resized_wh=[nw, nh], det_wh=[size, size])
    # Raw detector outputs for the exact blob insightface feeds (its forward() builds it with cv2.dnn).
    outs = det_model.session.run(det_model.output_names, {det_model.input_name: det_blob(canvas)})
    faces = app.get(img)
    # insightface's own pre-NMS list (forward + the sort in detect), to expose its intermediate order.
    scores_list, bboxes_list, kpss_list = det_model.forward(canvas, det_model.det_thresh)
    scores = np.vstack(scores_list)
    order = scores.ravel().argsort()[::-1]
    pre = np.hstack((np.vstack(bboxes_list) / det_scale, scores)).astype(np.float32, copy=False)[order]
    pre_kps = (np.vstack(kpss_list) / det_scale)[order]
    keep = det_model.nms(pre)
    if full:
        stats = []
        for k, o in zip(DET_OUTPUT_KEYS, outs):
            stats.append([float(o.astype(np.float64).sum()), float(np.abs(o.astype(np.float64)).sum()),
                          float(o.max()), float(o.min())])
        store[f"{key}/raw_stats"] = np.asarray(stats, np.float64)
        for i, s in enumerate(STRIDES):
            pos = np.where(outs[i][:, 0] >= det_model.det_thresh)[0]
            store[f"{key}/pos_index_{s}"] = pos.astype(np.int64)
            store[f"{key}/pos_score_{s}"] = outs[i][pos]
            store[f"{key}/pos_bbox_{s}"] = outs[i + 3][pos]
            store[f"{key}/pos_kps_{s}"] = outs[i + 6][pos]
        store[f"{key}/pre_nms"] = pre
        store[f"{key}/pre_nms_kps"] = pre_kps.astype(F32)
        store[f"{key}/keep"] = np.asarray(keep, np.int64)
        # NMS robustness: the IoUs insightface computes, and how close any is to the threshold
        info["nms_min_abs_iou_minus_thresh"] = _nms_margin(pre, det_model.nms_thresh)
        all_scores = np.concatenate([o[:, 0] for o in outs[:3]])
        info["min_abs_score_minus_thresh"] = float(np.abs(all_scores - det_model.det_thresh).min())
        ps = np.sort(pre[:, 4])
        info["min_gap_between_positive_scores"] = float(np.diff(ps).min()) if len(ps) > 1 else None
        info["positives_per_stride"] = [int((o[:, 0] >= det_model.det_thresh).sum()) for o in outs[:3]]
    F_ = len(faces)
    assert F_ == len(keep) and (F_ == 0 or np.array_equal(np.stack([f.bbox for f in faces]), pre[keep, :4]))
    info["faces"] = F_
    if F_:
        bbox = np.stack([f.bbox for f in faces]).astype(F32)
        store[f"{key}/bbox"] = bbox
        store[f"{key}/det_score"] = np.asarray([f.det_score for f in faces], F32)
        store[f"{key}/kps"] = np.stack([f.kps for f in faces]).astype(F32)
        store[f"{key}/embedding"] = np.stack([f.embedding for f in faces]).astype(F32)
        store[f"{key}/normed_embedding"] = np.stack([f.normed_embedding for f in faces]).astype(F32)
        areas = (bbox[:, 2] - bbox[:, 0]) * (bbox[:, 3] - bbox[:, 1])
        largest = int(np.argmax(areas))
        instantid = sorted(range(F_), key=lambda i: (faces[i]["bbox"][2] - faces[i]["bbox"][0]) *
                           (faces[i]["bbox"][3] - faces[i]["bbox"][1]))[-1]
        info["largest_index"] = largest
        info["instantid_index"] = int(instantid)
        info["areas"] = [float(a) for a in areas]
        for S in (112, 224, 256):
            store[f"{key}/M{S}"] = np.stack([face_align.estimate_norm(f.kps, S) for f in faces]).astype(np.float64)
        crops = [face_align.norm_crop(img, f.kps, 112) for f in faces]
        crops_cv4 = [warp_affine_cv4(img, face_align.estimate_norm(f.kps, 112), 112) for f in faces]
        for f, c in zip(faces, crops):
            assert np.array_equal(c, warp_affine_cv5(img, face_align.estimate_norm(f.kps, 112), 112))
        emb_cv4 = rec_model.session.run(rec_model.output_names,
                                        {rec_model.input_name: arcface_blob(crops_cv4)})[0]
        info["crop112_sha256"] = [digest(c) for c in crops]
        info["crop112_cv4_sha256"] = [digest(c) for c in crops_cv4]
        info["crop112_cv4_vs_cv5_max_abs_diff"] = [int(np.abs(a.astype(int) - b).max()) for a, b in
                                                   zip(crops, crops_cv4)]
        info["crop112_cv4_vs_cv5_pixels_differing"] = [int((a != b).any(-1).sum()) for a, b in zip(crops, crops_cv4)]
        info["embedding_cv4_vs_cv5_cosine"] = [float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))
                                               for a, b in zip(store.t[f"{key}/embedding"], emb_cv4)]
        big = faces[largest]
        c224 = face_align.norm_crop(img, big.kps, 224)
        c224_cv4 = warp_affine_cv4(img, face_align.estimate_norm(big.kps, 224), 224)
        info["crop224_largest_sha256"] = digest(c224)
        info["crop224_largest_cv4_sha256"] = digest(c224_cv4)
        if full and size == 640:
            image = key.split("/")[1]
            store[f"{key}/crop112_face0"] = crops[0]
            store[f"{key}/embedding_cv4"] = emb_cv4.astype(F32)
            if image in ("a", "b"):
                store[f"{key}/crop112_cv4_face0"] = crops_cv4[0]
            if image == "a":
                store[f"{key}/crop224_largest"] = c224
                rows, vals = sample_rows(c224_cv4)
                store[f"{key}/crop224_largest_cv4_rows"] = rows
                store[f"{key}/crop224_largest_cv4_row_values"] = vals
    return info


def _nms_margin(dets, thresh):
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    margin = None
    while order.size > 0:
        i = order[0]
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        w = np.maximum(0.0, xx2 - xx1 + 1)
        hh = np.maximum(0.0, yy2 - yy1 + 1)
        inter = w * hh
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        if ovr.size:
            m = float(np.abs(ovr - thresh).min())
            margin = m if margin is None else min(margin, m)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return margin


# ================================================================================================
# OpenCV fixtures (resize / warpAffine bit-exactness)
# ================================================================================================

RESIZE_CASES = [  # (src h, src w, dst w, dst h)
    (23, 37, 111, 69),    # x3 up
    (41, 57, 19, 14),     # /3 down (non-integer in y)
    (30, 40, 20, 15),     # exactly 2x down: OpenCV switches to INTER_AREA
    (17, 33, 66, 34),     # exactly 2x up
    (25, 25, 25, 25),     # same size: a copy
    (7, 1, 3, 5),         # one-pixel-wide source
    (48, 64, 27, 50),     # down in x, up in y
    (61, 97, 140, 40),    # up in x, down in y
    (13, 11, 64, 37),     # odd up-scales
    (50, 75, 15, 10),     # /5 down
    (16, 12, 80, 60),     # x5 up
]


def resize_inputs(imgs, extra_letterbox):
    """key -> (src, dst w, dst h, meta): random small images, and the letterbox resizes of the test images."""
    rng = np.random.RandomState(12)
    out = {}
    for i, (h, w, dw, dh) in enumerate(RESIZE_CASES):
        out[f"case{i:02d}"] = (rng.randint(0, 256, (h, w, 3)).astype(np.uint8), dw, dh, dict(src_hw=[h, w]))
    for n, img in imgs.items():
        for s_w, s_h in [(640, 640), (320, 320)] + extra_letterbox.get(n, []):
            _, _, det_scale, (nw, nh) = letterbox(img, s_w, s_h)
            out[f"letterbox_{n}_{s_w}x{s_h}"] = (img, nw, nh, dict(image=n, det_wh=[s_w, s_h], det_scale=det_scale))
    return out


def resize_fixtures(inputs, store, log, cv4):
    import cv2
    cases = []
    for key, (src, dw, dh, meta) in inputs.items():
        dst = cv2.resize(src, (dw, dh))
        assert np.array_equal(dst, resize_linear_cv(src, dw, dh)), f"resize model mismatch in {key}"
        meta = dict(meta, key=key, dst_wh=[dw, dh], sha256=digest(dst))
        if key.startswith("case"):
            store[f"{key}/src"] = src
            store[f"{key}/dst"] = dst
        else:                                   # the source is e2e <image>/decoded; too big to store whole
            rows, vals = sample_rows(dst)
            store[f"{key}/rows"] = rows
            store[f"{key}/row_values"] = vals
        if cv4 is not None:
            meta["cv4_identical"] = cv4["resize"][key] == meta["sha256"]
        cases.append(meta)
    log["cases"] = cases


def warp_inputs():
    """[(key, src, M, S, meta)]: random images, M from face_align.estimate_norm on random 5-point sets."""
    from insightface.utils import face_align
    rng = np.random.RandomState(13)
    arc = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                    [70.7299, 92.2041]], F32)
    specs = [  # (src h, src w, face scale vs 112, rotation deg, centre as fraction of the image, S)
        (48, 60, 0.35, 0, (0.5, 0.5), 112),
        (60, 47, 0.45, 25, (0.45, 0.55), 224),
        (52, 64, 0.25, -40, (0.5, 0.45), 256),
        (40, 40, 0.6, 10, (0.9, 0.1), 112),      # partly outside (top right)
        (56, 44, 1.0, -15, (0.2, 0.8), 224),     # face larger than the image, partly outside
        (64, 50, 0.2, 170, (0.5, 0.5), 256),     # upside down, strong up-scale
        (36, 62, 0.4, 90, (0.5, 0.5), 112),      # rotated 90 degrees
        (49, 49, 1.8, 5, (0.5, 0.5), 224),       # down-scale (face bigger than the crop)
        (33, 46, 0.35, -5, (0.05, 0.5), 256),    # mostly outside on the left
        (58, 58, 0.5, 33, (0.6, 0.4), 112),
        (44, 44, 0.4, -60, (0.5, 0.6), 224),
        (66, 38, 0.2, 2, (0.5, 0.3), 256),
    ]
    cases = []
    for i, (h, w, sc, rot, (fx, fy), S) in enumerate(specs):
        src = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
        t = np.deg2rad(rot)
        R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]], F32)
        kps = (((arc - 56.0) * sc) @ R.T + np.array([fx * w, fy * h], F32) + rng.randn(5, 2) * 0.7).astype(F32)
        M = face_align.estimate_norm(kps, S)
        cases.append((f"case{i:02d}", src, M, S, dict(src_hw=[h, w], S=S, kps=kps.tolist(), from_estimate_norm=True)))
    # Hand-made: an integer translation, and an exact 2x up-scale (all weights 0.5: rounding ties).
    src = rng.randint(0, 256, (40, 48, 3)).astype(np.uint8)
    cases.append(("case12", src, np.array([[1.0, 0, -5], [0, 1.0, 3]]), 112,
                  dict(src_hw=[40, 48], S=112, from_estimate_norm=False)))
    cases.append(("case13", src, np.array([[2.0, 0, 0.5], [0, 2.0, -0.5]]), 112,
                  dict(src_hw=[40, 48], S=112, from_estimate_norm=False)))
    return cases


WARP_STORED_WHOLE = ("case00", "case13")


def warp_fixtures(cases, store, log, cv4):
    import cv2
    out = []
    for key, src, M, S, meta in cases:
        dst = cv2.warpAffine(src, M, (S, S), borderValue=0.0)
        assert np.array_equal(dst, warp_affine_cv5(src, M, S)), f"warp model (5.x) mismatch in {key}"
        dst4 = warp_affine_cv4(src, M, S)
        store[f"{key}/src"] = src
        store[f"{key}/M"] = np.asarray(M, np.float64)
        if key in WARP_STORED_WHOLE:
            store[f"{key}/dst"] = dst
            store[f"{key}/dst_cv4"] = dst4
        else:
            rows, vals = sample_rows(dst)
            store[f"{key}/rows"] = rows
            store[f"{key}/row_values"] = vals
            store[f"{key}/row_values_cv4"] = dst4[rows]
        d = np.abs(dst.astype(int) - dst4)
        meta = dict(meta, key=key, sha256=digest(dst), sha256_cv4=digest(dst4),
                    stored_whole=key in WARP_STORED_WHOLE,
                    cv4_vs_cv5_max_abs_diff=int(d.max()), cv4_vs_cv5_values_differing=int((d > 0).sum()),
                    cv4_vs_cv5_pixels_differing=int((d > 0).any(-1).sum()))
        if cv4 is not None:
            assert cv4["warp"][key] == meta["sha256_cv4"], f"the OpenCV 4.x model does not match cv2 {cv4['version']}"
            meta["cv4_checked_against"] = cv4["version"]
        out.append(meta)
    log["cases"] = out


CV4_HELPER = r"""
import sys, json, hashlib, numpy as np, cv2
from safetensors.numpy import load_file
t = load_file(sys.argv[1]); cases = json.load(open(sys.argv[2])); res = {"version": cv2.__version__, "resize": {},
    "warp": {}, "imread": {}}
d = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
for k, (dw, dh) in cases["resize"].items():
    res["resize"][k] = d(cv2.resize(t["resize/" + k + "/src"], (dw, dh)))
for k, S in cases["warp"].items():
    res["warp"][k] = d(cv2.warpAffine(t["warp/" + k + "/src"], t["warp/" + k + "/M"], (S, S), borderValue=0.0))
for k, path in cases["imread"].items():
    res["imread"][k] = d(cv2.imread(path))
print(json.dumps(res))
"""


def cv4_check(python, imgs_paths, resize_in, warp_in):
    """Runs the same calls under another interpreter with OpenCV 4.x (optional; env CV4_PYTHON)."""
    from safetensors.numpy import save_file
    tmp = tempfile.mkdtemp(prefix="cv4-")
    try:
        tensors, cases = {}, {"resize": {}, "warp": {}, "imread": imgs_paths}
        for k, (src, dw, dh, _) in resize_in.items():
            tensors["resize/" + k + "/src"] = np.ascontiguousarray(src)
            cases["resize"][k] = [dw, dh]
        for k, src, M, S, _ in warp_in:
            tensors["warp/" + k + "/src"] = src
            tensors["warp/" + k + "/M"] = np.asarray(M, np.float64)
            cases["warp"][k] = S
        save_file(tensors, os.path.join(tmp, "in.safetensors"))
        with open(os.path.join(tmp, "cases.json"), "w") as fh:
            json.dump(cases, fh)
        with open(os.path.join(tmp, "helper.py"), "w") as fh:
            fh.write(CV4_HELPER)
        r = subprocess.run([python, os.path.join(tmp, "helper.py"), os.path.join(tmp, "in.safetensors"),
                            os.path.join(tmp, "cases.json")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp)


# ================================================================================================
# --real: real-size graphs (random weights) for the benchmark; never written into the repository
# ================================================================================================

def write_real(folder):
    import onnx
    os.makedirs(folder, exist_ok=True)
    g = torch.Generator().manual_seed(5)
    det = randomize(SCRFD(**DET_REAL), 11)
    calibrate_bn(det, [torch.randn(2, 3, 320, 320, generator=g)], 12)
    init_detector_head(det, 13)
    sizes = {}
    m = export_detector(det, 11)
    onnx.save(m, os.path.join(folder, "det_10g.onnx"))
    for name, cfg, seed in (("w600k_r50", R50_REAL, 21), ("glintr100", R100_REAL, 31)):
        rec = calibrate_bn(randomize(IResNet(**cfg), seed), [torch.randn(4, 3, 112, 112, generator=g)], seed + 1)
        onnx.save(export_recognizer(rec), os.path.join(folder, name + ".onnx"))
    for f in ("det_10g.onnx", "w600k_r50.onnx", "glintr100.onnx"):
        path = os.path.join(folder, f)
        sizes[f] = dict(bytes=os.path.getsize(path), op_types=op_types(onnx.load(path)),
                        params=int(sum(np.prod(t.dims) for t in onnx.load(path).graph.initializer)))
    print(json.dumps(sizes, indent=1))


# ================================================================================================
# tiny_faceid24: FaceID straight from a photo (a 24-d recogniser feeding the tiny FaceID adapters of gen_faceid.py)
# ================================================================================================

FACEID24_DIM = 24         # gen_faceid.py ID_DIM: the tiny adapters' id_embeddings_dim (512 in the releases)
FACEID24_SEED = 2401
FACEID24_IMAGE = "img_a.png"
FACEID_DIR = os.path.join(FIX, "faceid")


def build_faceid24_recognizer(imgs):
    """The tiny r50 iresnet (R50_TINY widths) with a 24-d head (Linear -> 24, BatchNorm1d(24)), calibrated like the
    other recognisers."""
    m = randomize(IResNet(**R50_TINY, features=FACEID24_DIM), FACEID24_SEED)
    return calibrate_bn(m, [recognizer_calibration(imgs)], FACEID24_SEED + 1)


def _faceid_projections(face_emb, face_emb_cv4, crop_rgb, store, log):
    """Official tencent-ailab classes (loaded by gen_faceid.py's helpers) on the first face's embeddings."""
    from PIL import Image
    from safetensors.torch import load_file
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection
    sys.path.insert(0, HERE)
    import gen_faceid
    assert gen_faceid.ID_DIM == FACEID24_DIM
    ref = load_file(os.path.join(FACEID_DIR, "reference.safetensors"))
    face_a = torch.from_numpy(np.load(os.path.join(FACEID_DIR, "face-a.npy")))
    tmp, mods = gen_faceid.official_modules()
    try:
        projs = {}
        for name in ("ip-adapter-faceid_sd15", "ip-adapter-faceid-plus_sd15"):
            path = os.path.join(FACEID_DIR, name + ".bin")
            assert os.path.isfile(path), f"{path} missing: run gen_faceid.py first"
            proj = gen_faceid.projection_model(mods, name)
            proj.load_state_dict(torch.load(path, map_location="cpu")["image_proj"])     # strict
            projs[name] = proj.eval()
            log.setdefault("adapters", {})[name] = dict(file="Tests/Fixtures/faceid/" + name + ".bin",
                                                        image_proj_class=type(proj).__name__,
                                                        sha256=sha256(path))
        enc = CLIPVisionModelWithProjection.from_pretrained(gen_faceid.ENCODER, torch_dtype=torch.float32).eval()
        processor = CLIPImageProcessor()        # what the official IPAdapterFaceIDPlus constructs
        e = torch.from_numpy(face_emb[None])
        e4 = torch.from_numpy(face_emb_cv4[None])
        zero = torch.zeros_like(e)
        mlp, plus = projs["ip-adapter-faceid_sd15"], projs["ip-adapter-faceid-plus_sd15"]
        with torch.no_grad():
            store["faceid_tokens"] = mlp(e).numpy()
            store["faceid_tokens_cv4"] = mlp(e4).numpy()
            store["faceid_uncond_tokens"] = mlp(zero).numpy()
            # The crop as a PIL RGB image (as gen_faceid.py feeds face-crop.png); resize / centre crop are identities.
            pixels = processor(images=Image.fromarray(crop_rgb), return_tensors="pt").pixel_values
            mean = np.array([0.48145466, 0.4578275, 0.40821073])
            std = np.array([0.26862954, 0.26130258, 0.27577711])
            manual = ((crop_rgb / 255.0 - mean) / std).transpose(2, 0, 1)[None]
            clip_face = enc(pixels, output_hidden_states=True).hidden_states[-2]
            clip_zero = enc(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
            store["clip_pixel_values_row112"] = pixels[0, :, 112, :].numpy()
            store["faceid_plus_tokens"] = plus(e, clip_face, shortcut=False).numpy()
            store["faceid_plus_tokens_cv4"] = plus(e4, clip_face, shortcut=False).numpy()
            store["faceid_plus_uncond_tokens"] = plus(zero, clip_zero, shortcut=False).numpy()
            # Sanity: the same modules reproduce gen_faceid.py's references (face-a, face-crop.png)
            crop_png = Image.open(os.path.join(FACEID_DIR, "face-crop.png")).convert("RGB")
            clip_png = enc(processor(images=crop_png, return_tensors="pt").pixel_values,
                           output_hidden_states=True).hidden_states[-2]
            checks = {
                "faceid_sd15_cond_vs_reference": float((mlp(face_a[None]) - ref["ip-adapter-faceid_sd15/cond"])
                                                       .abs().max()),
                "clip_face_vs_reference": float((clip_png - ref["clip/face"]).abs().max()),
                "plus_sd15_cond_vs_reference": float((plus(face_a[None], clip_png, shortcut=False) -
                                                      ref["ip-adapter-faceid-plus_sd15/cond"]).abs().max()),
            }
        assert max(checks.values()) < 1e-5, checks
        log["checks_against_faceid_reference_max_abs"] = checks
        log["clip"] = dict(encoder="Tests/Fixtures/tiny-ip-adapter/models/image_encoder",
                           processor="transformers CLIPImageProcessor() defaults on PIL Image.fromarray(crop224_face0) "
                                     "(RGB)", features="hidden_states[-2] [1,257,40]",
                           pixel_values_vs_manual_float64_max_abs=float(np.abs(pixels.double().numpy() - manual).max()),
                           uncond="the encoder on torch.zeros_like(pixel_values), as the official get_image_embeds")
        log["official"] = dict(repo="tencent-ailab/IP-Adapter", commit=gen_faceid.OFFICIAL_COMMIT,
                               loaded_by="gen_faceid.official_modules / projection_model")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_faceid24(imgs, cv4_python=None):
    """packs/tiny_faceid24 + faceid_e2e.safetensors / faceid_e2e.json (needs packs/tiny_buffalo_l/det_10g.onnx, the
    test images in OUT and gen_faceid.py's adapters). imgs: name -> cv2.imread of the test images."""
    import onnx
    from insightface.app import FaceAnalysis
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.retinaface import RetinaFace
    from insightface.utils import face_align
    packs = os.path.join(OUT, "packs")
    pack = os.path.join(packs, "tiny_faceid24")
    assert os.path.isfile(os.path.join(packs, "tiny_buffalo_l", "det_10g.onnx"))
    shutil.rmtree(pack, ignore_errors=True)
    os.makedirs(pack)
    os.symlink(os.path.join("..", "tiny_buffalo_l", "det_10g.onnx"), os.path.join(pack, "det_10g.onnx"))
    rec_path = os.path.join(pack, "w600k_r50.onnx")
    rec_torch = build_faceid24_recognizer(imgs)
    onnx.save(export_recognizer(rec_torch), rec_path)
    os.chmod(rec_path, 0o644)
    log = dict(versions=versions())
    log["pack"] = {"det_10g.onnx": dict(symlink_to="packs/tiny_buffalo_l/det_10g.onnx"),
                   "w600k_r50.onnx": dict(graph_summary(onnx.load(rec_path)), bytes=os.path.getsize(rec_path),
                                          sha256=sha256(rec_path), architecture="iresnet r50 layout", dims=R50_TINY,
                                          embedding=FACEID24_DIM, seed=FACEID24_SEED)}

    img = imgs["a"]
    store = Store()
    root = tempfile.mkdtemp(prefix="face-root-")
    os.symlink(packs, os.path.join(root, "models"))
    try:
        app = FaceAnalysis(name="tiny_faceid24", root=root, allowed_modules=["detection", "recognition"],
                           providers=["CPUExecutionProvider"])
        det_model, rec_model = app.models["detection"], app.models["recognition"]
        assert isinstance(det_model, RetinaFace) and isinstance(rec_model, ArcFaceONNX)
        app.prepare(ctx_id=-1, det_thresh=0.5, det_size=(640, 640))
        log["insightface_models"] = dict(
            detection=dict(file=os.path.basename(det_model.model_file), cls=type(det_model).__name__),
            recognition=dict(file=os.path.basename(rec_model.model_file), cls=type(rec_model).__name__,
                             input_mean=rec_model.input_mean, input_std=rec_model.input_std,
                             input_size=list(rec_model.input_size),
                             output_shape=[str(d) for d in rec_model.output_shape]))
        faces = app.get(img)
        assert len(faces) >= 1
        emb = np.stack([f.embedding for f in faces]).astype(F32)
        assert emb.shape[1] == FACEID24_DIM
        kps = np.stack([f.kps for f in faces]).astype(F32)
        store["bbox"] = np.stack([f.bbox for f in faces]).astype(F32)
        store["det_score"] = np.asarray([f.det_score for f in faces], F32)
        store["kps"] = kps
        store["embedding"] = emb
        store["normed_embedding"] = np.stack([f.normed_embedding for f in faces]).astype(F32)
        # The same faces through OpenCV-4.x crops (what the Swift engine reproduces), normalised as insightface does
        crops_cv4 = [warp_affine_cv4(img, face_align.estimate_norm(f.kps, 112), 112) for f in faces]
        for f in faces:
            assert np.array_equal(face_align.norm_crop(img, f.kps, 112),
                                  warp_affine_cv5(img, face_align.estimate_norm(f.kps, 112), 112))
        emb4 = rec_model.session.run(rec_model.output_names, {rec_model.input_name: arcface_blob(crops_cv4)})[0]
        emb4 = emb4.astype(F32)
        store["embedding_cv4"] = emb4
        store["normed_embedding_cv4"] = np.stack([e / np.linalg.norm(e) for e in emb4]).astype(F32)
    finally:
        shutil.rmtree(root)

    # The detector is tiny_buffalo_l's: its faces must be those of e2e.safetensors
    from safetensors.numpy import load_file
    e2e = load_file(os.path.join(OUT, "e2e.safetensors"))
    for k in ("bbox", "det_score", "kps"):
        assert np.array_equal(store.t[k], e2e[f"tiny_buffalo_l/a/det640/{k}"]), k

    M = face_align.estimate_norm(faces[0].kps, 224)
    crop_bgr = warp_affine_cv4(img, M, 224)
    crop5 = face_align.norm_crop(img, faces[0].kps, 224)
    assert np.array_equal(crop5, warp_affine_cv5(img, M, 224))
    crop_rgb = np.ascontiguousarray(crop_bgr[:, :, ::-1])
    store["crop224_face0"] = crop_rgb
    store["crop224_face0_M"] = np.asarray(M, np.float64)
    d = np.abs(crop5.astype(int) - crop_bgr)
    log["crop224_face0"] = dict(sha256_rgb=digest(crop_rgb), sha256_bgr=digest(crop_bgr),
                                sha256_opencv5_bgr=digest(crop5), cv4_vs_cv5_max_abs_diff=int(d.max()),
                                cv4_vs_cv5_pixels_differing=int((d > 0).any(-1).sum()))
    if cv4_python:
        got = cv4_check(cv4_python, {}, {}, [("crop224_face0", img, M, 224, None)])
        assert got["warp"]["crop224_face0"] == digest(crop_bgr), "the OpenCV 4.x model does not match cv2"
        log["crop224_face0"]["checked_against_opencv"] = got["version"]
    e5, e4 = store.t["embedding"], store.t["embedding_cv4"]
    log["embedding_cv4_vs_cv5_cosine"] = [float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))
                                          for a, b in zip(e5, e4)]

    _faceid_projections(store.t["normed_embedding"][0], store.t["normed_embedding_cv4"][0], crop_rgb, store, log)
    for k in ("faceid", "faceid_plus"):
        log[f"{k}_tokens_cv4_vs_cv5_max_abs"] = float(np.abs(store.t[f"{k}_tokens_cv4"] -
                                                             store.t[f"{k}_tokens"]).max())
    out = os.path.join(OUT, "faceid_e2e.safetensors")
    store.save(out)
    log["run"] = dict(image=FACEID24_IMAGE + " via cv2.imread (BGR)",
                      face_analysis="FaceAnalysis(name='tiny_faceid24', root=<root with models/ -> packs>, "
                                    "allowed_modules=['detection', 'recognition'], providers=['CPUExecutionProvider'])",
                      prepare="prepare(ctx_id=-1, det_thresh=0.5, det_size=(640, 640))",
                      faces=len(faces), det_score=[float(f.det_score) for f in faces],
                      bbox=[[float(v) for v in f.bbox] for f in faces],
                      same_detections_as="e2e.safetensors tiny_buffalo_l/a/det640 (asserted equal)")
    log["keys"] = store.shapes()
    log["definitions"] = {
        "bbox, det_score, kps, embedding, normed_embedding": "insightface's faces in its order (OpenCV 5 crops inside)",
        "embedding_cv4, normed_embedding_cv4": "the recogniser on warp_affine_cv4(img, estimate_norm(kps, 112), 112) "
                                               "(OpenCV 4.x crops, arcface_blob), normed = e / np.linalg.norm(e)",
        "crop224_face0_M": "face_align.estimate_norm(faces[0].kps, 224), float64",
        "crop224_face0": "OpenCV 4.x cv2.warpAffine(img, M, (224, 224), borderValue=0) (warp_affine_cv4), BGR -> RGB",
        "faceid_tokens / _cv4": "ip-adapter-faceid_sd15 image_proj (official MLPProjModel(20, 24, 4)) on "
                                "normed_embedding[0:1] / normed_embedding_cv4[0:1] -> [1,4,20]",
        "faceid_uncond_tokens": "the same module on zeros [1,24]",
        "faceid_plus_tokens / _cv4": "ip-adapter-faceid-plus_sd15 image_proj (official ProjPlusModel, perceiver "
                                     "as gen_faceid.py) on (normed_embedding[0:1] / normed_embedding_cv4[0:1], "
                                     "CLIP hidden_states[-2] of crop224_face0), shortcut=False",
        "faceid_plus_uncond_tokens": "(zeros [1,24], CLIP of torch.zeros_like(pixel_values)), shortcut=False",
        "clip_pixel_values_row112": "CLIPImageProcessor() pixel_values[0, :, 112, :] of crop224_face0 -> [3,224]",
    }
    with open(os.path.join(OUT, "faceid_e2e.json"), "w") as fh:
        json.dump(log, fh, indent=1, sort_keys=True)
        fh.write("\n")
    return log


# ================================================================================================
# main
# ================================================================================================

ALIGNMENT_SIZES = (112, 128, 224, 256, 384)


def alignment_cases(seed=20261207):
    """[kps [5,2] float32]: keypoint sets for face_align.estimate_norm — the ArcFace template rotated (any angle),
    scaled (eye distances of ~3 to ~1500 px), moved (up to 6000 px from the origin), jittered; every 5th one
    mirrored (det(A) < 0); two collinear sets (rank 1: scikit-image's det(U)·det(V) branches); one set at the origin."""
    from insightface.utils.face_align import arcface_dst
    rng = np.random.default_rng(seed)
    template = np.array(arcface_dst, np.float64) - 56.0
    cases = []
    for i in range(72):
        theta = rng.uniform(-np.pi, np.pi) if i % 3 else rng.normal(0, 0.2)
        scale = float(np.exp(rng.uniform(np.log(0.1), np.log(40))))
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        centre = rng.uniform(-200, 6000, 2) if i % 4 else rng.uniform(0, 640, 2)
        pts = template @ rot.T * scale + centre + rng.normal(0, 0.03 * scale, (5, 2))
        if i % 5 == 4:
            pts[:, 0] = 2 * centre[0] - pts[:, 0]
        cases.append(pts.astype(np.float32))
    t = np.linspace(-1, 1, 5)
    cases.append(np.stack([100 + 30 * t, 200 + 10 * t], 1).astype(np.float32))            # collinear
    cases.append(np.stack([400 - 25 * t ** 3, 50 + 45 * t ** 3], 1).astype(np.float32))   # collinear, uneven
    cases.append(np.stack([7 * t, -3 * t], 1).astype(np.float32))                          # collinear through 0
    cases.append((template * 0.9).astype(np.float32))                                      # around the origin
    return cases


def write_alignment(folder=None):
    """face/alignment.safetensors: kps [N,5,2] float32 and M<S> [N,2,3] float64 = face_align.estimate_norm(kps, S) for
    S in ALIGNMENT_SIZES (insightface 0.7.3 on scikit-image's SimilarityTransform.estimate, NumPy float32)."""
    import warnings
    from insightface.utils import face_align
    folder = folder or OUT
    kps = alignment_cases()
    store = Store()
    store["kps"] = np.stack(kps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)     # scikit-image 0.26: estimate() is deprecated, still used
        for size in ALIGNMENT_SIZES:
            store[f"M{size}"] = np.stack([face_align.estimate_norm(k, size) for k in kps]).astype(np.float64)
    store.save(os.path.join(folder, "alignment.safetensors"))
    return dict(cases=len(kps), sizes=list(ALIGNMENT_SIZES))


def versions():
    import cv2
    import insightface
    import onnx
    import onnxruntime
    import safetensors
    import skimage
    from importlib.metadata import version
    return dict(insightface=insightface.__version__, onnxruntime=onnxruntime.__version__, onnx=onnx.__version__,
                opencv=cv2.__version__, opencv_python_headless=version("opencv-python-headless"),
                numpy=np.__version__, torch=torch.__version__,
                safetensors=safetensors.__version__, scikit_image=skimage.__version__,
                python=sys.version.split()[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", metavar="DIR", help="write real-size random-weight graphs to DIR (not the repo)")
    ap.add_argument("--cv4-python", default=os.environ.get("CV4_PYTHON"),
                    help="an interpreter with opencv 4.x, to check the 4.x model of warpAffine and resize")
    ap.add_argument("--only-faceid24", action="store_true",
                    help="(re)write only packs/tiny_faceid24, faceid_e2e.safetensors and faceid_e2e.json")
    ap.add_argument("--only-alignment", action="store_true",
                    help="(re)write only alignment.safetensors (estimate_norm on random keypoint sets)")
    ap.add_argument("--only-aux", action="store_true",
                    help="(re)write only aux_*.onnx, ops_group_conv.onnx and ort_aux.safetensors (gen_face_aux.py)")
    args = ap.parse_args()
    if args.only_alignment:
        print(write_alignment())
        return
    if args.only_aux:
        from gen_face_aux import write_aux
        write_aux(OUT)
        return
    if args.real:
        assert not os.path.abspath(args.real).startswith(os.path.abspath(FIX)), "--real must not write into the repo"
        write_real(args.real)
        return

    import cv2
    import onnx

    if args.only_faceid24:
        imgs = {n: cv2.imread(os.path.join(OUT, f)) for n, (f, _) in make_images().items()}
        assert all(v is not None for v in imgs.values()), "test images missing: run without --only-faceid24"
        log = write_faceid24(imgs, args.cv4_python)
        print(json.dumps(log["run"], indent=1))
        return

    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    info = dict(versions=versions())

    # ---- test images, decoded as insightface users do (cv2.imread: BGR uint8, 3 channels)
    images = make_images()
    write_images(images, OUT)
    imgs = {n: cv2.imread(os.path.join(OUT, f)) for n, (f, _) in images.items()}
    e2e = Store()
    info["images"] = {}
    for n, (f, arr) in images.items():
        if n in ("b", "d"):               # JPEG and 16-bit PNG: the decodes worth comparing pixel by pixel
            e2e[f"{n}/decoded"] = imgs[n]
        info["images"][n] = dict(file=f, written_dtype=arr.dtype.name, written_shape=list(arr.shape),
                                 decoded_shape=list(imgs[n].shape), sha256_file=sha256(os.path.join(OUT, f)),
                                 sha256_decoded=digest(imgs[n]))
    d16 = images["d"][1]
    info["images"]["d"]["imread_16bit_rule"] = (
        "high byte (v >> 8)" if np.array_equal(imgs["d"], (d16 >> 8).astype(np.uint8)) else
        "round(v / 257)" if np.array_equal(imgs["d"], np.rint(d16 / 257).astype(np.uint8)) else "other")
    info["images"]["c"]["imread_gray_rule"] = "replicated to B,G,R" if all(
        np.array_equal(imgs["c"][:, :, i], images["c"][1]) for i in range(3)) else "other"

    # ---- models
    det, recs = build_models(imgs, info)
    packs = os.path.join(OUT, "packs")
    buffalo, antelope = os.path.join(packs, "tiny_buffalo_l"), os.path.join(packs, "tiny_antelopev2")
    os.makedirs(buffalo)
    os.makedirs(antelope)
    graphs = {}

    def save(model, path):
        onnx.save(model, path)
        graphs[os.path.relpath(path, OUT)] = dict(graph_summary(model), bytes=os.path.getsize(path))

    det_files = {"det_10g": os.path.join(buffalo, "det_10g.onnx"), "det_opset9": os.path.join(OUT, "det_opset9.onnx"),
                 "det_opset13": os.path.join(OUT, "det_opset13.onnx"), "det_bn": os.path.join(OUT, "det_bn.onnx")}
    save(export_detector(det, 11), det_files["det_10g"])
    save(export_detector(det, 9, dynamic=False), det_files["det_opset9"])
    save(export_detector(det, 13), det_files["det_opset13"])
    m_bn = export_detector(det, 11, training=torch.onnx.TrainingMode.PRESERVE)
    assert "BatchNormalization" in op_types(m_bn)
    save(m_bn, det_files["det_bn"])
    # the same detector file in the antelopev2 pack: a relative symlink (no second copy of the bytes)
    os.symlink(os.path.join("..", "tiny_buffalo_l", "det_10g.onnx"), os.path.join(antelope, "scrfd_10g_bnkps.onnx"))
    graphs["packs/tiny_antelopev2/scrfd_10g_bnkps.onnx"] = dict(symlink_to="packs/tiny_buffalo_l/det_10g.onnx")

    r50 = export_recognizer(recs["w600k_r50"])
    save(r50, os.path.join(buffalo, "w600k_r50.onnx"))
    r100 = export_recognizer(recs["glintr100"])
    # the typed float_data field instead of raw_data for every PRelu slope and the Gemm weight
    typed = [n.input[1] for n in r100.graph.node if n.op_type == "PRelu"] + \
            [n.input[1] for n in r100.graph.node if n.op_type == "Gemm"]
    save(to_float_data(r100, set(typed)), os.path.join(antelope, "glintr100.onnx"))

    # ---- ORT references: detector variants
    ort_det = Store()
    feeds = {}
    for tag, n, (w, h) in (("odd", "a", (112, 80)), ("even", "b", (128, 96))):
        canvas = letterbox(imgs[n], w, h)[0]
        blob = det_blob(canvas)
        assert np.array_equal(blob, cv2.dnn.blobFromImage(canvas, 1.0 / 128, (w, h), (127.5,) * 3, swapRB=True))
        feeds[tag] = blob
        ort_det[f"canvas_{tag}"] = canvas          # input.1 = det_blob(canvas), exactly
    info["ort_det"] = {}
    det_inputs = {"det_10g": ("odd", "even"), "det_opset13": ("odd", "even"), "det_bn": ("odd", "even"),
                  "det_opset9": ("odd", "even")}     # det_opset9 refuses "odd" (fixed 96x128 input): recorded
    for g, path in det_files.items():
        info["ort_det"][g] = {}
        for tag in det_inputs[g]:
            blob = feeds[tag]
            try:
                names, outs = ort_run(path, {"input.1": blob})
            except Exception as e:     # noqa: BLE001 - recorded: the Swift side must match this behaviour
                info["ort_det"][g][tag] = dict(error=str(e).splitlines()[0][:300])
                continue
            with torch.no_grad():
                ref = [t.numpy() for t in det(torch.from_numpy(blob))]
            for k, o in zip(DET_OUTPUT_KEYS, outs):
                ort_det[f"{g}/{tag}/{k}"] = o
            info["ort_det"][g][tag] = dict(output_names=names, shapes=[list(o.shape) for o in outs],
                                           max_abs_diff_vs_torch=float(max(np.abs(a - b).max() for a, b in
                                                                           zip(outs, ref))))
    ort_det.save(os.path.join(OUT, "ort_det.safetensors"))
    info["ort_det_keys"] = ort_det.shapes()

    # ---- the two packs through insightface
    e2e_info = insightface_e2e(packs, imgs, e2e, info)
    info["e2e"] = e2e_info

    # ---- ORT references: recognisers on 2 aligned crops of the det640 faces
    from insightface.utils import face_align
    ort_rec = Store()
    faces_a = e2e.t["tiny_buffalo_l/a/det640/kps"]
    faces_b = e2e.t["tiny_buffalo_l/b/det640/kps"]
    crops = [face_align.norm_crop(imgs["a"], faces_a[0], 112), face_align.norm_crop(imgs["b"], faces_b[0], 112)]
    x = arcface_blob(crops)
    assert np.array_equal(x, cv2.dnn.blobFromImages(crops, 1.0 / 127.5, (112, 112), (127.5,) * 3, swapRB=True))
    ort_rec["crops_bgr"] = np.stack(crops)      # input.1 = arcface_blob(crops_bgr), exactly
    info["ort_iresnet"] = {}
    for name, rel in (("w600k_r50", "packs/tiny_buffalo_l/w600k_r50.onnx"),
                      ("glintr100", "packs/tiny_antelopev2/glintr100.onnx")):
        names, outs = ort_run(os.path.join(OUT, rel), {"input.1": x})
        ort_rec[f"{name}/output"] = outs[0]
        with torch.no_grad():
            ref = recs[name](torch.from_numpy(x)).numpy()
        info["ort_iresnet"][name] = dict(output_name=names[0], max_abs_diff_vs_torch=float(np.abs(outs[0] - ref).max()),
                                         output_abs_max=float(np.abs(outs[0]).max()))
    raw100 = export_recognizer(recs["glintr100"]).SerializeToString()
    assert np.array_equal(ort_run(raw100, {"input.1": x})[1][0], ort_rec.t["glintr100/output"])
    ort_rec.save(os.path.join(OUT, "ort_iresnet.safetensors"))
    info["ort_iresnet_keys"] = ort_rec.shapes()

    # ---- op micro graphs, fp16, and the broken / unsupported files
    ort_ops = Store()
    small = op_graphs()
    small.update(fp16_graphs())
    for name, (m, fd) in small.items():
        save(m, os.path.join(OUT, name + ".onnx"))
        names, outs = ort_run(os.path.join(OUT, name + ".onnx"), fd)
        for k, v in fd.items():
            ort_ops[f"{name}/in/{k}"] = v
        for k, v in zip(names, outs):
            ort_ops[f"{name}/out/{k}"] = v
    ort_ops.save(os.path.join(OUT, "ort_ops.safetensors"))
    info["ort_ops_keys"] = ort_ops.shapes()
    save(unsupported_graph(), os.path.join(OUT, "unsupported_op.onnx"))
    save(external_data_graph(), os.path.join(OUT, "external_data.onnx"))
    with open(os.path.join(OUT, "ops_conv.onnx"), "rb") as fh:
        whole = fh.read()
    write_bytes(os.path.join(OUT, "truncated.onnx"), whole[:len(whole) // 2])
    graphs["truncated.onnx"] = dict(first_bytes_of="ops_conv.onnx", bytes=len(whole) // 2, of=len(whole))
    for name in ("external_data", "unsupported_op"):
        try:
            ort_session(os.path.join(OUT, name + ".onnx"))
            graphs[name + ".onnx"]["onnxruntime"] = "loads"
        except Exception as e:     # noqa: BLE001
            msg = str(e).splitlines()[0].replace(OUT, "<fixtures>")
            graphs[name + ".onnx"]["onnxruntime"] = "error: " + msg[:240]
    try:
        onnx.load(os.path.join(OUT, "truncated.onnx"))
        graphs["truncated.onnx"]["onnx_load"] = "loads"
    except Exception as e:     # noqa: BLE001
        graphs["truncated.onnx"]["onnx_load"] = "error: " + str(e).splitlines()[0][:200]

    # ---- OpenCV bit-exactness fixtures
    extra = {"a": [(112, 80)], "b": [(128, 96)]}
    rin = resize_inputs(imgs, extra)
    win = warp_inputs()
    cv4 = None
    if args.cv4_python:
        cv4 = cv4_check(args.cv4_python, {n: os.path.join(OUT, f) for n, (f, _) in images.items()}, rin, win)
        info["cv4_checked"] = dict(version=cv4["version"], imread_identical={
            n: cv4["imread"][n] == info["images"][n]["sha256_decoded"] for n in images})
    rs, ws = Store(), Store()
    info["cv_resize"], info["cv_warp"] = {}, {}
    resize_fixtures(rin, rs, info["cv_resize"], cv4)
    warp_fixtures(win, ws, info["cv_warp"], cv4)
    rs.save(os.path.join(OUT, "cv_resize.safetensors"))
    ws.save(os.path.join(OUT, "cv_warp.safetensors"))
    info["cv_resize_keys"] = rs.shapes()
    info["cv_warp_keys"] = ws.shapes()

    # insightface's letterbox arithmetic (float64 division then int() truncation; det_scale from the height)
    pairs = [(29, 40), (58, 80), (87, 120), (53, 80), (200, 150), (120, 260), (96, 128), (144, 112), (1920, 1080),
             (1080, 1920), (512, 512), (768, 512), (3024, 4032), (4032, 3024), (640, 427), (427, 640), (10, 1000)]
    table = []
    for w, h in pairs:
        for S in (640, 320):
            dummy = np.zeros((h, w, 3), np.uint8)
            _, _, det_scale, (nw, nh) = letterbox(dummy, S, S)
            exact = (S, S * h // w) if h / w <= 1 else (S * w // h, S)
            table.append(dict(image_wh=[w, h], det_size=S, resized_wh=[nw, nh], det_scale=det_scale,
                              exact_integer_wh=list(exact)))
    info["letterbox_arithmetic"] = table

    e2e.save(os.path.join(OUT, "e2e.safetensors"))
    info["e2e_keys"] = e2e.shapes()
    info["alignment"] = write_alignment()
    write_faceid24(imgs, args.cv4_python)      # its own files only (not in reference.json)
    info["graphs"] = graphs
    info["dims"] = dict(detector=DET_TINY, w600k_r50=R50_TINY, glintr100=R100_TINY, embedding=EMBED,
                        strides=list(STRIDES), anchors=ANCHORS)
    with open(os.path.join(OUT, "reference.json"), "w") as fh:
        json.dump(info, fh, indent=1, sort_keys=True)
        fh.write("\n")
    from gen_face_aux import write_aux      # its own seeds; after reference.json, which does not list these files
    write_aux(OUT, log=None)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs
                if not os.path.islink(os.path.join(dp, f)))
    print(f"wrote {OUT}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
