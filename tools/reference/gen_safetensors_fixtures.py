"""Golden safetensors files for the Weights reader/writer tests.

Writes into Tests/Fixtures/safetensors/:
  mixed.safetensors     F32 / F16 / BF16 / I64 tensors (incl. scalar, empty, special values,
                        a non-ASCII name) with metadata {"format": "pt"}
  integers.safetensors  one tensor of each integer/bool/F64/FP8 type, no metadata
  empty.safetensors     no tensors, no metadata
  expected.json         per file: metadata and, per tensor, dtype, shape, raw bytes (hex),
                        Float32 bit patterns (float types) or integer values as decimal strings

Deterministic: fixed values, at most one metadata key (the Rust writer emits metadata keys in
random HashMap order). Run: tools/reference/.venv/bin/python tools/reference/gen_safetensors_fixtures.py
"""
import json
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures", "safetensors")
NAMES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64",
    torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3",
}
FLOAT_TYPES = {torch.float32, torch.float16, torch.bfloat16}


def mixed():
    inf, nan = float("inf"), float("nan")
    return {
        "text.weight": torch.tensor([[1.5, -0.0, nan], [inf, 1e-45, -3.25]], dtype=torch.float32),
        "unet.half": torch.tensor([1.0, -0.0, 65504.0, 5.960464477539063e-08, -inf], dtype=torch.float16),
        "vae.bf16": torch.tensor([[1.0, -3.140625], [nan, 1e38]], dtype=torch.bfloat16),
        "position_ids": torch.tensor([[0, 1, 2, 3, 4, 5, 6, 2**40]], dtype=torch.int64),
        "scalar": torch.tensor(42.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float16),
        "z\u00e9": torch.tensor([7.0], dtype=torch.float32),
    }


def integers():
    return {
        "i32": torch.tensor([-1, 0, 2**31 - 1], dtype=torch.int32),
        "u8": torch.tensor([0, 1, 128, 255], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True], dtype=torch.bool),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "i16": torch.tensor([-32768, 12345], dtype=torch.int16),
        "u16": torch.tensor([0, 65535], dtype=torch.uint16),
        "u32": torch.tensor([4294967295], dtype=torch.uint32),
        "u64": torch.tensor([1, 2**63], dtype=torch.uint64),
        "f64": torch.tensor([0.1, -2.0], dtype=torch.float64),
        "fp8": torch.tensor([0.5, -448.0], dtype=torch.float8_e4m3fn),
    }


def describe(t):
    entry = {
        "dtype": NAMES[t.dtype],
        "shape": list(t.shape),
        "hex": t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex(),
    }
    if t.dtype in FLOAT_TYPES:
        entry["f32_bits"] = [int(b) & 0xFFFFFFFF for b in t.to(torch.float32).view(torch.int32).flatten().tolist()]
    elif t.dtype != torch.float64 and t.dtype != torch.float8_e4m3fn:
        entry["int_values"] = [str(int(v)) for v in t.flatten().tolist()]  # strings: U64 exceeds Int64
    return entry


def main():
    os.makedirs(OUT, exist_ok=True)
    files = {
        "mixed.safetensors": (mixed(), {"format": "pt"}),
        "integers.safetensors": (integers(), None),
        "empty.safetensors": ({}, None),
    }
    expected = {}
    for name, (tensors, metadata) in files.items():
        save_file(tensors, os.path.join(OUT, name), metadata=metadata)
        expected[name] = {
            "metadata": metadata,
            "tensors": {k: describe(v) for k, v in tensors.items()},
        }
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=1, sort_keys=True, ensure_ascii=True)
        f.write("\n")


if __name__ == "__main__":
    main()
