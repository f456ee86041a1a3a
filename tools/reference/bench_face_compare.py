"""Side-by-side benchmark of the face graphs: the Swift engine (`ipadapter bench face DIR`) and
onnxruntime (`bench_face_ort.py DIR`, 2 threads), alternating the two `--repeats` times (a fresh
process each), on the real-size random-weight graphs of `gen_face.py --real DIR`. Prints per case
the best median of each engine and ours / onnxruntime.

  swift build -c release --product ipadapter
  tools/reference/.venv/bin/python tools/reference/gen_face.py --real /tmp/face-real
  tools/reference/.venv/bin/python tools/reference/bench_face_compare.py /tmp/face-real [--repeats 3]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    text = out.stdout[out.stdout.index("{"):]
    return json.loads(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "ipadapter"))
    args = ap.parse_args()
    best = {"ours": {}, "ort": {}}
    for _ in range(args.repeats):
        ours = run([args.binary, "bench", "face", args.dir, "--runs", str(args.runs)])
        ort = run([sys.executable, os.path.join(HERE, "bench_face_ort.py"), args.dir, "--runs", str(args.runs)])
        for engine, result in (("ours", ours), ("ort", ort)):
            for case, r in result["cases"].items():
                prev = best[engine].get(case)
                best[engine][case] = r["median_ms"] if prev is None else min(prev, r["median_ms"])
    print(f"{'case':<18} {'ours ms':>9} {'ort ms':>9} {'ratio':>7}")
    for case in best["ort"]:
        o, r = best["ours"].get(case), best["ort"][case]
        if o is None:
            continue
        print(f"{case:<18} {o:9.1f} {r:9.1f} {o / r:7.2f}")


if __name__ == "__main__":
    main()
