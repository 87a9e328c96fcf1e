"""The command line agrees with itself: every default comes from the configuration dataclass it fills, one flag
name per meaning across the sub-commands (old spellings parse as hidden aliases), and each main command's --help
groups its flags as inputs, outputs and settings and ends with an example that parses."""

import argparse
import inspect
import re
import shlex
from dataclasses import replace
from typing import Dict, Iterator, List, Tuple

import pytest

from rrl_edge.argtypes import GROUPS, defaults_of
from rrl_edge.cli import build_parser

MAIN_COMMANDS = ("train", "eval", "export", "build", "device-check", "run", "parity", "bench", "register")
# the least each command needs to parse (its required flags and positionals)
REQUIRED = {
    "train": [], "eval": [], "qat": ["--checkpoint", "m.pt", "--int8", "rrl.int8.onnx", "--out", "q.pt"],
    "export": ["--out-dir", "deploy"], "build": ["--onnx", "rrl.onnx"], "device-check": ["--deploy", "d", "--json", "r.json"],
    "run": ["--engine", "rrl.plan", "--data", "p.npy"], "parity": ["--reference", "m.pt", "--candidate", "rrl.onnx"],
    "bench": ["rrl.onnx"], "register": ["vis.png", "nir.png"], "register-eval": [],
    "data build": [], "data synth": ["--from", "imgs", "--out-dir", "synth"], "model-info": [],
}
# Names that mean the same thing: the first is the documented one, the others may only be hidden aliases.
SYNONYMS = [
    ("--batch", "--batch-size", "--batchsize", "--bs"),
    ("--json", "--report", "--json-out", "--report-json"),
    ("--out-dir", "--output-dir", "--outdir"),
    ("--out", "--output"),
    ("--threads", "--num-threads", "--jobs", "--workers"),
    ("--quiet", "--no-progress", "--silent"),
    ("--seed", "--random-seed"),
    ("--checkpoint", "--ckpt", "--model"),
    ("--data", "--dataset", "--data-dir"),
]


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[Tuple[str, argparse.ArgumentParser]]:
    """Every leaf sub-command ("train", "data build", ...) and its parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from subcommands(sub, f"{prefix} {name}".strip())
            return
    yield prefix, parser


def flag_table() -> Dict[str, Dict[str, List[str]]]:
    """{command: {"documented": [flags shown in --help], "hidden": [aliases left out of it]}}."""
    table = {}
    for name, parser in subcommands(build_parser()):
        shown: List[str] = []
        hidden: List[str] = []
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            (hidden if action.help == argparse.SUPPRESS else shown).extend(action.option_strings)
        table[name] = {"documented": shown, "hidden": hidden}
    return table


def shown_in_help(flag: str, parser: argparse.ArgumentParser) -> bool:
    return re.search(rf"{flag}(?![\w-])", parser.format_help()) is not None


def parser_of(command: str) -> argparse.ArgumentParser:
    return dict(subcommands(build_parser()))[command]


def defaults(command: str) -> argparse.Namespace:
    """The namespace of a command given only what it requires: every other flag at its default."""
    return build_parser().parse_args([*command.split(), *REQUIRED[command]])


def test_every_command_is_covered():
    assert set(REQUIRED) == set(flag_table())


# --- defaults come from the configuration dataclasses -------------------------------------------------------------

def check_defaults(args: argparse.Namespace, config: Dict[str, object], renamed: Dict[str, str],
                   inverted: Dict[str, str], no_flag: Tuple[str, ...]) -> None:
    """Each dataclass field's default against its flag's: same dest unless ``renamed``, ``--no-x`` for ``inverted``
    booleans; fields in ``no_flag`` have no flag (a new field without one fails here until it is listed)."""
    for name, default in config.items():
        if name in no_flag:
            continue
        if name in inverted:
            assert (not getattr(args, inverted[name])) == default, name
        else:
            dest = renamed.get(name, name)
            assert hasattr(args, dest), f"{name}: no flag with dest {dest}"
            assert getattr(args, dest) == default, f"{name}: flag default {getattr(args, dest)!r} != {default!r}"


def test_train_flags_default_to_train_config():
    from rrl_edge.training.config import TrainConfig

    check_defaults(defaults("train"), defaults_of(TrainConfig), renamed={"batch_size": "batch"},
                   inverted={"augment": "no_augment", "amp": "no_amp", "progress": "quiet"}, no_flag=())


def test_qat_flags_default_to_qat_config():
    from rrl_edge.training.config import QATConfig

    check_defaults(defaults("qat"), defaults_of(QATConfig), renamed={"batch_size": "batch"},
                   inverted={"progress": "quiet"}, no_flag=("distill",))


def test_export_flags_default_to_export_options(tmp_path, monkeypatch):
    import rrl_edge.export.pipeline as pipeline
    from rrl_edge.calibration.quantize import quantize
    from rrl_edge.cli import main
    from rrl_edge.export.options import ExportOptions
    from rrl_edge.export.tensorrt_build import BatchProfile

    args = defaults("export")
    opts = defaults_of(ExportOptions)
    profile = opts.pop("profile")
    check_defaults(args, opts, renamed={"workspace_mb": "workspace"}, inverted={"progress": "quiet"}, no_flag=())
    assert (args.min_batch, args.opt_batch, args.max_batch) == (profile.min, profile.opt, profile.max)
    assert profile == BatchProfile()
    # the quantizer's own default is the export's (its docstring, the CLI and ExportOptions say percentile)
    assert inspect.signature(quantize).parameters["method"].default == ExportOptions.calib_method == "percentile"
    # and the command hands exactly the dataclass's defaults on
    seen = []
    monkeypatch.setattr(pipeline, "run_export", seen.append)
    assert main(["export", "--out-dir", str(tmp_path / "deploy")]) == 0
    assert seen == [ExportOptions(out_dir=tmp_path / "deploy")]


def test_build_flags_default_to_engine_request():
    from rrl_edge.contracts import DEFAULT_ENGINE
    from rrl_edge.export.tensorrt_build import BatchProfile, EngineRequest

    args = defaults("build")
    request = defaults_of(EngineRequest)
    profile = request.pop("profile")
    check_defaults(args, request, renamed={"workspace_mb": "workspace"}, inverted={}, no_flag=())
    assert (args.min_batch, args.opt_batch, args.max_batch) == (profile.min, profile.opt, profile.max) == (
        BatchProfile.min, BatchProfile.opt, BatchProfile.max)
    assert args.engine == DEFAULT_ENGINE


def test_bench_flags_default_to_bench_config():
    from rrl_edge.runtime.bench import BenchConfig

    check_defaults(defaults("bench"), defaults_of(BenchConfig), renamed={"batches": "batch", "min_iters": "iters"},
                   inverted={}, no_flag=())


def test_parity_and_device_check_budgets():
    from rrl_edge.export.device_check import run_device_check
    from rrl_edge.export.options import ExportOptions
    from rrl_edge.runtime.parity import DEFAULT_BUDGET

    assert defaults("parity").budget == ExportOptions.budget == DEFAULT_BUDGET
    args = defaults("device-check")
    signature = inspect.signature(run_device_check).parameters
    assert args.budget is signature["budget"].default is None  # None: the export's budget
    assert args.backend == signature["backend"].default


@pytest.mark.parametrize("command", ["register", "register-eval"])
def test_register_flags_give_register_config(command):
    """Given no flags the CLI runs RegisterConfig's defaults, except its rule for the second network round: twice
    the first round's keypoints (--keypoints' help), where the library's default is 160."""
    from rrl_edge.registration.commands import _config
    from rrl_edge.registration.pipeline import RegisterConfig

    args = defaults(command)
    library = RegisterConfig()
    first, second = library.rounds
    assert args.keypoints == first.keypoints and args.motion == library.motion
    assert _config(args) == replace(library, rounds=(first, replace(second, keypoints=2 * first.keypoints)))


@pytest.mark.parametrize("command", ["train", "eval", "data build"])
def test_patch_flags_default_to_patch_config(command):
    from rrl_edge.data.build import PatchConfig

    args = defaults(command)
    assert args.seed == PatchConfig.seed
    detector = next(a for a in parser_of(command)._actions if "--detector" in a.option_strings)
    assert f"default {PatchConfig.detector}" in detector.help


# --- one flag name per meaning --------------------------------------------------------------------------------------

def test_no_two_names_for_one_meaning():
    table = flag_table()
    documented = {flag for row in table.values() for flag in row["documented"]}
    for names in SYNONYMS:
        shown = [n for n in names if n in documented]
        assert len(shown) <= 1, f"{shown} are documented for one meaning: keep {names[0]}, hide the rest"
        assert not shown or shown[0] == names[0], f"{shown[0]} is documented where {names[0]} is the name"


def test_hidden_aliases_share_the_documented_flags_dest():
    for name, parser in subcommands(build_parser()):
        visible = {a.dest: a for a in parser._actions if a.help != argparse.SUPPRESS and a.option_strings}
        for action in parser._actions:
            if action.help == argparse.SUPPRESS and action.option_strings:
                assert action.dest in visible, f"{name}: hidden {action.option_strings} has no documented flag"
                assert action.default is argparse.SUPPRESS, f"{name}: {action.option_strings} sets a default"
                assert action.type is visible[action.dest].type and action.choices == visible[action.dest].choices


@pytest.mark.parametrize("command,old,new,value", [
    ("train", "--batch-size", "--batch", "16"),
    ("eval", "--batch-size", "--batch", "32"),
    ("qat", "--batch-size", "--batch", "8"),
    ("data build", "--out", "--out-dir", "patches"),
])
def test_an_old_spelling_parses_like_the_new_one(command, old, new, value):
    parse = build_parser().parse_args
    base = [*command.split(), *REQUIRED[command]]
    assert vars(parse([*base, old, value])) == vars(parse([*base, new, value]))
    assert not shown_in_help(old, parser_of(command))


@pytest.mark.parametrize("base,old,new", [
    (["device-check", "--deploy", "d"], "--report", "--json"),
    (["data", "synth", "--from", "imgs"], "--out", "--out-dir"),
])
def test_an_old_spelling_of_a_required_flag(base, old, new, capsys):
    parse = build_parser().parse_args
    assert vars(parse([*base, old, "x"])) == vars(parse([*base, new, "x"]))
    with pytest.raises(SystemExit):
        parse(base)  # still required
    assert new in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse([*base, old, "x", new, "y"])  # not both
    assert not shown_in_help(old, parser_of(" ".join(base[:2] if base[0] == "data" else base[:1])))


def test_batch_size_is_no_flag_where_it_never_was(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", *REQUIRED["run"], "--batch-size", "8"])
    assert "--batch-size" in capsys.readouterr().err


# --- --help: inputs, outputs, settings and an example ---------------------------------------------------------------

def examples(help_text: str) -> List[str]:
    lines = help_text.splitlines()
    start = lines.index("example:") + 1
    found = []
    for line in lines[start:]:
        if not line.startswith("  rrl-edge "):
            break
        found.append(line.strip())
    return found


@pytest.mark.parametrize("command", MAIN_COMMANDS)
def test_help_has_groups_and_an_example_that_parses(command, capsys):
    parser = parser_of(command)
    text = parser.format_help()
    for title in GROUPS:
        assert f"\n{title}:\n" in text, f"{command} --help has no '{title}' group"
    assert "\nexample:\n" in text
    found = examples(text)
    assert found, f"{command} --help: no example command"
    for line in found:
        words = shlex.split(line)
        assert words[1] == command
        try:
            build_parser().parse_args(words[1:])
        except SystemExit:
            pytest.fail(f"{command} --help example `{line}` does not parse: {capsys.readouterr().err}")
    # every flag sits in a titled group; argparse's own group holds only --help
    own = [g for g in parser._action_groups if g.title not in (*GROUPS, "patch cutting (image-pair folders)")]
    assert [a.option_strings for g in own for a in g._group_actions if a.help != argparse.SUPPRESS] == [["-h", "--help"]]


def test_help_prints_for_every_command(capsys):
    for name, parser in subcommands(build_parser()):
        assert parser.format_help().startswith("usage: rrl-edge"), name
