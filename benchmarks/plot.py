"""Plot calls/s and p99 collect() latency against threads from a suite report (JSON).

    python benchmarks/plot.py benchmarks/results/quick-....json docs/performance.png

matplotlib is not a dependency of mdc: ``draw()`` (used by ``suite.py --plot``) runs this file in
``.cache/bench/venv-plot``, created with matplotlib on first use. Single-row cells on local disk
(and the peers') are drawn: mdc with plain lists and with 1-row pandas frames, the floor, and
Azure ML's collectors with 1-row pandas frames.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

THREADS = {"1t": 1, "4t": 4, "16t": 16}
SERIES = [  # label, filter, use the floor's figures
    ("mdc, list rows", {"target": "mdc", "backend": "local", "shape": "list", "rows_per_call": 1}, False),
    ("mdc, 1-row pandas", {"target": "mdc", "backend": "local", "shape": "pandas", "rows_per_call": 1}, False),
    ("floor: lock + list.append", {"target": "mdc", "backend": "local", "shape": "list", "rows_per_call": 1}, True),
    ("azureml-ai-monitoring, 1-row pandas", {"target": "v2", "shape": "pandas", "rows_per_call": 1}, False),
    ("azureml-monitoring, 1-row pandas", {"target": "v1", "shape": "pandas", "rows_per_call": 1}, False),
]


def draw(report: Path, png: Path) -> None:
    """Draw ``png`` from ``report`` with matplotlib from the plotting venv."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import peers

    python = peers.venv_python("plot", ["matplotlib"])
    subprocess.run([str(python), __file__, str(report), str(png)], check=True, timeout=300)


def main(report: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(report.read_text())
    fig, (ax_rate, ax_p99) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, want, floor in SERIES:
        points = []
        for cell in data["cells"]:
            if cell["concurrency"] in THREADS and all(cell.get(k) == v for k, v in want.items()):
                figures = cell.get("floor") if floor else cell
                if figures:
                    points.append((THREADS[cell["concurrency"]], figures["calls_per_s"], figures["p99_us"]))
        if not points:
            continue
        points.sort()
        xs = [p[0] for p in points]
        style = "--" if floor else "-"
        ax_rate.plot(xs, [p[1] for p in points], style, marker="o", label=label)
        ax_p99.plot(xs, [p[2] for p in points], style, marker="o", label=label)
    for ax, title in ((ax_rate, "collect() calls/s (higher is better)"), (ax_p99, "p99 collect() latency, µs")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(list(THREADS.values()), [str(t) for t in THREADS.values()])
        ax.set_xlabel("threads in one process")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_rate.legend(fontsize=8)
    m = data.get("machine", {})
    fig.suptitle(
        f"mdc {data['mode']} benchmark, {data.get('finished', '')} — {m.get('cpus')} cores, {m.get('cpu', '')}",
        fontsize=10,
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
