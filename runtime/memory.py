"""Host memory of this process: resident now, and the peak since the last reset.

`rrl-edge bench` runs each artifact in its own process and resets the peak before each batch size, so
the peak it reports is that artifact's, at that batch: one backend's allocations cannot inflate another's.
Linux (a Jetson, a desktop) resets the peak through /proc/self/clear_refs; elsewhere the peak is the
process's lifetime maximum (getrusage), which is still per artifact but grows with the batches run so far.
Standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_mb(field: str) -> Optional[float]:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM) in MB; None where there is no /proc."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def _maxrss_mb() -> Optional[float]:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux


def rss_mb() -> Optional[float]:
    """Resident set size now, in MB (the peak so far where the current value is not available)."""
    now = _status_mb("VmRSS")
    return now if now is not None else _maxrss_mb()


def peak_rss_mb() -> Optional[float]:
    """Peak resident set size since the last :func:`reset_peak` (or since the process started), in MB."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else _maxrss_mb()


def reset_peak() -> bool:
    """Make the peak start again from the current RSS (Linux >= 4.0); False where it cannot be reset."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True
