"""The other three graphs of insightface's buffalo_l pack as tiny random-weight ONNX files, plus grouped convolutions in
isolation, and onnxruntime references for all four (used by gen_face.py; also runnable alone):

  tools/reference/.venv/bin/python tools/reference/gen_face_aux.py          # same as gen_face.py --only-aux

Writes into Tests/Fixtures/face/ (deterministic; about 0.3 MB; touches no other file there):
  aux_2d106det.onnx   stand-in for 2d106det.onnx (2-D 106-point landmarks)
  aux_1k3d68.onnx     stand-in for 1k3d68.onnx (3-D 68-point landmarks; 1103 x 3 = 3309 outputs)
  aux_genderage.onnx  stand-in for genderage.onnx (gender logits + age / 100)
  ops_group_conv.onnx depthwise 3x3 stride 1 (with bias) and stride 2 (no bias), group=2 4->6 channels
  ops_conv_add.onnx   Conv -> Add chains the engine fuses: a per-channel constant ([1,C,1,1], [C,1,1] on the left, [1])
                      folded into the bias (with and without a Relu after it), a full-size constant and a computed
                      residual added at run time
  ort_aux.safetensors <graph>/in/<input> (uint8 pixel values for the 192²/96² images), <graph>/out/<output> (graph = file name without .onnx), onnxruntime
                      CPUExecutionProvider, 1 thread; landmark / attribute inputs are integer-valued float32 in
                      [0, 255] (what insightface feeds them: cv2.dnn.blobFromImage with mean 0, std 1, RGB)

What the released files are (facts with their sources; "guess" where none was found):
  all three   MXNet models converted to ONNX: graph name "mxnet_converted_model" (2d106det, genderage), IR version 7
              (2d106det); input "data" [N, 3, S, S] whose batch dim is the string dim_param "None" (insightface's
              own log prints ['None', 3, 192, 192] / ['None', 3, 96, 96]), output "fc1" with a fixed batch of 1
              ([1, 212], [1, 3]); no initializer is listed as a graph input (genderage: graph.input is only
              "data"); insightface reads input mean 0 / std 1 for all three (the normalisation is in the graph).
              Opset: not found (IR 7 means onnx 1.7-1.9, whose default opsets are 12-14; 13 used here). Conv
              weights have no bias, BatchNormalization nodes are standalone (not folded into the convs), all convs
              have symmetric pads and no dilation (face-detect.cpp's interpreter reads pads[0] / strides[0], ignores
              dilations and matches onnxruntime bit for bit on 2d106det and 1k3d68).
  2d106det    MobileNet-0.5 with PReLU, 1.2M params (insightface model zoo); first nodes Sub "_minusscalar0" and
              Mul "_mulscalar0" (x - 127.5) * 0.0078125 with [1] initializers; conv_1 3->16 3x3 s2, 13 depthwise-
              separable blocks (depthwise 3x3 group=C, stride 2 at conv_3/5/7/13, pointwise 1x1; channels 32, 64,
              64, 128, 128, 256 x6, 512, 512), conv_15 full 3x3 s2 512->64, each conv + BN (eps 1e-3) + PRelu
              (slope an initializer, no Reshape node), flatten0, FullyConnected fc1 576 -> 212 (Gemm). Sources: an
              ncnn conversion of the same MXNet model (yangjian1218/face_landmark models/2d106det.param, its
              params sum to the zoo's 1.2M), mudler/face-detect.cpp (bit-exact port), a test on the real file
              asserting the first two node names, an inventory reading the real file (graph name, IR, shapes).
  genderage   MobileNet-0.25 (insightface zoo), 161 initializers, 102 nodes (mudler/face-detect.cpp tensor
              manifest and graph port): Sub(data, scalar_op1 [1]) -> Mul(scalar_op2 [1]); conv_1 3->16 3x3 s2;
              conv_2..conv_12 depthwise-separable (pointwise widths 16, 32, 32, 64, 64, 128 x6; depthwise stride 2
              at conv_3/5/7); two branches t0 / t1 from conv_12: conv_13_dw (s2) + conv_13 (->256), conv_14_dw +
              conv_14 (->256), GlobalAveragePool (3x3), Flatten, Gemm fullyconnected0 (256->2) / fullyconnected1
              (256->1), then Concat(axis 1) -> fc1 [1, 3]; Relu everywhere, BN eps 1e-3, conv without bias.
  1k3d68      ResNet-50 backbone, 34.2M params (insightface zoo), 143.6 MB; starts data -> Identity "id" ->
              BatchNormalization "bn_data" (the name insightface keys mean 0 / std 1 on), has a 3x3 MaxPool stem,
              BN eps 2e-5 (mudler/face-detect.cpp); output 3309 = 1103 x 3 (insightface keeps the last 68 rows).
              The block structure was not found: this stand-in follows MXNet's resnet.py v2 (pre-activation
              bottleneck, Relu, 1x1 projection shortcut from the unit's first BN+Relu) whose stem is exactly id /
              bn_data / conv0 7x7 s2 / bn0 / relu0 / MaxPool 3x3 s2, then bn1 / relu1 / GlobalAveragePool pool1 /
              flatten0 / fc1 (guess; face-detect.cpp calls it an IResNet, so PRelu blocks are possible too).
  exporter    guesses from MXNet 1.8's mx2onnx source: FullyConnected -> an unnamed Flatten + Gemm(transB=1,
              alpha=beta=1) (so flatten0 + FC gives two Flattens in a row), Conv / pooling / that Flatten
              unnamed, BN with epsilon and momentum=0.9 attributes, MaxPool with explicit ceil_mode=0, every
              initializer in the typed float_data field (make_tensor(raw=False)). PRelu slopes [1, C, 1, 1] (the
              file runs in onnxruntime, so they are not [C]; [C, 1, 1] is the other possibility).

The stand-ins keep that structure with tiny widths, all different (a transposed weight or a swapped branch cannot pass
by accident), the real input sizes and output widths, and the MXNet-style names (so insightface's Landmark /
Attribute classes read mean 0 / std 1 and the right task from them; checked here). Weights come from fixed seeds; BN
statistics are calibrated (float64) on random pixel batches, perturbed, and rounded to float16 values so the bytes do
not depend on the machine. onnxruntime is checked against a float64 torch forward of the same weights.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures", "face"))
F32 = np.float32
AUX_OPSET, AUX_IR = 13, 7          # IR 7 as 2d106det.onnx; the opset is a guess (see the docstring)

# Tiny widths (every one different; real widths in comments).
W_2D106 = dict(conv1=5,                                         # 16
               blocks=(6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18),   # 32 64 64 128 128 256x6 512 512
               conv15=4)                                        # 64 -> fc1 4*3*3 -> 212
DW_STRIDE_2D106 = {3: 2, 5: 2, 7: 2, 13: 2}                     # conv_N_dw with stride 2 (others 1)
W_GA = dict(conv1=5,                                            # 16
            blocks=(6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16),    # 16 32 32 64 64 128x6
            t0=(17, 18), t1=(19, 20))                           # 256 256 (both branches)
DW_STRIDE_GA = {3: 2, 5: 2, 7: 2}
W_3D68 = dict(stem=4,                                           # 64
              stages=((5, 8, 2), (9, 10, 1), (11, 12, 1), (13, 6, 1)))   # (bottleneck mid, out, units)
LMK_3D_ROWS = 1103                                              # 3309 outputs


def f16(a):
    """Round to float16-representable values (robust to last-bit differences of the calibration forward)."""
    return np.asarray(a, np.float64).astype(np.float16).astype(F32)


class Builder:
    """Records ONNX nodes / initializers (MXNet exporter style) and runs the same graph in float64 torch on a
    calibration batch, so each BatchNormalization gets statistics from its actual input."""

    def __init__(self, seed, x_cal, input_name="data"):
        self.rng = np.random.RandomState(seed)
        self.nodes, self.inits = [], {}
        self.v = {input_name: torch.from_numpy(np.asarray(x_cal, np.float64))}
        self.input_name = input_name
        self.scalar_idx = 0

    def _node(self, op, inputs, output, name=None, **attrs):
        from onnx import helper
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs) if name is not None
                          else helper.make_node(op, inputs, [output], **attrs))
        return output

    def _init(self, name, arr):
        assert name not in self.inits, name
        self.inits[name] = np.asarray(arr, F32)
        return name

    def t(self, name):                       # float64 torch value of an initializer (as stored: float32)
        return torch.from_numpy(self.inits[name].astype(np.float64))

    def scalar(self, x, op, value, mx_name, idx):
        """_minus_scalar / _mul_scalar: Sub / Mul with a [1] initializer "scalar_op<idx>" (MXNet node index)."""
        c = self._init(f"scalar_op{idx}", np.array([value], F32))
        self._node(op, [x, c], mx_name, name=mx_name)
        self.v[mx_name] = (self.v[x] - self.t(c)) if op == "Sub" else (self.v[x] * self.t(c))
        return mx_name

    def identity(self, x, name):
        self._node("Identity", [x], name, name=name)
        self.v[name] = self.v[x]
        return name

    def conv(self, x, name, cout, k, stride, pad, group=1, gain=1.0):
        cin = self.v[x].shape[1]
        fan_in = cin // group * k * k
        w = self.rng.randn(cout, cin // group, k, k) * gain * (2.0 / fan_in) ** 0.5
        wn = self._init(name + "_weight", w)
        self._node("Conv", [x, wn], name, kernel_shape=[k, k], pads=[pad] * 4, strides=[stride, stride], group=group)
        self.v[name] = F.conv2d(self.v[x], self.t(wn), stride=stride, padding=pad, groups=group)
        return name

    def bn(self, x, name, eps, fix_gamma=False):
        val = self.v[x]
        dims = [0] + list(range(2, val.dim()))
        mean = val.mean(dim=dims).numpy()
        var = val.var(dim=dims, unbiased=False).numpy()
        c = mean.shape[0]
        gamma = np.ones(c) if fix_gamma else 0.7 + 0.6 * self.rng.rand(c)
        beta = self.rng.randn(c) * 0.1
        mm = f16(mean + self.rng.randn(c) * 0.05 * np.sqrt(var))
        mv = f16(np.maximum(var, 1e-2) * (0.85 + 0.3 * self.rng.rand(c)))
        names = [self._init(name + s, a) for s, a in (("_gamma", gamma), ("_beta", beta), ("_moving_mean", mm),
                                                       ("_moving_var", mv))]
        self._node("BatchNormalization", [x] + names, name, name=name, epsilon=eps, momentum=0.9)
        shp = [1, c] + [1] * (val.dim() - 2)
        g, b, m, v = (self.t(n).reshape(shp) for n in names)
        self.v[name] = (val - m) / torch.sqrt(v + torch.tensor(eps, dtype=torch.float32).double()) * g + b
        return name

    def prelu(self, x, name):
        c = self.v[x].shape[1]
        s = self._init(name + "_gamma", (0.1 + 0.3 * self.rng.rand(c)).reshape(1, c, 1, 1))
        self._node("PRelu", [x, s], name, name=name)
        val = self.v[x]
        self.v[name] = torch.where(val >= 0, val, val * self.t(s))
        return name

    def relu(self, x, name):
        self._node("Relu", [x], name, name=name)
        self.v[name] = torch.relu(self.v[x])
        return name

    def add(self, a, b, name):
        self._node("Add", [a, b], name, name=name)
        self.v[name] = self.v[a] + self.v[b]
        return name

    def maxpool(self, x, name, k, stride, pad):
        self._node("MaxPool", [x], name, kernel_shape=[k, k], pads=[pad] * 4, strides=[stride, stride], ceil_mode=0)
        self.v[name] = F.max_pool2d(self.v[x], k, stride, pad)
        return name

    def gap(self, x, name):
        self._node("GlobalAveragePool", [x], name)
        self.v[name] = self.v[x].mean(dim=(2, 3), keepdim=True)
        return name

    def flatten(self, x, name, named=True):
        self._node("Flatten", [x], name, name=name if named else None)
        self.v[name] = self.v[x].reshape(self.v[x].shape[0], -1)
        return name

    def fully_connected(self, x, name, nout, gain=1.0, bias_scale=0.05):
        """MXNet FullyConnected (flatten=True): an unnamed Flatten, then Gemm(transB=1) named like the layer."""
        flat = self.flatten(x, name + "_data_flattened", named=False)
        nin = self.v[flat].shape[1]
        w = self._init(name + "_weight", self.rng.randn(nout, nin) * gain / nin ** 0.5)
        b = self._init(name + "_bias", self.rng.randn(nout) * bias_scale)
        self._node("Gemm", [flat, w, b], name, name=name, alpha=1.0, beta=1.0, transA=0, transB=1)
        self.v[name] = self.v[flat] @ self.t(w).T + self.t(b)
        return name

    def concat(self, xs, name, axis):
        self._node("Concat", xs, name, name=name, axis=axis)
        self.v[name] = torch.cat([self.v[x] for x in xs], dim=axis)
        return name

    def model(self, input_hw, output, out_dim, doc):
        """graph "mxnet_converted_model": input [dim_param "None", 3, H, W], output [1, out_dim]; every initializer
        in the typed float_data field."""
        from onnx import TensorProto, helper
        inp = helper.make_tensor_value_info(self.input_name, TensorProto.FLOAT, ["None", 3, input_hw, input_hw])
        out = helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, out_dim])
        inits = [helper.make_tensor(k, TensorProto.FLOAT, list(a.shape), a.ravel().tolist(), raw=False)
                 for k, a in self.inits.items()]
        g = helper.make_graph(self.nodes, "mxnet_converted_model", [inp], [out], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", AUX_OPSET)], producer_name="gen_face_aux.py",
                              doc_string=doc)
        m.ir_version = AUX_IR
        import onnx
        onnx.checker.check_model(m)
        return m


def pixels(rng, n, size):
    """Integer-valued float32 pixel planes in [0, 255] (RGB, NCHW): smooth random fields plus noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, 3, size, size), F32)
    for i in range(n):
        for c in range(3):
            a, b, ph = rng.uniform(1, 5, 3)
            field = 128 + 80 * np.sin(a * 6.283 * xx + ph) * np.cos(b * 6.283 * yy) + rng.randn(size, size) * 25
            out[i, c] = np.clip(np.rint(field), 0, 255)
    return out


def build_2d106det(x_cal):
    b = Builder(2106, x_cal)
    x = b.scalar("data", "Sub", 127.5, "_minusscalar0", 1)
    x = b.scalar(x, "Mul", 0.0078125, "_mulscalar0", 2)

    def unit(x, name, cout, k, s, p, group=1):
        x = b.conv(x, name + "_conv2d", cout, k, s, p, group)
        x = b.bn(x, name + "_batchnorm", 1e-3)
        return b.prelu(x, name + "_relu")

    x = unit(x, "conv_1", W_2D106["conv1"], 3, 2, 1)
    for i, cout in enumerate(W_2D106["blocks"]):
        n = i + 2
        c = b.v[x].shape[1]
        x = unit(x, f"conv_{n}_dw", c, 3, DW_STRIDE_2D106.get(n, 1), 1, group=c)
        x = unit(x, f"conv_{n}", cout, 1, 1, 0)
    x = unit(x, "conv_15", W_2D106["conv15"], 3, 2, 1)
    x = b.flatten(x, "flatten0")
    x = b.fully_connected(x, "fc1", 212, gain=0.5)
    return b, "fc1", 212


def build_genderage(x_cal):
    b = Builder(3096, x_cal)
    x = b.scalar("data", "Sub", 127.5, "_minusscalar0", 1)
    x = b.scalar(x, "Mul", 0.0078125, "_mulscalar0", 2)

    def unit(x, name, cout, k, s, p, group=1):
        x = b.conv(x, name + "_conv2d", cout, k, s, p, group)
        x = b.bn(x, name + "_batchnorm", 1e-3)
        return b.relu(x, name + "_relu")

    def sep(x, n, cout, stride):
        c = b.v[x].shape[1]
        x = unit(x, f"conv_{n}_dw", c, 3, stride, 1, group=c)
        return unit(x, f"conv_{n}", cout, 1, 1, 0)

    x = unit(x, "conv_1", W_GA["conv1"], 3, 2, 1)
    for i, cout in enumerate(W_GA["blocks"]):
        x = sep(x, i + 2, cout, DW_STRIDE_GA.get(i + 2, 1))
    heads = []
    for tag, (w13, w14), nout, fc in (("t0", W_GA["t0"], 2, "fullyconnected0"),
                                      ("t1", W_GA["t1"], 1, "fullyconnected1")):
        c = b.v[x].shape[1]
        y = unit(x, f"conv_13_dw_{tag}", c, 3, 2, 1, group=c)
        y = unit(y, f"conv_13_{tag}", w13, 1, 1, 0)
        y = unit(y, f"conv_14_dw_{tag}", w13, 3, 1, 1, group=w13)
        y = unit(y, f"conv_14_{tag}", w14, 1, 1, 0)
        y = b.gap(y, f"pool_{tag}")
        heads.append(b.fully_connected(y, fc, nout, gain=1.0, bias_scale=0.1))
    b.concat(heads, "fc1", 1)
    return b, "fc1", 3


def build_1k3d68(x_cal):
    b = Builder(1368, x_cal)
    eps = 2e-5
    x = b.identity("data", "id")
    x = b.bn(x, "bn_data", eps, fix_gamma=True)
    x = b.conv(x, "conv0", W_3D68["stem"], 7, 2, 3)
    x = b.bn(x, "bn0", eps)
    x = b.relu(x, "relu0")
    x = b.maxpool(x, "pooling0", 3, 2, 1)
    plus = 0
    for si, (mid, out, units) in enumerate(W_3D68["stages"]):
        for u in range(units):
            name = f"stage{si + 1}_unit{u + 1}"
            stride = 2 if (si > 0 and u == 0) else 1
            dim_match = u > 0
            a1 = b.relu(b.bn(x, name + "_bn1", eps), name + "_relu1")
            y = b.conv(a1, name + "_conv1", mid, 1, 1, 0)
            y = b.relu(b.bn(y, name + "_bn2", eps), name + "_relu2")
            y = b.conv(y, name + "_conv2", mid, 3, stride, 1)
            y = b.relu(b.bn(y, name + "_bn3", eps), name + "_relu3")
            y = b.conv(y, name + "_conv3", out, 1, 1, 0, gain=0.5)
            sc = x if dim_match else b.conv(a1, name + "_sc", out, 1, stride, 0)
            x = b.add(y, sc, f"_plus{plus}")
            plus += 1
    x = b.relu(b.bn(x, "bn1", eps), "relu1")
    x = b.gap(x, "pool1")
    x = b.flatten(x, "flatten0")
    x = b.fully_connected(x, "fc1", 3 * LMK_3D_ROWS, gain=2.0, bias_scale=0.02)
    return b, "fc1", 3 * LMK_3D_ROWS


def group_conv_graph():
    """Grouped convolutions in isolation (opset 11, the node form torch writes)."""
    import onnx
    from onnx import helper as h
    from onnx import numpy_helper
    rng = np.random.RandomState(11)
    rnd = lambda *s: rng.randn(*s).astype(F32)  # noqa: E731
    x = rnd(1, 4, 9, 11)
    inits = {"W_dw": rnd(4, 1, 3, 3), "B_dw": rnd(4), "W_dw_s2": rnd(4, 1, 3, 3), "W_g2": rnd(6, 2, 3, 3),
             "B_g2": rnd(6)}
    nodes = [
        h.make_node("Conv", ["X", "W_dw", "B_dw"], ["dw_s1_p1"], dilations=[1, 1], group=4, kernel_shape=[3, 3],
                    pads=[1, 1, 1, 1], strides=[1, 1]),
        h.make_node("Conv", ["dw_s1_p1", "W_dw_s2"], ["dw_s2_p1"], dilations=[1, 1], group=4, kernel_shape=[3, 3],
                    pads=[1, 1, 1, 1], strides=[2, 2]),
        h.make_node("Conv", ["X", "W_g2", "B_g2"], ["g2_4to6"], dilations=[1, 1], group=2, kernel_shape=[3, 3],
                    pads=[1, 1, 1, 1], strides=[1, 1]),
    ]
    outs = ["dw_s1_p1", "dw_s2_p1", "g2_4to6"]
    g = h.make_graph(nodes, "ops_group_conv", [h.make_tensor_value_info("X", onnx.TensorProto.FLOAT, list(x.shape))],
                     [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in outs],
                     [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 11)], producer_name="gen_face_aux.py")
    m.ir_version = 6
    inferred = onnx.shape_inference.infer_shapes(m)
    vi = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    del m.graph.output[:]
    m.graph.output.extend([vi[n] for n in outs])
    onnx.checker.check_model(m)
    ref = {"dw_s1_p1": F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(inits["W_dw"]).double(),
                                torch.from_numpy(inits["B_dw"]).double(), 1, 1, 1, 4)}
    ref["dw_s2_p1"] = F.conv2d(ref["dw_s1_p1"], torch.from_numpy(inits["W_dw_s2"]).double(), None, 2, 1, 1, 4)
    ref["g2_4to6"] = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(inits["W_g2"]).double(),
                              torch.from_numpy(inits["B_g2"]).double(), 1, 1, 1, 2)
    return m, {"X": x}, {k: v.numpy() for k, v in ref.items()}


def conv_add_graph():
    """Conv -> Add(constant or computed) [-> Relu] chains (the engine folds per-channel constants into the bias)."""
    import onnx
    import torch
    import torch.nn.functional as F
    from onnx import helper as h
    from onnx import numpy_helper
    rng = np.random.RandomState(12)
    rnd = lambda *s: rng.randn(*s).astype(F32)  # noqa: E731
    x = rnd(1, 3, 7, 10)
    inits = {"W_a": rnd(5, 3, 3, 3), "B_a": rnd(5), "A_chan": rnd(1, 5, 1, 1), "W_b": rnd(5, 3, 1, 1),
             "A_left": rnd(5, 1, 1), "A_one": rnd(1), "W_c": rnd(5, 3, 3, 3), "A_full": rnd(1, 5, 7, 10),
             "W_r": rnd(5, 3, 3, 3), "W_rr": rnd(5, 5, 3, 3)}
    nodes = [
        h.make_node("Conv", ["X", "W_a", "B_a"], ["ca"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        h.make_node("Add", ["ca", "A_chan"], ["ca_add"]),
        h.make_node("Relu", ["ca_add"], ["chan_relu"]),
        h.make_node("Conv", ["X", "W_b"], ["cb"], kernel_shape=[1, 1]),
        h.make_node("Add", ["A_left", "cb"], ["left_add"]),
        h.make_node("Conv", ["X", "W_c"], ["cc"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        h.make_node("Add", ["cc", "A_one"], ["cc_one"]),
        h.make_node("Conv", ["cc_one", "W_rr"], ["cd"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        h.make_node("Add", ["cd", "A_full"], ["full_add"]),
        h.make_node("Conv", ["X", "W_r"], ["ce"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        h.make_node("Add", ["ce", "chan_relu"], ["computed_add"]),
        h.make_node("Relu", ["computed_add"], ["computed_relu"]),
    ]
    outs = ["chan_relu", "left_add", "full_add", "computed_relu"]
    g = h.make_graph(nodes, "ops_conv_add", [h.make_tensor_value_info("X", onnx.TensorProto.FLOAT, list(x.shape))],
                     [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in outs],
                     [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)], producer_name="gen_face_aux.py")
    m.ir_version = 7
    inferred = onnx.shape_inference.infer_shapes(m)
    vi = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    del m.graph.output[:]
    m.graph.output.extend([vi[n] for n in outs])
    onnx.checker.check_model(m)
    t = {k: torch.from_numpy(v).double() for k, v in inits.items()}
    xd = torch.from_numpy(x).double()
    ref = {"chan_relu": F.relu(F.conv2d(xd, t["W_a"], t["B_a"], 1, 1) + t["A_chan"])}
    ref["left_add"] = t["A_left"] + F.conv2d(xd, t["W_b"])
    cc_one = F.conv2d(xd, t["W_c"], None, 1, 1) + t["A_one"]
    ref["full_add"] = F.conv2d(cc_one, t["W_rr"], None, 1, 1) + t["A_full"]
    ref["computed_relu"] = F.relu(F.conv2d(xd, t["W_r"], None, 1, 1) + ref["chan_relu"])
    return m, {"X": x}, {k: v.numpy() for k, v in ref.items()}


def ort_session(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def insightface_view(path):
    """What insightface 0.7.3's model router and classes make of a file: (class, taskname, mean, std, input)."""
    from insightface.model_zoo.model_zoo import ModelRouter
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        m = ModelRouter(path).get_model(providers=["CPUExecutionProvider"])
    return type(m).__name__, m.taskname, float(m.input_mean), float(m.input_std), list(m.input_shape)


def write_aux(out_dir=OUT, log=print):
    import onnx
    from safetensors.numpy import save_file
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.RandomState(20250)
    store = {}
    info = {}
    specs = (("aux_2d106det", build_2d106det, 192, ("Landmark", "landmark_2d_106")),
             ("aux_1k3d68", build_1k3d68, 192, ("Landmark", "landmark_3d_68")),
             ("aux_genderage", build_genderage, 96, ("Attribute", "genderage")))
    for name, build, size, expect in specs:
        x = pixels(rng, 1, size)                       # the reference input (batch 1, as insightface runs them)
        x_cal = np.concatenate([x, pixels(rng, 5, size)])
        b, out_name, out_dim = build(x_cal)
        m = b.model(size, out_name, out_dim, f"gen_face_aux.py: tiny random-weight stand-in for insightface "
                                              f"buffalo_l {name[4:]}.onnx")
        path = os.path.join(out_dir, name + ".onnx")
        onnx.save(m, path)
        s = ort_session(path)
        assert [i.name for i in s.get_inputs()] == ["data"] and s.get_inputs()[0].shape == ["None", 3, size, size]
        names = [o.name for o in s.get_outputs()]
        assert names == [out_name]
        y = s.run(names, {"data": x})[0]
        ref = b.v[out_name][:1].numpy()
        err = float(np.abs(y - ref).max() / max(1e-6, np.abs(ref).max()))
        assert y.shape == (1, out_dim) and err < 1e-4, (name, y.shape, err)
        view = insightface_view(path)
        assert view[:4] == expect + (0.0, 1.0), (name, view)
        assert np.array_equal(x, np.round(x)) and x.min() >= 0 and x.max() <= 255
        store[f"{name}/in/data"] = x.astype(np.uint8)   # whole pixel values: stored as uint8 (4× smaller)
        store[f"{name}/out/{out_name}"] = y
        counts = {}
        for n in m.graph.node:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
        info[name] = dict(bytes=os.path.getsize(path), nodes=len(m.graph.node), initializers=len(m.graph.initializer),
                          op_types=dict(sorted(counts.items())), rel_err_vs_torch64=err,
                          out_abs_max=float(np.abs(y).max()), insightface=view)
    for name, build in (("ops_group_conv", group_conv_graph), ("ops_conv_add", conv_add_graph)):
        m, feeds, ref = build()
        path = os.path.join(out_dir, name + ".onnx")
        onnx.save(m, path)
        s = ort_session(path)
        names = [o.name for o in s.get_outputs()]
        outs = s.run(names, feeds)
        for k, v in feeds.items():
            store[f"{name}/in/{k}"] = v
        for k, v in zip(names, outs):
            assert np.abs(v - ref[k]).max() < 1e-4, k
            store[f"{name}/out/{k}"] = v
        info[name] = dict(bytes=os.path.getsize(path), outputs={k: list(v.shape) for k, v in zip(names, outs)})
    save_file(dict(sorted(store.items())), os.path.join(out_dir, "ort_aux.safetensors"))
    os.chmod(os.path.join(out_dir, "ort_aux.safetensors"), 0o644)
    info["ort_aux.safetensors"] = dict(bytes=os.path.getsize(os.path.join(out_dir, "ort_aux.safetensors")),
                                       keys={k: list(v.shape) for k, v in sorted(store.items())})
    if log:
        import json
        log(json.dumps(info, indent=1))
    return info


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(__doc__)
    write_aux()
