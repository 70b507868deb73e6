"""The seed's scoring script (SPEC.md, "The API"), run as a demo loop on local disk.

Only the import differs from an Azure ML scoring script. Run it with ``scripts/demo``.
"""

from __future__ import annotations

import csv
import glob
import os
import random
import sys

import numpy as np

from mdc_core import ModelDataCollector


class Model:
    """A stand-in for a trained model: two outputs from six features."""

    def predict(self, data: np.ndarray) -> np.ndarray:
        return np.column_stack([data.sum(axis=1), data.max(axis=1)])


def init():
    global inputs_dc, prediction_dc, model
    model = Model()
    inputs_dc = ModelDataCollector("best_model", designation="inputs",
                                   feature_names=["feat1", "feat2", "feat3", "feat4", "feat5", "feat6"])
    prediction_dc = ModelDataCollector("best_model", designation="predictions",
                                       feature_names=["prediction1", "prediction2"])


def run(data):
    data = np.array(data)
    result = model.predict(data)
    inputs_dc.collect(data)       # rows go to storage in the background
    prediction_dc.collect(result)
    return result.tolist()


def main(requests: int = 1000) -> None:
    init()
    rng = random.Random(42)
    for _ in range(requests):
        run([[round(rng.gauss(0, 1), 6) for _ in range(6)]])
    inputs_dc.flush(timeout=30)
    root = os.path.abspath(os.environ.get("MDC_STORAGE_URL", "modeldata"))
    print(f"Scored {requests} requests; mdc wrote:")
    for path in sorted(glob.glob(os.path.join(root, "**", "*.csv"), recursive=True)):
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        print(f"\n{path}  ({len(rows) - 1} rows)")
        for row in rows[:3]:
            print("  " + ",".join(row))
    print("\nstats:", {"inputs": inputs_dc.stats(), "predictions": prediction_dc.stats()})


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
