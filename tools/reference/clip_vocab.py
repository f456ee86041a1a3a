#!/usr/bin/env python3
"""Rebuilds the CLIP BPE tokenizer folders from OpenAI's `bpe_simple_vocab_16e6.txt.gz`.

Run from the repository root with the reference venv:

    tools/reference/.venv/bin/python tools/reference/clip_vocab.py [--bpe PATH_TO_GZ]

1. Writes the full Stable Diffusion 1.5 tokenizer folder (the `tokenizer/` of the hub's SD1.5
   pipelines, identical in content to `openai/clip-vit-large-patch14`) into
   `Sources/Tokenizers/Resources/clip-vit-large-patch14/`: vocab.json (49408 entries),
   merges.txt (`#version: 0.2` + 48894 merges), tokenizer_config.json, special_tokens_map.json.
2. Offers `write_tiny_tokenizer(directory)` for the tiny random test models: a 1000-entry vocab
   (512 byte symbols, the first 486 merges, the 2 special tokens), built from the bundled files.

The BPE file is OpenAI CLIP's (MIT licence). Without `--bpe`, the script fetches the pinned
`open_clip_torch` wheel from PyPI with `pip download --no-deps` into a temporary folder (it is not
installed) and takes the file from it; the file's SHA-256 is checked either way. Output is
byte-for-byte deterministic.
"""

import argparse
import gzip
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "Sources" / "Tokenizers" / "Resources" / "clip-vit-large-patch14"

OPEN_CLIP_WHEEL = "open_clip_torch==3.3.0"
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
BPE_GZ_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
# OpenAI's tokenizer keeps 49152 - 256 - 2 merges (the file holds ~262k); HF kept the same.
MERGE_COUNT = 49152 - 256 - 2
TINY_MERGE_COUNT = 486


def byte_symbols() -> list[str]:
    """The GPT-2/CLIP byte -> printable character table, in vocabulary order.

    Printable Latin-1 bytes map to themselves; the other 68 bytes map to U+0100, U+0101, ...
    in byte order. The vocabulary lists the printable ones first (in byte order), then the rest.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    order = printable + [b for b in range(256) if b not in printable]
    return [table[b] for b in order]


def _special_token(content: str) -> dict:
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def tokenizer_config(model_max_length: int = 77) -> dict:
    """tokenizer_config.json as the hub's SD1.5 / openai/clip-vit-large-patch14 folders have it."""
    added = lambda c: {"__type": "AddedToken", **_special_token(c)}  # noqa: E731
    return {
        "add_prefix_space": False,
        "bos_token": added(BOS),
        "do_lower_case": True,
        "eos_token": added(EOS),
        "errors": "replace",
        "model_max_length": model_max_length,
        "name_or_path": "openai/clip-vit-large-patch14",
        "pad_token": EOS,
        "special_tokens_map_file": "./special_tokens_map.json",
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": added(EOS),
    }


def special_tokens_map() -> dict:
    return {
        "bos_token": _special_token(BOS),
        "eos_token": _special_token(EOS),
        "pad_token": EOS,
        "unk_token": _special_token(EOS),
    }


def _dump_json(path: pathlib.Path, obj, indent=2) -> None:
    text = json.dumps(obj, indent=indent, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")


def write_folder(directory, merges: list[tuple[str, str]]) -> None:
    """Writes a CLIP tokenizer folder whose vocabulary is built from `merges` the way HF did."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise SystemExit("duplicate vocabulary entries")
    # One line, ids in order: small and diff-friendly enough, and JSON all the same.
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _dump_json(directory / "tokenizer_config.json", tokenizer_config())
    _dump_json(directory / "special_tokens_map.json", special_tokens_map())


def read_bpe_merges(gz_path) -> list[tuple[str, str]]:
    """The merges OpenAI's SimpleTokenizer uses: lines 1 ..< 48895 of the file (line 0 is a header)."""
    raw = pathlib.Path(gz_path).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != BPE_GZ_SHA256:
        raise SystemExit(f"{gz_path}: unexpected SHA-256 {digest}")
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : MERGE_COUNT + 1]]
    assert all(len(m) == 2 for m in merges) and len(merges) == MERGE_COUNT
    return merges


def read_merges_txt(path) -> list[tuple[str, str]]:
    lines = pathlib.Path(path).read_text(encoding="utf-8").split("\n")
    return [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]


def fetch_bpe(workdir: str) -> str:
    """Downloads the pinned open_clip_torch wheel (no install) and extracts the BPE file."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "-d", workdir, OPEN_CLIP_WHEEL],
        check=True,
    )
    wheel = next(p for p in os.listdir(workdir) if p.endswith(".whl"))
    with zipfile.ZipFile(os.path.join(workdir, wheel)) as zf:
        zf.extract(BPE_MEMBER, workdir)
    return os.path.join(workdir, BPE_MEMBER)


def write_full_tokenizer(gz_path, directory=BUNDLED) -> None:
    merges = read_bpe_merges(gz_path)
    write_folder(directory, merges)
    keep = pathlib.Path(directory) / ".keep"
    if keep.exists():
        keep.unlink()


def write_tiny_tokenizer(directory) -> None:
    """A 1000-entry CLIP tokenizer folder for tiny random test models.

    Vocabulary: the 512 byte symbols (bare, then with `</w>`), the first 486 merges of the real
    SD1.5 tokenizer, then `<|startoftext|>` (998) and `<|endoftext|>` (999); merges.txt holds
    those 486 merges. Configs as the full folder (model_max_length 77, pads with <|endoftext|>).
    Built from the bundled full folder, so no download is needed.
    """
    merges = read_merges_txt(BUNDLED / "merges.txt")[:TINY_MERGE_COUNT]
    write_folder(directory, merges)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bpe", help="path to bpe_simple_vocab_16e6.txt.gz (default: from PyPI wheel)")
    args = parser.parse_args()
    if args.bpe:
        write_full_tokenizer(args.bpe)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            write_full_tokenizer(fetch_bpe(tmp))
    vocab = json.loads((BUNDLED / "vocab.json").read_text(encoding="utf-8"))
    merges = read_merges_txt(BUNDLED / "merges.txt")
    print(f"wrote {BUNDLED.relative_to(ROOT)}: vocab {len(vocab)}, merges {len(merges)}")
    assert len(vocab) == 49408 and len(merges) == 48894


if __name__ == "__main__":
    main()
