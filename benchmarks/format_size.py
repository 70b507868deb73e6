"""Bytes on storage per 1M rows, and rows/s to write them, in CSV and in Parquet.

    python benchmarks/format_size.py [--rows 1000000] [--rows-per-call 100] [--dir PATH]

The workload is the benchmarks' usual one: ``feat1..feat6`` as float64 drawn from a normal
distribution (full-precision random floats: the hard case for compression), collected as
numpy arrays of ``--rows-per-call`` rows, with the eight ``$aml_`` columns mdc adds. Each
format writes to a fresh folder on local disk (default: beside this repository, not a tmpfs):
CSV appends to the spec's ``data.csv``; Parquet writes one file per sealed batch, then the
day is compacted into ``data.parquet`` (timed separately). Write throughput is rows collected
divided by the time from the first ``collect()`` to the end of ``flush()``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mdc_backends.local import LocalBackend
from mdc_core import ModelDataCollector
from mdc_core.compaction import compact_partition
from mdc_formats.parquet import ParquetFormat

FEATURES = [f"feat{i}" for i in range(1, 7)]


def stored(root: Path, extension: str) -> tuple[int, int]:
    """(bytes, files) of the published files (mdc's hidden files excluded)."""
    paths = [p for p in root.rglob(f"*.{extension}") if not p.name.startswith((".", "_"))]
    return sum(p.stat().st_size for p in paths), len(paths)


def write(root: Path, fmt: str, rows: int, per_call: int, options: dict[str, Any]) -> float:
    """Collect ``rows`` rows; return the seconds from the first collect() to the end of flush()."""
    data = np.random.default_rng(0).normal(size=(rows, 6))  # no repeats for a codec to find
    dc = ModelDataCollector("bench", "inputs", FEATURES, storage=str(root), format=fmt, format_options=options,
                            compaction="off")
    start = time.perf_counter()
    for i in range(0, rows - per_call + 1, per_call):
        dc.collect(data[i : i + per_call])
    status = dc.flush(timeout=600)
    elapsed = time.perf_counter() - start
    dc.close()
    if not status:
        raise SystemExit(f"{fmt}: flush did not write everything: {status}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rows-per-call", type=int, default=100)
    parser.add_argument("--dir", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser.add_argument("--compression", default="zstd", help="Parquet codec (format option)")
    args = parser.parse_args()
    per_million = 1_000_000 / args.rows
    print(f"{args.rows:,} rows of 6 float64 features, {args.rows_per_call} rows per collect(), local disk")
    with tempfile.TemporaryDirectory(prefix=".format-bench-", dir=args.dir) as directory:
        csv_root, pq_root = Path(directory, "csv"), Path(directory, "parquet")
        seconds = write(csv_root, "csv", args.rows, args.rows_per_call, {})
        size, count = stored(csv_root, "csv")
        print(f"csv      {size * per_million / 1e6:8.1f} MB per 1M rows ({count} file)     "
              f"{args.rows / seconds:10,.0f} rows/s to write")
        options = {"compression": args.compression}
        seconds = write(pq_root, "parquet", args.rows, args.rows_per_call, options)
        size, count = stored(pq_root, "parquet")
        print(f"parquet  {size * per_million / 1e6:8.1f} MB per 1M rows ({count} batch files) "
              f"{args.rows / seconds:10,.0f} rows/s to write   [{args.compression}]")
        folder = next(p.parent for p in pq_root.rglob("*.parquet")).relative_to(pq_root)
        start = time.perf_counter()
        compact_partition(LocalBackend(str(pq_root), {"append": False}), ParquetFormat(options),
                          folder.as_posix(), "data", "parquet")
        elapsed = time.perf_counter() - start
        size, count = stored(pq_root, "parquet")
        print(f"parquet  {size * per_million / 1e6:8.1f} MB per 1M rows after compaction ({count} file, "
              f"{args.rows / elapsed:,.0f} rows/s to compact)")


if __name__ == "__main__":
    main()
