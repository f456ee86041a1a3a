"""Times onnxruntime on the real-size face analysis graphs that `gen_face.py --real DIR` writes (random weights).

Cases: det_10g.onnx (SCRFD-10G-bnkps) on a [1,3,640,640] blob, and one ArcFace embedding ([1,3,112,112], batch 1)
with w600k_r50.onnx and glintr100.onnx. CPUExecutionProvider, fp32, intra_op_num_threads=2 (the machine's cores),
ORT_SEQUENTIAL, graph optimisations at ORT's default (all). Prints one JSON object: per case the median / min / max
milliseconds of --runs timed runs after --warmup untimed ones, the session creation time and the file size.
Usage:
  tools/reference/.venv/bin/python tools/reference/gen_face.py --real /tmp/face-real
  tools/reference/.venv/bin/python tools/reference/bench_face_ort.py /tmp/face-real [--runs 10] [--warmup 2]
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import onnxruntime as ort

CASES = [("detection_640", "det_10g.onnx", (1, 3, 640, 640)),
         ("arcface_r50_b1", "w600k_r50.onnx", (1, 3, 112, 112)),
         ("arcface_r100_b1", "glintr100.onnx", (1, 3, 112, 112))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rng = np.random.RandomState(0)
    result = dict(onnxruntime=ort.__version__, threads=args.threads, runs=args.runs, warmup=args.warmup, cases={})
    for name, fname, shape in CASES:
        path = os.path.join(args.dir, fname)
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        t0 = time.perf_counter()
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        load_ms = (time.perf_counter() - t0) * 1e3
        feed = {sess.get_inputs()[0].name: rng.uniform(-1, 1, shape).astype(np.float32)}
        for _ in range(args.warmup):
            sess.run(None, feed)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            sess.run(None, feed)
            times.append((time.perf_counter() - t0) * 1e3)
        result["cases"][name] = dict(file=fname, bytes=os.path.getsize(path), input=list(shape),
                                     median_ms=round(statistics.median(times), 2), min_ms=round(min(times), 2),
                                     max_ms=round(max(times), 2), session_ms=round(load_ms, 1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
