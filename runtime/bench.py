"""`rrl-edge bench`: latency and throughput of engines, ONNX models and checkpoints, per batch size.

Each artifact runs in its own child process (``python -m rrl_edge.runtime.bench SPEC``), so its peak
memory is its own and one backend's threads, arenas or allocator caches cannot slow down or inflate the
next. Every child times the same fixed batch, with the same thread count, after warm-up runs that are not
counted; a checkpoint runs as PyTorch eager, the baseline the other artifacts are compared with in the
same run (ratios hold when the machine's load moves the absolute numbers). numpy only at import: the
backends load in the child, matplotlib only for --plot.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from rrl_edge import errors
from rrl_edge.errors import InputError, RRLEdgeError
from rrl_edge.limits import MAX_BATCH

DEFAULT_BATCHES = (1, 8, 64, 256)
MARK = "@@rrl-bench "  # prefix of the child's report lines; anything else it prints is passed through
REQUIRED_KEYS = ("artifact", "backend", "precision", "batch", "p50_ms", "p99_ms", "pairs_per_s")
DEVICE_MEMORY_NOTE = "n/a: device (GPU) memory is not measured yet (no GPU to test it on)"


@dataclass
class BenchConfig:
    """What every artifact is run with (the same for all, so the rows compare)."""

    batches: Tuple[int, ...] = DEFAULT_BATCHES
    threads: int = 0  # 0 = every core this process may use
    seconds: float = 2.0  # timed runs continue until both `seconds` and `min_iters` are reached
    min_iters: int = 20
    warmup: int = 3
    backend: str = "auto"

    def __post_init__(self) -> None:
        self.batches = tuple(sorted(set(self.batches)))  # ascending: arenas grown by a big batch stay resident
        if not self.batches or min(self.batches) < 1:
            raise InputError(f"batch sizes must be positive, got {list(self.batches)}")
        self.threads = self.threads or available_cores()


@dataclass
class BenchInput:
    pairs: np.ndarray  # uint8 (N, 2, 64, 64), N = the largest batch
    kind: str  # what they are, for the table header and the JSON


@dataclass
class BenchReport:
    config: BenchConfig
    input_kind: str
    results: List[Dict[str, Any]] = field(default_factory=list)
    skipped: List[Dict[str, Any]] = field(default_factory=list)
    backends: Dict[str, str] = field(default_factory=dict)  # backend -> version
    baseline: Optional[str] = None
    load_average: Dict[str, Optional[List[float]]] = field(default_factory=dict)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects taskset / container CPU sets
    except AttributeError:
        return os.cpu_count() or 1


def parse_batches(text: str) -> Tuple[int, ...]:
    """"1,8,64,256" -> (1, 8, 64, 256); InputError naming the bad value otherwise."""
    values = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = int(part)
        except ValueError:
            raise InputError(f"batch size {part!r} is not a whole number (expected e.g. 1,8,64,256)") from None
        if value < 1:
            raise InputError(f"batch size {part!r} must be at least 1")
        if value > MAX_BATCH:
            raise InputError(f"batch size {part!r} must be at most {MAX_BATCH} (memory grows with the batch)")
        values.append(value)
    return tuple(values)


def check_artifact(path: Union[str, Path], backend: str = "auto") -> str:
    """The backend that will run ``path``; InputError naming it when it is missing or of unknown kind."""
    from rrl_edge.runtime.registry import backend_for

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: artifact not found")
    if not path.is_file():
        raise InputError(f"{path}: is not a file")
    return backend_for(path, backend)


def make_input(max_batch: int, data: Optional[Union[str, Path]] = None, seed: int = 0,
               show_progress: bool = True) -> BenchInput:
    """``max_batch`` real test pairs from ``data`` (seeded pick over all categories), else seeded random uint8.

    Timing does not depend on the pixel values for these dense networks; real pairs are there so the
    batch is exactly what a user would feed.
    """
    rng = np.random.default_rng(seed)
    if data is None:
        pairs = rng.integers(0, 256, size=(max_batch, 2, 64, 64), dtype=np.uint8)
        return BenchInput(pairs, f"seeded random uint8 pairs (seed {seed}), scaled by 1/255 like real ones")
    from rrl_edge.contracts import to_uint8
    from rrl_edge.runtime.inputs import load_inputs

    sets = load_inputs(data, split="test", progress=show_progress)
    sizes = [len(one) for one in sets.values()]
    total = sum(sizes)
    picked = np.sort(rng.choice(total, size=min(total, max_batch), replace=False))
    offsets = np.cumsum([0] + sizes)
    parts = []
    for i, one in enumerate(sets.values()):
        local = picked[(picked >= offsets[i]) & (picked < offsets[i + 1])] - offsets[i]
        parts.append(np.asarray(one.patches[local]))
    pairs = np.concatenate(parts)
    pairs = to_uint8(pairs)  # float patch files: back to the uint8 the cameras give
    kind = f"{len(pairs)} real test pairs from {data}"
    if len(pairs) < max_batch:
        pairs = np.resize(pairs, (max_batch,) + pairs.shape[1:])
        kind += f", repeated to {max_batch}"
    return BenchInput(np.ascontiguousarray(pairs), kind)


# ---------------------------------------------------------------------------------------------- child side


def time_batch(infer: Callable[[np.ndarray, np.ndarray], np.ndarray], vis: np.ndarray, other: np.ndarray,
               warmup: int, min_iters: int, seconds: float) -> np.ndarray:
    """Seconds of each timed ``infer`` call, warm-up calls excluded, until ``min_iters`` and ``seconds`` are met."""
    for _ in range(warmup):
        infer(vis, other)
    times: List[float] = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        infer(vis, other)
        times.append(time.perf_counter() - t0)
    return np.asarray(times)


def latency_stats(times: np.ndarray, batch: int) -> Dict[str, Any]:
    """p50/p99 latency per batch call (ms) and pairs/s = batch / mean latency (total pairs over total time)."""
    return {
        "p50_ms": float(np.percentile(times, 50) * 1e3),
        "p99_ms": float(np.percentile(times, 99) * 1e3),
        "mean_ms": float(times.mean() * 1e3),
        "pairs_per_s": float(batch / times.mean()),
        "iterations": int(len(times)),
    }


def _emit(event: str, **payload: Any) -> None:
    sys.stdout.write(MARK + json.dumps({"event": event, **payload}) + "\n")
    sys.stdout.flush()


def _backend_version(backend: str) -> str:
    module = sys.modules.get({"torch": "torch", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}.get(backend, ""))
    return str(getattr(module, "__version__", "?"))


def run_child(spec: Dict[str, Any]) -> None:
    """Bench one artifact at every batch size and report each result on stdout (see ``MARK``)."""
    from rrl_edge.runtime import memory
    from rrl_edge.contracts import check_pairs, split_pair_batch as split_inputs
    from rrl_edge.runtime.registry import make_runner, runner_options

    pairs = np.load(spec["pairs"], allow_pickle=False)
    check_pairs(pairs, spec["pairs"])
    inputs = {b: split_inputs(pairs[:b]) for b in spec["batches"]}  # made before the baseline RSS is taken
    before_open = memory.rss_mb()
    runner = make_runner(spec["artifact"], spec["backend"], **runner_options(spec["artifact"], spec["backend"], threads=spec["threads"]))
    t0 = time.perf_counter()
    with runner:
        open_s = time.perf_counter() - t0
        info = runner.describe()
        _emit("opened", backend=info["backend"], precision=info["precision"], version=_backend_version(runner.backend),
              open_s=open_s, max_batch=runner.max_batch)
        for batch in spec["batches"]:
            if runner.max_batch and batch > runner.max_batch:
                _emit("skipped", batch=batch, reason=f"above the artifact's maximum batch {runner.max_batch}")
                continue
            vis, other = inputs[batch]
            out = np.asarray(runner.infer(vis, other)).reshape(-1)
            if out.shape[0] != batch or not np.isfinite(out).all():
                raise RRLEdgeError(f"{runner.path}: the {runner.backend} runner returned {out.shape[0]} scores "
                                   f"(finite: {bool(np.isfinite(out).all())}) for a batch of {batch}")
            memory.reset_peak()  # this batch's peak, not the previous (smaller) one's
            times = time_batch(runner.infer, vis, other, spec["warmup"], spec["min_iters"], spec["seconds"])
            peak = memory.peak_rss_mb()
            increase = peak - before_open if peak is not None and before_open is not None else None
            _emit("result", batch=batch, **latency_stats(times, batch), peak_rss_mb=peak,
                  peak_increase_mb=increase, rss_before_open_mb=before_open)


def child_main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m rrl_edge.runtime.bench SPEC.json  (started by `rrl-edge bench`)", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    try:
        run_child(spec)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it, once
        return 130
    except RRLEdgeError as exc:
        _emit("error", kind=type(exc).__name__, message=str(exc))
        return 1
    except Exception as exc:  # a backend's own exception: report it, with the traceback on stderr
        import traceback

        traceback.print_exc()
        _emit("error", kind="RRLEdgeError", message=f"{spec['artifact']}: {type(exc).__name__}: {exc}")
        return 1
    return 0


# --------------------------------------------------------------------------------------------- parent side


def _raise_from_child(kind: str, message: str) -> None:
    error_class = getattr(errors, kind, RRLEdgeError)
    if not (isinstance(error_class, type) and issubclass(error_class, RRLEdgeError)):
        error_class = RRLEdgeError
    raise error_class(message)


def bench_artifact(path: Union[str, Path], backend: str, pairs_file: Path, config: BenchConfig,
                   on_event: Callable[[Dict[str, Any]], None]) -> None:
    """Run one artifact's child process; ``on_event`` gets each report it sends ("opened", "result", "skipped")."""
    spec = {"artifact": str(path), "backend": backend, "threads": config.threads, "batches": list(config.batches),
            "warmup": config.warmup, "min_iters": config.min_iters, "seconds": config.seconds,
            "pairs": str(pairs_file)}
    spec_file = pairs_file.with_name(f"spec-{os.getpid()}-{time.monotonic_ns()}.json")
    spec_file.write_text(json.dumps(spec))
    env = dict(os.environ, OMP_NUM_THREADS=str(config.threads))  # any OpenMP pool gets the same thread count
    proc = subprocess.Popen([sys.executable, "-m", "rrl_edge.runtime.bench", str(spec_file)],
                            stdout=subprocess.PIPE, text=True, env=env)
    error: Optional[Tuple[str, str]] = None
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if not line.startswith(MARK):
                sys.stderr.write(line)  # a backend printing to stdout: keep it, but out of the table
                continue
            event = json.loads(line[len(MARK):])
            if event["event"] == "error":
                error = (event["kind"], event["message"])
            else:
                on_event(event)
    except BaseException:  # Ctrl-C, SIGTERM or a bad event: the child goes too, not left running
        proc.kill()
        proc.wait()
        raise
    code = proc.wait()
    if error is not None:
        _raise_from_child(*error)
    if code != 0:
        raise RRLEdgeError(f"{path}: the benchmark process ended with exit code {code} "
                           f"({'killed by signal ' + str(-code) + ', out of memory?' if code < 0 else 'see above'})")


def run_bench(artifacts: Sequence[Union[str, Path]], config: BenchConfig, bench_input: BenchInput,
              show_progress: bool = True) -> BenchReport:
    """Bench every artifact (each in its own process) at every batch size; ratios to the baseline filled in."""
    from rrl_edge.runtime.progress import progress

    backends = [check_artifact(a, config.backend) for a in artifacts]  # every bad argument before any timing
    if len(bench_input.pairs) < max(config.batches):
        raise InputError(f"{len(bench_input.pairs)} input pairs for a largest batch of {max(config.batches)}")
    report = BenchReport(config, bench_input.kind, load_average={"start": _load_average()})
    grid = progress(iter(range(len(artifacts) * len(config.batches))), "bench", show_progress,
                    total=len(artifacts) * len(config.batches), unit="run")
    next(grid, None)  # show the bar at 0; from here each next() counts one finished (artifact, batch)
    with tempfile.TemporaryDirectory(prefix="rrl-bench-") as tmp:
        pairs_file = Path(tmp) / "pairs.npy"
        np.save(pairs_file, bench_input.pairs, allow_pickle=False)
        for index, (artifact, backend) in enumerate(zip(artifacts, backends)):
            opened: Dict[str, Any] = {}

            def on_event(event: Dict[str, Any], artifact: Union[str, Path] = artifact, index: int = index,
                         opened: Dict[str, Any] = opened) -> None:
                if event["event"] == "opened":
                    opened.update(event)
                    report.backends[event["backend"]] = event["version"]
                    return
                next(grid, None)
                base = {"artifact": str(artifact), "backend": opened["backend"], "precision": opened["precision"],
                        "batch": event["batch"]}
                if event["event"] == "skipped":
                    report.skipped.append({**base, "reason": event["reason"]})
                    return
                row = {**base, **{k: v for k, v in event.items() if k not in ("event", "batch")}}
                row.update(threads=config.threads, open_s=opened["open_s"], index=index)
                report.results.append(row)

            bench_artifact(artifact, backend, pairs_file, config, on_event)
    for _ in grid:  # close the bar
        pass
    report.load_average["end"] = _load_average()
    add_ratios(report, backends)
    return report


def _load_average() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def add_ratios(report: BenchReport, backends: Sequence[str]) -> None:
    """ratio_to_baseline = pairs/s over the baseline's at the same batch; the baseline is the first
    checkpoint (PyTorch eager), else the first artifact."""
    if not report.results:
        return
    base_index = backends.index("torch") if "torch" in backends else 0
    base_rows = [r for r in report.results if r["index"] == base_index]
    report.baseline = base_rows[0]["artifact"] if base_rows else None
    base_speed = {r["batch"]: r["pairs_per_s"] for r in base_rows}
    for row in report.results:
        speed = base_speed.get(row["batch"])
        row["ratio_to_baseline"] = row["pairs_per_s"] / speed if speed else None
        row["baseline"] = row["index"] == base_index


def machine_info() -> Dict[str, Any]:
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor() or "?",
            "cores": available_cores(), "python": platform.python_version(), "numpy": np.__version__}


def to_json(report: BenchReport) -> Dict[str, Any]:
    """The required result keys first, then the extras (memory, ratios, iterations...)."""
    results = []
    for row in report.results:
        ordered = {key: row[key] for key in REQUIRED_KEYS}
        ordered.update({k: v for k, v in row.items() if k not in REQUIRED_KEYS and k != "index"})
        results.append(ordered)
    c = report.config
    return {
        "results": results,
        "skipped": report.skipped,
        "baseline": report.baseline,
        "threads": c.threads,
        "input": report.input_kind,
        "timing": {"warmup_runs_excluded": c.warmup, "min_iterations": c.min_iters, "min_seconds": c.seconds,
                   "pairs_per_s": "batch / mean latency", "latency": "per batch call, ms"},
        "memory": {"peak_rss_mb": "peak resident memory of the artifact's own process while running that batch",
                   "peak_increase_mb": "that peak minus the process's RSS just before the artifact was opened",
                   "device": DEVICE_MEMORY_NOTE},
        "backends": report.backends,
        "machine": machine_info(),
        "load_average": report.load_average,
    }


def _names(report: BenchReport) -> Dict[str, str]:
    """File names in the table where they are unique, else the paths as given."""
    paths = list(dict.fromkeys(r["artifact"] for r in report.results))
    names = [Path(p).name for p in paths]
    return {p: (n if names.count(n) == 1 else p) for p, n in zip(paths, names)}


def _num(value: Optional[float], fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def format_table(report: BenchReport) -> str:
    """Markdown: a header saying how it was measured, then one row per artifact and batch."""
    c = report.config
    names = _names(report)
    base = names.get(report.baseline or "", "-")
    lines = [
        f"{c.threads} threads for every backend; input: {report.input_kind}; {c.warmup} warm-up runs excluded, "
        f"then >= {c.min_iters} runs and >= {c.seconds:g} s per row; pairs/s = batch / mean latency; "
        f"x baseline = pairs/s relative to {base} at the same batch; peak MB = peak RSS of the artifact's own "
        f"process at that batch (+MB: over its RSS before opening the artifact); GPU memory: n/a.",
        "",
        "| artifact | backend | precision | batch | p50 ms | p99 ms | pairs/s | x baseline | peak MB | +MB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.results:
        ratio = r.get("ratio_to_baseline")
        lines.append(
            f"| {names[r['artifact']]} | {r['backend']} | {r['precision']} | {r['batch']} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['pairs_per_s']:.0f} | {_num(ratio, '.2f')}{'x' if ratio is not None else ''} | "
            f"{_num(r.get('peak_rss_mb'), '.0f')} | {_num(r.get('peak_increase_mb'), '.0f')} |")
    for s in report.skipped:
        lines.append(f"\nskipped: {names.get(s['artifact'], s['artifact'])} batch {s['batch']}: {s['reason']}")
    load = report.load_average.get("start")
    if load is not None:
        lines.append(f"\nload average (1, 5, 15 min) at start {load}, at end {report.load_average.get('end')}.")
        # Only the load before the run speaks of other processes: the end value includes this run's own threads.
        if load[0] >= 0.5 * available_cores():
            lines.append(f"WARNING: the machine was busy ({available_cores()} cores): other processes slow "
                         "multi-threaded runs unevenly (PyTorch's thread pool most), so even the ratios are "
                         "unreliable; re-run on an idle machine, or with --threads 1.")
    return "\n".join(lines)


def plot_bench(report: BenchReport, path: Union[str, Path]) -> Path:
    """One PNG: p50 latency and pairs/s against batch size (log-2 axis), one line per artifact."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rrl_edge.atomic import save_figure

    names = _names(report)
    fig, (ax_lat, ax_speed) = plt.subplots(1, 2, figsize=(11, 4.2))
    for artifact in names:
        rows = sorted((r for r in report.results if r["artifact"] == artifact), key=lambda r: r["batch"])
        label = f"{names[artifact]} ({rows[0]['backend']}, {rows[0]['precision']})"
        batches = [r["batch"] for r in rows]
        ax_lat.plot(batches, [r["p50_ms"] for r in rows], marker="o", label=label)
        ax_speed.plot(batches, [r["pairs_per_s"] for r in rows], marker="o", label=label)
    batches = sorted({r["batch"] for r in report.results})
    for ax, ylabel in ((ax_lat, "p50 latency per batch (ms)"), (ax_speed, "pairs / s (batch / mean latency)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_speed.legend(fontsize=8)
    fig.suptitle(f"rrl-edge bench: {report.config.threads} threads, {platform.machine()}", fontsize=10)
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
