"""The command line agrees with itself: every command is registered one way (a module of cli.COMMAND_MODULES, through
its add_commands), every default comes from the configuration dataclass it fills, one flag name per meaning across
the sub-commands (old spellings parse as hidden aliases), each main command's --help groups its flags as inputs,
outputs and settings (experiments apart) and ends with an example that parses."""

import argparse
import inspect
import re
import shlex
from dataclasses import replace
from typing import Dict, Iterator, List, Tuple

import pytest

from rrl_edge.argtypes import EXPERIMENTS, GROUPS, defaults_of
from rrl_edge.cli import build_parser

MAIN_COMMANDS = ("train", "eval", "export", "build", "device-check", "run", "parity", "bench", "register",
                 "register-folder")
# the least each command needs to parse (its required flags and positionals)
REQUIRED = {
    "train": [], "eval": [], "qat": ["--model", "m.pt", "--int8", "rrl.int8.onnx", "--out", "q.pt"],
    "export": ["--out-dir", "deploy"], "build": ["--model", "rrl.onnx"], "device-check": ["--deploy", "d", "--json", "r.json"],
    "run": ["--model", "rrl.plan", "--data", "p.npy"], "parity": ["--reference", "m.pt", "--candidate", "rrl.onnx"],
    "bench": ["rrl.onnx"], "register": ["vis.png", "nir.png"], "register-eval": [],
    "register-folder": ["pairs", "--out-dir", "registered"],
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
    ("--model", "--ckpt", "--checkpoint-path", "--artifact"),
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


# --- one way to register a command ----------------------------------------------------------------------------------

def test_every_command_is_registered_by_a_module_of_the_one_tuple():
    """cli.COMMAND_MODULES is the command list: each module registers its sub-commands through add_commands(sub)
    with handlers of its own, no two modules register one name, together they are every command (in the tuple's
    order), no other project module has an add_commands, and cli.py adds no sub-parser itself."""
    import ast
    from pathlib import Path

    from test_layers import project_modules

    from rrl_edge import cli

    registered: Dict[str, str] = {}
    for module in cli.COMMAND_MODULES:
        parser = argparse.ArgumentParser()
        module.add_commands(parser.add_subparsers(dest="command"))
        leaves = dict(subcommands(parser))
        assert leaves, f"{module.__name__}.add_commands registers no command"
        for leaf, sub in leaves.items():
            assert leaf not in registered, f"{leaf}: registered by {registered[leaf]} and by {module.__name__}"
            registered[leaf] = module.__name__
            handler = sub.get_default("func")
            assert callable(handler) and handler.__module__ == module.__name__, \
                f"{leaf}: set_defaults(func=...) should name a handler of {module.__name__}, not {handler!r}"
    assert list(registered) == [name for name, _ in subcommands(build_parser())]
    with_add_commands = {name for name, path in project_modules().items()
                         if any(isinstance(node, ast.FunctionDef) and node.name in ("add_commands", "add_command")
                                for node in ast.parse(path.read_text()).body)}
    assert with_add_commands == {module.__name__ for module in cli.COMMAND_MODULES}
    calls = [node.attr for node in ast.walk(ast.parse(Path(cli.__file__).read_text()))
             if isinstance(node, ast.Attribute) and node.attr in ("add_parser", "add_subparsers", "add_commands")]
    assert sorted(calls) == ["add_commands", "add_subparsers"], \
        f"cli.py should only loop over COMMAND_MODULES ({calls}): give a new command a module in that tuple"


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
    check_defaults(args, opts, renamed={"workspace_mb": "workspace", "checkpoint": "model"}, inverted={"progress": "quiet"},
                   no_flag=())
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
    """Given no flags the CLI runs RegisterConfig's defaults; --keypoints sets the network round's keypoints."""
    from rrl_edge.registration.commands import _config
    from rrl_edge.registration.pipeline import RegisterConfig

    args = defaults(command)
    library = RegisterConfig()
    assert args.keypoints == library.window.keypoints and args.motion == library.motion
    assert _config(args) == library
    args.keypoints = 48
    assert _config(args) == replace(library, window=replace(library.window, keypoints=48))


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
    own = [g for g in parser._action_groups if g.title not in (*GROUPS, EXPERIMENTS, "patch cutting (image-pair folders)")]
    assert [a.option_strings for g in own for a in g._group_actions if a.help != argparse.SUPPRESS] == [["-h", "--help"]]


def test_help_prints_for_every_command(capsys):
    for name, parser in subcommands(build_parser()):
        assert parser.format_help().startswith("usage: rrl-edge"), name


# --- registration: product settings apart from experiments -------------------------------------------------------

def _ablations(command: str) -> Dict[str, Tuple[str, str]]:
    from rrl_edge.registration.commands import ABLATIONS, NETWORK_ABLATION

    return {**ABLATIONS, **NETWORK_ABLATION} if command == "register-eval" else dict(ABLATIONS)


@pytest.mark.parametrize("command,stage", [(c, s) for c in ("register", "register-eval") for s in _ablations(c)])
def test_ablate_and_its_old_switch_give_the_same_config(command, stage):
    """`--ablate STAGE` and the switch it replaced (a hidden alias) parse alike and give one RegisterConfig, which
    differs from the default one; the old switch is not in --help, --ablate is, in the experiments group."""
    from rrl_edge.registration.commands import _config

    old = _ablations(command)[stage][0]
    parse = build_parser().parse_args
    base = [command, *REQUIRED[command]]
    new_args, old_args = parse([*base, "--ablate", stage]), parse([*base, old])
    assert vars(new_args) == vars(old_args)
    assert _config(new_args) == _config(old_args) != _config(parse(base))
    parser = parser_of(command)
    assert not shown_in_help(old, parser) and shown_in_help("--ablate", parser)
    group = next(g for g in parser._action_groups if g.title == EXPERIMENTS)
    assert [a.option_strings for a in group._group_actions if a.help != argparse.SUPPRESS] == [["--ablate"]]
    assert stage in group.description


def test_ablate_takes_a_list_and_repeats():
    from rrl_edge.registration.commands import _config

    parse = build_parser().parse_args
    base = ["register-eval"]
    together = _config(parse([*base, "--ablate", "refine,dense-path,network"]))
    assert together == _config(parse([*base, "--ablate", "refine", "--ablate", "dense-path", "--coarse-only"]))
    assert together == _config(parse([*base, "--no-refine", "--network-always", "--ablate", "network"]))
    assert together.refine is None and not together.dense_first and not together.network
    with pytest.raises(SystemExit):
        parse(["register", *REQUIRED["register"], "--ablate", "network"])  # register-eval's only
    with pytest.raises(SystemExit):
        parse([*base, "--ablate", "refine,nonsense"])


def test_every_registration_field_is_in_the_settings_page():
    """docs/registration-settings.md has a row for every RegisterConfig and RefineConfig field, under its own
    dataclass's heading, with the field's default (written as Python writes it, for plain values) and a kind."""
    import dataclasses
    from pathlib import Path

    from rrl_edge.registration.pipeline import RegisterConfig
    from rrl_edge.registration.refine import RefineConfig

    text = (Path(__file__).resolve().parents[1] / "docs" / "registration-settings.md").read_text()
    sections = {title: body for title, body in re.findall(r"^## (\w+)\n(.*?)(?=^## |\Z)", text, re.M | re.S)}
    for cls in (RegisterConfig, RefineConfig):
        rows = {}
        for line in sections[cls.__name__].splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 5 and cells[0].startswith("`"):
                rows[cells[0].strip("`")] = cells
        fields = [f.name for f in dataclasses.fields(cls)]
        assert list(rows) == fields, f"{cls.__name__}: the page's rows {list(rows)} are not its fields {fields}"
        for f in dataclasses.fields(cls):
            default, kind = rows[f.name][1], rows[f.name][2]
            if isinstance(f.default, (bool, int, float, str, tuple)):
                assert default == f"`{f.default!r}`", f"{cls.__name__}.{f.name}: the page says {default}"
            assert kind.split()[0] in ("product", "experiment", "internal"), f"{cls.__name__}.{f.name}: {kind}"


# The commands that read one model or artifact, and the old spelling each one had (kept hidden for a release).
MODEL_READERS = {"eval": "--checkpoint", "qat": "--checkpoint", "export": "--checkpoint", "build": "--onnx",
                 "run": "--engine", "register": "--engine", "register-eval": "--engine"}


@pytest.mark.parametrize("command", sorted(MODEL_READERS))
def test_the_model_a_command_reads_is_named_model(command):
    """One name for what a command reads (`--engine` is left to the engine a command writes: build, export), the
    old spelling hidden and meaning the same."""
    table = flag_table()[command]
    old = MODEL_READERS[command]
    assert "--model" in table["documented"] and old in table["hidden"]
    required = [a for a in REQUIRED[command] if a not in ("--model",) and a not in ("m.pt", "rrl.onnx", "rrl.plan")]
    new = build_parser().parse_args([*command.split(), *required, "--model", "x.onnx"])
    aliased = build_parser().parse_args([*command.split(), *required, old, "x.onnx"])
    assert new.model == aliased.model == "x.onnx"
    assert vars(new) == vars(aliased)


def test_no_command_reads_a_model_under_another_name():
    """Every documented flag that names an input model or artifact is --model (parity's --reference/--candidate name
    roles, bench and device-check read several or a folder)."""
    for command, table in flag_table().items():
        for flag in ("--checkpoint", "--onnx"):
            assert flag not in table["documented"], f"{command} documents {flag}; name it --model"
        if command not in ("build", "export"):
            assert "--engine" not in table["documented"], f"{command} documents --engine as an input; use --model"
