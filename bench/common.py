"""Shared benchmark helpers: timing with device syncs, medians, environment records, the docs/benchmarks.md sections."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

# Benchmarks run where only torch, torchvision, numpy and scikit-learn are installed besides genlib.
FORBIDDEN_MODULES = ("prefect", "mlflow")


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so a wall-clock reading covers the work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds that ``fn()`` takes, with the device synchronised before and after."""
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def median(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    mod = sys.modules.get(module)
    if mod is None:
        try:
            mod = __import__(module)
        except ImportError:
            return None
    return getattr(mod, "__version__", None)


def _blas_pools() -> list[dict[str, Any]]:
    """numpy/scipy BLAS thread pools (scikit-learn's BernoulliRBM does its matmuls there)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "num_threads", "version", "filepath")
    return [{k: info.get(k) for k in keep} for info in threadpool_info()]


def environment(device: torch.device) -> dict[str, Any]:
    """What a reader needs to interpret the numbers: hardware, threads and library versions."""
    try:
        usable_cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        usable_cpus = os.cpu_count()
    env: dict[str, Any] = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "sklearn": _version("sklearn"),
        "numpy": _version("numpy"),
        "pillow": _version("PIL"),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "blas_pools": _blas_pools(),
    }
    try:
        env["load_average"] = os.getloadavg()
    except OSError:
        pass
    return env


def forbidden_imports() -> list[str]:
    """Top-level names from FORBIDDEN_MODULES that have been imported in this process."""
    return sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in FORBIDDEN_MODULES})


@contextmanager
def cudnn_benchmark(enabled: bool) -> Any:
    """Set ``torch.backends.cudnn.benchmark`` for a block, restoring the previous value after."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def fmt_rate(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.0f}"


def fmt_ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def fmt_num(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}g}" if abs(v) < 1e-2 else f"{v:,.{digits}f}"


def update_benchmarks_doc(path: Path, section: str, begin: str, end: str) -> None:
    """Replace the text between the markers ``begin`` and ``end`` (or append ``section``) in docs/benchmarks.md.

    Each benchmark owns one marked section, so a run rewrites its own numbers and keeps the others'.
    """
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
