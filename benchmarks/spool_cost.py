"""What spooling a sealed batch costs the flusher: put (fsync of file and directory) plus remove.

    python benchmarks/spool_cost.py [--dir PATH] [--runs 50] [--mb 1]

Prints the median and 90th percentile milliseconds of put+remove of one batch of ``--mb`` MB
(one record of random bytes), with fsync and without, in a fresh spool under ``--dir`` (default:
a temporary folder beside this repository, so on the disk a deployment would use, not a tmpfs).
The figure decides whether spooling every batch can be the default.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from mdc_core.spool import Spool, SpoolRecord


def put_remove_ms(spool: Spool, record: SpoolRecord, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        spool.remove(spool.put([record]))
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--mb", type=float, default=1.0)
    args = parser.parse_args()
    record = SpoolRecord(
        "s3://bucket/modeldata",
        "default/default/default/svc/best_model/1/inputs/2026/03/05/data-0123456789abcdef-0000000001.csv",
        os.urandom(int(args.mb * 1_000_000)),
        10_000,
        "best_model/1/inputs",
    )
    with tempfile.TemporaryDirectory(prefix=".spool-bench-", dir=args.dir) as directory:
        print(f"spool in {directory}, {args.mb:g} MB batch, {args.runs} runs")
        for fsync in (True, False):
            with Spool(os.path.join(directory, str(fsync)), fsync=fsync) as spool:
                put_remove_ms(spool, record, 3)  # warm-up
                times = sorted(put_remove_ms(spool, record, args.runs))
            p90 = times[int(0.9 * (len(times) - 1))]
            print(f"fsync={fsync!s:5}  put+remove median {statistics.median(times):7.2f} ms   p90 {p90:7.2f} ms")


if __name__ == "__main__":
    main()
