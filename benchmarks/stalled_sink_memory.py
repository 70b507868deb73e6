"""Peak memory of a process whose storage hangs, at a fixed load, under each full-buffer policy.

Each policy runs in a fresh process: a collector writes to the local backend in object-store
mode (create-only batches, spooled first) whose uploads hang forever, with the memory bound set
by ``--bound-mib``; rows of 6 float64 features are collected in 100-row numpy batches at
``--rate`` rows/s for ``--seconds``. Reported: peak RSS, its growth over the same process
idling (a baseline run that collects nothing), the buffer's own byte counter at its peak, and
where the rows went (in memory, spilled to the spool, dropped).

    python benchmarks/stalled_sink_memory.py [--seconds 8] [--rate 20000] [--bound-mib 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, resource, sys, threading, time
import numpy as np
from mdc_backends.local import LocalBackend
from mdc_core import ModelDataCollector
from mdc_core.pipeline import get_pipeline

policy, seconds, rate, store = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]

class Hung(LocalBackend):
    def create(self, key, data):
        threading.Event().wait()  # the storage never answers

dc = ModelDataCollector("bench", designation="inputs", feature_names=[f"feat{i}" for i in range(1, 7)],
                        storage=store, storage_options={"append": False}, compaction="off")
backend = Hung(store, {"append": False})
dc._route.sink.backend = backend
pipeline = get_pipeline()
pipeline._spools[dc._route.sink.storage_label] = (dc._route.sink.spool, backend)
batch = np.random.default_rng(1).normal(size=(100, 6))
peak_buffer = 0
start = time.monotonic()
sent = 0
if policy != "baseline":
    while (now := time.monotonic() - start) < seconds:
        due = int(now * rate) // 100
        while sent < due:
            dc.collect(batch)
            sent += 1
            peak_buffer = max(peak_buffer, pipeline._buffered_bytes)
        time.sleep(0.005)
else:
    time.sleep(seconds)
stats = dc.stats()
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_buffer_mib": peak_buffer / 2**20, "collected": stats["collected"],
                  "spilled": stats["spilled"], "dropped": sum(stats["dropped"].values()),
                  "in_memory": stats["pending"], "spool_mib": (stats.get("spool_bytes") or 0) / 2**20}))
sys.stdout.flush()
os._exit(0)  # the hung upload would keep an orderly exit waiting
"""


def run(policy: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MDC_")}
        env |= {"MDC_ON_FULL": "spill" if policy == "baseline" else policy,
                "MDC_MAX_BUFFER_BYTES": str(args.bound_mib << 20), "MDC_SPOOL_DIR": os.path.join(tmp, "spool"),
                "MDC_FLUSH_INTERVAL": "1"}
        out = subprocess.run([sys.executable, "-c", CHILD, policy, str(args.seconds), str(args.rate),
                              os.path.join(tmp, "store")], env=env, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise SystemExit(f"{policy} failed:\n{out.stderr}")
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=20_000, help="rows/s")
    parser.add_argument("--bound-mib", type=int, default=16)
    args = parser.parse_args()
    print(f"stalled sink, {args.rate:.0f} rows/s of 6 floats for {args.seconds:.0f} s, "
          f"bound {args.bound_mib} MiB (MDC_MAX_BUFFER_BYTES)")
    results = {p: run(p, args) for p in ("baseline", "spill", "drop_newest", "drop_oldest")}
    base = results["baseline"]["peak_rss_mib"]
    print(f"{'policy':<12} {'peak RSS':>9} {'growth':>8} {'buffer':>8} {'collected':>10} {'in memory':>10} "
          f"{'spilled':>9} {'dropped':>9} {'spool':>8}")
    for policy, r in results.items():
        print(f"{policy:<12} {r['peak_rss_mib']:>6.0f}MiB {r['peak_rss_mib'] - base:>5.0f}MiB "
              f"{r['peak_buffer_mib']:>5.1f}MiB {r['collected']:>10} {r['in_memory']:>10} {r['spilled']:>9} "
              f"{r['dropped']:>9} {r['spool_mib']:>5.1f}MiB")


if __name__ == "__main__":
    main()
