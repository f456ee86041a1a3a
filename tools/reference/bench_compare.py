"""Side-by-side benchmark: runs every case in the Swift engine and in PyTorch + diffusers,
alternating the two (a fresh process per case and engine, so peak RSS is per case), and prints
our time / torch time per case.

Run (release build first): swift build -c release --product ipadapter
  tools/reference/.venv/bin/python tools/reference/bench_compare.py [--cases unet-64 …] [--sdxl] [--lora] [--instantid] [--training] [--precision bf16] [--repeats 3]
      [--checkpoint-dtype fp32]   (the files the models load: fp16 by default, as both engines' random checkpoints)
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
ALL = ["unet-64", "unet-64-ip4", "unet-64-ip16", "unet-32", "unet-32-ip4", "unet-32-ip16", "vae-decode", "vit-h", "generate-512"]
SDXL = ["sdxl-unet-128", "sdxl-unet-128-ip16", "sdxl-vae-decode-1024", "vit-bigg", "sdxl-generate-1024"]
# LoRA file read + fusion (ours: LoRAFile(path:) + LoRAFusion.apply; torch: load_lora_weights + fuse_lora).
LORA = ["lora-fuse-sd15", "lora-fuse-sdxl"]
# InstantID: one step of UNet + IdentityNet, and the whole generation against the reference pipeline of
# instantX-research/InstantID (fetched by gen_instantid.py into a git-ignored folder; $INSTANTID_GIT may
# name a local clone).
INSTANTID = ["sdxl-controlnet-128", "instantid-128", "instantid-generate-1024"]
# Adapter training: one optimiser step of a new SD1.5 Plus adapter at 512² (docs/training.md).
TRAINING = ["train-step-512", "train-step-512-checkpointing"]


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="*", default=None, help="default: the SD1.5 cases (--sdxl: the SDXL ones, --lora: the LoRA ones, --instantid: the InstantID ones)")
    ap.add_argument("--sdxl", action="store_true", help=f"run the SDXL cases: {' '.join(SDXL)}")
    ap.add_argument("--lora", action="store_true", help=f"run the LoRA fusion cases: {' '.join(LORA)}")
    ap.add_argument("--instantid", action="store_true", help=f"run the InstantID cases: {' '.join(INSTANTID)}")
    ap.add_argument("--training", action="store_true", help=f"run the training cases: {' '.join(TRAINING)}")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--checkpoint-dtype", default="fp16", choices=["fp16", "fp32"],
                    help="storage dtype of the random checkpoint files both engines load from")
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "ipadapter"))
    a = ap.parse_args()
    a.cases = a.cases or (SDXL if a.sdxl else LORA if a.lora else INSTANTID if a.instantid else TRAINING if a.training else ALL)
    rows = []
    for i, case in enumerate(a.cases):
        swift = [a.binary, "bench", "models", "--json", "--cases", case, "--repeats", str(a.repeats),
                 "--precision", a.precision, "--steps", str(a.steps), "--checkpoint-dtype", a.checkpoint_dtype]
        torch = [sys.executable, os.path.join(HERE, "bench_torch.py"), "--cases", case, "--repeats", str(a.repeats),
                 "--precision", a.precision, "--steps", str(a.steps), "--checkpoint-dtype", a.checkpoint_dtype]
        order = [("swift", swift), ("torch", torch)] if i % 2 == 0 else [("torch", torch), ("swift", swift)]
        result = {name: run(cmd) for name, cmd in order}
        rows.append((case, result["swift"], result["torch"]))
        s, t = result["swift"], result["torch"]
        print(f"{case:14s} ours {s['seconds']:8.3f} s  torch {t['seconds']:8.3f} s  ratio {s['seconds'] / t['seconds']:.2f}"
              f"   RSS ours {s['peak_rss_mb']} MB torch {t['peak_rss_mb']} MB ({s['peak_rss_mb'] / max(t['peak_rss_mb'], 1):.2f})",
              flush=True)
    print()
    print(f"| case | ours (s) | torch {a.precision} (s) | ratio | peak RSS ours / torch (MB) |")
    print("|---|---|---|---|---|")
    for case, s, t in rows:
        extra = ""
        if "first_step_s" in s:
            extra = f" (first step {s['first_step_s']:.1f} s vs {t.get('first_step_s', float('nan')):.1f} s)"
        if "lora_mb" in s:
            extra = (f" ({s['lora_mb']:.0f} MB, {s['layers']:.0f} layers; first run {s['first_s']:.2f} s vs {t['first_s']:.2f} s;"
                     f" torch load {t['load_s']:.2f} s + fuse {t['fuse_s']:.2f} s)")
        print(f"| {case}{extra} | {s['seconds']:.3f} | {t['seconds']:.3f} | **{s['seconds'] / t['seconds']:.2f}** | "
              f"{s['peak_rss_mb']} / {t['peak_rss_mb']} ({s['peak_rss_mb'] / max(t['peak_rss_mb'], 1):.2f}) |")
    print(f"\n{datetime.date.today()} · {platform.machine()} · {os.cpu_count()} cores · precision {a.precision} · checkpoint files {a.checkpoint_dtype} · repeats {a.repeats}")


if __name__ == "__main__":
    main()
