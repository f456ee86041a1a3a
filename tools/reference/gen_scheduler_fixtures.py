#!/usr/bin/env python3
"""Golden fixtures for Tests/SchedulerTests (schedulers and torch-compatible random numbers).

Run from the repository root with the reference venv:

    tools/reference/.venv/bin/python tools/reference/gen_scheduler_fixtures.py

Writes JSON files into Tests/Fixtures/schedulers/:
  rng.json            torch.Generator("cpu").manual_seed + torch.randn / torch.rand draws
  <kind>.json         one file per scheduler name (lcm.json and tcd.json: the few-step schedulers); each holds a list of cases, every case a full
                      denoising loop driven like diffusers' StableDiffusion(Img2Img)Pipeline does:
                      timesteps, init_noise_sigma, and per step the scale_model_input result and
                      the step result, plus add_noise checks.

Layout of a <kind>.json file (kept small: the project keeps all fixtures at a few MB):
  configs          the scheduler configs, by name; a case names its config ("config")
  model_outputs    the model outputs fed to the steps, shared by all cases of the file: step k of
                   every loop (k counted from the loop's first step) gets model_outputs[k]
  add_noise_inputs original and noise for every case's add_noise checks
  cases            the loops
The shared tensors have SHAPE's 24 elements; a case with a smaller shape uses the first
prod(shape) values of each (the same values, in the same order, as torch's flat view).

Float tensors (and the sigma tables) are float32 values stored as base64 of their little-endian
bytes, which is exact: diffusers computes them in float32 (asserted below). Scalars and the
timesteps stay JSON numbers (float32 values in their shortest decimal form, which converts back to
the same bits; integral timesteps as integers).

Everything is deterministic (numpy RandomState and torch generators with fixed seeds, dict order
fixed by the code): running the script twice writes identical bytes.
"""

import base64
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
    LCMScheduler,
    PNDMScheduler,
    TCDScheduler,
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

# The few-step schedulers (separate files, added after the others so that those stay byte-identical).
FEW_STEP_KINDS = {"lcm": (LCMScheduler, {}), "tcd": (TCDScheduler, {})}
SHAPE = [1, 4, 2, 3]  # 24 elements: 16 or more but not a multiple of 16, so euler-a noise takes torch's tail path
SMALL = [1, 1, 2, 3]  # 6 elements: fewer than 16, so euler-a noise takes torch's scalar path
NUMEL = int(np.prod(SHAPE))
MAX_LOOP = 64  # model outputs drawn per file (the longest loop, 61 trailing steps, has 62)


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


def b64(x):
    """Float32 values as base64 of their little-endian bytes. Only float32 input: nothing is rounded."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    assert arr.dtype == np.float32, f"expected float32 values, got {arr.dtype}"
    return base64.b64encode(arr.astype("<f4").reshape(-1).tobytes()).decode("ascii")


def numbers(x):
    """Float32 values as JSON numbers: integers where integral, else the shortest decimal form."""
    return [int(v) if v.is_integer() else v for v in f32list(x)]


def resolve(kind, config):
    if kind is None:
        cls = getattr(diffusers, config["_class_name"])
        return cls, {}
    return KINDS[kind] if kind in KINDS else FEW_STEP_KINDS[kind]


def make(kind, config, steps):
    cls, overrides = resolve(kind, config)
    s = cls.from_config(dict(config), **overrides)
    s.set_timesteps(steps)
    return s


def config_name(config):
    """A readable, unique name: "sd15" plus the keys that differ, or "class defaults" plus the keys set."""
    base, ref = ("sd15", SD15) if all(k in config for k in SD15) else ("class defaults", {})
    diff = []
    for k, v in config.items():
        if k not in ref or ref[k] != v:
            text = f"<{len(v)} values>" if isinstance(v, list) else v if isinstance(v, str) else json.dumps(v)
            diff.append(f"{k}={text}")
    return " ".join([base] + diff)


class FileInputs:
    """The tensors every case of one file shares: the model outputs and the add_noise inputs."""

    def __init__(self, seed):
        rs = np.random.RandomState(seed)
        self.model_outputs = rs.randn(MAX_LOOP, NUMEL).astype(np.float32)
        self.add_noise = rs.randn(2, NUMEL).astype(np.float32)
        self.used = 0

    @staticmethod
    def take(row, shape):
        return torch.from_numpy(row[: int(np.prod(shape))].copy().reshape(shape))

    def model_output(self, k, shape):
        assert k < MAX_LOOP, k
        self.used = max(self.used, k + 1)
        return self.take(self.model_outputs[k], shape)

    def to_json(self):
        return {
            "model_outputs": [b64(row) for row in self.model_outputs[: self.used]],
            "add_noise_inputs": {"original": b64(self.add_noise[0]), "noise": b64(self.add_noise[1])},
        }


def run_case(name, kind, config, steps, seed, inputs, strength=None, shape=SHAPE, noise_seed=None, force_begin=False,
             eta=None):
    """One denoising loop. strength=None: text-to-image; else image-to-image from diffusers' get_timesteps.

    force_begin: call set_begin_index(0) for text-to-image too. Needed only where diffusers' own
    lookup of the first timestep fails (duplicate first timesteps, see the Karras cosine case).
    """
    assert int(np.prod(shape)) <= NUMEL, shape
    rs = np.random.RandomState(seed)
    s = make(kind, config, steps)
    timesteps = s.timesteps.clone()
    case = {
        "name": name,
        "kind": kind,
        "config": config_name(config),
        "steps": steps,
        "shape": shape,
        "class": s.__class__.__name__,
        "timesteps": numbers(timesteps.to(torch.float32)),
        "init_noise_sigma": f32list([float(s.init_noise_sigma)])[0],
        "order": s.order,
    }
    if hasattr(s, "sigmas"):
        case["sigmas"] = b64(s.sigmas)

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
        case["original"] = b64(original)
        case["noise"] = b64(noise)
    case["begin_index"] = begin
    case["initial_sample"] = b64(sample)

    accepts_generator = "generator" in inspect.signature(s.step).parameters
    gseed = noise_seed if noise_seed is not None else seed
    g = torch.Generator("cpu").manual_seed(gseed)
    case["generator_seed"] = gseed
    if eta is not None:
        case["eta"] = eta

    scaled_out, prev_out, renoised_out = [], [], []
    loop = timesteps[begin:]
    for i, t in enumerate(loop):
        model_output = inputs.model_output(i, shape)
        scaled = s.scale_model_input(sample, t)
        kwargs = {"generator": g} if accepts_generator else {}
        if eta is not None:
            kwargs["eta"] = eta  # what the pipelines pass to a scheduler whose step takes eta (TCD)
        prev = s.step(model_output, t, sample, return_dict=False, **kwargs)[0]
        # None when scale_model_input returned the sample unchanged (all but the Euler classes)
        scaled_out.append(None if torch.equal(scaled, sample) else b64(scaled))
        prev_out.append(b64(prev))
        if strength is not None and i < len(loop) - 1:
            # The inpainting pipeline (4-channel UNet) re-noises the original to the next timestep.
            renoised_out.append(b64(s.add_noise(original, noise, torch.tensor([loop[i + 1]]))))
        sample = prev
    # Per loop step: scale_model_input (null for the whole loop when it is the identity throughout),
    # the step result, and for image-to-image the re-noised original at the next timestep.
    case["scaled"] = None if all(x is None for x in scaled_out) else scaled_out
    case["prev_samples"] = prev_out
    if strength is not None:
        case["renoised"] = renoised_out

    # add_noise as image-to-image calls it: a fresh scheduler whose begin index is the start step.
    orig2 = FileInputs.take(inputs.add_noise[0], shape)
    noise2 = FileInputs.take(inputs.add_noise[1], shape)
    checks = []
    n = len(timesteps)
    for idx in sorted(set([0, n // 2, n - 1])):
        s2 = make(kind, config, steps)
        if hasattr(s2, "set_begin_index"):
            s2.set_begin_index(idx)
        out = s2.add_noise(orig2, noise2, s2.timesteps[idx : idx + 1].repeat(shape[0]))
        checks.append({"step_index": idx, "output": b64(out)})
    case["add_noise"] = checks
    return case


def scheduler_cases():
    """The cases by file. Each exercises a distinct code path or numeric edge of the Swift port:
    spacing rules, step-count arithmetic, prediction types, beta schedules, solver branches
    (DPM-Solver's lower-order steps below 15 steps and not from 15 on), PRK warm-up, image-to-image
    start indices, the ancestral noise draw's scalar and vectorised paths, the folder's own class."""
    names = list(KINDS) + ["folder"]
    files = {k: {"configs": {}, "cases": [], "inputs": FileInputs(7000 + i)} for i, k in enumerate(names)}
    seed = 100

    def add(file, name, kind, config, steps, **kwargs):
        nonlocal seed
        seed += 1
        f = files[file]
        key = config_name(config)
        assert f["configs"].setdefault(key, dict(config)) == config, key
        f["cases"].append(run_case(name, kind, config, steps, seed=seed, inputs=f["inputs"], **kwargs))

    for kind in KINDS:
        cls = KINDS[kind][0]
        default_spacing = inspect.signature(cls.__init__).parameters["timestep_spacing"].default
        karras = KINDS[kind][1].get("use_karras_sigmas", False)
        # SD1.5 config without timestep_spacing: the class's own default spacing.
        add(kind, f"{kind} sd15 10 steps", kind, SD15, 10)
        # Every spacing explicitly. At 10 steps only where it is not the class default (the case
        # above) and not Karras (Karras sigmas replace the spaced timesteps: same tables).
        for spacing in ("leading", "trailing", "linspace"):
            cfg = dict(SD15, timestep_spacing=spacing)
            for steps in (4, 10):
                if steps == 10 and (spacing == default_spacing or karras):
                    continue
                add(kind, f"{kind} sd15 {spacing} {steps} steps", kind, cfg, steps)
        # Awkward step counts for the trailing/leading arithmetic; 16 is also DPM-Solver's
        # 15-or-more branch (no lower-order steps before the last).
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
            force_begin=karras)
        # Image-to-image at two strengths.
        for strength in (0.6, 0.3):
            add(kind, f"{kind} sd15 img2img strength {strength} 10 steps", kind, SD15, 10, strength=strength)

    # Fewer than 16 elements: the ancestral noise takes torch's scalar path (the shape matters to
    # no other scheduler: their math is elementwise).
    add("euler-a", "euler-a sd15 small shape 10 steps", "euler-a", SD15, 10, shape=SMALL)

    # 61 trailing steps: numpy's arange yields 62 timesteps, the last one -1 (diffusers indexes
    # alphas_cumprod[-1], i.e. the last entry, and np.interp clamps to the first sigma).
    for kind in ("ddim", "pndm", "euler", "dpmpp-2m"):
        add(kind, f"{kind} sd15 trailing 61 steps", kind, dict(SD15, timestep_spacing="trailing"), 61, shape=SMALL)

    # Class-specific options.
    trained = np.linspace(0.0001, 0.03, 100).astype(np.float64).tolist()
    add("pndm", "pndm with PRK warm-up 10 steps", "pndm", dict(SD15, skip_prk_steps=False), 10)
    # 7 steps: odd step ratio, so the PRK half-step (1000 // 7 // 2) truncates.
    add("pndm", "pndm with PRK warm-up 7 steps", "pndm", dict(SD15, skip_prk_steps=False), 7)
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
    add("dpmpp-2m-karras", "dpmpp-2m-karras zero snr", "dpmpp-2m-karras",
        dict(SD15, rescale_betas_zero_snr=True, timestep_spacing="trailing"), 10)
    # The folder's own class from _class_name, and a DPMSolverMultistep folder config with its own options.
    add("folder", "folder class sd15 (PNDM) 10 steps", None, SD15, 10)
    dpm_folder = dict(SD15, _class_name="DPMSolverMultistepScheduler", solver_order=3, algorithm_type="dpmsolver++")
    add("folder", "folder class DPMSolverMultistep order 3 10 steps", None, dpm_folder, 10)
    # 20 steps: third-order updates up to the second-to-last step (15 or more steps).
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


def few_step_cases():
    """LCMScheduler and TCDScheduler (few-step sampling: LCM-LoRA, TCD-LoRA) as StableDiffusionPipeline drives them:
    the SD1.5 config (LCMScheduler.from_config(pipe.scheduler.config)), 1-8 steps, other original_inference_steps,
    timestep_scaling, prediction types, clipping, class defaults, image-to-image; TCD at eta 0 (the pipelines' default),
    0.3 (TCD's examples) and 1."""
    files = {k: {"configs": {}, "cases": [], "inputs": FileInputs(7100 + i)} for i, k in enumerate(FEW_STEP_KINDS)}
    seed = 500

    def add(file, name, config, steps, **kwargs):
        nonlocal seed
        seed += 1
        f = files[file]
        key = config_name(config)
        assert f["configs"].setdefault(key, dict(config)) == config, key
        f["cases"].append(run_case(name, file, config, steps, seed=seed, inputs=f["inputs"], **kwargs))

    for kind in FEW_STEP_KINDS:
        etas = [None] if kind == "lcm" else [0.0, 0.3, 1.0]
        for eta in etas:
            tag = "" if eta is None else f" eta {eta}"
            for steps in (1, 2, 4, 8):
                add(kind, f"{kind} sd15 {steps} steps{tag}", SD15, steps, eta=eta)
        e = None if kind == "lcm" else 0.3
        add(kind, f"{kind} sd15 original_inference_steps 30, 7 steps", dict(SD15, original_inference_steps=30), 7, eta=e)
        add(kind, f"{kind} sd15 v_prediction 4 steps", dict(SD15, prediction_type="v_prediction"), 4, eta=e)
        add(kind, f"{kind} sd15 sample prediction 4 steps", dict(SD15, prediction_type="sample"), 4, eta=e)
        add(kind, f"{kind} class defaults 4 steps", {}, 4, eta=e)
        add(kind, f"{kind} sd15 clip_sample 4 steps", dict(SD15, clip_sample=True, clip_sample_range=0.5), 4, eta=e)
        add(kind, f"{kind} sd15 img2img strength 0.5 8 steps", SD15, 8, strength=0.5, eta=e)
        add(kind, f"{kind} sd15 small shape 4 steps", SD15, 4, shape=SMALL, eta=e)
    add("lcm", "lcm sd15 timestep_scaling 4.5, 4 steps", dict(SD15, timestep_scaling=4.5), 4)
    return files


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    write("rng.json", rng_cases())
    meta = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "float_encoding": "base64 of little-endian float32",
    }
    for kind, f in scheduler_cases().items():
        write(f"{kind}.json", {**meta, "configs": f["configs"], **f["inputs"].to_json(), "cases": f["cases"]})
    for kind, f in few_step_cases().items():
        write(f"{kind}.json", {**meta, "configs": f["configs"], **f["inputs"].to_json(), "cases": f["cases"]})


if __name__ == "__main__":
    main()
