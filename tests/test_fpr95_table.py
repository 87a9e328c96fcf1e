"""FPR95Table (rrl_edge.fpr95_table), the one result type of FPR95 per category and its mean: against
scikit-learn's ROC on real VIS-NIR test pairs, its JSON (round trip and the shapes older versions wrote), its
printer, and eval / run / parity / the export report (engine manifest) / the main job's closing table all
writing and reading that one shape."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from rrl_edge.data.patchfile import PatchSet
from rrl_edge.errors import InputError
from rrl_edge.fpr95_table import (LEGACY_ROUNDED_MEAN_RULE, MEAN_RULE, CategoryFPR95, FPR95Table, format_tables)

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = ("field", "water")  # the two hardest VIS-NIR test categories: FPR95 well away from 0
PER_CATEGORY = 100
SHAPE_KEYS = {"categories", "mean_fpr95", "mean_rule", "protocol"}


def sklearn_fpr95(labels: np.ndarray, scores: np.ndarray) -> float:
    """FPR95 as the RRL-Net authors' code measures it, written out here independently of rrl_edge.metrics."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.interp(0.95, tpr, fpr) * 100.0)


def assert_table_shape(data: Dict, categories=CATEGORIES, pairs: int = PER_CATEGORY) -> FPR95Table:
    """``data`` is an FPR95Table's JSON: the four keys, each category's {"fpr95", "pairs"}, values to 4 digits."""
    assert SHAPE_KEYS <= set(data) and data["mean_rule"] == MEAN_RULE, data
    assert list(data["categories"]) == list(categories)
    for c in data["categories"].values():
        assert set(c) == {"fpr95", "pairs"} and c["pairs"] == pairs and c["fpr95"] == round(c["fpr95"], 4)
    table = FPR95Table.from_json(data)
    assert table.to_json() == {k: data[k] for k in SHAPE_KEYS}
    return table


@pytest.fixture(scope="module")
def small_sets(visnir_test: Dict[str, PatchSet]) -> Dict[str, PatchSet]:
    """100 real VIS-NIR test pairs of field and water each, half matching (seeded)."""
    from rrl_edge.export.parity import proof_sets

    return proof_sets({c: visnir_test[c] for c in CATEGORIES}, PER_CATEGORY, seed=3)


@pytest.fixture(scope="module")
def shipped_scores(small_sets):
    """The shipped VIS-NIR model's and the RoadScene model's scores of those pairs (PyTorch, CPU)."""
    from rrl_edge.checkpoint import SHIPPED, load_model
    from rrl_edge.runtime.registry import score_with

    out = {}
    for name in ("vis-nir", "roadscene"):
        model, _ = load_model(SHIPPED[name])
        out[name] = {c: score_with(model, ps.patches, 256) for c, ps in small_sets.items()}
    return out


# ---------------------------------------------------------------------------------------------- the type


def test_from_scores_is_sklearns_fpr95_per_category_and_their_plain_mean(small_sets, shipped_scores):
    labels = {c: ps.labels for c, ps in small_sets.items()}
    table = FPR95Table.from_scores(labels, shipped_scores["vis-nir"], protocol="default")
    assert list(table) == list(CATEGORIES) and len(table) == 2 and "field" in table
    expected = {c: sklearn_fpr95(labels[c], shipped_scores["vis-nir"][c]) for c in CATEGORIES}
    for c in CATEGORIES:
        assert table[c].fpr95 == pytest.approx(expected[c], abs=1e-9) and table[c].pairs == PER_CATEGORY
        assert table[c].fpr95 > 0  # not trivially separable: the mean rule below is exercised on real numbers
    assert table.mean_fpr95 == pytest.approx(np.mean(list(expected.values())), abs=1e-9)  # unrounded, unweighted
    assert table.pairs == 2 * PER_CATEGORY and table.protocol == "default"
    data = table.to_json()
    assert data == {"categories": {c: {"fpr95": round(expected[c], 4), "pairs": PER_CATEGORY} for c in CATEGORIES},
                    "mean_fpr95": round(float(np.mean(list(expected.values()))), 4), "mean_rule": MEAN_RULE,
                    "protocol": "default"}
    # a scorer passed in is used instead of rrl_edge.metrics (the device runtime may pass its own)
    calls = []
    FPR95Table.from_scores(labels, shipped_scores["vis-nir"], fpr95=lambda l, s: calls.append(len(l)) or 1.0)
    assert calls == [PER_CATEGORY, PER_CATEGORY]


def test_the_mean_is_of_unrounded_values_whatever_the_category_sizes():
    table = FPR95Table.from_values({"a": 1.00004, "b": 2.00004, "c": 3.00004}, {"a": 10, "b": 1000, "c": 5})
    assert table.mean_fpr95 == pytest.approx(2.00004, abs=1e-12)
    assert table.to_json()["mean_fpr95"] == 2.0  # rounded only in the JSON
    # the mean of the rounded values (1.0001, 1.0001, 1.0) would be 1.0001; of the unrounded ones it is 1.00004
    assert FPR95Table.from_values({"a": 1.00006, "b": 1.00006, "c": 1.0}).to_json()["mean_fpr95"] == 1.0


def test_bad_tables_are_refused():
    with pytest.raises(InputError, match="at least one category"):
        FPR95Table({})
    with pytest.raises(InputError, match="'a' has no finite FPR95"):
        FPR95Table({"a": CategoryFPR95(float("nan"), 3)})
    with pytest.raises(InputError, match="no scores for b"):
        FPR95Table.from_scores({"a": np.array([0, 1]), "b": np.array([0, 1])}, {"a": np.array([0.1, 0.9])})
    with pytest.raises(InputError, match="both matching"):
        FPR95Table.from_scores({"a": np.array([1, 1])}, {"a": np.array([0.1, 0.9])})


# ---------------------------------------------------------------------------------------------- the JSON


def test_json_round_trip(small_sets, shipped_scores):
    labels = {c: ps.labels for c, ps in small_sets.items()}
    record = {"keypoint_sampling": "uniform", "negatives": "far", "description": "eval's protocol record"}
    for protocol in (None, "strongest", record):
        table = FPR95Table.from_scores(labels, shipped_scores["roadscene"], protocol)
        text = json.dumps(table.to_json())
        back = FPR95Table.from_json(json.loads(text))
        assert back.to_json() == table.to_json() and json.dumps(back.to_json()) == text
        assert FPR95Table.from_json(back.to_json()) == back  # read back once, the table is a fixed point
        assert back.protocol == protocol and back.mean_rule == MEAN_RULE
    # keys beside the table (eval's report) are ignored
    assert FPR95Table.from_json({**table.to_json(), "separation": {}, "checkpoint": "x.pt"}).to_json() == table.to_json()


def test_shapes_written_by_older_versions_are_read():
    # an export report's "fpr95" entry before this type: {"mean" (of the rounded values), "categories": {name: x}}
    old_export = {"mean": 2.5, "categories": {"field": 3.0, "water": 2.0}}
    table = FPR95Table.from_json(old_export, pairs={"field": 128, "water": 128})
    assert table.to_json() == {"categories": {"field": {"fpr95": 3.0, "pairs": 128}, "water": {"fpr95": 2.0, "pairs": 128}},
                               "mean_fpr95": 2.5, "mean_rule": LEGACY_ROUNDED_MEAN_RULE, "protocol": None}
    assert FPR95Table.from_json(old_export)["field"].pairs is None and FPR95Table.from_json(old_export).pairs is None
    # `rrl-edge run --json`'s "fpr95" before: flat, the mean only with several categories
    assert FPR95Table.from_json({"a": 1.0, "b": 2.0, "mean": 1.5}, {"a": 7, "b": 9}).to_json() == {
        "categories": {"a": {"fpr95": 1.0, "pairs": 7}, "b": {"fpr95": 2.0, "pairs": 9}}, "mean_fpr95": 1.5,
        "mean_rule": MEAN_RULE, "protocol": None}
    assert FPR95Table.from_json({"water_patches": 4.25}).mean_fpr95 == 4.25
    # eval's report before "mean_rule" was written: the same rule, its protocol record kept
    old_eval = {"categories": {"urban": {"fpr95": 1.25, "pairs": 3840}}, "mean_fpr95": 1.25,
                "separation": {"pairs": 3840}, "protocol": {"keypoint_sampling": "uniform"}}
    table = FPR95Table.from_json(old_eval)
    assert table.mean_rule == MEAN_RULE and table.protocol == {"keypoint_sampling": "uniform"} and table.pairs == 3840
    for bad, match in (([], "expected a JSON object"), ({}, "no categories"), ({"categories": {}}, "non-empty"),
                       ({"a": "x"}, "not a finite number"), ({"categories": {"a": {"pairs": 3}}}, "no 'fpr95'"),
                       ({"categories": {"a": {"fpr95": 1.0, "pairs": -1}}}, "whole number"),
                       ({"categories": {"a": {"fpr95": 1.0}}, "protocol": 3}, "'protocol'"), (None, "JSON object"),
                       ({"categories": {"a": {"fpr95": 1.0}}, "mean_fpr95": float("nan")}, "not a finite number")):
        with pytest.raises(InputError, match=match):
            FPR95Table.from_json(bad)


# ------------------------------------------------------------------------------------------------- printing


def test_the_printer_puts_tables_side_by_side_as_eval_printed_them():
    net = FPR95Table.from_values({"field": 13.591234, "water": 10.26}, {"field": 3840, "water": 3392})
    sift = FPR95Table.from_values({"field": 74.5, "water": 80.0049}, {"field": 3840, "water": 3392})
    assert format_tables({"RRL-Net": net, "SIFT": sift}) == "\n".join([
        "category       pairs   RRL-Net FPR95      SIFT FPR95",
        "----------------------------------------------------",
        "field           3840           13.59           74.50",
        "water           3392           10.26           80.00",
        "----------------------------------------------------",
        "mean            7232           11.93           77.25",
    ])
    assert format_tables({"": net}, markdown=True) == "\n".join([
        "| category | pairs | FPR95 (%) |", "|---|---:|---:|", "| field | 3840 | 13.59 |", "| water | 3392 | 10.26 |",
        "| mean | 7232 | 11.93 |"])
    one = FPR95Table.from_values({"water_patches": 4.0}, {"water_patches": 300})
    assert "mean" not in format_tables({"": one}, markdown=True, single_mean=False)
    assert format_tables({"RRL-Net": one}).splitlines()[-1].split() == ["mean", "300", "4.00"]  # eval keeps its row
    legacy = FPR95Table.from_json({"mean": 1.0, "categories": {"field": 1.0}})
    assert format_tables({"x": legacy}).splitlines()[2].split() == ["field", "-", "1.00"]  # pairs unknown
    with pytest.raises(ValueError, match="categories"):
        format_tables({"a": net, "b": one})


# ------------------------------------------------------------------------- every JSON carries the shape


@pytest.fixture(scope="module")
def small_build(small_sets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build-like folder (manifest + labelled patch files) of the two small categories."""

    out = tmp_path_factory.mktemp("fpr95-table-data")
    from export_fixtures import write_test_build  # here: a top-level import would precede pytest's plugin import

    return write_test_build(small_sets, out)


def test_eval_and_run_json_carry_the_table_and_the_closing_table_reads_both(small_build, small_sets, shipped_scores,
                                                                              tmp_path, capsys):
    from rrl_edge.checkpoint import SHIPPED
    from rrl_edge.cli import main

    checkpoint = str(SHIPPED["vis-nir"])
    labels = {c: ps.labels for c, ps in small_sets.items()}
    expected = FPR95Table.from_scores(labels, shipped_scores["vis-nir"]).to_json()
    # run on both categories (a build folder): the table with its mean, printed as Markdown
    both = tmp_path / "run-both.json"
    assert main(["run", "--engine", checkpoint, "--data", str(small_build), "--json", str(both), "--quiet"]) == 0
    printed = capsys.readouterr().out
    deployed = json.loads(both.read_text())
    assert_table_shape(deployed["fpr95"])
    assert deployed["fpr95"]["categories"] == expected["categories"]
    assert deployed["fpr95"]["mean_fpr95"] == expected["mean_fpr95"]
    assert deployed["categories"] == {c: PER_CATEGORY for c in CATEGORIES}
    assert f"| mean | {2 * PER_CATEGORY} | {expected['mean_fpr95']:.2f} |" in printed

    # eval and run on one patch file; the main job's closing table reads both
    patches = small_build / "test_field_patches.npy"
    eval_json, run_json = tmp_path / "eval.json", tmp_path / "run.json"
    assert main(["eval", "--data", str(patches), "--checkpoint", checkpoint, "--json", str(eval_json), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert main(["run", "--engine", checkpoint, "--data", str(patches), "--json", str(run_json), "--quiet"]) == 0
    capsys.readouterr()
    evaluated, deployed = json.loads(eval_json.read_text()), json.loads(run_json.read_text())
    (name,) = evaluated["categories"]
    table = assert_table_shape(evaluated, [name])
    assert evaluated["categories"][name] == expected["categories"]["field"]
    assert evaluated["protocol"]["source"] == "patch-file"  # eval's protocol record rides in the table
    assert format_tables({"RRL-Net": table}) in printed  # the printed table is the JSON's
    assert_table_shape(deployed["fpr95"], [name])
    assert deployed["fpr95"]["categories"] == evaluated["categories"]

    script = [sys.executable, str(ROOT / "scripts" / "fpr95_table.py"), str(eval_json)]
    result = subprocess.run(script + [str(run_json)], capture_output=True, text=True)
    value = expected["categories"]["field"]["fpr95"]
    assert result.returncode == 0, result.stderr
    assert f"| {name} | {PER_CATEGORY:,} | {value:.2f} | {value:.2f} | +0.00 |" in result.stdout
    assert f"| **mean** | {PER_CATEGORY:,} | {value:.2f} | {value:.2f} | +0.00 |" in result.stdout
    assert "within 0.3" in result.stdout
    # a run JSON an older version wrote (flat "fpr95") reads the same; a run without labels is refused
    (tmp_path / "old-run.json").write_text(json.dumps(dict(deployed, fpr95={name: value})))
    older = subprocess.run(script + [str(tmp_path / "old-run.json")], capture_output=True, text=True)
    assert older.returncode == 0 and older.stdout == result.stdout.replace(str(run_json), str(tmp_path / "old-run.json")), older.stderr
    (tmp_path / "unlabelled.json").write_text(json.dumps(dict(deployed, fpr95=None)))
    unlabelled = subprocess.run(script + [str(tmp_path / "unlabelled.json")], capture_output=True, text=True)
    assert unlabelled.returncode == 2 and "lacks its categories or FPR95" in unlabelled.stderr


def test_parity_tables_are_fpr95_tables_and_its_fields_come_from_them(small_sets, shipped_scores):
    from rrl_edge.runtime.parity import compare

    labels = {c: ps.labels for c, ps in small_sets.items()}
    ref, cand = shipped_scores["vis-nir"], shipped_scores["roadscene"]
    result = compare(labels, ref, cand, 0.3, protocol="default")
    tables = {k: assert_table_shape(v) for k, v in result["fpr95_tables"].items()}
    assert set(tables) == {"reference", "candidate"} and tables["candidate"].protocol == "default"
    for c in CATEGORIES:
        assert result["categories"][c]["fpr95_reference"] == round(sklearn_fpr95(labels[c], ref[c]), 4)
        assert result["categories"][c]["fpr95"] == round(sklearn_fpr95(labels[c], cand[c]), 4)
        assert result["categories"][c]["fpr95"] == result["fpr95_tables"]["candidate"]["categories"][c]["fpr95"]
    assert result["mean_fpr95_reference"] == result["fpr95_tables"]["reference"]["mean_fpr95"]
    assert result["mean_fpr95"] == result["fpr95_tables"]["candidate"]["mean_fpr95"]
    assert result["mean_delta"] == round(result["mean_fpr95"] - result["mean_fpr95_reference"], 4)


def test_the_engine_manifest_takes_the_export_reports_table_old_or_new():
    from rrl_edge.export.tensorrt_build import _measured_fpr95

    new = FPR95Table.from_values({"field": 3.0, "water": 2.0}, {"field": 128, "water": 128}, "default").to_json()
    report = {"proof_data": {"pairs": {"field": 128, "water": 128}}, "fpr95": {"onnx-fp32": new, "tensorrt-qdq": new}}
    assert _measured_fpr95(report, "tensorrt-qdq") == new
    old = {"proof_data": {"pairs": {"field": 128, "water": 128}},
           "fpr95": {"onnx-fp32": {"mean": 2.5, "categories": {"field": 3.0, "water": 2.0}}}}
    measured = _measured_fpr95(old, "onnx-fp32")
    assert measured is not None and measured["categories"] == new["categories"] and measured["mean_fpr95"] == 2.5
    assert measured["mean_rule"] == LEGACY_ROUNDED_MEAN_RULE
    assert _measured_fpr95(old, "tensorrt-qdq") is None and _measured_fpr95({}, "onnx-fp32") is None
    assert _measured_fpr95({"fpr95": {"onnx-fp32": "broken"}}, "onnx-fp32") is None


def test_training_curves_read_their_tables_and_older_entries():
    from rrl_edge.training.trainer import _by_source

    joint = FPR95Table.from_values({"vis-nir": 2.0, "roadscene": 1.0}, {"vis-nir": 256, "roadscene": 256})
    one = FPR95Table.from_values({"country": 2.0}, {"country": 256})
    assert _by_source({"val_fpr95": 1.5, "val_fpr95_table": joint.to_json()}) == {"vis-nir": 2.0, "roadscene": 1.0}
    assert _by_source({"val_fpr95": 2.0, "val_fpr95_table": one.to_json()}) is None
    assert _by_source({"val_fpr95": 1.5, "val_fpr95_by_source": {"a": 1.0, "b": 2.0}}) == {"a": 1.0, "b": 2.0}  # resumed
    assert _by_source({"val_fpr95": 2.0}) is None
