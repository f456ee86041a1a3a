#!/usr/bin/env python3
"""Golden token ids for Tests/TokenizerTests, from the pinned transformers CLIPTokenizer.

Run from the repository root with the reference venv:

    tools/reference/.venv/bin/python tools/reference/gen_tokenizer_fixtures.py

Loads each tokenizer folder with `CLIPTokenizer.from_pretrained(folder)`, exactly as diffusers'
StableDiffusionPipeline loads its `tokenizer/` (transformers 5 builds it on the `tokenizers`
backend), and writes into Tests/Fixtures/tokenizer/:
  tiny/                   the tiny 1000-entry tokenizer folder (clip_vocab.write_tiny_tokenizer)
  tiny-pad-bang/          the same vocabulary with an SD2-style config that pads with "!"
  sd15.json, tiny.json, tiny-pad-bang.json
                          per prompt: untruncated ids (bos/eos included), the ids of diffusers'
                          encode_prompt call (padding="max_length", truncation=True) and its
                          attention mask, diffusers' truncation check with the removed text and
                          the warning it logs, and `tokenizer.decode(ids)`.
Deterministic: fixed prompts, no randomness, sorted JSON keys.
"""

import json
import pathlib
import shutil
import sys

import diffusers
import transformers
from transformers import CLIPTokenizer

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import clip_vocab  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "tokenizer"

LONG = (
    "a highly detailed digital painting of an ancient castle on a cliff above a stormy sea, "
    "dramatic lighting, volumetric clouds, golden hour, intricate stonework, ivy covered walls, "
    "flock of birds, lighthouse in the distance, cinematic composition, ultra wide angle, "
    "8k resolution, trending on artstation, by greg rutkowski and alphonse mucha, "
    "masterpiece, best quality, sharp focus, octane render, unreal engine 5"
)

PROMPTS = [
    "a photo of a cat",
    "A PHOTO OF A CAT",
    "Hello, World!",
    "hello!!! what??? ...yes",
    "1080p",
    "3.14",
    "resolution 1920x1080, 60fps, 4k, 8K UHD",
    "café crème brûlée, naïve façade",
    "e\u0301cole cafe\u0301",
    "İstanbul and ΣΊΣΥΦΟΣ, οδος ΟΔΟΣ",
    "日本語のテキスト",
    "中文提示词：一只猫，高清",
    "Привет, мир! Москва",
    "مرحبا بالعالم",
    "a\u0308\u0301 q\u0323\u0307 n\u0303",
    "emoji 😀🎨🔥 and 👩‍👩‍👧 family 🇫🇷 flag",
    "don't",
    "it's",
    "we'll",
    "they're, I've, I'm, he'd, you'RE, IT'S",
    "don’t it’s “quoted” ‘single’",
    "'s 'S 'stop' '' ''s !'s",
    "tabs\tand\nnewlines\r\nhere",
    "   leading and trailing   ",
    "non\u00a0breaking\u2009thin\u3000ideographic\u202fnarrow",
    "&amp; &lt;b&gt; &quot;quoted&quot; &#39;",
    "<|endoftext|>",
    "before<|endoftext|>after",
    "<|startoftext|>start",
    "<|ENDOFTEXT|> upper <|StartOfText|>",
    "x <|endoftext|>\u0301 y",
    "",
    "   ",
    "((masterpiece)), [best quality], {ultra-detailed}, <lora:foo:0.8>",
    "ﬁne ligature ﬀ Ⅻ ² ½ ① ٣",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "Ǆ ǅ ǆ titlecase ẞ ß",
    "zero\u200bwidth joiner\u200d and soft\u00adhyphen \ufeffbom",
    "control \u0001\u001f chars \u007f del \u0085nel \u2028ls",
    "Ω Å K",
    "한국어 텍스트 \u1112\u1161\u11ab",
    "क्षत्रिय हिन्दी",
    "x" * 300,
    "a.b.c...d---e___f",
    "C++ & C# @user #hashtag $100 50% ~tilde `code` |pipe| \\backslash/",
    "8K UHD, octane render, trending on artstation, by greg rutkowski",
    "\u0130\u0049\u0131 turkish",
    "\U00011935\U00011930 \U00011938 dives akuru",
    "\U00010940\U00010941 unicode 17",
    # NFC edges: a mark newer than the reference's Unicode 9.0 tables (U+1AC4) stops reordering;
    # Tibetan decompositions; Kannada two-step composition; an astral starter before U+0CD5.
    "i\u05af\u1ac4\u3099 \u0326\u0f75\u0301\u034f \u0cca\u0cd5 \U00010cc6\u0cd5",
    "ᏣᎳᎩ cherokee",
    "hello<|endoftext|> world <|endoftext|><|endoftext|>",
    "a " * 75,
    "a " * 76,
    LONG,
    "日本語" * 30,
    "Très ÉLÉGANT dîner à Paris — 10€ (€10) № 5 ™ ©",
]


def case(tok: CLIPTokenizer, prompt: str) -> dict:
    max_length = tok.model_max_length
    full = tok(prompt).input_ids
    assert tok(prompt, add_special_tokens=False).input_ids == full[1:-1]
    call = tok(prompt, padding="max_length", max_length=max_length, truncation=True)
    # diffusers StableDiffusionPipeline.encode_prompt's truncation check, line for line.
    untruncated = tok(prompt, padding="longest").input_ids
    truncated = len(untruncated) >= len(call.input_ids) and untruncated != call.input_ids
    removed = tok.batch_decode([untruncated[max_length - 1 : -1]]) if truncated else None
    warning = (
        "The following part of your input was truncated because CLIP can only handle sequences up to"
        f" {max_length} tokens: {removed}"
        if truncated
        else None
    )
    return {
        "prompt": prompt,
        "ids": full,
        "tokens": tok.convert_ids_to_tokens(full),
        "padded_ids": call.input_ids,
        "attention_mask": call.attention_mask,
        "truncated": truncated,
        "removed_text": removed[0] if removed else None,
        "warning": warning,
        "decoded": tok.decode(full),
    }


def write_goldens(name: str, folder: pathlib.Path) -> None:
    tok = CLIPTokenizer.from_pretrained(str(folder))
    cases = [case(tok, p) for p in PROMPTS]
    doc = {
        "reference": f"transformers {transformers.__version__} CLIPTokenizer.from_pretrained, as diffusers "
        f"{diffusers.__version__} StableDiffusionPipeline loads it",
        "folder": str(folder.relative_to(ROOT)),
        "model_max_length": tok.model_max_length,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
        "unk_token_id": tok.unk_token_id,
        "vocab_size": len(tok),
        "cases": cases,
    }
    lines = [json.dumps(c, sort_keys=True) for c in cases]
    head = json.dumps({k: v for k, v in doc.items() if k != "cases"}, indent=1, sort_keys=True)
    text = head[:-2] + ',\n "cases": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"
    assert json.loads(text) == doc
    (OUT / f"{name}.json").write_text(text, encoding="utf-8")
    truncated = sum(c["truncated"] for c in cases)
    print(f"{name}.json: {len(cases)} prompts ({truncated} truncated), pad id {tok.pad_token_id}")


def write_pad_bang(folder: pathlib.Path) -> None:
    """The tiny tokenizer with stable-diffusion-2's special-token settings: pads with "!"."""
    clip_vocab.write_tiny_tokenizer(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["pad_token"] = "!"
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    stm = json.loads((folder / "special_tokens_map.json").read_text(encoding="utf-8"))
    stm["pad_token"] = "!"
    (folder / "special_tokens_map.json").write_text(json.dumps(stm, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for sub in ("tiny", "tiny-pad-bang"):
        if (OUT / sub).exists():
            shutil.rmtree(OUT / sub)
    clip_vocab.write_tiny_tokenizer(OUT / "tiny")
    write_pad_bang(OUT / "tiny-pad-bang")
    write_goldens("sd15", clip_vocab.BUNDLED)
    write_goldens("tiny", OUT / "tiny")
    write_goldens("tiny-pad-bang", OUT / "tiny-pad-bang")


if __name__ == "__main__":
    main()
