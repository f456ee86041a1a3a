"""Golden PyTorch checkpoints for the Weights TorchCheckpoint reader tests.

Writes into Tests/Fixtures/torch/:
  ip-adapter-plus.bin          torch.save({"image_proj": Resampler.state_dict(),
                               "ip_adapter": ModuleList.state_dict()}) as IP-Adapter does: nested
                               OrderedDict state dicts (with their `_metadata`, set by BUILD),
                               fp32 + fp16 mixed
  ip-adapter-plus.safetensors  the same tensors with flattened keys (safetensors.torch.save_file)
  sd-shaped.ckpt               {"state_dict": {...}, "epoch", "global_step", "callbacks":
                               {ModelCheckpoint: {...numpy scalar...}}, "hparams", ...} like an LDM
                               Lightning checkpoint; int64 position_ids, EMA keys, a fake
                               `pytorch_lightning...ModelCheckpoint` class and instance
  layouts.pt                   bf16, transposed, column slice, row view (storage offset), shared
                               storage, expand (stride 0), permuted fp16, scalar, empty,
                               nn.Parameter (+ one with state), tensor with a Python attribute
                               (_rebuild_from_type_v2), uint16 (_rebuild_tensor_v3 + UntypedStorage),
                               bool, int64, tensors in a list, plain metadata values
  layouts-p4.pt, layouts-p5.pt the same object with pickle protocols 4 and 5 (FRAME, MEMOIZE,
                               SHORT_BINUNICODE, STACK_GLOBAL); layouts.pt is torch's default protocol 2
  legacy.pt                    torch.save(..., _use_new_zipfile_serialization=False) (refused;
                               holds no tensors, as legacy storage keys are memory addresses)
  evil-*.pt                    hand-assembled malicious pickles inside a genuine torch zip
                               (torch._C.PyTorchFileWriter, the writer torch.save uses)
  expected.json                per good file: per tensor dtype, shape, stride, storage offset,
                               storage group (first key sharing the storage), contiguity, raw
                               row-major bytes (hex), Float32 bit patterns or integer values; the
                               flattened metadata; per malicious file the error the reader must raise

Reproducibility: torch.save output is byte-for-byte deterministic for a fixed archive name (the
file's stem): zip entries carry the fixed DOS date 1980-01-01 00:00 and `.data/serialization_id`
is derived from the content, not random. The script saves every checkpoint twice into different
directories and asserts identical bytes. Values come from fixed formulas, not RNG.

Run: tools/reference/.venv/bin/python tools/reference/gen_torch_checkpoint_fixtures.py
"""
import collections
import json
import os
import pickle
import struct
import sys
import tempfile
import types

import numpy as np
import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures", "torch")
NAMES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64",
    torch.bool: "BOOL",
}
FLOAT_TYPES = {torch.float32, torch.float16, torch.bfloat16}


def values(shape, dtype=torch.float32, scale=0.125, shift=0.0):
    """Deterministic, exactly representable values: (i * 37 mod 29 - 14) * scale + shift."""
    n = 1
    for d in shape:
        n *= d
    i = torch.arange(n, dtype=torch.float64)
    v = ((i * 37) % 29 - 14) * scale + shift
    return v.reshape(shape).to(dtype)


# ---------------------------------------------------------------------------------------------
# A fake PyTorch Lightning ModelCheckpoint class, so the pickle names
# pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint as real LDM checkpoints do.
def install_fake_lightning():
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    for name in names:
        sys.modules.setdefault(name, types.ModuleType(name))
    mod = sys.modules[names[-1]]

    class ModelCheckpoint:
        def __init__(self):
            self.monitor = None
            self.best_model_path = ""

    ModelCheckpoint.__module__ = mod.__name__
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    mod.ModelCheckpoint = ModelCheckpoint
    return ModelCheckpoint


# ---------------------------------------------------------------------------------------------
# IP-Adapter-plus shaped modules (tiny): a Resampler image projection and to_k_ip/to_v_ip layers.
class PerceiverAttention(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(dim)
        self.norm2 = torch.nn.LayerNorm(dim)
        self.to_q = torch.nn.Linear(dim, dim, bias=False)
        self.to_kv = torch.nn.Linear(dim, 2 * dim, bias=False)
        self.to_out = torch.nn.Linear(dim, dim, bias=False)


class Resampler(torch.nn.Module):
    def __init__(self, dim=8, queries=4, embed_dim=12, output_dim=6):
        super().__init__()
        self.latents = torch.nn.Parameter(torch.zeros(1, queries, dim))
        self.proj_in = torch.nn.Linear(embed_dim, dim)
        self.proj_out = torch.nn.Linear(dim, output_dim)
        self.norm_out = torch.nn.LayerNorm(output_dim)
        ff = torch.nn.Sequential(
            torch.nn.LayerNorm(dim), torch.nn.Linear(dim, 2 * dim, bias=False), torch.nn.GELU(),
            torch.nn.Linear(2 * dim, dim, bias=False))
        self.layers = torch.nn.ModuleList([torch.nn.ModuleList([PerceiverAttention(dim), ff])])


class NoParams(torch.nn.Module):
    pass


class IPAttn(torch.nn.Module):
    def __init__(self, cross_dim=6, hidden=10):
        super().__init__()
        self.to_k_ip = torch.nn.Linear(cross_dim, hidden, bias=False)
        self.to_v_ip = torch.nn.Linear(cross_dim, hidden, bias=False)


def fill_deterministically(module, seed_scale):
    with torch.no_grad():
        for k, (name, p) in enumerate(sorted(module.named_parameters())):
            p.copy_(values(p.shape, torch.float32, scale=seed_scale, shift=0.0625 * k))


def ip_adapter_plus():
    image_proj = Resampler()
    fill_deterministically(image_proj, 0.125)
    image_proj.layers.half()  # mixed: the perceiver layers fp16, the rest fp32
    adapters = torch.nn.ModuleList([NoParams(), IPAttn(), NoParams(), IPAttn()])
    fill_deterministically(adapters, 0.0625)
    adapters.half()
    with torch.no_grad():
        adapters[3].to_v_ip.float()  # one fp32 tensor among the fp16 adapter weights
    return {"image_proj": image_proj.state_dict(), "ip_adapter": adapters.state_dict()}


def sd_shaped(ModelCheckpoint):
    state = collections.OrderedDict()
    state["model.diffusion_model.input_blocks.0.0.weight"] = values((4, 4, 3, 3), scale=0.03125)
    state["model.diffusion_model.input_blocks.0.0.bias"] = values((4,), scale=0.5)
    state["model.diffusion_model.out.2.weight"] = values((4, 4, 3, 3), torch.float16, scale=0.25)
    state["first_stage_model.decoder.conv_in.weight"] = values((4, 2, 1, 1), scale=1.0)
    state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(7, dtype=torch.int64).unsqueeze(0)
    state["model_ema.decay"] = torch.tensor(0.9999, dtype=torch.float32)
    state["model_ema.num_updates"] = torch.tensor(1234, dtype=torch.int32)
    state["model_ema.diffusion_modelinput_blocks00weight"] = values((4, 4, 3, 3), scale=0.015625)
    callback = ModelCheckpoint()
    return {
        "epoch": 6,
        "global_step": 840000,
        "pytorch-lightning_version": "1.4.2",
        "state_dict": state,
        "callbacks": {ModelCheckpoint: {"monitor": None, "best_model_score": np.float64(0.125),
                                        "best_k": np.int64(-3), "dirpath": "/logs/checkpoints"}},
        "callback_instance": callback,
        "optimizer_states": [],
        "lr_schedulers": [],
        "hparams": {"lr": 1e-4, "betas": (0.9, 0.999), "name": "ldm", "flags": [True, False, None]},
    }


def layouts():
    base = values((4, 6), scale=0.5)
    shared = torch.arange(10, dtype=torch.float32) * 0.25 - 1.0
    param = torch.nn.Parameter(torch.tensor([0.25, -0.5]))
    param_state = torch.nn.Parameter(torch.tensor([1.5, 2.5, 3.5]))
    param_state.custom = "tag"
    tagged = torch.tensor([4.0, 5.0])
    tagged.note = 1
    d = collections.OrderedDict()
    d["bf16"] = torch.tensor([[1.0, -3.140625, 0.5], [65280.0, -0.0, 2.0 ** -10]], dtype=torch.bfloat16)
    d["base"] = base
    d["transposed"] = base.t()
    d["row_view"] = base[2]
    d["column_slice"] = base[:, 1:3]
    d["shared.first"] = shared[:6].view(2, 3)
    d["shared.second"] = shared[4:].view(3, 2)
    d["expanded"] = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float16).expand(2, 3)
    d["half_permuted"] = values((2, 3, 4), torch.float16, scale=0.5).permute(2, 0, 1)
    d["scalar"] = torch.tensor(2.5)
    d["empty"] = torch.zeros(0, 4)
    d["param"] = param
    d["param_with_state"] = param_state
    d["tagged"] = tagged
    d["uint16"] = torch.tensor([1, 65535, 300], dtype=torch.uint16)
    d["mask"] = torch.tensor([True, False, True])
    d["long"] = torch.tensor([[0, 1, 2, 1 << 40, -5]], dtype=torch.int64)
    d["layers"] = [values((2,), scale=1.0), values((3,), torch.float16, scale=2.0)]
    d["meta"] = {"int": 7, "neg": -3, "big": 1 << 40, "huge": 1 << 70, "float": 0.1, "string": "héllo",
                 "none": None, "true": True, "list": [1, 2.5, "x"], "tuple": (1, 2), "bytes": b"\x00\x01\xff",
                 "nested": {"deeper": {"n": 3}}}
    return d


# ---------------------------------------------------------------------------------------------
# Hand-assembled malicious pickles.
def p2(body):
    return b"\x80\x02" + body + b"."


def p4(body):
    return b"\x80\x04" + body + b"."


def short_unicode(s):
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def binunicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def stack_global(module, name):
    return short_unicode(module) + short_unicode(name) + b"\x93"


class Evil:
    """Pickles as os.system("echo pwned") — what an attacker embeds; never unpickled here."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


MALICIOUS = {
    # name: (pickle bytes, expected error)
    "evil-os-system.pt": (p2(b"cos\nsystem\n" + binunicode("echo pwned") + b"\x85R"),
                          {"error": "forbiddenGlobal", "module": "os", "name": "system"}),
    "evil-posix-system.pt": (p2(b"cposix\nsystem\n" + binunicode("echo pwned") + b"\x85R"),
                             {"error": "forbiddenGlobal", "module": "posix", "name": "system"}),
    "evil-builtins-eval.pt": (p2(b"cbuiltins\neval\n" + binunicode("1+1") + b"\x85R"),
                              {"error": "forbiddenGlobal", "module": "builtins", "name": "eval"}),
    "evil-py2-builtin-eval.pt": (p2(b"c__builtin__\neval\n" + binunicode("1+1") + b"\x85R"),
                                 {"error": "forbiddenGlobal", "module": "__builtin__", "name": "eval"}),
    "evil-subprocess-popen.pt": (p2(b"csubprocess\nPopen\n" + binunicode("id") + b"\x85R"),
                                 {"error": "forbiddenGlobal", "module": "subprocess", "name": "Popen"}),
    "evil-stack-global-eval.pt": (p4(stack_global("builtins", "eval") + short_unicode("1+1") + b"\x85R"),
                                  {"error": "forbiddenGlobal", "module": "builtins", "name": "eval"}),
    "evil-stack-global-popen.pt": (p4(stack_global("subprocess", "Popen") + short_unicode("id") + b"\x85R"),
                                   {"error": "forbiddenGlobal", "module": "subprocess", "name": "Popen"}),
    "evil-stack-global-os-system.pt": (p4(stack_global("os", "system") + short_unicode("id") + b"\x85R"),
                                       {"error": "forbiddenGlobal", "module": "os", "name": "system"}),
    # An allowlisted but non-callable global (a storage class) called by REDUCE.
    "evil-reduce-storage-class.pt": (p2(b"ctorch\nFloatStorage\n" + binunicode("x") + b"\x85R"),
                                     {"error": "callNotAllowed", "callee": "torch.FloatStorage"}),
    # REDUCE of a value that is not a global at all (a string naming a function).
    "evil-reduce-string.pt": (p2(binunicode("os.system") + binunicode("id") + b"\x85R"),
                              {"error": "callNotAllowed", "callee": "the string \"os.system\""}),
    # INST (protocol 0) naming os.system inline.
    "evil-inst.pt": (b"(ios\nsystem\n.", {"error": "forbiddenGlobal", "module": "os", "name": "system"}),
}


def write_torch_zip(path, pickle_bytes):
    """A genuine torch zip (same writer and records as torch.save) around `pickle_bytes`."""
    w = torch._C.PyTorchFileWriter(path)
    w.write_record("data.pkl", pickle_bytes, len(pickle_bytes))
    w.write_record(".format_version", b"1", 1)
    w.write_record(".storage_alignment", b"64", 2)
    w.write_record("byteorder", b"little", 6)
    w.write_end_of_file()


# ---------------------------------------------------------------------------------------------
# Expectations.
def flatten(obj, prefix, tensors, metadata, depth=0):
    """The reader's flattening rules (see StateDictFlattener.swift)."""
    def join(name):
        return name if not prefix else prefix + "." + name

    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str):
                name = k
            elif isinstance(k, bool):
                name = "True" if k else "False"
            elif isinstance(k, int):
                name = str(k)
            elif isinstance(k, type):
                name = k.__module__ + "." + k.__qualname__
            else:
                continue
            flatten(v, join(name), tensors, metadata, depth + 1)
    elif isinstance(obj, (list, tuple)):
        plain = plain_value(obj)
        if plain is not None:
            metadata[prefix] = plain
        else:
            for i, v in enumerate(obj):
                flatten(v, join(str(i)), tensors, metadata, depth + 1)
    else:
        plain = plain_value(obj)
        if plain is not None:
            metadata[prefix] = plain


def plain_value(v):
    """The JSON form of a metadata value, None if it holds a tensor or dict."""
    if v is None:
        return {"none": True}
    if isinstance(v, (bool, np.bool_)):
        return {"bool": bool(v)}
    if isinstance(v, (int, np.integer)):
        v = int(v)
        if -(1 << 63) <= v < (1 << 63):
            return {"int": str(v)}
        n = (v.bit_length() + 8) // 8  # bytes of a two's-complement LONG1
        return {"object": f"int of {n} bytes"}
    if isinstance(v, (float, np.floating)):
        return {"float_bits": "%016x" % struct.unpack("<Q", struct.pack("<d", float(v)))[0]}
    if isinstance(v, str):
        return {"string": v}
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, type):
        return {"object": v.__module__ + "." + v.__qualname__}
    if isinstance(v, (list, tuple)):
        out = []
        for item in v:
            p = plain_value(item)
            if p is None:
                return None
            out.append(p)
        return {"list": out}
    if isinstance(v, (torch.Tensor, dict)):
        return None
    return {"object": type(v).__module__ + "." + type(v).__qualname__}


def describe(tensors):
    out = {}
    storage_groups = {}
    for key, t in tensors.items():
        ptr = t.untyped_storage().data_ptr()
        group = storage_groups.setdefault(ptr, key)
        entry = {
            "dtype": NAMES[t.dtype],
            "shape": list(t.shape),
            "stride": list(t.stride()),
            "storage_offset": t.storage_offset(),
            "storage_group": group,
            "contiguous": t.is_contiguous(),
            "hex": t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex(),
        }
        if t.dtype in FLOAT_TYPES:
            entry["f32_bits"] = [int(b) & 0xFFFFFFFF for b in t.detach().to(torch.float32).contiguous().view(torch.int32).flatten().tolist()]
        else:
            entry["int_values"] = [str(int(v)) for v in t.flatten().tolist()]
        out[key] = entry
    return out


def save_deterministic(obj, name, **kwargs):
    """torch.save into OUT/name and into a scratch twin; assert the bytes are identical."""
    path = os.path.join(OUT, name)
    torch.save(obj, path, **kwargs)
    with tempfile.TemporaryDirectory() as scratch:
        twin = os.path.join(scratch, name)
        torch.save(obj, twin, **kwargs)
        with open(path, "rb") as a, open(twin, "rb") as b:
            assert a.read() == b.read(), f"{name}: torch.save is not deterministic"
    return path


def main():
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        if old.endswith((".pt", ".bin", ".ckpt", ".safetensors", ".json")):
            os.remove(os.path.join(OUT, old))
    ModelCheckpoint = install_fake_lightning()
    expected = {"files": {}, "malicious": {}}

    good = {
        "ip-adapter-plus.bin": (ip_adapter_plus(), {}),
        "sd-shaped.ckpt": (sd_shaped(ModelCheckpoint), {}),
        "layouts.pt": (layouts(), {}),
        "layouts-p4.pt": (layouts(), {"pickle_protocol": 4}),
        "layouts-p5.pt": (layouts(), {"pickle_protocol": 5}),
    }
    for name, (obj, kwargs) in good.items():
        path = save_deterministic(obj, name, **kwargs)
        # Our own trusted file: check it round-trips through torch.load.
        loaded = torch.load(path, weights_only=False)
        tensors, metadata = {}, {}
        flatten(obj, "", tensors, metadata)
        ltensors, lmetadata = {}, {}
        flatten(loaded, "", ltensors, lmetadata)
        assert sorted(tensors) == sorted(ltensors), name
        for k in tensors:
            assert torch.equal(tensors[k], ltensors[k]), (name, k)
        expected["files"][name] = {
            "archive": os.path.splitext(name)[0],
            "protocol": kwargs.get("pickle_protocol", 2),
            "tensors": describe(tensors),
            "metadata": metadata,
        }

    # The IP-Adapter content again as safetensors, flattened keys.
    flat = {}
    flatten(good["ip-adapter-plus.bin"][0], "", flat, {})
    save_file({k: v.contiguous() for k, v in flat.items()}, os.path.join(OUT, "ip-adapter-plus.safetensors"))

    # Legacy (pre-1.6) format: refused by the reader. No tensors in it: legacy storage keys are
    # memory addresses, which would make the bytes differ from run to run.
    save_deterministic({"epoch": 1, "note": "legacy"}, "legacy.pt", _use_new_zipfile_serialization=False)

    for name, (payload, error) in MALICIOUS.items():
        path = os.path.join(OUT, name)
        write_torch_zip(path, payload)
        # The reference refuses them too (weights_only never executes anything).
        try:
            torch.load(path, weights_only=True)
        except Exception as e:  # noqa: BLE001 - any refusal will do
            error["torch_error"] = type(e).__name__
        else:
            raise AssertionError(f"torch.load(weights_only=True) accepted {name}")
        expected["malicious"][name] = error

    # A realistic attack: a genuine state dict (torch.save) with os.system hidden in a value.
    evil_sd = collections.OrderedDict(weight=values((2, 2)), extra={"hook": Evil()})
    path = save_deterministic(evil_sd, "evil-reduce-in-state-dict.pt")
    try:
        torch.load(path, weights_only=True)
        raise AssertionError("torch.load accepted evil-reduce-in-state-dict.pt")
    except pickle.UnpicklingError as e:
        torch_error = type(e).__name__
    expected["malicious"]["evil-reduce-in-state-dict.pt"] = {
        "error": "forbiddenGlobal", "module": os.system.__module__, "name": "system", "torch_error": torch_error}

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, into {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
