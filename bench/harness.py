"""Row registry, runner, statistics and output (table, JSON, progress) for the benchmark.

A row module (rows_internal.py, rows_external.py, later rows_mysql.py ...) registers rows with
the ``@row`` decorator. A row function measures one implementation once and returns a dict of
metrics; every row reports ``ops`` (acquire+release cycles per second) so one table and one
ratio column fit every row. The runner calls each row for each implementation, alternating the
order every round so slow drift of a noisy shared machine hits both sides alike.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

Metrics = dict[str, float]

OPS = "ops"  # the primary metric of every row: acquire+release cycles per second
OURS = "ferrolock"
PEER = "oslo"  # the default peer; a MySQL row module would name "tooz" instead


class CorrectnessError(Exception):
    """The lock let two holders in or lost an update: the lock is broken, not merely slow."""


@dataclass(frozen=True)
class Settings:
    """Knobs shared by every row; rows scale their own work from these."""

    duration_s: float  # target wall time of one timed measurement
    quick: bool  # smoke run: rows shrink fixed-count work too
    mp_start: str  # multiprocessing start method for multi-process rows
    tmpdir: str | None  # where lock directories go (None = tempfile default)


@dataclass(frozen=True)
class Metric:
    """A secondary metric a row reports besides ``ops``; shown in the details table."""

    key: str
    label: str
    unit: str  # "us" (microseconds), "MB", "n", "%", "s", "x"


@dataclass(frozen=True)
class Check:
    ok: bool | None  # None: not evaluated (an implementation did not run)
    detail: str


@dataclass(frozen=True)
class Target:
    text: str
    check: Callable[[Results, str], Check]  # (results, id of the row the target belongs to)


@dataclass(frozen=True)
class Row:
    id: str
    title: str
    impls: tuple[str, ...]
    run: Callable[[str, Settings], Metrics]
    metrics: tuple[Metric, ...] = ()
    targets: tuple[Target, ...] = ()


ROWS: list[Row] = []


def row(
    id: str,
    title: str,
    impls: tuple[str, ...] = (OURS, PEER),
    metrics: tuple[Metric, ...] = (),
    targets: tuple[Target, ...] = (),
) -> Callable[[Callable[[str, Settings], Metrics]], Callable[[str, Settings], Metrics]]:
    """Register a row; table order is registration order."""

    def register(fn: Callable[[str, Settings], Metrics]) -> Callable[[str, Settings], Metrics]:
        if any(r.id == id for r in ROWS):
            raise ValueError(f"duplicate row id {id!r}")
        ROWS.append(Row(id, title, impls, fn, metrics, targets))
        return fn

    return register


# ---------------------------------------------------------------- results and statistics


@dataclass
class Sample:
    impl: str
    round: int
    metrics: Metrics
    wall_s: float


@dataclass
class Failure:
    row_id: str
    impl: str
    round: int
    kind: str  # "correctness" or "error"
    message: str


@dataclass
class Results:
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    def values(self, row_id: str, impl: str, key: str) -> list[float]:
        return [
            s.metrics[key]
            for s in self.samples.get(row_id, [])
            if s.impl == impl and key in s.metrics
        ]

    def median(self, row_id: str, impl: str, key: str = OPS) -> float | None:
        vals = self.values(row_id, impl, key)
        return statistics.median(vals) if vals else None


def ratio_at_least(factor: float, key: str = OPS, ours: str = OURS, peer: str = PEER) -> Target:
    """ours/peer of the row's median ``key`` (a rate: higher is better) is at least factor."""

    def check(res: Results, row_id: str) -> Check:
        a, b = res.median(row_id, ours, key), res.median(row_id, peer, key)
        if a is None or b is None or b == 0:
            return Check(None, "not measured")
        return Check(a / b >= factor, _ratio(a / b))

    return Target(f"{ours} ≥ {factor:g}x {peer}", check)


def within_factor_of(other_row: str, factor: float, label: str, ours: str = OURS) -> Target:
    """ours in this row is no slower than 1/factor of the first impl measured in other_row."""

    def check(res: Results, row_id: str) -> Check:
        a = res.median(row_id, ours)
        others = [s.impl for s in res.samples.get(other_row, [])]
        b = res.median(other_row, others[0]) if others else None
        if a is None or b is None or a == 0:
            return Check(None, "not measured")
        return Check(b / a <= factor, f"{b / a:.1f}x slower")

    return Target(f"within {factor:g}x of {label}", check)


def metric_at_most(key: str, limit: float, label: str, impl: str = OURS) -> Target:
    """The median over rounds of impl's ``key`` is <= limit (e.g. wait p99 in µs)."""

    def check(res: Results, row_id: str) -> Check:
        v = res.median(row_id, impl, key)
        worst = max(res.values(row_id, impl, key), default=None)
        if v is None or worst is None:
            return Check(None, "not measured")
        return Check(v <= limit, f"{_fmt(v, _unit_of(key))}, worst {_fmt(worst, _unit_of(key))}")

    return Target(f"{impl} {label}", check)


def _unit_of(key: str) -> str:
    for r in ROWS:
        for m in r.metrics:
            if m.key == key:
                return m.unit
    return ""


# ---------------------------------------------------------------- running


class Progress:
    """One status line on stderr: rewritten in place on a terminal, one line per step otherwise."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.tty = stream.isatty()
        self.t0 = time.monotonic()

    def step(self, label: str) -> None:
        self.done += 1
        line = f"[{self.done:3d}/{self.total}] {time.monotonic() - self.t0:5.0f}s  {label}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def say(self, message: str) -> None:
        """A message that must survive the next status line (failures)."""
        self.stream.write(("\r\x1b[K" if self.tty else "") + message + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def run_rows(rows: Sequence[Row], impls: Iterable[str], settings: Settings, rounds: int) -> Results:
    allowed = set(impls)
    res = Results()
    plan = [(r, [i for i in r.impls if i in allowed]) for r in rows]
    progress = Progress(sum(len(i) for _, i in plan) * rounds)
    for r, row_impls in plan:
        res.samples[r.id] = []
        broken: set[str] = set()  # after an error, later rounds of that impl are skipped
        for rnd in range(rounds):
            # Rotate the order each round: ABBA... so neither side always runs first.
            k = rnd % len(row_impls) if row_impls else 0
            for impl in row_impls[k:] + row_impls[:k]:
                progress.step(f"{r.title} · {impl} · round {rnd + 1}/{rounds}")
                if impl in broken:
                    continue
                t0 = time.perf_counter()
                try:
                    metrics = r.run(impl, settings)
                except CorrectnessError as e:
                    broken.add(impl)
                    res.failures.append(Failure(r.id, impl, rnd, "correctness", str(e)))
                    progress.say(f"CORRECTNESS FAILURE in {r.title!r} [{impl}]: {e}")
                    continue
                except Exception as e:  # one broken row must not hide the others
                    broken.add(impl)
                    tb = traceback.format_exc()
                    res.failures.append(Failure(r.id, impl, rnd, "error", f"{e!r}\n{tb}"))
                    progress.say(f"ERROR in {r.title!r} [{impl}]: {e!r}\n{tb}")
                    continue
                res.samples[r.id].append(Sample(impl, rnd, metrics, time.perf_counter() - t0))
    progress.close()
    return res


# ---------------------------------------------------------------- output


def _fmt(v: float, unit: str = "") -> str:
    if unit == "us":
        return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.1f} µs"
    if unit == "MB":
        return f"{v:.1f} MB"
    if unit == "%":
        return f"{v:.0f}%"
    if unit == "s":
        return f"{v:.3f} s"
    if unit == "x":
        return f"{v:.2f}"
    if unit == "n":
        return f"{v:,.0f}"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def _ratio(r: float) -> str:
    # two decimals near the thresholds (2x, 5x) so "2.0x" never shows next to a FAIL
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def _cell(res: Results, row_id: str, impl: str, key: str, unit: str = "") -> str:
    vals = res.values(row_id, impl, key)
    if not vals:
        return "—"
    med = _fmt(statistics.median(vals), unit)
    if len(vals) == 1:
        return med
    return f"{med} ({_fmt(min(vals), unit)}-{_fmt(max(vals), unit)})"


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(b) for b in body)])


def evaluate(rows: Sequence[Row], res: Results) -> dict[str, list[tuple[Target, Check]]]:
    return {r.id: [(t, t.check(res, r.id)) for t in r.targets] for r in rows}


def _verdict(c: Check) -> str:
    return "n/a" if c.ok is None else ("PASS" if c.ok else "FAIL")


def render(rows: Sequence[Row], res: Results, checks: dict[str, list[tuple[Target, Check]]]) -> str:
    impl_cols: list[str] = []
    for r in rows:
        impl_cols += [i for i in r.impls if i not in impl_cols]
    header = ["row", *(f"{i} ops/s" for i in impl_cols), f"{OURS}/peer", "target"]
    body = []
    for r in rows:
        peer = next((i for i in r.impls if i != OURS), PEER)
        a, b = res.median(r.id, OURS), res.median(r.id, peer)
        ratio = _ratio(a / b) if a is not None and b else "—"
        verdicts = "; ".join(
            f"{_verdict(c)} {t.text}" + (f" ({c.detail})" if c.ok is not None else "")
            for t, c in checks[r.id]
        )
        cells = [_cell(res, r.id, i, OPS) for i in impl_cols]
        body.append([r.title, *cells, ratio, verdicts])
    out = [_markdown(header, body)]

    detail_rows = [
        [r.title, m.label, *(_cell(res, r.id, i, m.key, m.unit) for i in r.impls)]
        for r in rows
        for m in r.metrics
        if any(res.values(r.id, i, m.key) for i in r.impls)
    ]
    if detail_rows:
        width = max(len(d) for d in detail_rows)
        padded = [d + ["—"] * (width - len(d)) for d in detail_rows]
        head = ["row", "metric", OURS, PEER, ""][:width]
        out += ["", "Details (median, min-max over rounds):", "", _markdown(head, padded)]
    return "\n".join(out)


def summary(
    res: Results, checks: dict[str, list[tuple[Target, Check]]], rows: Sequence[Row]
) -> str:
    titles = {r.id: r.title for r in rows}
    all_checks = [(rid, t, c) for rid, tcs in checks.items() for t, c in tcs]
    passed = sum(1 for _, _, c in all_checks if c.ok)
    evaluated = sum(1 for _, _, c in all_checks if c.ok is not None)
    lines = [f"Targets: {passed}/{evaluated} PASS"]
    lines += [
        f"  FAIL {titles[rid]}: {t.text} ({c.detail})" for rid, t, c in all_checks if c.ok is False
    ]
    for f in res.failures:
        head = "CORRECTNESS FAILURE" if f.kind == "correctness" else "ERROR"
        first = f.message.splitlines()[0] if f.message else ""
        lines.append(
            f"{head}: {titles.get(f.row_id, f.row_id)} [{f.impl}] round {f.round + 1}: {first}"
        )
    return "\n".join(lines)


def to_json(
    rows: Sequence[Row],
    res: Results,
    checks: dict[str, list[tuple[Target, Check]]],
    meta: dict[str, Any],
) -> dict[str, Any]:
    def stats(vals: list[float]) -> dict[str, float]:
        return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}

    out_rows = []
    for r in rows:
        keys = [OPS, *(m.key for m in r.metrics)]
        out_rows.append(
            {
                "id": r.id,
                "title": r.title,
                "impls": list(r.impls),
                "samples": [
                    {"impl": s.impl, "round": s.round, "wall_s": s.wall_s, "metrics": s.metrics}
                    for s in res.samples.get(r.id, [])
                ],
                "summary": {
                    i: {k: stats(v) for k in keys if (v := res.values(r.id, i, k))} for i in r.impls
                },
                "targets": [
                    {"text": t.text, "verdict": _verdict(c), "detail": c.detail}
                    for t, c in checks[r.id]
                ],
            }
        )
    failures = [f.__dict__ for f in res.failures]
    return {"meta": meta, "rows": out_rows, "failures": failures}


def write_json(path: str, doc: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
