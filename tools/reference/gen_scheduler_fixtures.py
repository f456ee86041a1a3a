#!/usr/bin/env python3
"""Golden fixtures for Tests/SchedulerTests (schedulers and torch-compatible random numbers).

Run from the repository root with the reference venv:

    tools/reference/.venv/bin/python tools/reference/gen_scheduler_fixtures.py

Writes JSON files into Tests/Fixtures/schedulers/:
  rng.json            torch.Generator("cpu").manual_seed + torch.randn / torch.rand draws
  <kind>.json         one file per scheduler name; each holds a list of cases, every case a full
                      denoising loop driven like diffusers' StableDiffusion(Img2Img)Pipeline does:
                      timesteps, init_noise_sigma, and per step the model output fed in, the
                      scale_model_input result and the step result, plus add_noise checks.

Everything is deterministic (numpy RandomState and torch generators with fixed seeds). Float32
values are written as their shortest decimal form, which converts back to the same float32 bits.
"""

import inspect
import json
import pathlib

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
)

import diffusers

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "schedulers"

# runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json
SD15 = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}

# CLI name -> (class, keyword overrides passed to from_config), as the Swift SchedulerKind.
KINDS = {
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler-a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp-2m": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
    ),
    "dpmpp-2m-karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
}

SHAPE = [1, 4, 3, 5]  # 60 elements: not a multiple of 16, so euler-a noise takes the tail path


def f32list(x):
    """Float32 values as JSON-ready floats that round-trip to the same float32 bits."""
    arr = np.asarray(x, dtype=np.float32).reshape(-1)
    out = []
    for v in arr:
        s = str(v)
        d = float(s)
        assert np.float32(d).tobytes() == v.tobytes(), (s, v)
        out.append(d)
    return out


def resolve(kind, config):
    if kind is None:
        cls = getattr(diffusers, config["_class_name"])
        return cls, {}
    return KINDS[kind]


def make(kind, config, steps):
    cls, overrides = resolve(kind, config)
    s = cls.from_config(dict(config), **overrides)
    s.set_timesteps(steps)
    return s


def sigmas_of(s):
    return f32list(s.sigmas) if hasattr(s, "sigmas") else None


def run_case(name, kind, config, steps, seed, strength=None, shape=SHAPE, noise_seed=None, force_begin=False):
    """One denoising loop. strength=None: text-to-image; else image-to-image from diffusers' get_timesteps.

    force_begin: call set_begin_index(0) for text-to-image too. Needed only where diffusers' own
    lookup of the first timestep fails (duplicate first timesteps, see the Karras cosine case).
    """
    rs = np.random.RandomState(seed)
    s = make(kind, config, steps)
    timesteps = s.timesteps.clone()
    case = {
        "name": name,
        "kind": kind,
        "config": config,
        "steps": steps,
        "shape": shape,
        "class": s.__class__.__name__,
        "timesteps": f32list(timesteps.to(torch.float32)),
        "init_noise_sigma": f32list([float(s.init_noise_sigma)])[0],
        "order": s.order,
    }
    sig = sigmas_of(s)
    if sig is not None:
        case["sigmas"] = sig

    begin = 0
    if strength is None:
        latents = torch.from_numpy(rs.randn(*shape).astype(np.float32))
        sample = latents * s.init_noise_sigma
        original = noise = None
        if force_begin:
            s.set_begin_index(0)
    else:
        init_timestep = min(int(steps * strength), steps)
        t_start = max(steps - init_timestep, 0)
        begin = t_start * s.order
        if hasattr(s, "set_begin_index"):
            s.set_begin_index(begin)
        original = torch.from_numpy(rs.randn(*shape).astype(np.float32))
        noise = torch.from_numpy(rs.randn(*shape).astype(np.float32))
        latent_timestep = timesteps[begin : begin + 1].repeat(shape[0])
        sample = s.add_noise(original, noise, latent_timestep)
        case["strength"] = strength
        case["original"] = f32list(original)
        case["noise"] = f32list(noise)
    case["begin_index"] = begin
    case["initial_sample"] = f32list(sample)

    accepts_generator = "generator" in inspect.signature(s.step).parameters
    gseed = noise_seed if noise_seed is not None else seed
    g = torch.Generator("cpu").manual_seed(gseed)
    case["generator_seed"] = gseed

    steps_out = []
    loop = timesteps[begin:]
    for i, t in enumerate(loop):
        model_output = torch.from_numpy(rs.randn(*shape).astype(np.float32))
        scaled = s.scale_model_input(sample, t)
        kwargs = {"generator": g} if accepts_generator else {}
        prev = s.step(model_output, t, sample, return_dict=False, **kwargs)[0]
        entry = {
            "model_output": f32list(model_output),
            # null when scale_model_input returned the sample unchanged (all but the Euler classes)
            "scaled": None if torch.equal(scaled, sample) else f32list(scaled),
            "prev_sample": f32list(prev),
        }
        if strength is not None and i < len(loop) - 1:
            # The inpainting pipeline (4-channel UNet) re-noises the original to the next timestep.
            entry["renoised"] = f32list(s.add_noise(original, noise, torch.tensor([loop[i + 1]])))
        steps_out.append(entry)
        sample = prev
    case["loop"] = steps_out

    # add_noise as image-to-image calls it: a fresh scheduler whose begin index is the start step.
    rs2 = np.random.RandomState(seed + 1000)
    orig2 = torch.from_numpy(rs2.randn(*shape).astype(np.float32))
    noise2 = torch.from_numpy(rs2.randn(*shape).astype(np.float32))
    checks = []
    n = len(timesteps)
    for idx in sorted(set([0, n // 2, n - 1])):
        s2 = make(kind, config, steps)
        if hasattr(s2, "set_begin_index"):
            s2.set_begin_index(idx)
        out = s2.add_noise(orig2, noise2, s2.timesteps[idx : idx + 1].repeat(shape[0]))
        checks.append({"step_index": idx, "output": f32list(out)})
    case["add_noise"] = {"original": f32list(orig2), "noise": f32list(noise2), "checks": checks}
    return case


def scheduler_cases():
    files = {k: [] for k in KINDS}
    files["folder"] = []
    seed = 100

    def add(file, *args, **kwargs):
        nonlocal seed
        seed += 1
        files[file].append(run_case(*args, seed=seed, **kwargs))

    for kind in KINDS:
        # SD1.5 config, each class's own default spacing.
        for steps in (4, 10, 25) if kind in ("euler-a", "dpmpp-2m") else (4, 10):
            add(kind, f"{kind} sd15 {steps} steps", kind, SD15, steps)
        # Every spacing explicitly.
        for spacing in ("leading", "trailing", "linspace"):
            for steps in (4, 10):
                cfg = dict(SD15, timestep_spacing=spacing)
                add(kind, f"{kind} sd15 {spacing} {steps} steps", kind, cfg, steps)
        # Awkward step counts for the trailing/leading arithmetic.
        for steps in (7, 16):
            add(kind, f"{kind} sd15 trailing {steps} steps", kind, dict(SD15, timestep_spacing="trailing"), steps)
        # v-prediction.
        add(kind, f"{kind} sd15 v_prediction 10 steps", kind, dict(SD15, prediction_type="v_prediction"), 10)
        # The class defaults alone (empty config: linear betas, clip_sample for DDIM, ...).
        add(kind, f"{kind} class defaults 10 steps", kind, {}, 10)
        # Cosine betas.
        # (Karras + cosine: diffusers' timestep truncation duplicates the first timestep and its
        # txt2img lookup then starts at index 1 and runs off the end; begin at 0 explicitly.)
        add(kind, f"{kind} squaredcos_cap_v2 10 steps", kind, {"beta_schedule": "squaredcos_cap_v2"}, 10,
            force_begin=(kind == "dpmpp-2m-karras"))
        # Image-to-image at two strengths.
        for strength in (0.6, 0.3):
            add(kind, f"{kind} sd15 img2img strength {strength} 10 steps", kind, SD15, 10, strength=strength)
        # Fewer than 16 elements: the ancestral noise takes torch's scalar path.
        add(kind, f"{kind} sd15 small shape 10 steps", kind, SD15, 10, shape=[1, 1, 3, 5])

    # 61 trailing steps: numpy's arange yields 62 timesteps, the last one -1 (diffusers indexes
    # alphas_cumprod[-1], i.e. the last entry, and np.interp clamps to the first sigma).
    for kind in ("ddim", "pndm", "euler", "dpmpp-2m"):
        add(kind, f"{kind} sd15 trailing 61 steps", kind, dict(SD15, timestep_spacing="trailing"), 61, shape=[1, 1, 2, 3])

    # Class-specific options.
    trained = np.linspace(0.0001, 0.03, 100).astype(np.float64).tolist()
    add("pndm", "pndm with PRK warm-up 10 steps", "pndm", dict(SD15, skip_prk_steps=False), 10)
    add("pndm", "pndm with PRK warm-up 20 steps", "pndm", dict(SD15, skip_prk_steps=False), 20)
    add("pndm", "pndm trained_betas 10 steps", "pndm", {"num_train_timesteps": 100, "trained_betas": trained, "skip_prk_steps": True}, 10)
    add("ddim", "ddim sample prediction 10 steps", "ddim", dict(SD15, prediction_type="sample"), 10)
    add("ddim", "ddim clip_sample range 0.5", "ddim", dict(SD15, clip_sample=True, clip_sample_range=0.5), 10)
    add("ddim", "ddim zero snr trailing v_prediction", "ddim",
        dict(SD15, rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction", set_alpha_to_one=True), 10)
    add("euler", "euler sample prediction 10 steps", "euler", dict(SD15, prediction_type="sample"), 10)
    add("euler", "euler karras 10 steps", "euler", dict(SD15, use_karras_sigmas=True), 10)
    add("euler", "euler final sigma_min 10 steps", "euler", dict(SD15, final_sigmas_type="sigma_min"), 10)
    add("euler", "euler zero snr trailing 10 steps", "euler",
        dict(SD15, rescale_betas_zero_snr=True, timestep_spacing="trailing"), 10)
    add("euler-a", "euler-a zero snr trailing 10 steps", "euler-a",
        dict(SD15, rescale_betas_zero_snr=True, timestep_spacing="trailing"), 10)
    add("euler-a", "euler-a seed 2**32+5", "euler-a", SD15, 10, noise_seed=2**32 + 5)
    add("dpmpp-2m", "dpmpp-2m sample prediction 10 steps", "dpmpp-2m", dict(SD15, prediction_type="sample"), 10)
    add("dpmpp-2m", "dpmpp-2m final sigma_min 10 steps", "dpmpp-2m", dict(SD15, final_sigmas_type="sigma_min"), 10)
    add("dpmpp-2m", "dpmpp-2m lower_order_final off 10 steps", "dpmpp-2m", dict(SD15, lower_order_final=False), 10)
    add("dpmpp-2m", "dpmpp-2m heun 10 steps", "dpmpp-2m", dict(SD15, solver_type="heun"), 10)
    add("dpmpp-2m-karras", "dpmpp-2m-karras 50 steps", "dpmpp-2m-karras", SD15, 50)
    add("dpmpp-2m-karras", "dpmpp-2m-karras zero snr", "dpmpp-2m-karras",
        dict(SD15, rescale_betas_zero_snr=True, timestep_spacing="trailing"), 10)
    # The folder's own class from _class_name, and a DPMSolverMultistep folder config with its own options.
    add("folder", "folder class sd15 (PNDM) 10 steps", None, SD15, 10)
    dpm_folder = dict(SD15, _class_name="DPMSolverMultistepScheduler", solver_order=3, algorithm_type="dpmsolver++")
    add("folder", "folder class DPMSolverMultistep order 3 10 steps", None, dpm_folder, 10)
    add("folder", "folder class DPMSolverMultistep order 3 20 steps", None, dpm_folder, 20)
    add("folder", "folder class DPMSolverMultistep order 1 10 steps", None, dict(dpm_folder, solver_order=1), 10)
    add("folder", "folder class EulerAncestral 10 steps", None, dict(SD15, _class_name="EulerAncestralDiscreteScheduler"), 10)
    return files


def stats(arr):
    a = arr.reshape(-1).numpy()
    total = 0.0
    weighted = 0.0
    for i, v in enumerate(a.tolist()):
        total += v
        weighted += (i + 1) * v
    return {
        "count": int(a.size),
        "first": f32list(a[:8]),
        "last": f32list(a[-8:]),
        "sum": total,
        "weighted_sum": weighted,
    }


def rng_cases():
    single = []
    for seed in (0, 1, 42, 2**32 + 5, 123456789, 2**64 - 1):
        for shape in ([1], [7], [15], [16], [17], [100], [1, 4, 64, 64], [2, 4, 9, 7]):
            g = torch.Generator("cpu").manual_seed(seed)
            x = torch.randn(shape, generator=g, dtype=torch.float32)
            single.append(dict(seed=seed, shape=shape, **stats(x)))
    sequences = []
    draws_plan = [
        [("randn", [1, 4, 8, 8]), ("randn", [1, 4, 8, 8])],
        [("randn", [3]), ("randn", [5]), ("randn", [16]), ("randn", [1]), ("randn", [33])],
        [("randn", [7]), ("rand", [5]), ("randn", [2]), ("randn", [100]), ("rand", [40])],
        [("rand", [1, 4, 64, 64]), ("randn", [1, 4, 64, 64])],
    ]
    for seed, plan in zip((42, 0, 7, 2024), draws_plan):
        g = torch.Generator("cpu").manual_seed(seed)
        draws = []
        for kind, shape in plan:
            x = (torch.randn if kind == "randn" else torch.rand)(shape, generator=g, dtype=torch.float32)
            draws.append(dict(kind=kind, shape=shape, **stats(x)))
        sequences.append({"seed": seed, "draws": draws})
    # Full values for a small latent, to pin the element order.
    g = torch.Generator("cpu").manual_seed(1234)
    full = {"seed": 1234, "shape": [1, 4, 3, 3], "values": f32list(torch.randn([1, 4, 3, 3], generator=g))}
    return {
        "torch_version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "single": single,
        "sequences": sequences,
        "full": full,
    }


def write(name, obj):
    path = OUT / name
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KiB)")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    write("rng.json", rng_cases())
    meta = {"diffusers_version": diffusers.__version__, "torch_version": torch.__version__}
    for kind, cases in scheduler_cases().items():
        write(f"{kind}.json", {**meta, "cases": cases})


if __name__ == "__main__":
    main()
