"""Golden Hugging Face hub cache layout for the Swift `Hub` target (Tests/HubTests).

Writes into Tests/Fixtures/hub/:
  repos/<org>/<name>/...   the files of three tiny repos (a few KB in all), made from fixed formulas:
                           tiny-org/tiny-sd-pipe     a miniature diffusers pipeline (model_index.json,
                                                     per-component configs, tokenizer files, non-variant,
                                                     fp16 and .bin weights)
                           h94-test/IP-Adapter-tiny  an IP-Adapter-like repo (models/*.safetensors,
                                                     models/image_encoder/{config.json,model.safetensors})
                           gated-org/gated-tiny      a gated repo: needs `Authorization: Bearer <token>`
  repos.json               the served repos: commit hash, refs (branch/tag -> commit), gated flag and token,
                           per file its size, git blob sha1, and sha256 if it is stored in LFS
                           (here: *.safetensors and *.bin)
  expected-layout.json     the scenario below and the cache tree huggingface_hub made: every path relative to
                           HF_HUB_CACHE with its kind (dir, file, symlink), symlink target, size and sha256

How: a stdlib http.server on 127.0.0.1 imitates the hub's public protocol (HEAD/GET /{repo}/resolve/{rev}/{path}
with X-Repo-Commit, ETag, X-Linked-Etag, X-Linked-Size; LFS files answer 302 to a "CDN" url on the host name
`localhost`, a different host, as the real hub redirects to its CDN; Range; /api/models/{repo}/revision/{rev}
and /api/models/{repo}/tree/{rev}; 401 with X-Error-Code: GatedRepo without the token; 404 with
X-Error-Code: EntryNotFound and X-Repo-Commit for missing files). huggingface_hub (HF_ENDPOINT pointed at it,
HF_HUB_CACHE a fresh temporary folder) then runs the scenario:
  1. diffusers.DiffusionPipeline.download("tiny-org/tiny-sd-pipe")       (snapshot_download with diffusers' patterns)
  2. hf_hub_download("h94-test/IP-Adapter-tiny", "models/ip-adapter_sd15.safetensors")
  3. hf_hub_download("h94-test/IP-Adapter-tiny", "models/image_encoder/config.json", revision="v1.0")
  4. hf_hub_download("h94-test/IP-Adapter-tiny", "models/image_encoder/model.safetensors", revision=<commit>)
  5. hf_hub_download("gated-org/gated-tiny", "model.safetensors", token=<token>)
  6. hf_hub_download("h94-test/IP-Adapter-tiny", "models/missing.safetensors")   -> EntryNotFound (.no_exist)
The Swift test serves exactly these files with FlyingFox, runs the same scenario with HubClient and compares
trees. Everything is deterministic: fixed content, fixed commit hashes, no clock in any file.

Run: tools/reference/.venv/bin/python tools/reference/gen_hub_fixtures.py
"""
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
from safetensors.numpy import save as st_save

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "hub")
TOKEN = "hf_fixture_token_0123456789"


def commit_of(label):
    return hashlib.sha1(label.encode()).hexdigest()


def jdump(obj):
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def tensors(seed, shapes):
    out = {}
    for i, (name, shape) in enumerate(shapes):
        n = int(np.prod(shape))
        values = ((np.arange(n, dtype=np.float64) * (seed + 3) + i * 7) % 17 - 8) / 16.0
        out[name] = values.reshape(shape).astype(np.float32)
    return st_save(out)


def pseudo_bytes(seed, n):
    data = bytearray()
    counter = 0
    while len(data) < n:
        data += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(data[:n])


def make_repos():
    pipe = {
        "model_index.json": jdump({
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.42.1",
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "image_encoder": [None, None],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "PNDMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        }),
        "README.md": b"# tiny-sd-pipe\nA miniature pipeline for cache layout tests.\n",
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n",
        "feature_extractor/preprocessor_config.json": jdump({"crop_size": 8, "image_processor_type": "CLIPImageProcessor", "size": 8}),
        "scheduler/scheduler_config.json": jdump({"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000}),
        "text_encoder/config.json": jdump({"architectures": ["CLIPTextModel"], "hidden_size": 8, "num_hidden_layers": 1}),
        "text_encoder/model.safetensors": tensors(1, [("text_model.embeddings.token_embedding.weight", (16, 8))]),
        "text_encoder/pytorch_model.bin": pseudo_bytes("text_encoder.bin", 300),
        "tokenizer/merges.txt": b"#version: 0.2\nl o\nlo w</w>\n",
        "tokenizer/special_tokens_map.json": jdump({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>"}),
        "tokenizer/tokenizer_config.json": jdump({"model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}),
        "tokenizer/vocab.json": jdump({"<|endoftext|>": 3, "<|startoftext|>": 2, "low</w>": 1, "lo": 0}),
        "unet/config.json": jdump({"_class_name": "UNet2DConditionModel", "block_out_channels": [8], "sample_size": 8}),
        "unet/diffusion_pytorch_model.safetensors": tensors(2, [("conv_in.weight", (8, 4, 3, 3)), ("conv_in.bias", (8,))]),
        "unet/diffusion_pytorch_model.fp16.safetensors": st_save({"conv_in.weight": np.ones((8, 4, 3, 3), np.float16)}),
        "unet/diffusion_pytorch_model.bin": pseudo_bytes("unet.bin", 400),
        "vae/config.json": jdump({"_class_name": "AutoencoderKL", "latent_channels": 4, "sample_size": 16}),
        "vae/diffusion_pytorch_model.safetensors": tensors(3, [("decoder.conv_out.weight", (3, 4, 3, 3))]),
    }
    ip = {
        "README.md": b"# IP-Adapter-tiny\n",
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
        "models/ip-adapter_sd15.safetensors": tensors(4, [("image_proj.proj.weight", (16, 8)), ("ip_adapter.1.to_k_ip.weight", (8, 8))]),
        "models/ip-adapter-plus_sd15.safetensors": tensors(5, [("image_proj.latents", (1, 4, 8))]),
        "models/image_encoder/config.json": jdump({"architectures": ["CLIPVisionModelWithProjection"], "hidden_size": 8}),
        "models/image_encoder/model.safetensors": tensors(6, [("vision_model.embeddings.patch_embedding.weight", (8, 3, 2, 2))]),
    }
    gated = {
        "config.json": jdump({"gated": True}),
        "model.safetensors": tensors(7, [("weight", (4, 4))]),
    }
    return [
        {"id": "tiny-org/tiny-sd-pipe", "commit": commit_of("tiny-sd-pipe@1"), "tags": {}, "gated": False, "files": pipe},
        {"id": "h94-test/IP-Adapter-tiny", "commit": commit_of("IP-Adapter-tiny@1"), "tags": {"v1.0": True}, "gated": False, "files": ip},
        {"id": "gated-org/gated-tiny", "commit": commit_of("gated-tiny@1"), "tags": {}, "gated": True, "files": gated},
    ]


def is_lfs(path):
    return path.endswith(".safetensors") or path.endswith(".bin")


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data):
    return (
        "version https://git-lfs.github.com/spec/v1\n"
        f"oid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n"
    ).encode()


def file_info(path, data):
    info = {"path": path, "size": len(data), "lfs": is_lfs(path)}
    if is_lfs(path):
        pointer = lfs_pointer(data)
        info["sha256"] = hashlib.sha256(data).hexdigest()
        info["blob_id"] = git_blob_sha1(pointer)  # git stores the pointer; its blob id is the tree's oid
        info["pointer_size"] = len(pointer)
    else:
        info["blob_id"] = git_blob_sha1(data)
    return info


def write_fixtures(repos):
    repos_dir = os.path.join(OUT, "repos")
    shutil.rmtree(repos_dir, ignore_errors=True)
    manifest = []
    for repo in repos:
        refs = {"main": repo["commit"]}
        for tag in repo["tags"]:
            refs[tag] = repo["commit"]
        files = []
        for path in sorted(repo["files"]):
            data = repo["files"][path]
            target = os.path.join(repos_dir, repo["id"], path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
            files.append(file_info(path, data))
        entry = {"id": repo["id"], "commit": repo["commit"], "refs": refs, "gated": repo["gated"], "files": files}
        if repo["gated"]:
            entry["token"] = TOKEN
        manifest.append(entry)
    with open(os.path.join(OUT, "repos.json"), "w") as f:
        json.dump({"repos": manifest}, f, indent=1, sort_keys=True)
        f.write("\n")
    return manifest


class Hub:
    """The served state: repo id -> manifest entry and file bytes."""

    def __init__(self, manifest, repos):
        self.manifest = {m["id"]: m for m in manifest}
        self.data = {r["id"]: r["files"] for r in repos}
        self.by_sha = {}
        for r in repos:
            for path, data in r["files"].items():
                self.by_sha[hashlib.sha256(data).hexdigest()] = data
        self.log = []


def make_handler(hub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self.route(head=True)

        def do_GET(self):
            self.route(head=False)

        def send(self, status, headers, body=b"", head=False):
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def error(self, status, code, extra=None, head=False):
            headers = {"X-Error-Code": code, "Content-Type": "application/json"}
            headers.update(extra or {})
            self.send(status, headers, json.dumps({"error": code}).encode(), head)

        def body_with_range(self, data, headers, head):
            rng = self.headers.get("Range")
            m = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if m and int(m.group(1)) < len(data):
                start = int(m.group(1))
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                self.send(206, headers, data[start:], head)
            else:
                self.send(200, headers, data, head)

        def route(self, head):
            url = urlsplit(self.path)
            path = unquote(url.path)
            hub.log.append(f"{self.command} {self.path}")
            if path.startswith("/cdn/"):
                data = hub.by_sha.get(path[len("/cdn/"):])
                if data is None:
                    return self.error(404, "EntryNotFound", head=head)
                headers = {"ETag": f'"{hashlib.sha256(data).hexdigest()}"', "Accept-Ranges": "bytes",
                           "Content-Type": "application/octet-stream"}
                return self.body_with_range(data, headers, head)
            m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)", path)
            if m:
                return self.api(m.group(1), m.group(2), m.group(3), parse_qs(url.query), head)
            m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if m:
                return self.resolve(m.group(1), m.group(2), m.group(3), head)
            self.error(404, "RepoNotFound", head=head)

        def repo_and_commit(self, repo_id, revision, head):
            repo = hub.manifest.get(repo_id)
            if repo is None:
                self.error(404, "RepoNotFound", head=head)
                return None, None
            if repo["gated"] and self.headers.get("Authorization") != f"Bearer {repo['token']}":
                self.error(401, "GatedRepo", head=head)
                return None, None
            commit = repo["refs"].get(revision) or (revision if revision == repo["commit"] else None)
            if commit is None:
                self.error(404, "RevisionNotFound", head=head)
                return None, None
            return repo, commit

        def resolve(self, repo_id, revision, filename, head):
            repo, commit = self.repo_and_commit(repo_id, revision, head)
            if repo is None:
                return
            info = next((f for f in repo["files"] if f["path"] == filename), None)
            if info is None:
                return self.error(404, "EntryNotFound", {"X-Repo-Commit": commit}, head)
            data = hub.data[repo_id][filename]
            if info["lfs"]:
                host, port = self.server.server_address[:2]
                headers = {
                    "Location": f"http://localhost:{port}/cdn/{info['sha256']}",
                    "X-Repo-Commit": commit,
                    "X-Linked-Etag": f'"{info["sha256"]}"',
                    "X-Linked-Size": str(info["size"]),
                    "ETag": f'"{info["blob_id"]}"',
                }
                return self.send(302, headers, b"", head)
            headers = {"X-Repo-Commit": commit, "ETag": f'"{info["blob_id"]}"', "Accept-Ranges": "bytes",
                       "Content-Type": "text/plain; charset=utf-8"}
            self.body_with_range(data, headers, head)

        def api(self, repo_id, kind, revision, query, head):
            repo, commit = self.repo_and_commit(repo_id, revision, head)
            if repo is None:
                return
            if kind == "revision":
                blobs = query.get("blobs", ["false"])[0].lower() == "true"
                siblings = []
                for f in repo["files"]:
                    s = {"rfilename": f["path"]}
                    if blobs:
                        s["size"] = f["size"]
                        s["blobId"] = f["blob_id"]
                        if f["lfs"]:
                            s["lfs"] = {"sha256": f["sha256"], "size": f["size"], "pointerSize": f["pointer_size"]}
                    siblings.append(s)
                body = {"_id": commit[:24], "id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                        "gated": "auto" if repo["gated"] else False, "tags": [], "siblings": siblings}
            else:
                entries, dirs = [], set()
                for f in repo["files"]:
                    parts = f["path"].split("/")
                    for i in range(1, len(parts)):
                        d = "/".join(parts[:i])
                        if d not in dirs:
                            dirs.add(d)
                            entries.append({"type": "directory", "oid": git_blob_sha1(d.encode()), "size": 0, "path": d})
                    e = {"type": "file", "oid": f["blob_id"], "size": f["size"], "path": f["path"]}
                    if f["lfs"]:
                        e["lfs"] = {"oid": f["sha256"], "size": f["size"], "pointerSize": f["pointer_size"]}
                    entries.append(e)
                body = entries
            self.send(200, {"Content-Type": "application/json", "X-Repo-Commit": commit}, json.dumps(body).encode(), head)

    return Handler


def walk_cache(cache):
    entries = []
    for dirpath, dirnames, filenames in os.walk(cache):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, cache)
            if os.path.islink(full):
                entries.append({"path": rel, "kind": "symlink", "target": os.readlink(full)})
            elif os.path.isdir(full):
                entries.append({"path": rel, "kind": "dir"})
            else:
                with open(full, "rb") as f:
                    data = f.read()
                entries.append({"path": rel, "kind": "file", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return sorted(entries, key=lambda e: e["path"])


def compact_json(obj):
    """A top-level object whose list values are written one item per line (small, diff-friendly)."""
    lines = []
    for key, value in obj.items():
        if isinstance(value, list):
            items = ",\n".join("  " + json.dumps(v, sort_keys=True) for v in value)
            lines.append(f" {json.dumps(key)}: [\n{items}\n ]")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main():
    repos = make_repos()
    manifest = write_fixtures(repos)
    hub = Hub(manifest, repos)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(hub))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    tmp = tempfile.mkdtemp(prefix="hub-fixtures-")
    cache = os.path.join(tmp, "hub")
    os.environ.update({
        "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_CACHE": cache, "HF_HOME": os.path.join(tmp, "home"),
        "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_XET": "1",
        "NO_PROXY": "*",
    })
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.pop(key, None)

    import huggingface_hub
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError
    from diffusers import DiffusionPipeline

    ip = next(m for m in manifest if m["id"] == "h94-test/IP-Adapter-tiny")
    scenario = [
        {"op": "pipeline", "repo": "tiny-org/tiny-sd-pipe", "revision": "main"},
        {"op": "file", "repo": "h94-test/IP-Adapter-tiny", "path": "models/ip-adapter_sd15.safetensors", "revision": "main"},
        {"op": "file", "repo": "h94-test/IP-Adapter-tiny", "path": "models/image_encoder/config.json", "revision": "v1.0"},
        {"op": "file", "repo": "h94-test/IP-Adapter-tiny", "path": "models/image_encoder/model.safetensors", "revision": ip["commit"]},
        {"op": "file", "repo": "gated-org/gated-tiny", "path": "model.safetensors", "revision": "main", "token": True},
        {"op": "missing", "repo": "h94-test/IP-Adapter-tiny", "path": "models/missing.safetensors", "revision": "main"},
    ]
    for step in scenario:
        if step["op"] == "pipeline":
            DiffusionPipeline.download(step["repo"], revision=step["revision"])
        elif step["op"] == "file":
            hf_hub_download(step["repo"], step["path"], revision=step["revision"], token=TOKEN if step.get("token") else None)
        else:
            try:
                hf_hub_download(step["repo"], step["path"], revision=step["revision"])
                sys.exit("expected EntryNotFoundError")
            except EntryNotFoundError:
                pass
    server.shutdown()

    layout = {
        "generator": f"huggingface_hub {huggingface_hub.__version__}",
        "token": TOKEN,
        "scenario": scenario,
        "entries": walk_cache(cache),
        "requests": sorted(hub.log),
    }
    with open(os.path.join(OUT, "expected-layout.json"), "w") as f:
        f.write(compact_json(layout))
    shutil.rmtree(tmp)
    print(f"wrote {OUT}: {len(layout['entries'])} cache entries, {len(hub.log)} requests")


if __name__ == "__main__":
    main()
