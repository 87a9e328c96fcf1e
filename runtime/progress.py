"""Progress bars where tqdm is installed; plain iteration on a device that has only numpy."""

from __future__ import annotations

from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, enabled: bool = True, total: Optional[int] = None, unit: str = "batch") -> Iterator[T]:
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            yield from tqdm(items, desc=desc, total=total, unit=unit, leave=False)
            return
    yield from items
