"""Drift on known distributions with known shifts: PSI and binned values against values computed
by hand here; KS and Wasserstein within the documented bounds of scipy's exact results; no drift
on identical data; categorical drift; missing rates; empty windows; the command line; the HTML
report in headless Chromium. Helpers here (``write_day``, ``ROOT_SERIES``) serve the Spark test."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mdc_core import drift
from mdc_core.cli import main
from mdc_core.drift_metrics import BINS, PlanBuilder, chi2_sf, numeric_plan
from mdc_core.store import NoDataError

stats = pytest.importorskip("scipy.stats")
from scipy.spatial.distance import jensenshannon  # noqa: E402

UTC = dt.timezone.utc
SERIES = "default/default/default/default/m/1"
TS = "$aml_dc_scoring_timestamp"
N = 20_000
KS_TOLERANCE = 0.01
"""Documented: the binned KS statistic is within 0.01 of the exact one (200 quantile bins)."""
W_TOLERANCE = 0.005
"""Documented: the binned Wasserstein distance is within 0.005 baseline standard deviations of the
exact one."""


def day(d: int) -> dt.datetime:
    return dt.datetime(2026, 3, d, tzinfo=UTC)


def write_day(
    root: Any, when: dt.datetime, columns: dict[str, Any], designation: str = "inputs", fmt: str = "csv"
) -> None:
    """One partition (``data.csv`` or ``data.parquet``) with the rows spread over the day."""
    n = len(next(iter(columns.values())))
    folder = os.path.join(str(root), SERIES, designation, when.strftime("%Y/%m/%d"))
    os.makedirs(folder, exist_ok=True)
    stamps = [when + dt.timedelta(seconds=86_399 * i / max(n - 1, 1)) for i in range(n)]
    table = pa.table(
        {
            **columns,
            "$aml_dc_correlation_id": [f"{when:%d}-{i}" for i in range(n)],
            TS: [s.strftime("%Y-%m-%dT%H:%M:%S.%f") for s in stamps]
            if fmt == "csv"
            else pa.array(stamps, pa.timestamp("us", tz="UTC")),
        }
    )
    if fmt == "csv":
        pacsv.write_csv(table, os.path.join(folder, "data.csv"))
    else:
        pq.write_table(table, os.path.join(folder, "data.parquet"))


def normals(seed: int, n: int = N, shift: Sequence[float] = (0.0, 0.0, 0.0)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(s, 1.0, n) for name, s in zip(("a", "b", "c"), shift)}


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, np.ndarray], list[dict[str, Any]]]:
    """Baseline N(0, 1) x3; day 1 the same distribution (new sample); day 2 'a' shifted by
    0.5 sigma; day 3 empty; day 4 'b' shifted by 1 sigma."""
    root = str(tmp_path_factory.mktemp("drift"))
    base = normals(1)
    days = [normals(2), normals(3, shift=(0.5, 0, 0)), None, normals(4, shift=(0, 1.0, 0))]
    for i, cols in enumerate(days):
        if cols is not None:
            write_day(root, day(4 + i), cols)
    return root, base, days


@pytest.fixture(scope="module")
def result(shifted: Any) -> drift.DriftResult:
    root, base, _ = shifted
    return drift.compute(root, model="m", version="1", baseline=pa.table(base), start="2026-03-04", end="2026-03-07")


def hand_psi(base: np.ndarray, window: np.ndarray) -> float:
    """PSI on the baseline's deciles, the two open tails included, proportions floored at 1e-4."""
    edges = np.unique(np.quantile(base, np.arange(11) / 10))
    b = np.bincount(np.searchsorted(edges, base, side="right"), minlength=len(edges) + 1) / len(base)
    w = np.bincount(np.searchsorted(edges, window, side="right"), minlength=len(edges) + 1) / len(window)
    b, w = np.maximum(b, 1e-4), np.maximum(w, 1e-4)
    return float(np.sum((w - b) * np.log(w / b)))


def assert_same(one: Any, other: Any) -> None:
    """Equal, but for floats that may differ in the last bits (sums added in another order)."""
    if isinstance(one, dict):
        assert one.keys() == other.keys()
        for key in one:
            assert_same(one[key], other[key])
    elif isinstance(one, list):
        assert len(one) == len(other)
        for a, b in zip(one, other):
            assert_same(a, b)
    elif isinstance(one, float):
        assert one == pytest.approx(other, rel=1e-9, abs=1e-12)
    else:
        assert one == other


def normal_cdf(x: np.ndarray) -> np.ndarray:
    return np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])


def test_half_sigma_shift_ranks_first_with_expected_values(result, shifted) -> None:
    """A 0.5-sigma shift in 'a' makes it the top feature of its day, with PSI as computed by hand,
    and KS and Wasserstein near the theoretical 0.197 and 0.5."""
    _, base, days = shifted
    window = result.windows[1]
    assert window["rows"] == N
    assert window["top_features"][0]["name"] == "a"
    a = window["features"]["a"]
    assert a["psi"] == pytest.approx(hand_psi(base["a"], days[1]["a"]), rel=1e-12)
    z = stats.norm.ppf(np.arange(1, 10) / 10)
    p = np.diff(np.concatenate([[0.0], normal_cdf(z - 0.5), [1.0]]))
    assert a["psi"] == pytest.approx(float(np.sum((p - 0.1) * np.log(p / 0.1))), abs=0.03)
    assert a["ks_statistic"] == pytest.approx(2 * normal_cdf(np.array([0.25]))[0] - 1, abs=0.02)
    assert a["wasserstein"] == pytest.approx(0.5, abs=0.04)
    assert a["ks_pvalue"] < 1e-100
    assert window["magnitude"] == a["score"] == a["ks_statistic"]
    for other in ("b", "c"):
        assert window["features"][other]["score"] < 0.03
    assert result.windows[3]["top_features"][0]["name"] == "b"
    assert result.top_features()[:2] == ["b", "a"]


@pytest.mark.parametrize("w", [0, 1, 3])
def test_ks_and_wasserstein_within_tolerance_of_scipy(result, shifted, w) -> None:
    """Binned KS and Wasserstein are within their reported bounds and the documented tolerance
    of scipy's exact results on the raw samples; the KS p-value is Kolmogorov's limit distribution's
    (scipy's kstwobign) at the binned statistic."""
    _, base, days = shifted
    for name in ("a", "b", "c"):
        m = result.windows[w]["features"][name]
        exact = stats.ks_2samp(base[name], days[w][name])
        assert m["ks_statistic"] <= exact.statistic + 1e-12
        assert exact.statistic - m["ks_statistic"] <= m["ks_bound"] + 1e-12
        assert abs(exact.statistic - m["ks_statistic"]) <= KS_TOLERANCE
        wd = stats.wasserstein_distance(base[name], days[w][name])
        assert m["wasserstein"] <= wd + 1e-9
        assert wd - m["wasserstein"] <= m["wasserstein_bound"] + 1e-9
        assert abs(wd - m["wasserstein"]) <= W_TOLERANCE * np.std(base[name])
        limit = stats.kstwobign.sf(math.sqrt(N * N / (2 * N)) * m["ks_statistic"])
        assert m["ks_pvalue"] == pytest.approx(limit, rel=1e-9, abs=1e-300)


def test_identical_distributions_show_no_drift(tmp_path) -> None:
    """The baseline's own rows as the window: every metric is zero."""
    cols = {**normals(7, n=5000), "colour": np.random.default_rng(7).choice(["red", "green", "blue"], 5000)}
    write_day(tmp_path, day(4), cols)
    r = drift.compute(str(tmp_path), model="m", baseline=pa.table(cols))
    w = r.windows[0]
    assert w["magnitude"] == 0.0
    for name in ("a", "b", "c"):
        m = w["features"][name]
        assert (m["psi"], m["ks_statistic"], m["missing_rate_change"]) == (0.0, 0.0, 0.0)
        assert m["wasserstein"] == pytest.approx(0.0, abs=1e-12)
        assert m["ks_pvalue"] == 1.0
    c = w["features"]["colour"]
    assert (c["chi2"], c["js_distance"], c["chi2_pvalue"]) == (0.0, 0.0, 1.0)


def test_categorical_drift_matches_scipy(tmp_path) -> None:
    """Chi-square (statistic, p-value) and Jensen-Shannon distance equal scipy's on the counts; a
    category the baseline never had lands in '(other)'."""
    rng = np.random.default_rng(3)
    base = rng.choice(["x", "y", "z"], 8000, p=[0.5, 0.3, 0.2])
    now = rng.choice(["x", "y", "z", "new"], 6000, p=[0.3, 0.3, 0.3, 0.1])
    write_day(tmp_path, day(4), {"kind": now, "a": rng.normal(0, 1, 6000)})
    r = drift.compute(str(tmp_path), model="m", baseline=pa.table({"kind": base, "a": rng.normal(0, 1, 8000)}))
    m = r.windows[0]["features"]["kind"]
    feature = next(f for f in r.features if f["name"] == "kind")
    assert feature["categories"] == ["x", "y", "z", "(other)"]
    table = np.array([[np.sum(v == c) for c in ("x", "y", "z", "new")] for v in (base, now)])
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    assert m["chi2"] == pytest.approx(chi2, rel=1e-12)
    assert m["chi2_dof"] == dof == 3
    assert m["chi2_pvalue"] == pytest.approx(p, rel=1e-6, abs=1e-300)
    assert m["js_distance"] == pytest.approx(jensenshannon(table[0], table[1], base=2), rel=1e-12)
    assert r.windows[0]["top_features"][0]["name"] == "kind"


def test_chi2_survival_matches_scipy() -> None:
    """The chi-square p-value (regularised gamma) equals scipy's over small and large values."""
    for x, k in [(0.5, 1), (3.0, 2), (10.0, 3), (40.0, 20), (200.0, 150), (1500.0, 49)]:
        assert chi2_sf(x, k) == pytest.approx(stats.chi2.sf(x, k), rel=1e-9, abs=1e-300)


def test_missing_rate_change_and_empty_window(tmp_path) -> None:
    """30% missing values in the window against none in the baseline is a change of 0.3 and the
    window's score; a day without rows has zero rows and null metrics; the JSON has no NaN."""
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1, 1000)
    holed = pa.array([None if i % 10 < 3 else v for i, v in enumerate(values)], pa.float64())
    write_day(tmp_path, day(4), {"a": holed})
    write_day(tmp_path, day(6), {"a": values})
    r = drift.compute(str(tmp_path), model="m", baseline=pa.table({"a": rng.normal(0, 1, 1000)}))
    first, empty, last = r.windows
    assert first["features"]["a"]["missing_rate_change"] == pytest.approx(0.3)
    assert first["magnitude"] == pytest.approx(0.3)
    assert empty["rows"] == 0 and empty["magnitude"] is None and empty["top_features"] == []
    assert empty["features"]["a"]["psi"] is None and empty["features"]["a"]["missing_rate"] is None
    assert last["rows"] == 1000
    json.dumps(r.as_dict(), allow_nan=False)


def test_hour_windows_and_date_range_baseline(shifted) -> None:
    """A date-range baseline of the stored data gives the same numbers as the same rows passed
    as a table; 6-hour windows split a day into four."""
    root, _, days = shifted
    as_range = drift.compute(root, model="m", baseline="2026-03-04..2026-03-04", start="2026-03-05", end="2026-03-05")
    as_table = drift.compute(root, model="m", baseline=pa.table(days[0]), start="2026-03-05", end="2026-03-05")
    assert_same(as_range.windows, as_table.windows)
    hours = drift.compute(
        root, model="m", baseline=pa.table(days[0]), window="6h", start="2026-03-05", end="2026-03-05"
    )
    assert [w["start"][11:16] for w in hours.windows] == ["00:00", "06:00", "12:00", "18:00"]
    assert sum(w["rows"] for w in hours.windows) == N
    assert hours.as_dict()["window"] == "6 hours"


def test_prediction_drift_from_parquet(tmp_path) -> None:
    """Predictions (Parquet files) are monitored like inputs, against a Parquet training file."""
    rng = np.random.default_rng(9)
    write_day(tmp_path, day(4), {"score": rng.normal(0.3, 0.1, 3000)}, designation="predictions", fmt="parquet")
    pq.write_table(pa.table({"score": rng.normal(0.2, 0.1, 3000)}), tmp_path / "train.parquet")
    r = drift.compute(str(tmp_path), model="m", designation="predictions", baseline=str(tmp_path / "train.parquet"))
    m = r.windows[0]["features"]["score"]
    assert r.windows[0]["rows"] == 3000
    assert m["ks_statistic"] == pytest.approx(2 * normal_cdf(np.array([0.5]))[0] - 1, abs=0.04)


def test_plan_sample_is_deterministic_and_bounded() -> None:
    """The edges come from every k-th baseline value (k doubling past the cap), whatever the
    batch sizes; below the cap they are the exact quantiles."""
    values = np.random.default_rng(2).normal(0, 1, 10_000)

    def edges(batch: int, cap: int) -> tuple[float, ...]:
        builder = PlanBuilder({"a": "numeric"}, sample=cap)
        for i in range(0, len(values), batch):
            builder.add(pa.table({"a": values[i : i + batch]}))
        return builder.plan()[0].edges

    assert edges(7, 1000) == edges(1000, 1000) == numeric_plan("a", values[::16]).edges
    assert edges(333, 20_000) == numeric_plan("a", values).edges
    assert len(edges(333, 20_000)) == BINS + 1


def test_no_data_and_bad_arguments(tmp_path) -> None:
    """An empty baseline, a bad window, an unknown feature are refused."""
    write_day(tmp_path, day(4), normals(1, n=100))
    with pytest.raises(NoDataError):
        drift.compute(str(tmp_path), model="m", baseline=pa.table({"a": pa.array([], pa.float64())}))
    with pytest.raises(ValueError, match="window"):
        drift.compute(str(tmp_path), model="m", baseline=pa.table(normals(1, n=100)), window="fortnight")
    with pytest.raises(ValueError, match="features"):
        drift.compute(str(tmp_path), model="m", baseline=pa.table(normals(1, n=100)), features=["zzz"])


# -- the command line ---------------------------------------------------------------------------


def test_cli_json_html_and_fail_above(shifted, tmp_path, capsys) -> None:
    """--json prints the schema'd document; --fail-above exits 4 above the threshold, 0 below;
    no data is exit 3, a bad window exit 2."""
    root, base, _ = shifted
    pq.write_table(pa.table(base), tmp_path / "train.parquet")
    args = [root, "--model", "m", "--baseline", str(tmp_path / "train.parquet"), "--from", "2026-03-04"]
    assert main(["drift", *args, "--to", "2026-03-07", "--json", "--html", str(tmp_path / "r.html")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "mdc.drift/1" and doc["exceeded"] is False
    assert [w["rows"] for w in doc["windows"]] == [N, N, 0, N]
    assert doc["summary"]["top_features"][:2] == ["b", "a"]
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert main(["drift", *args, "--fail-above", "0.3"]) == 4
    out = capsys.readouterr()
    assert "top features: b, a" in out.out and "above 0.3" in out.err
    assert main(["drift", *args, "--fail-above", "0.5"]) == 0
    assert main(["drift", root, "--model", "nope", "--baseline", str(tmp_path / "train.parquet")]) == 3
    assert main(["drift", *args, "--window", "fortnight"]) == 2


# -- the report in a browser -----------------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_html_report_renders_in_headless_chromium(shifted, tmp_path) -> None:
    """Chromium loads the report offline; its DOM holds the magnitude plot with one point per
    non-empty window, a distribution plot per feature, and the top features in order."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on the PATH (scripts/test installs Debian's chromium when run as root with apt)")
    root, base, _ = shifted
    r = drift.compute(root, model="m", baseline=pa.table(base), start="2026-03-04", end="2026-03-07")
    html = r.to_html(threshold=0.3)
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<script" not in html
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert 'id="magnitude-chart"' in dom
    assert dom.count('class="magnitude-point"') == 3
    assert 'class="threshold"' in dom
    for name in ("a", "b", "c"):
        assert f'class="plot distribution" data-feature="{name}"' in dom
    top = dom[dom.index('id="top-features"') :]
    assert top.index('data-feature="b"') < top.index('data-feature="a"') < top.index('data-feature="c"')
    assert dom.count('class="bar-window"') >= 3 * 10


def test_accuracy_and_error_per_window_from_labels(tmp_path) -> None:
    """With labels, each window reports its labelled rows, accuracy, MAE and RMSE, as computed
    by hand from the predictions and labels of its inputs."""
    rng = np.random.default_rng(11)
    wanted = []
    for d, wrong in ((4, 0.1), (5, 0.4)):
        n = 1000
        y = rng.integers(0, 3, n)
        pred = np.where(rng.random(n) < wrong, (y + 1) % 3, y)
        write_day(tmp_path, day(d), {"a": rng.normal(0, 1, n)})
        write_day(tmp_path, day(d), {"pred": pred}, designation="predictions")
        write_day(tmp_path, day(d), {"y": y}, designation="labels")
        err = (pred - y).astype(float)
        wanted.append((n, np.mean(pred == y), np.mean(np.abs(err)), np.sqrt(np.mean(err**2))))
    r = drift.compute(
        str(tmp_path),
        model="m",
        baseline=pa.table({"a": rng.normal(0, 1, 500)}),
        prediction_column="pred",
        label_column="y",
    )
    for window, (n, accuracy, mae, rmse) in zip(r.windows, wanted):
        q = window["labels"]
        assert q["labelled"] == n
        assert q["accuracy"] == pytest.approx(accuracy)
        assert (q["mae"], q["rmse"]) == (pytest.approx(mae), pytest.approx(rmse))
    assert r.windows[0]["labels"]["accuracy"] > 0.85 > 0.65 > r.windows[1]["labels"]["accuracy"]
    assert 'id="labels"' in r.to_html()


def test_results_are_deterministic(shifted, result) -> None:
    """The same data and baseline give the same JSON, byte for byte, and the same report."""
    root, base, _ = shifted
    again = drift.compute(root, model="m", version="1", baseline=pa.table(base), start="2026-03-04", end="2026-03-07")
    assert again.to_json() == result.to_json()
    assert again.to_html() == result.to_html()
