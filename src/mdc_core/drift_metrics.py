"""Drift on fixed bins: the bin plan taken from a baseline, per-batch partial histograms that add
up (the same function on one machine and on Spark's executors), and the metrics computed from two
histograms.

**Bins.** A numeric feature gets ``BINS`` (200) bins between the baseline's quantiles at
``k/BINS`` plus two open tails, ``(-inf, q0)`` and ``[q1, inf)``; equal quantiles merge (discrete
data). A bin keeps the count and the sum of its values, and each window its minimum and maximum.
PSI uses the deciles (every 20th edge, so its bins are unions of the fine ones). A categorical
feature (strings, booleans) gets the baseline's ``CATEGORIES`` (50) most frequent values (count
descending, then value) plus one bucket for every other value, new ones included. Nulls, NaN
and empty strings are *missing*, counted apart from the bins.

**Exactness.** Counts are exact. The binned KS statistic is ``max |F_b - F_w|`` over the bin
edges, exact at the edges; the exact statistic is at most ``ks_bound`` (reported) above it, where
``ks_bound`` is the largest amount a bin's masses allow ``|F_b - F_w|`` to grow inside the bin
(at most the largest bin mass, about 1/200 of the baseline). The binned Wasserstein-1 distance
is ``sum over bins of |integral of (F_b - F_w)|``: each bin's signed integral is exact from its
count and sum, so the value is exact whenever ``F_b - F_w`` keeps its sign inside every bin and
is otherwise below the exact one by at most ``wasserstein_bound`` (reported: the bins where the
sign may change, width times their larger mass).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BINS = 200
"""Fine bins of a numeric feature (quantiles of the baseline)."""
PSI_BINS = 10
"""PSI bins: the baseline's deciles."""
PLOT_BINS = 20
"""Bins of the report's histograms (every 10th fine edge)."""
CATEGORIES = 50
"""Categories kept by name; the rest share one ``(other)`` bucket."""
SAMPLE = 1_000_000
"""At most this many baseline values per feature decide the edges (every k-th value, k doubling)."""
FLOOR = 1e-4
"""Proportions below this count as this in PSI (an empty bin would make it infinite)."""
OTHER = "(other)"


# -- the plan: which bins ---------------------------------------------------------------------


@dataclass(frozen=True)
class FeaturePlan:
    """How one feature is binned: numeric ``edges`` or categorical ``categories``."""

    name: str
    kind: str
    """``numeric`` or ``categorical``."""
    edges: tuple[float, ...] = ()
    psi_edges: tuple[float, ...] = ()
    plot_edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def bins(self) -> int:
        """Bins of the histogram: fine bins plus the two tails, or categories plus ``(other)``."""
        return len(self.edges) + 1 if self.kind == "numeric" else len(self.categories) + 1

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "numeric":
            return {"name": self.name, "kind": self.kind, "bins": self.bins, "psi_edges": list(self.psi_edges)}
        return {"name": self.name, "kind": self.kind, "categories": [*self.categories, OTHER]}


def kind_of(dtype: pa.DataType) -> str | None:
    """``numeric`` (integers, floats, decimals), ``categorical`` (strings, booleans), else None."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "numeric"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_boolean(dtype):
        return "categorical"
    return None


class PlanBuilder:
    """Streams the baseline once and decides the bins: a bounded, deterministic sample of each
    numeric feature (every ``stride``-th value) and the counts of each categorical one."""

    def __init__(self, kinds: dict[str, str], sample: int = SAMPLE):
        self.kinds = kinds
        self.sample = sample
        self._values: dict[str, list[np.ndarray]] = {n: [] for n, k in kinds.items() if k == "numeric"}
        self._held: dict[str, int] = dict.fromkeys(self._values, 0)
        self._seen: dict[str, int] = dict.fromkeys(self._values, 0)
        self._stride: dict[str, int] = dict.fromkeys(self._values, 1)
        self._counts: dict[str, Counter[str]] = {n: Counter() for n, k in kinds.items() if k == "categorical"}

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        for name in self._values:
            values = numeric_values(batch.column(name))
            values = values[~np.isnan(values)]
            stride, seen = self._stride[name], self._seen[name]
            kept = values[(-seen) % stride :: stride]
            self._seen[name] = seen + len(values)
            self._values[name].append(kept)
            self._held[name] += len(kept)
            while self._held[name] > self.sample:  # keep every other value, from here on every 2k-th
                merged = np.concatenate(self._values[name])[::2]
                self._values[name] = [merged]
                self._held[name] = len(merged)
                self._stride[name] *= 2
        for name, counter in self._counts.items():
            column = category_values(batch.column(name))
            counts = pc.value_counts(column.drop_null())
            counter.update(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())))
            if len(counter) > 100 * CATEGORIES:  # bounded: keep the most frequent
                self._counts[name] = Counter(dict(_ranked(counter)[: 10 * CATEGORIES]))

    def plan(self) -> list[FeaturePlan]:
        plans = []
        for name, kind in self.kinds.items():
            if kind == "numeric":
                values = np.concatenate(self._values[name]) if self._values[name] else np.empty(0)
                plans.append(numeric_plan(name, values))
            else:
                kept = tuple(str(v) for v, _ in _ranked(self._counts[name])[:CATEGORIES])
                plans.append(FeaturePlan(name, "categorical", categories=kept))
        return plans


def _ranked(counter: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))


def numeric_plan(name: str, values: np.ndarray, bins: int = BINS) -> FeaturePlan:
    """Edges at the quantiles ``k/bins`` of ``values`` (numpy's linear interpolation)."""
    if len(values) == 0:
        return FeaturePlan(name, "numeric")
    full = np.quantile(np.asarray(values, dtype=np.float64), np.arange(bins + 1) / bins)
    edges = tuple(float(e) for e in np.unique(full))
    psi = tuple(float(e) for e in np.unique(full[:: bins // PSI_BINS]))
    plot = tuple(float(e) for e in np.unique(full[:: bins // PLOT_BINS]))
    return FeaturePlan(name, "numeric", edges=edges, psi_edges=psi, plot_edges=plot)


# -- partial histograms -----------------------------------------------------------------------


def numeric_values(column: Any) -> np.ndarray:
    """float64 values, NaN for missing."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if not pa.types.is_floating(column.type) or column.type != pa.float64():
        column = pc.cast(column, pa.float64(), safe=False)
    return column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def category_values(column: Any) -> pa.Array:
    """Strings; empty strings as null (CSV readers disagree on which an empty field is)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if not pa.types.is_string(column.type):
        column = pc.cast(column, pa.string())
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)


@dataclass
class Histogram:
    """Per window (row ``w``) and bin: ``counts``, ``sums``; per window ``missing``, ``lo``, ``hi``."""

    counts: np.ndarray
    sums: np.ndarray
    missing: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def empty(cls, windows: int, bins: int) -> Histogram:
        return cls(
            np.zeros((windows, bins), np.int64),
            np.zeros((windows, bins), np.float64),
            np.zeros(windows, np.int64),
            np.full(windows, np.inf),
            np.full(windows, -np.inf),
        )

    def add(self, other: Histogram) -> None:
        self.counts += other.counts
        self.sums += other.sums
        self.missing += other.missing
        np.minimum(self.lo, other.lo, out=self.lo)
        np.maximum(self.hi, other.hi, out=self.hi)


def partial(plan: FeaturePlan, column: Any, window: np.ndarray, windows: int) -> Histogram:
    """The histogram of one batch's column; ``window`` is each row's window (rows with a window
    outside ``[0, windows)`` are left out)."""
    keep = (window >= 0) & (window < windows)
    hist = Histogram.empty(windows, plan.bins)
    if plan.kind == "numeric":
        values = numeric_values(column)[keep]
        win = window[keep]
        present = ~np.isnan(values)
        hist.missing += np.bincount(win[~present], minlength=windows)
        values, win = values[present], win[present]
        if len(values):
            bins = np.searchsorted(np.asarray(plan.edges), values, side="right")
            key = win * plan.bins + bins
            size = windows * plan.bins
            hist.counts += np.bincount(key, minlength=size).reshape(windows, plan.bins)
            hist.sums += np.bincount(key, weights=values, minlength=size).reshape(windows, plan.bins)
            np.minimum.at(hist.lo, win, values)
            np.maximum.at(hist.hi, win, values)
        return hist
    strings = category_values(column).filter(pa.array(keep))
    win = window[keep]
    index = pc.index_in(strings, value_set=pa.array(plan.categories, pa.string())).to_numpy(zero_copy_only=False)
    missing = strings.is_null().to_numpy(zero_copy_only=False)
    hist.missing += np.bincount(win[missing], minlength=windows)
    index = np.where(np.isnan(index.astype(np.float64)), len(plan.categories), index).astype(np.int64)[~missing]
    key = win[~missing] * plan.bins + index
    hist.counts += np.bincount(key, minlength=windows * plan.bins).reshape(windows, plan.bins)
    return hist


# -- metrics ----------------------------------------------------------------------------------


def _num(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def psi(base: np.ndarray, win: np.ndarray) -> float:
    """Population stability index of two count vectors: ``sum (w - b) ln(w / b)`` of their
    proportions, each floored at ``FLOOR``."""
    b = np.maximum(base / base.sum(), FLOOR)
    w = np.maximum(win / win.sum(), FLOOR)
    return float(np.sum((w - b) * np.log(w / b)))


def js_distance(base: np.ndarray, win: np.ndarray) -> float:
    """Jensen–Shannon distance, base 2 (0 identical, 1 disjoint), as scipy's ``jensenshannon``."""
    p, q = base / base.sum(), win / win.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


def chi_square(base: np.ndarray, win: np.ndarray) -> tuple[float, int, float]:
    """Pearson's chi-square test of homogeneity on the 2 x k table (no continuity correction;
    categories empty in both dropped): ``(statistic, dof, p-value)``."""
    keep = (base + win) > 0
    table = np.vstack([base[keep], win[keep]]).astype(np.float64)
    if table.shape[1] < 2:
        return 0.0, 0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return stat, dof, chi2_sf(stat, dof)


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for chi-square with ``dof`` degrees of freedom (regularised upper gamma)."""
    if x <= 0:
        return 1.0
    return _gamma_q(dof / 2.0, x / 2.0)


def _gamma_q(a: float, x: float) -> float:
    if x < a + 1:  # series for P, then Q = 1 - P
        term = total = 1.0 / a
        n = a
        for _ in range(10_000):
            n += 1
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - math.lgamma(a)))
    tiny = 1e-300  # continued fraction for Q (Lentz)
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - math.lgamma(a)) * h)


def ks_pvalue(d: float, n: int, m: int) -> float:
    """Two-sample KS p-value, asymptotic: Kolmogorov's ``Q(sqrt(nm/(n+m)) * d)`` (as scipy's
    ``ks_2samp(method="asymp")`` for large samples)."""
    if d <= 0 or n == 0 or m == 0:
        return 1.0
    lam = math.sqrt(n * m / (n + m)) * d
    if lam < 0.2:
        return 1.0
    total = 0.0
    for k in range(1, 200):
        term = 2 * (-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-16:
            break
    return min(1.0, max(0.0, total))


@dataclass
class Cell:
    """One feature's histogram for one window (or the baseline)."""

    counts: np.ndarray
    sums: np.ndarray
    missing: int
    lo: float
    hi: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.counts.sum()) + self.missing


def cell(hist: Histogram, w: int) -> Cell:
    return Cell(hist.counts[w], hist.sums[w], int(hist.missing[w]), float(hist.lo[w]), float(hist.hi[w]))


def _group(counts: np.ndarray, plan: FeaturePlan, coarse: Sequence[float]) -> np.ndarray:
    """Fine-bin counts summed into the bins of ``coarse`` edges (a subset of the fine ones)."""
    fine = np.asarray(plan.edges)
    target = np.searchsorted(np.asarray(coarse), fine, side="right")  # bin i+1 starts at fine[i]
    index = np.concatenate([[0], target])
    return np.bincount(index, weights=counts, minlength=len(coarse) + 1)


def numeric_metrics(plan: FeaturePlan, base: Cell, win: Cell) -> dict[str, Any]:
    """PSI, KS (statistic, p-value, bound), Wasserstein-1 (value, bound) of one window."""
    nb, nw = int(base.counts.sum()), int(win.counts.sum())
    out: dict[str, Any] = {"psi": None, "ks_statistic": None, "ks_pvalue": None, "ks_bound": None}
    out.update(wasserstein=None, wasserstein_bound=None)
    if nb == 0 or nw == 0:
        return out
    out["psi"] = psi(_group(base.counts, plan, plan.psi_edges), _group(win.counts, plan, plan.psi_edges))
    pb, pw = base.counts / nb, win.counts / nw
    fb, fw = np.cumsum(pb)[:-1], np.cumsum(pw)[:-1]  # CDFs just below each edge
    diff = np.concatenate([[0.0], fb - fw])  # D at each bin's left end (-inf for the first)
    ks = float(np.max(np.abs(diff)))
    inside = np.maximum(np.abs(diff - pw), np.abs(diff + pb))  # |D| can reach inside each bin
    out["ks_statistic"] = ks
    out["ks_bound"] = float(max(np.max(inside) - ks, 0.0))
    out["ks_pvalue"] = ks_pvalue(ks, nb, nw)
    # signed integral of D over each bin: F(a)(b-a) + (count*b - sum)/n for each CDF
    edges = np.asarray(plan.edges)
    lo, hi = min(base.lo, win.lo), max(base.hi, win.hi)
    left = np.concatenate([[lo], edges])
    right = np.concatenate([edges, [hi]])
    width = np.maximum(right - left, 0.0)
    cb = np.concatenate([[0.0], fb])
    cw = np.concatenate([[0.0], fw])
    ib = cb * width + (base.counts * right - base.sums) / nb
    iw = cw * width + (win.counts * right - win.sums) / nw
    out["wasserstein"] = float(np.sum(np.abs(ib - iw)))
    may_cross = (diff > -pb) & (diff < pw)
    out["wasserstein_bound"] = float(np.sum(np.where(may_cross, width * np.maximum(pb, pw), 0.0)))
    return out


def categorical_metrics(base: Cell, win: Cell) -> dict[str, Any]:
    """Chi-square (statistic, dof, p-value), Jensen–Shannon distance and PSI of one window."""
    nb, nw = int(base.counts.sum()), int(win.counts.sum())
    if nb == 0 or nw == 0:
        return {"chi2": None, "chi2_dof": None, "chi2_pvalue": None, "js_distance": None, "psi": None}
    stat, dof, p = chi_square(base.counts, win.counts)
    return {
        "chi2": stat,
        "chi2_dof": dof,
        "chi2_pvalue": p,
        "js_distance": js_distance(base.counts.astype(float), win.counts.astype(float)),
        "psi": psi(base.counts.astype(float), win.counts.astype(float)),
    }


def feature_metrics(plan: FeaturePlan, base: Cell, win: Cell) -> dict[str, Any]:
    """Everything reported for one feature and window, with its ``score`` in [0, 1]: the KS
    statistic (numeric) or the Jensen–Shannon distance (categorical), or the change in missing
    rate when that is larger; ``None`` for an empty window."""
    out: dict[str, Any] = {"kind": plan.kind, "rows": win.rows, "missing": win.missing}
    rate_b = base.missing / base.rows if base.rows else None
    rate_w = win.missing / win.rows if win.rows else None
    out["missing_rate"] = rate_w
    out["missing_rate_change"] = None if rate_b is None or rate_w is None else rate_w - rate_b
    if plan.kind == "numeric":
        out.update(numeric_metrics(plan, base, win))
        main = out["ks_statistic"]
    else:
        out.update(categorical_metrics(base, win))
        main = out["js_distance"]
    change = abs(out["missing_rate_change"]) if out["missing_rate_change"] is not None else None
    candidates = [v for v in (main, change) if v is not None]
    out["score"] = max(candidates) if win.rows and candidates else None
    return out


def plot_histogram(plan: FeaturePlan, c: Cell) -> list[float]:
    """Proportions on the report's bins (numeric: ``plot_edges``, tails merged into the end
    bins; categorical: the categories and ``(other)``)."""
    n = c.counts.sum()
    if n == 0:
        return []
    if plan.kind == "categorical":
        return [float(v) for v in c.counts / n]
    grouped = _group(c.counts, plan, plan.plot_edges)
    grouped[1] += grouped[0]
    grouped[-2] += grouped[-1]
    return [float(v) for v in grouped[1:-1] / n]


def merge(hists: Iterable[Histogram]) -> Histogram | None:
    total = None
    for h in hists:
        if total is None:
            total = h
        else:
            total.add(h)
    return total
