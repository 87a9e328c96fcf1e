"""argparse value types shared by every sub-command (standard library only: the device CLI uses them too)."""

from __future__ import annotations

import argparse
from typing import Callable, TypeVar

from rrl_edge.limits import MAX_BATCH, MAX_LR, MAX_THREADS, MAX_WIDTH

N = TypeVar("N", int, float)


def _number(text: str, kind: Callable[[str], N], what: str, ok: Callable[[N], bool], rule: str) -> N:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not (ok(value) and value < float("inf")):
        raise argparse.ArgumentTypeError(f"{rule}, got {text}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (batch sizes, thread counts, step counts)."""
    return _number(text, int, "a whole number", lambda v: v >= 1, "must be at least 1")


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (repetitions, where 0 means none or the default)."""
    return _number(text, int, "a whole number", lambda v: v >= 0, "must not be negative")


def positive_float(text: str) -> float:
    """A finite number > 0 (widths, learning rates, minutes)."""
    return _number(text, float, "a number", lambda v: v > 0, "must be a positive number")


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (seconds)."""
    return _number(text, float, "a number", lambda v: v >= 0, "must not be negative")


def at_most(kind: Callable[[str], N], limit: N, what: str) -> Callable[[str], N]:
    def parse(text: str) -> N:
        value = kind(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"{what} must be at most {limit}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


batch_size = at_most(positive_int, MAX_BATCH, "a batch size")  # pairs per call: bounds memory (see limits)
thread_count = at_most(positive_int, MAX_THREADS, "a thread count")
width = at_most(positive_float, MAX_WIDTH, "the width multiplier")
learning_rate = at_most(positive_float, MAX_LR, "the learning rate")
unit_fraction = at_most(positive_float, 1.0, "the fraction")  # in (0, 1]: a share of something (mined negatives)
