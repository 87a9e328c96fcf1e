"""argparse value types and helpers shared by every sub-command (standard library only: the device CLI uses them too).

The helpers keep the sub-commands alike: a flag's default comes from the configuration dataclass it fills
(:func:`defaults_of`), an old spelling of a flag keeps parsing without showing in ``--help`` (:func:`hidden_alias`),
and each main command's help groups its flags as inputs, outputs and settings and ends with an example
(:func:`command_groups`, :func:`example`, :class:`HelpFormatter`); flags that leave parts of a method out to measure
what they buy sit apart from the product's settings, in the :data:`EXPERIMENTS` group.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Type, TypeVar

from rrl_edge.limits import (MAX_BATCH, MAX_BENCH_ITERS, MAX_BENCH_WARMUP, MAX_FPR95_BUDGET, MAX_LR, MAX_THREADS,
                             MAX_WIDTH)

N = TypeVar("N", int, float)


def _number(text: str, kind: Callable[[str], N], what: str, ok: Callable[[N], bool], rule: str) -> N:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value != value:  # NaN compares false with everything: "must not be negative" would be the wrong reason
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r} (not a number)")
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
fpr95_budget = at_most(non_negative_float, MAX_FPR95_BUDGET, "an FPR95 budget (points)")  # parity, export, device-check
bench_iters = at_most(non_negative_int, MAX_BENCH_ITERS, "--iters")
bench_warmup = at_most(non_negative_int, MAX_BENCH_WARMUP, "--warmup")


def defaults_of(cls: Any) -> Dict[str, Any]:
    """A dataclass's field defaults by field name (a ``default_factory`` called once); fields without one left out.

    The one place a command's defaults are written is its configuration dataclass; the parser reads them here."""
    out: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def comma_choices(choices: Sequence[str], what: str) -> Callable[[str], Tuple[str, ...]]:
    """A value type: a comma-separated list of ``choices`` (``refine,template``), as a tuple. With
    ``action="extend"`` a repeated flag collects them all."""

    def parse(text: str) -> Tuple[str, ...]:
        items = tuple(item.strip() for item in text.split(","))
        wrong = [item for item in items if item not in choices]
        if wrong:
            raise argparse.ArgumentTypeError(f"invalid {what} {', '.join(repr(w) for w in wrong)} "
                                             f"(choose from {', '.join(choices)})")
        return items

    parse.__name__ = what  # argparse names the type in its messages
    return parse


def _stands_for(of: argparse.Action, value: str) -> Type[argparse.Action]:
    """The action of an old switch that means ``of``'s flag given ``value``: it runs ``of`` itself, so it stores,
    or adds to what ``of`` collects, exactly as the documented spelling would."""

    class StandsFor(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                     option_string: Optional[str] = None) -> None:
            given: Any = of.type(value) if callable(of.type) else value
            of(parser, namespace, given, option_string)

    return StandsFor


def hidden_alias(parser: Any, flag: str, of: argparse.Action, value: Optional[str] = None) -> argparse.Action:
    """Keep an old spelling of a flag parsing (same dest, type and choices as ``of``) without showing it in --help.

    It sets no default of its own, so the documented flag's default stands. For a required flag, add both to a
    required mutually exclusive group (argparse's required check sees only the spelling that was given). With
    ``value`` the old spelling is a switch that stands for ``of`` given that value (``--no-refine`` for
    ``--ablate refine``)."""
    if value is not None:
        return parser.add_argument(flag, dest=of.dest, action=_stands_for(of, value), nargs=0, type=of.type,
                                   choices=of.choices, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    if of.nargs == 0:  # store_true / store_false
        return parser.add_argument(flag, dest=of.dest, action="store_const", const=of.const,
                                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser.add_argument(flag, dest=of.dest, type=of.type, choices=of.choices, metavar=of.metavar,
                               default=argparse.SUPPRESS, help=argparse.SUPPRESS)


MODEL_FLAG = "--model"  # the one name of the model or artifact a command reads (eval, qat, export, build, run, register)


def model_input(group: Any, old: Sequence[str], help: str, required: bool = False, default: Any = None) -> argparse.Action:
    """``--model`` (dest ``model``) in ``group``, with the command's old spellings (``--checkpoint``, ``--engine``,
    ``--onnx``) as hidden aliases for a release. Required: both spellings in one required exclusive group."""
    where = group.add_mutually_exclusive_group(required=True) if required else group
    action = where.add_argument(MODEL_FLAG, dest="model", metavar="MODEL", default=default, help=help)
    for flag in old:
        hidden_alias(where, flag, action)
    return action


GROUPS = ("inputs", "outputs", "settings")
EXPERIMENTS = "experiments (ablation)"  # the --help group of flags that measure a method rather than set it up


def command_groups(parser: argparse.ArgumentParser) -> Tuple[Any, Any, Any]:
    """The three argument groups every main command's --help shows: inputs, outputs, settings."""
    return tuple(parser.add_argument_group(title) for title in GROUPS)  # type: ignore[return-value]


def example(command: str, *more: str) -> str:
    """A command's help epilog: ``example:`` and the command lines, indented (tests check that each one parses)."""
    return "example:\n" + "\n".join(f"  {line}" for line in (command, *more))


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that a description or epilog that already has line breaks keeps them (an
    example command is not re-wrapped); a one-paragraph text is wrapped as usual."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


POLARITY_FLAG = "--polarity"


def polarity_option(group: Any) -> argparse.Action:
    """``--polarity`` (rrl_edge.contracts.POLARITIES) of a command that reads a checkpoint; unset keeps the
    checkpoint's own (every shipped model: as-is)."""
    from rrl_edge.contracts import POLARITIES

    return group.add_argument(POLARITY_FLAG, choices=POLARITIES, default=None,
                              help="how the other spectrum's contrast is read: as-is, or both (the mean of the "
                                   "scores as given and inverted; for thermal cameras, twice the compute). "
                                   "Default: the checkpoint's own")
