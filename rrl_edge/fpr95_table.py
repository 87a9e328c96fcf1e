"""FPR95 per category and their mean: the one result type every command reports it with.

`rrl-edge eval` (its --json and printed table), the export report's "fpr95" section, `rrl-edge run --json`,
training's validation (curve.json, best.pt) and `rrl-edge parity` (the reference's and each candidate's
FPR95s) all build an ``FPR95Table`` and write it as one JSON shape::

    {"categories": {name: {"fpr95": 1.2345, "pairs": 1000}, ...},
     "mean_fpr95": 1.2345, "mean_rule": "mean over categories of the unrounded FPR95s", "protocol": ...}

The mean rule is one: the plain mean over categories (each category counts the same, whatever its size) of
the unrounded FPR95s; values are rounded to 4 digits only in the JSON. ``protocol`` says what the pairs are
where the caller knows it: a cut name ("default", "strongest") or eval's protocol record (a dict); null
elsewhere.

Layer 0 and device code: numpy only at import (Python 3.8 syntax); FPR95 itself (rrl_edge.metrics, which
uses scikit-learn where installed) is imported when ``from_scores`` needs it, or passed in.
"""

from __future__ import annotations

import math
import types
from collections import abc
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Union

import numpy as np

from rrl_edge.errors import InputError

DIGITS = 4  # FPR95 values (percent) are written rounded to 1e-4 points
MEAN_RULE = "mean over categories of the unrounded FPR95s"
# what export reports written before this type hold: the mean of the per-category values rounded to 4 digits
LEGACY_ROUNDED_MEAN_RULE = "mean over categories of the FPR95s rounded to 4 digits (an older export report)"

ProtocolInfo = Union[None, str, Mapping[str, Any]]
Fpr95Function = Callable[..., float]


@dataclass(frozen=True)
class CategoryFPR95:
    """One category: its FPR95 in percent (unrounded when measured here) and how many pairs it was measured on
    (None only when read from an older report that did not record it)."""

    fpr95: float
    pairs: Optional[int]


@dataclass(frozen=True)
class FPR95Table:
    """FPR95 per category (in the order given) and their mean (``MEAN_RULE``), with an optional protocol.

    ``mean_fpr95`` is computed from the categories unless given (``from_json`` keeps the mean a file holds, so
    a table read back writes the same JSON)."""

    categories: Mapping[str, CategoryFPR95]
    protocol: ProtocolInfo = None
    mean_fpr95: float = math.nan
    mean_rule: str = MEAN_RULE

    def __post_init__(self) -> None:
        if not self.categories:
            raise InputError("an FPR95 table needs at least one category")
        cats = {str(name): c for name, c in self.categories.items()}
        for name, c in cats.items():
            if not isinstance(c, CategoryFPR95) or not math.isfinite(c.fpr95):
                raise InputError(f"FPR95 table: category {name!r} has no finite FPR95 ({c!r})")
        object.__setattr__(self, "categories", types.MappingProxyType(cats))
        if isinstance(self.protocol, abc.Mapping):
            object.__setattr__(self, "protocol", dict(self.protocol))
        if math.isnan(self.mean_fpr95):
            object.__setattr__(self, "mean_fpr95", float(np.mean([c.fpr95 for c in cats.values()])))

    # ---------------------------------------------------------------------------------------------- building

    @classmethod
    def from_values(cls, values: Mapping[str, float], pairs: Optional[Mapping[str, int]] = None,
                    protocol: ProtocolInfo = None) -> "FPR95Table":
        """From FPR95s already measured (percent) and, where known, each category's pair count."""
        return cls(_entries({name: float(v) for name, v in values.items()}, pairs), protocol)

    @classmethod
    def from_scores(cls, labels_by_cat: Mapping[str, np.ndarray], scores_by_cat: Mapping[str, np.ndarray],
                    protocol: ProtocolInfo = None, fpr95: Optional[Fpr95Function] = None) -> "FPR95Table":
        """FPR95 of every category of ``labels_by_cat`` (in its order) with the project's FPR95
        (rrl_edge.metrics.fpr95, imported here unless ``fpr95`` is given)."""
        if fpr95 is None:
            from rrl_edge.metrics import fpr95 as default

            fpr95 = default
        measure: Fpr95Function = fpr95
        missing = [name for name in labels_by_cat if name not in scores_by_cat]
        if missing:
            raise InputError(f"FPR95 table: no scores for {', '.join(missing)}")
        return cls({name: CategoryFPR95(float(measure(labels, scores_by_cat[name])), int(len(labels)))
                    for name, labels in labels_by_cat.items()}, protocol)

    # ----------------------------------------------------------------------------------------------- reading

    def __getitem__(self, name: str) -> CategoryFPR95:
        return self.categories[name]

    def __contains__(self, name: object) -> bool:
        return name in self.categories

    def __iter__(self) -> Iterator[str]:  # the category names
        return iter(self.categories)

    def __len__(self) -> int:
        return len(self.categories)

    def fpr95_by_category(self) -> Dict[str, float]:
        """{category: FPR95} (unrounded where measured here)."""
        return {name: c.fpr95 for name, c in self.categories.items()}

    @property
    def pairs(self) -> Optional[int]:
        """All the pairs the table was measured on; None when a category's count is unknown."""
        counts = [c.pairs for c in self.categories.values() if c.pairs is not None]
        return sum(counts) if len(counts) == len(self.categories) else None

    # ---------------------------------------------------------------------------------------------- the JSON

    def to_json(self) -> Dict[str, Any]:
        """The one JSON shape (module docstring); values rounded to ``DIGITS``."""
        return {
            "categories": {name: {"fpr95": round(c.fpr95, DIGITS), "pairs": c.pairs}
                           for name, c in self.categories.items()},
            "mean_fpr95": round(self.mean_fpr95, DIGITS),
            "mean_rule": self.mean_rule,
            "protocol": dict(self.protocol) if isinstance(self.protocol, abc.Mapping) else self.protocol,
        }

    @classmethod
    def from_json(cls, data: Any, pairs: Optional[Mapping[str, int]] = None,
                  source: str = "FPR95 table") -> "FPR95Table":
        """A table from its JSON, or from the shapes older versions wrote (InputError when it is neither):

        - ``{"categories": {name: {"fpr95", "pairs"}}, "mean_fpr95", ...}``: this shape, and eval's before
          ``mean_rule`` was written (the same rule); other keys beside it (eval's report) are ignored;
        - ``{"mean": m, "categories": {name: fpr95}}``: an older export report's "fpr95" entry (its mean is of
          the rounded values: ``LEGACY_ROUNDED_MEAN_RULE``);
        - ``{name: fpr95, ..., "mean": m}``: an older `rrl-edge run --json` "fpr95" (mean only with several
          categories; the unrounded rule).

        ``pairs`` fills in the pair counts the older shapes lack (e.g. the export report's proof_data.pairs)."""
        if not isinstance(data, abc.Mapping):
            raise InputError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if "categories" not in data:  # the old run shape: every entry a number
            flat = {str(k): v for k, v in data.items() if k != "mean"}
            if not flat:
                raise InputError(f"{source}: no categories")
            values = {name: _number(v, f"{source} [{name}]") for name, v in flat.items()}
            mean = _number(data["mean"], f"{source} [mean]") if "mean" in data else math.nan
            return cls(_entries(values, pairs), None, mean, MEAN_RULE)
        cats = data["categories"]
        if not isinstance(cats, abc.Mapping) or not cats:
            raise InputError(f"{source}: 'categories' must be a non-empty object")
        if not any(isinstance(c, abc.Mapping) for c in cats.values()):  # the old export shape: {name: fpr95}
            values = {str(name): _number(v, f"{source} [{name}]") for name, v in cats.items()}
            if "mean" not in data:
                return cls(_entries(values, pairs), None)
            return cls(_entries(values, pairs), None, _number(data["mean"], f"{source} [mean]"),
                       LEGACY_ROUNDED_MEAN_RULE)
        entries: Dict[str, CategoryFPR95] = {}
        for name, c in cats.items():
            if not isinstance(c, abc.Mapping) or "fpr95" not in c:
                raise InputError(f"{source}: category {name!r} has no 'fpr95'")
            count = c.get("pairs")
            if count is None and pairs is not None and name in pairs:
                count = pairs[name]
            if count is not None and (isinstance(count, bool) or not isinstance(count, (int, float))
                                      or count != int(count) or count < 0):
                raise InputError(f"{source}: category {name!r} has pairs {count!r}, expected a whole number")
            entries[str(name)] = CategoryFPR95(_number(c["fpr95"], f"{source} [{name}]"),
                                               None if count is None else int(count))
        mean = _number(data["mean_fpr95"], f"{source} [mean_fpr95]") if "mean_fpr95" in data else math.nan
        rule = data.get("mean_rule", MEAN_RULE)
        protocol = data.get("protocol")
        if protocol is not None and not isinstance(protocol, (str, abc.Mapping)):
            raise InputError(f"{source}: 'protocol' must be a string, an object or null")
        return cls(entries, protocol, mean, rule if isinstance(rule, str) else MEAN_RULE)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where}: FPR95 {value!r} is not a finite number")
    return float(value)


def _entries(values: Mapping[str, float], pairs: Optional[Mapping[str, int]]) -> Dict[str, CategoryFPR95]:
    return {name: CategoryFPR95(v, None if pairs is None or name not in pairs else int(pairs[name]))
            for name, v in values.items()}


# ------------------------------------------------------------------------------------------------- printing


def format_tables(tables: Mapping[str, FPR95Table], markdown: bool = False, single_mean: bool = True) -> str:
    """One or several tables side by side, one FPR95 column per table (e.g. {"RRL-Net": ..., "SIFT": ...}),
    rows in the first table's category order, pairs from the first table, then the mean row.

    Plain text (`rrl-edge eval`) or Markdown (`rrl-edge run`; a table named "" gets the column "FPR95 (%)").
    Values are shown as the JSON holds them (rounded to 4 digits) to 2 decimals. ``single_mean`` False leaves
    the mean row out of a one-category table (it would repeat the category)."""
    if not tables:
        raise ValueError("format_tables: no tables")
    names = list(tables)
    first = tables[names[0]]
    for name in names[1:]:
        if list(tables[name]) != list(first):
            raise ValueError(f"format_tables: {name!r} has categories {list(tables[name])}, "
                             f"{names[0]!r} has {list(first)}")

    def shown(value: Optional[int]) -> str:
        return "-" if value is None else str(value)

    rows: List[List[str]] = [[cat, shown(first[cat].pairs)] + [f"{round(tables[n][cat].fpr95, DIGITS):.2f}" for n in names]
                             for cat in first]
    mean = (["mean", shown(first.pairs)] + [f"{round(tables[n].mean_fpr95, DIGITS):.2f}" for n in names]
            if single_mean or len(first) > 1 else None)
    if markdown:
        head = ["category", "pairs"] + [f"{n} FPR95 (%)" if n else "FPR95 (%)" for n in names]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---:"] + ["---:"] * len(names)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows + ([mean] if mean else [])]
        return "\n".join(lines)
    header = f"{'category':<12} {'pairs':>7} " + " ".join(f"{n + ' FPR95':>15}" for n in names)

    def line(row: List[str]) -> str:
        return f"{row[0]:<12} {row[1]:>7} " + " ".join(f"{v:>15}" for v in row[2:])

    lines = [header, "-" * len(header)] + [line(row) for row in rows]
    if mean:
        lines += ["-" * len(header), line(mean)]
    return "\n".join(lines)
