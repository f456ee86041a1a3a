#!/usr/bin/env python3
"""Regenerates the committed seed corpora Fuzz/Corpus/<target>/ from the tiny test fixtures.

Run from anywhere: python3 Fuzz/tools/make-seeds.py. Deterministic; only the standard library.
The input formats (leading selector byte, part separator) are those of Fuzz/Sources/IPAdapterFuzz.
"""
import json
import os
import re
import shutil
import zipfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "Tests", "Fixtures")
CONFIGS = os.path.join(ROOT, "Sources", "Pipelines", "Resources", "configs")
OUT = os.path.join(ROOT, "Fuzz", "Corpus")
DICT = os.path.join(ROOT, "Fuzz", "Dictionaries")
SEP = b"\0--part--\0"


def read(*parts):
    with open(os.path.join(*parts), "rb") as f:
        return f.read()


def write(target, name, data):
    folder = os.path.join(OUT, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)

    # safetensors: whole files.
    for name in ["empty", "integers", "mixed"]:
        write("safetensors", name + ".safetensors", read(FIX, "safetensors", name + ".safetensors"))
    write("safetensors", "ip-adapter-plus.safetensors", read(FIX, "torch", "ip-adapter-plus.safetensors"))

    # torch: mode 0 = whole file, mode 1 = data.pkl + storage records (the harness zips them).
    for name in ["layouts.pt", "sd-shaped.ckpt", "legacy.pt", "evil-reduce-in-state-dict.pt", "evil-stack-global-eval.pt"]:
        write("torch", "file-" + name, b"\x00" + read(FIX, "torch", name))
    for name in ["layouts.pt", "layouts-p4.pt", "layouts-p5.pt", "sd-shaped.ckpt", "ip-adapter-plus.bin", "evil-inst.pt"]:
        z = zipfile.ZipFile(os.path.join(FIX, "torch", name))
        names = z.namelist()
        archive = names[0].split("/")[0]
        pickle = z.read(archive + "/data.pkl")
        keys = sorted((n[len(archive) + 6:] for n in names if n.startswith(archive + "/data/")), key=int)
        assert keys == [str(i) for i in range(len(keys))], (name, keys)
        records = [z.read(archive + "/data/" + k) for k in keys]
        write("torch", "pickle-" + name, b"\x01" + SEP.join([pickle] + records))

    # config: selector byte (UNet 0, VAE 1, ControlNet 2, CLIP text 3, CLIP vision 4, scheduler 5, image processor 6).
    configs = [
        (0, "unet-tiny", (FIX, "tiny-sd15", "unet", "config.json")),
        (0, "unet-tiny-inpainting", (FIX, "tiny-sd15-inpainting", "unet", "config.json")),
        (0, "unet-sd15", (CONFIGS, "stable-diffusion-v1-5", "unet", "config.json")),
        (1, "vae-tiny", (FIX, "tiny-sd15", "vae", "config.json")),
        (1, "vae-sd15", (CONFIGS, "stable-diffusion-v1-5", "vae", "config.json")),
        (2, "controlnet-tiny", (FIX, "tiny-controlnet", "config.json")),
        (2, "controlnet-tiny-b", (FIX, "tiny-controlnet-b", "config.json")),
        (3, "text-encoder-tiny", (FIX, "tiny-sd15", "text_encoder", "config.json")),
        (3, "text-encoder-sd15", (CONFIGS, "stable-diffusion-v1-5", "text_encoder", "config.json")),
        (4, "image-encoder-tiny", (FIX, "tiny-ip-adapter", "models", "image_encoder", "config.json")),
        (4, "image-encoder-vit-h", (CONFIGS, "clip-vit-h-14", "config.json")),
        (5, "scheduler-tiny", (FIX, "tiny-sd15", "scheduler", "scheduler_config.json")),
        (5, "scheduler-sd15", (CONFIGS, "stable-diffusion-v1-5", "scheduler", "scheduler_config.json")),
        (6, "preprocessor-tiny", (FIX, "tiny-sd15", "feature_extractor", "preprocessor_config.json")),
        (6, "preprocessor-sd15", (CONFIGS, "stable-diffusion-v1-5", "feature_extractor", "preprocessor_config.json")),
    ]
    for selector, name, path in configs:
        write("config", name, bytes([selector]) + read(*path))
    # Schedulers with the options the other classes read (written by hand from diffusers' defaults).
    dpm = {"_class_name": "DPMSolverMultistepScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
           "beta_end": 0.012, "beta_schedule": "scaled_linear", "algorithm_type": "dpmsolver++", "solver_order": 2,
           "use_karras_sigmas": True, "lambda_min_clipped": "-Infinity", "final_sigmas_type": "zero",
           "timestep_spacing": "leading", "steps_offset": 1, "prediction_type": "epsilon"}
    write("config", "scheduler-dpm", b"\x05" + json.dumps(dpm, indent=1).encode().replace(b'"-Infinity"', b"-Infinity"))
    euler = {"_class_name": "EulerAncestralDiscreteScheduler", "beta_schedule": "linear", "timestep_spacing": "trailing",
             "prediction_type": "v_prediction", "rescale_betas_zero_snr": True, "trained_betas": None}
    write("config", "scheduler-euler-a", b"\x05" + json.dumps(euler, indent=1).encode())
    ddim = {"_class_name": "DDIMScheduler", "clip_sample": True, "clip_sample_range": 1.5, "set_alpha_to_one": True,
            "timestep_spacing": "linspace", "thresholding": False, "trained_betas": [0.001, 0.002, 0.003, 0.004]}
    write("config", "scheduler-ddim", b"\x05" + json.dumps(ddim, indent=1).encode())
    # Sharded index (the harness provides the shards model-00001-of-00002.safetensors (a),
    # model-00002-of-00002.safetensors (b) and extra.safetensors (a again)).
    index = {"metadata": {"total_size": 10}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                                             "b": "model-00002-of-00002.safetensors"}}
    write("config", "sharded-index", b"\x07" + json.dumps(index, indent=2).encode())
    # --ip-block-scales (the forms of Tests/IPAdapterTests).
    for i, text in enumerate(['{"down": {"block_1": [0.0, 1.0]}, "up": {"block_1": [0.0, 0.6, 0.0]}}',
                              '{"down": 0, "mid": 0, "up": 0}', '0.5',
                              '{"down": {"block_0": 1, "block_2": [1, 0.5]}, "mid": [0.25], "up": {"block_3": 2}}']):
        write("config", "block-scales-%d" % i, b"\x08" + text.encode())

    # tokenizer: mode 0 = vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json, prompts.
    for folder in ["tiny", "tiny-pad-bang"]:
        parts = [read(FIX, "tokenizer", folder, f) for f in
                 ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]]
        write("tokenizer", folder, b"\x00" + SEP.join(parts + [b"a photo of a cat, <|endoftext|> highly detailed"]))
    parts = [read(FIX, "tokenizer", "tiny", f) for f in ["vocab.json", "merges.txt"]]
    write("tokenizer", "tiny-no-config", b"\x00" + SEP.join(parts))
    # mode 1 = a prompt for the bundled SD1.5 tokenizer.
    prompts = {
        "prompt-plain": "best quality, high quality, a photo of an astronaut riding a horse",
        "prompt-special": "<|startoftext|>A  PHOTO\tof<|endoftext|>  cats!!  don't  I'm",
        "prompt-unicode": "na\u00efve caf\u00e9 \u6771\u4eac \U0001F642 e\u0301 \ufb01 \u2163 ,.;:!?",
        "prompt-long": " ".join(["masterpiece"] * 100),
    }
    for name, text in prompts.items():
        write("tokenizer", name, b"\x01" + text.encode())

    # png / jpeg: small images of every kind the decoders handle.
    for name in ["gray1_23x17", "gray16_37x23", "gray4_23x17", "gray_trns_37x23", "interlaced_gray2_23x17",
                 "interlaced_rgba_37x23", "la16_37x23", "levels_16x16", "palette4_23x17", "palette_trns_37x23",
                 "rgb_trns_37x23", "rgba16_37x23", "text_chunks"]:
        write("png", name + ".png", read(FIX, "imaging", name + ".png"))
    for name in ["jpeg_cmyk_37x23", "jpeg_gray_37x23", "jpeg_progressive_37x23", "jpeg_rgb444_37x23", "jpeg_rgb_64x48"]:
        write("jpeg", name + ".jpg", read(FIX, "imaging", name + ".jpg"))

    # hub: selector byte (HEAD 0, listing 1, trees 2, model_index 3, reference 4); hand-written samples
    # shaped like the hub's answers (tests/fixtures/hub/repos.json holds the test repos).
    commit = "a55d88609e15ae35d8d313155e66092853790b0a"
    sha = "2971c5e6b3726e11d579ebff1cf2947361b4a66da37eb5323dd5c46fdc92ba3c"
    heads = {
        "head-lfs-redirect": ["HTTP/1.1 302 Found", "Location: https://cdn-lfs.hf.co/repos/ab/cd/" + sha + "?x=1",
                              "X-Repo-Commit: " + commit, "X-Linked-Etag: \"" + sha + "\"", "X-Linked-Size: 624",
                              "ETag: W/\"5b71a37652f69a0b211557917c9d58568adae0a1\"", "Content-Length: 1"],
        "head-regular": ["HTTP/1.1 200 OK", "X-Repo-Commit: " + commit,
                         "ETag: \"f2238b0803f1b5ad5263637610cbcb75a175105c\"", "Content-Length: 583"],
        "head-renamed": ["HTTP/1.1 307 Temporary Redirect", "Location: /new-org/new-name/resolve/main/unet/config.json"],
        "head-missing": ["HTTP/1.1 404 Not Found", "X-Error-Code: EntryNotFound", "X-Repo-Commit: " + commit],
        "head-gated": ["HTTP/1.1 403 Forbidden", "X-Error-Code: GatedRepo", "X-Error-Message: Access to model is restricted"],
        "head-server": ["HTTP/1.1 503 Service Unavailable", "", "upstream connect error"],
    }
    for name, lines in heads.items():
        write("hub", name, b"\x00" + "\r\n".join(lines).encode())
    repos = json.loads(read(FIX, "hub", "repos.json"))["repos"]
    repo = repos[0]
    siblings = []
    for f in repo["files"]:
        s = {"rfilename": f["path"], "size": f.get("pointer_size", f["size"]) if f.get("lfs") else f["size"],
             "blobId": f["blob_id"]}
        if f.get("lfs"):
            s["lfs"] = {"sha256": f["sha256"], "size": f["size"], "pointerSize": f["pointer_size"]}
        siblings.append(s)
    listing = {"_id": "0", "id": repo["id"], "sha": repo["commit"], "siblings": siblings[:8]}
    write("hub", "listing", b"\x01" + json.dumps(listing).encode())
    tree = {"format_version": 1, "files": {}}
    for f in repo["files"][:8]:
        entry = {"size": f["size"], "blob_id": f["blob_id"]}
        if f.get("lfs"):
            entry["lfs_sha256"] = f["sha256"]
            entry["lfs_size"] = f["size"]
        tree["files"][f["path"]] = entry
    write("hub", "tree", b"\x02" + json.dumps(tree, indent=1).encode())
    write("hub", "model-index-tiny", b"\x03" + read(FIX, "tiny-sd15", "model_index.json"))
    write("hub", "model-index-sd15", b"\x03" + read(CONFIGS, "stable-diffusion-v1-5", "model_index.json"))
    for i, ref in enumerate(["h94/IP-Adapter/models/ip-adapter-plus_sd15.safetensors@main",
                             "stable-diffusion-v1-5/stable-diffusion-v1-5@refs/pr/1", "org/name@" + commit]):
        write("hub", "reference-%d" % i, b"\x04" + ref.encode())

    lora_seeds()
    onnx_seeds()
    dictionaries()


def safetensors(tensors, metadata=None):
    """A safetensors file from {name: (dtype, shape, values)} (F32 / F16 values packed little-endian)."""
    import struct
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        dtype, shape, values = tensors[name]
        raw = struct.pack("<%d%s" % (len(values), "f" if dtype == "F32" else "e"), *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data


def onnx_seeds():
    """onnx: whole .onnx files — the small operator graphs of the face fixtures (every operator the
    executor supports, typed and raw initializers, opsets 9-17) and the refusal cases."""
    folder = os.path.join(FIX, "face")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".onnx") and os.path.getsize(os.path.join(folder, name)) <= 16384:
            write("onnx", name, read(folder, name))


def lora_seeds():
    """lora: selector byte 0 = a .npy file, 1 = a LoRA .safetensors for the harness's tiny model."""
    for name in ["face-a.npy", "faces-3.npy"]:
        write("lora", name, b"\x00" + read(FIX, "faceid", name))

    def values(n, k=1):
        return [((i * 7 + k * 3) % 11 - 5) / 20.0 for i in range(n)]

    unet = "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    kohya = {
        "lora_unet_%s.lora_down.weight" % unet: ("F32", [2, 6], values(12)),
        "lora_unet_%s.lora_up.weight" % unet: ("F32", [5, 2], values(10, 2)),
        "lora_unet_%s.alpha" % unet: ("F32", [], [1.0]),
        "lora_unet_conv_in.lora_down.weight": ("F16", [2, 3, 3, 3], values(54, 3)),
        "lora_unet_conv_in.lora_up.weight": ("F16", [4, 2, 1, 1], values(8, 4)),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": ("F32", [1, 3], values(3, 5)),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": ("F32", [3, 1], values(3, 6)),
    }
    write("lora", "kohya.safetensors", b"\x01" + safetensors(kohya, {"ss_network_dim": "2"}))
    peft = {
        "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": ("F32", [2, 4, 1, 1], values(8, 7)),
        "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": ("F32", [4, 2, 1, 1], values(8, 8)),
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": ("F16", [3, 6], values(18, 9)),
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": ("F16", [5, 3], values(15, 10)),
    }
    meta = json.dumps({"unet.lora_alpha": 4, "unet.r": 2, "unet.alpha_pattern": {"proj_in": 1}, "unet.use_rslora": False},
                      sort_keys=True)
    write("lora", "peft.safetensors", b"\x01" + safetensors(peft, {"lora_adapter_metadata": meta, "format": "pt"}))
    legacy = {
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight": ("F32", [2, 6], values(12, 11)),
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.up.weight": ("F32", [5, 2], values(10, 12)),
        "text_encoder.text_model.encoder.layers.0.self_attn.to_q_lora.down.weight": ("F32", [1, 3], values(3, 13)),
        "text_encoder.text_model.encoder.layers.0.self_attn.to_q_lora.up.weight": ("F32", [3, 1], values(3, 14)),
        "unet.down_blocks.0.attentions.0.proj_in.lora.down.weight": ("F32", [1, 4, 1, 1], values(4, 15)),
        "unet.down_blocks.0.attentions.0.proj_in.lora.up.weight": ("F32", [4, 1, 1, 1], values(4, 16)),
    }
    write("lora", "legacy.safetensors", b"\x01" + safetensors(legacy))


def quote(token):
    """A libFuzzer dictionary entry: printable ASCII as is, everything else as \\xNN."""
    out = ""
    for b in token:
        c = chr(b)
        out += c if 0x20 <= b < 0x7F and c not in '"\\' else "\\x%02x" % b
    return '"' + out + '"'


def write_dict(target, tokens):
    os.makedirs(DICT, exist_ok=True)
    unique = sorted(set(t if isinstance(t, bytes) else t.encode() for t in tokens))
    with open(os.path.join(DICT, target + ".dict"), "w") as f:
        f.write("# libFuzzer dictionary for the %s target (generated by Fuzz/tools/make-seeds.py)\n" % target)
        for token in unique:
            f.write(quote(token) + "\n")


def coding_keys(*files):
    """The JSON keys a Swift config type decodes (`case x = "json_key"` and bare snake_case cases)."""
    keys = set()
    for path in files:
        with open(os.path.join(ROOT, path)) as f:
            text = f.read()
        keys.update(re.findall(r'= "([a-z_0-9]+)"', text))
    return keys


def json_keys(value, keys):
    if isinstance(value, dict):
        for k, v in value.items():
            keys.add(k)
            json_keys(v, keys)
    elif isinstance(value, list):
        for v in value:
            json_keys(v, keys)
    elif isinstance(value, str) and len(value) < 40:
        keys.add(value)
    return keys


def dictionaries():
    json_syntax = ["{", "}", "[", "]", ":", ",", "\"", "null", "true", "false", "-1", "0", "1e308", "-0", "1e-45",
                   "9223372036854775807", "-9223372036854775808", "18446744073709551616", "NaN", "Infinity",
                   "-Infinity", "\\u0000", "\\ud800", "2147483648", "65536", "4294967296"]
    st = ["__metadata__", "dtype", "shape", "data_offsets", "F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8",
          "U64", "U32", "U16", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "F4", "F6_E2M3", "E8M0", "C64",
          b"\x00\x00\x00\x00\x00\x00\x00\x00", b"\xff\xff\xff\xff\xff\xff\xff\x7f"]
    write_dict("safetensors", st + json_syntax)
    torch = ["torch._utils", "_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter", "collections",
             "OrderedDict", "torch", "FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
             "ByteStorage", "BoolStorage", "DoubleStorage", "UntypedStorage", "storage", "cpu", "builtins", "eval",
             "numpy.core.multiarray", "scalar", "numpy", "dtype", "_codecs", "encode", "state_dict", "little",
             "big", "data.pkl", "byteorder", "version", "archive/data/0", "PK\x03\x04", "PK\x01\x02",
             "PK\x05\x06", "PK\x06\x06", "PK\x06\x07",
             b"\x80\x02", b"\x80\x04", b"\x80\x05", b"\x95", b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19",
             b"}q\x00", b"(X", b"q\x01", b"ctorch._utils\n_rebuild_tensor_v2\n", b"ccollections\nOrderedDict\n",
             b"ctorch\nFloatStorage\n", b"ctorch\nHalfStorage\n", b"\x8c", b"\x93", b"\x94", b"h\x00",
             b"K\x00", b"J\xff\xff\xff\x7f", b"\x8a\x08", b"\x8b\x00\x00\x00\x80", b"\x85", b"\x86", b"\x87",
             b"\x89", b"R", b"Q", b"b", b"e", b"u", b"s", b"t", b"(", b"\x88", b"\x8e", b"\x8d", b"\x96",
             b"\x97", b"\x98", b"X\xff\xff\xff\x7f", b"B\xff\xff\xff\x7f", SEP]
    write_dict("torch", torch)
    ops = re.findall(r'"([A-Za-z]+)"', re.search(r"public static let supported: \[String\] = \[(.*?)\]",
                                                   open(os.path.join(ROOT, "Sources", "ONNX", "ONNXOperators.swift")).read(),
                                                   re.S).group(1))
    onnx_words = ops + ["LSTM", "Einsum", "ai.onnx", "com.microsoft", "kernel_shape", "strides", "pads", "group",
                        "dilations", "auto_pad", "axis", "axes", "perm", "to", "value", "epsilon", "mode", "nearest",
                        "coordinate_transformation_mode", "asymmetric", "half_pixel", "nearest_mode", "floor",
                        "ceil_mode", "count_include_pad", "transB", "alpha", "beta", "location", "input.1",
                        b"\x08\x01", b"\x08\x07", b"\x08\x0a", b"\x10\x01", b"\x20\x07", b"\xa0\x01\x07",
                        b"\xff\xff\xff\xff\x0f", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"]
    write_dict("onnx", onnx_words)
    config_keys = coding_keys(
        "Sources/Models/UNet/UNet2DConditionConfig.swift", "Sources/Models/VAE/AutoencoderKLConfig.swift",
        "Sources/Models/ControlNet/ControlNetConfig.swift", "Sources/Models/CLIP/CLIPTextModel.swift",
        "Sources/Models/CLIP/CLIPVisionModel.swift", "Sources/Schedulers/SchedulerConfig.swift",
        "Sources/Imaging/CLIPImageProcessor.swift")
    values = set()
    for folder in [os.path.join(OUT, "config")]:
        for name in os.listdir(folder):
            try:
                json_keys(json.loads(read(folder, name)[1:]), values)
            except ValueError:
                pass
    values |= {"UNetMidBlock2DCrossAttn", "CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnUpBlock2D", "UpBlock2D",
               "DownEncoderBlock2D", "UpDecoderBlock2D", "quick_gelu", "gelu", "silu", "default", "scale_shift",
               "linear", "scaled_linear", "squaredcos_cap_v2", "epsilon", "v_prediction", "sample", "leading",
               "trailing", "linspace", "dpmsolver++", "sde-dpmsolver++", "midpoint", "heun", "zero", "sigma_min",
               "log_linear", "discrete", "continuous", "fixed_small", "learned_range", "shortest_edge",
               "longest_edge", "height", "width", "vision_config", "rgb", "bgr", "text_proj", "image_proj",
               "weight_map", "metadata", "total_size", "down", "mid", "up", "block_0", "block_1", "block_2",
               "block_3", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
               "extra.safetensors", "../extra.safetensors", "a", "b"}
    write_dict("config", [json.dumps(k) for k in config_keys | values] + json_syntax)
    tok = ["<|startoftext|>", "<|endoftext|>", "</w>", "#version: 0.2", "bos_token", "eos_token", "unk_token",
           "pad_token", "sep_token", "cls_token", "mask_token", "added_tokens_decoder", "content", "normalized",
           "special", "lstrip", "rstrip", "single_word", "model_max_length", "tokenizer_class", "CLIPTokenizer",
           "do_lower_case", "errors", "replace", "\\u0120", "\u0120", "\u00e9", "e\u0301", "\ufb01", "\U0001F642",
           "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "\r\n", "  ", "\t", "!", SEP] + json_syntax
    write_dict("tokenizer", tok)
    lora = ["lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", ".lora_down.weight", ".lora_up.weight", ".alpha",
            ".lora_A.weight", ".lora_B.weight", ".lora.down.weight", ".lora.up.weight", ".lora_linear_layer.down.weight",
            ".processor.to_q_lora.down.weight", ".to_out_lora.up.weight", "unet.", "text_encoder.", "text_encoder_2.",
            "text_model.", "conv_in", "down_blocks_0_attentions_0_proj_in", "input_blocks_1_1_proj_in",
            "lora_adapter_metadata", "unet.lora_alpha", "unet.r", "unet.alpha_pattern", "unet.use_rslora",
            "unet.use_dora", ".hada_w1_a", ".lokr_w1", ".dora_scale", ".lora_mid.weight",
            b"\x93NUMPY", b"\x01\x00", b"\x02\x00", "{'descr': '<f4', 'fortran_order': False, 'shape': (", "'<f2'",
            "'<f8'", "'>f4'", "'|u1'", "True", "(1, 512)", "(3,)", "()"]
    write_dict("lora", lora + st + json_syntax)
    png = [b"\x89PNG\r\n\x1a\n", "IHDR", "PLTE", "IDAT", "IEND", "tRNS", "tEXt", "zTXt", "iTXt", "gAMA", "cHRM",
           "sRGB", "iCCP", "sBIT", "bKGD", "pHYs", "acTL", "fcTL", "fdAT", "eXIf", b"\x78\x9c", b"\x78\x01",
           b"\x00\x00\x00\x0dIHDR", b"\x00\x00\x00\x00IEND\xaeB`\x82", b"\x08\x06\x00\x00\x00",
           b"\x10\x02\x00\x00\x01", b"\x08\x03", b"\x01\x00", b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff",
           "parameters", "Comment"]
    write_dict("png", png)
    jpeg = [b"\xff\xd8\xff", b"\xff\xd9", b"\xff\xc0", b"\xff\xc1", b"\xff\xc2", b"\xff\xc3", b"\xff\xc4",
            b"\xff\xc9", b"\xff\xcc", b"\xff\xda", b"\xff\xdb", b"\xff\xdd", b"\xff\xe0", b"\xff\xe1",
            b"\xff\xe2", b"\xff\xee", b"\xff\xfe", b"\xff\xd0", b"\xff\x00", "JFIF\x00", "Exif\x00\x00",
            "Adobe", "ICC_PROFILE\x00", b"\x00\x11\x08", b"\xff\xff", b"\x00\x00", b"\x01\x22\x00",
            b"\x02\x11\x01", b"\x03\x11\x01", b"\x04", b"\x11", b"\x22"]
    write_dict("jpeg", jpeg)
    hub = ["HTTP/1.1 ", "200", "206", "301", "302", "307", "308", "401", "403", "404", "416", "429", "500", "503",
           "\r\n", "Location: ", "X-Repo-Commit: ", "X-Linked-Etag: ", "X-Linked-Size: ", "ETag: ", "W/",
           "Content-Length: ", "X-Error-Code: ", "X-Error-Message: ", "RepoNotFound", "RevisionNotFound",
           "EntryNotFound", "GatedRepo", "https://", "http://", "//", "huggingface.co", "cdn-lfs.hf.co", ":443",
           ":80", "siblings", "rfilename", "blobId", "lfs", "sha256", "size", "pointerSize", "format_version",
           "files", "blob_id", "lfs_sha256", "lfs_size", "xet_hash", "_class_name", "_diffusers_version",
           "diffusers", "transformers", "unet", "vae", "text_encoder", "tokenizer", "scheduler", "..", "/", "\\",
           "@", "refs/pr/1", "main", "%2F", "a55d88609e15ae35d8d313155e66092853790b0a",
           "2971c5e6b3726e11d579ebff1cf2947361b4a66da37eb5323dd5c46fdc92ba3c", ".incomplete", "~", "./", "../",
           "\x00", "\u0000", "\u00a0"] + json_syntax
    write_dict("hub", hub)


if __name__ == "__main__":
    main()
