"""The criteria file is the versioned evaluation contract people edit by hand.

These tests pin down what a person gets back: a valid file loads, its hash ignores formatting but
not settings, and every mistake is reported with the file, the line and the key at fault, before
anything is evaluated. A predicate is data, never code: a hostile one is rejected and runs nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eval_assets.core.criteria import (
    ChangeGate,
    Criteria,
    CriteriaError,
    PredicateSlice,
    ValueSlices,
    criteria_json_schema,
    load_criteria,
    parse_criteria,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "criteria" / "fraud_detector.yaml"
EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")


def _edited(old: str, new: str) -> str:
    assert EXAMPLE_TEXT.count(old) == 1, f"the example file no longer contains {old!r} once"
    return EXAMPLE_TEXT.replace(old, new)


def _line_of(text: str, snippet: str) -> int:
    """1-based line of the first line containing `snippet`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if snippet in line:
            return number
    raise AssertionError(f"{snippet!r} not found")


def _error(tmp_path: Path, text: str) -> tuple[str, Path]:
    path = tmp_path / "model_criteria.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CriteriaError) as caught:
        load_criteria(path)
    return str(caught.value), path


def _assert_names(message: str, path: Path, line: int, key: str, *words: str) -> None:
    assert str(path) in message
    assert f"line {line}: {key}:" in message, message
    for word in words:
        assert word in message, message


# --- a valid file -------------------------------------------------------------------------------


def test_the_example_criteria_file_loads_with_its_slices_gates_and_policy():
    criteria = load_criteria(EXAMPLE)

    assert criteria.model == "fraud_detector"
    assert criteria.dataset.label_column == "is_fraud"
    assert criteria.dataset.threshold == 0.1
    assert [g.name for g in criteria.gates] == [
        "overall_roc_auc_floor",
        "key_slice_roc_auc_vs_champion",
        "age_band_equalized_odds",
        "key_slice_support",
    ]
    assert criteria.key_slices == ["overall", "high_value", "card_not_present", "foreign"]
    assert isinstance(criteria.slices[0], PredicateSlice)
    assert isinstance(criteria.slices[-1], ValueSlices)
    assert criteria.policy.no_champion == "absolute_only"
    assert criteria.loading.allow_pickle is False


def test_the_digest_ignores_comments_and_formatting():
    original = load_criteria(EXAMPLE).digest()
    reformatted = yaml.safe_dump(yaml.safe_load(EXAMPLE_TEXT), default_flow_style=True)
    commented = "# a new comment\n" + EXAMPLE_TEXT.replace("min: 0.80", "min: 0.8   # floor")

    assert parse_criteria(reformatted).digest() == original
    assert parse_criteria(commented).digest() == original
    assert len(original) == 64


def test_the_digest_changes_when_a_threshold_changes():
    original = load_criteria(EXAMPLE).digest()
    stricter = parse_criteria(_edited("min: 0.80", "min: 0.81"))

    assert stricter.digest() != original


def test_a_change_gate_infers_the_direction_of_its_metric():
    lower = ChangeGate(kind="change", name="g", metric="log_loss", max_absolute_drop=0.01)
    higher = ChangeGate(kind="change", name="g", metric="roc_auc", max_absolute_drop=0.01)
    forced = ChangeGate(
        kind="change",
        name="g",
        metric="roc_auc",
        max_absolute_drop=0.01,
        direction="lower_is_better",
    )

    assert lower.higher_is_better is False
    assert higher.higher_is_better is True
    assert forced.higher_is_better is False


# --- errors name the file, the line and the key -------------------------------------------------


def test_an_unknown_metric_is_reported_at_its_line(tmp_path):
    text = _edited("metric: roc_auc\n    slices: key", "metric: roc_aucc\n    slices: key")
    message, path = _error(tmp_path, text)

    _assert_names(
        message, path, _line_of(text, "roc_aucc"), "gates.1.metric", "unknown metric 'roc_aucc'"
    )


def test_an_unknown_column_in_a_slice_predicate_is_reported_at_its_line(tmp_path):
    text = _edited("where: amount > 10000", "where: amunt > 10000")
    message, path = _error(tmp_path, text)

    _assert_names(message, path, _line_of(text, "amunt"), "slices.0.where", "amunt", "high_value")


def test_a_gate_on_an_undeclared_slice_is_reported_at_its_line(tmp_path):
    text = _edited("slices: [overall]", "slices: [overall, weekend]")
    message, path = _error(tmp_path, text)

    _assert_names(
        message,
        path,
        _line_of(text, "weekend"),
        "gates.0.slices",
        "overall_roc_auc_floor",
        "unknown slice(s) weekend",
    )


def test_a_gate_may_name_one_value_of_a_value_slice_but_not_of_a_predicate_slice(tmp_path):
    by_value = parse_criteria(_edited("slices: [overall]", "slices: [country=US]"))
    assert by_value.gates[0].slices == ["country=US"]

    text = _edited("slices: [overall]", "slices: [high_value=1]")
    message, path = _error(tmp_path, text)
    _assert_names(message, path, _line_of(text, "high_value=1"), "gates.0.slices", "high_value=1")


def test_a_fairness_gate_on_an_undeclared_attribute_is_reported_at_its_line(tmp_path):
    text = _edited("attribute: customer_age_band", "attribute: country")
    message, path = _error(tmp_path, text)

    _assert_names(
        message,
        path,
        _line_of(text, "attribute: country"),
        "gates.2.attribute",
        "'country' is not listed under fairness",
    )


def test_a_fairness_attribute_that_is_not_a_declared_column_is_reported(tmp_path):
    text = _edited("fairness: [customer_age_band]", "fairness: [customer_age_band, gender]")
    message, path = _error(tmp_path, text)

    _assert_names(message, path, _line_of(text, "gender"), "fairness.1", "gender")


def test_an_absolute_gate_whose_min_is_above_its_max_is_impossible(tmp_path):
    text = _edited("min: 0.80", "min: 0.80\n    max: 0.70")
    message, path = _error(tmp_path, text)

    _assert_names(
        message, path, _line_of(text, "min: 0.80"), "gates.0.min", "min 0.8 is above max 0.7"
    )


def test_an_absolute_bound_outside_a_metrics_range_is_impossible(tmp_path):
    text = _edited("min: 0.80", "min: 1.5")
    message, path = _error(tmp_path, text)

    _assert_names(message, path, _line_of(text, "min: 1.5"), "gates.0.min", "can never pass")


def test_a_fairness_ratio_with_a_minimum_above_one_is_impossible(tmp_path):
    text = _edited(
        "metric: equalized_odds_difference\n    max: 0.20",
        "metric: demographic_parity_ratio\n    min: 1.2",
    )
    message, path = _error(tmp_path, text)

    _assert_names(message, path, _line_of(text, "min: 1.2"), "gates.2.min", "ratio lies in [0, 1]")


def test_a_fairness_difference_with_a_negative_maximum_is_impossible(tmp_path):
    text = _edited("max: 0.20", "max: -0.1")
    message, path = _error(tmp_path, text)

    _assert_names(message, path, _line_of(text, "max: -0.1"), "gates.2.max", "can never pass")


def test_duplicate_gate_names_are_reported_at_the_second_use(tmp_path):
    text = _edited("name: key_slice_support", "name: overall_roc_auc_floor")
    message, path = _error(tmp_path, text)

    second_use = len(text.splitlines()) - text.splitlines()[::-1].index(
        "  - name: overall_roc_auc_floor"
    )
    _assert_names(
        message, path, second_use, "gates.3.name", "'overall_roc_auc_floor' is used twice"
    )


def test_a_slice_declared_twice_is_reported(tmp_path):
    text = _edited("  - by: country\n", "  - by: country\n  - by: country\n")
    message, path = _error(tmp_path, text)

    assert str(path) in message and "slices.6.by" in message and "declared twice" in message


def test_a_change_gate_needs_exactly_one_tolerance(tmp_path):
    text = _edited(
        "max_relative_drop: 0.01", "max_relative_drop: 0.01\n    max_absolute_drop: 0.01"
    )
    message, path = _error(tmp_path, text)

    assert str(path) in message and "gates.1" in message and "exactly one of" in message


def test_an_unknown_key_is_reported_with_its_line(tmp_path):
    text = _edited("  - by: country\n", "  - by: country\n    colour: red\n")
    message, path = _error(tmp_path, text)

    _assert_names(message, path, _line_of(text, "colour: red"), "slices.5.colour", "Extra inputs")
    # Only the relevant kind of slice is reported, not every member of the union.
    assert "Field required" not in message


def test_an_empty_list_of_slices_in_a_gate_is_refused(tmp_path):
    text = _edited("slices: [overall]", "slices: []")
    message, path = _error(tmp_path, text)

    assert str(path) in message and "gates.0.slices" in message and "at least 1 item" in message


def test_a_predicate_that_tries_to_run_code_is_rejected_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    hostile = f"__import__('os').system('touch {marker}')"
    text = _edited("where: hour < 6", f'where: "{hostile}"')
    message, path = _error(tmp_path, text)

    _assert_names(
        message,
        path,
        _line_of(text, "__import__"),
        "slices.3.where",
        "is not a comparison of a column with a value",
    )
    assert not marker.exists()


def test_a_predicate_comparing_two_declared_columns_is_rejected(tmp_path):
    text = _edited("where: amount > 10000", "where: amount > hour")
    message, path = _error(tmp_path, text)

    _assert_names(message, path, _line_of(text, "amount > hour"), "slices.0.where", "'hour'")


def test_a_key_written_twice_is_reported_instead_of_silently_keeping_the_last(tmp_path):
    text = _edited("min: 0.80", "min: 0.80\n    min: 0.50")
    message, path = _error(tmp_path, text)

    _assert_names(message, path, _line_of(text, "min: 0.50"), "gates.0.min", "duplicate key")


def test_yaml_that_does_not_parse_is_reported_with_its_line(tmp_path):
    text = EXAMPLE_TEXT.replace("fairness: [customer_age_band]", "fairness: [customer_age_band")
    message, path = _error(tmp_path, text)

    assert str(path) in message
    assert "not valid YAML" in message
    assert "line " in message


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path):
    message, path = _error(tmp_path, "- just\n- a list\n")

    assert str(path) in message and "must be a YAML mapping" in message


def test_a_missing_file_is_a_criteria_error_naming_it(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(CriteriaError, match="nope.yaml"):
        load_criteria(missing)


# --- the JSON Schema ------------------------------------------------------------------------------


def test_the_schema_command_prints_a_json_schema_that_accepts_the_example_file():
    completed = subprocess.run(
        [sys.executable, "-m", "eval_assets.cli", "schema"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=120,
    )
    schema = json.loads(completed.stdout)
    example = yaml.safe_load(EXAMPLE_TEXT)

    assert schema == criteria_json_schema()
    assert set(schema["required"]) == {"model", "dataset"}
    assert {"dataset", "slices", "fairness", "gates", "policy"} <= set(schema["properties"])
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(example, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**example, "colour": "red"}, schema)


def test_criteria_can_be_built_in_code_with_the_same_rules():
    criteria = Criteria.model_validate(
        {"model": "m", "dataset": {"id_column": "id", "label_column": "y", "features": ["x"]}}
    )

    assert criteria.gates == []
    assert criteria.known_columns() == {"id", "y", "x"}
    assert criteria.referenced_columns() == []


# --- hostile files: bounded time, a clear error -------------------------------------------------


def _laughs(levels: int = 9) -> str:
    """A "billion laughs": each anchor is a list of ten aliases of the previous one."""
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        aliases = ", ".join([f"*lol{level - 1}"] * 10)
        lines.append(f"lol{level}: &lol{level} [{aliases}]")
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(1)
@pytest.mark.parametrize(
    "where",
    [
        "top",  # beside the real keys: the duplicate-key walk and pydantic's extra-key error
        "fairness",  # inside a validated field: pydantic would walk every shared list
        "expected_values",  # inside a list of values of a value slice
    ],
)
def test_a_billion_laughs_is_refused_quickly_naming_the_file_and_line(tmp_path, where):
    """Nine levels of aliases are 600 bytes that expand to a billion nodes: the duplicate-key
    walk (and pydantic after it) visited every one and held the code location for hours. The
    file must be refused in well under a second, with the file and the line that explodes."""
    laughs = _laughs()
    text = {
        "top": laughs + EXAMPLE_TEXT,
        "fairness": laughs + _edited("fairness: [customer_age_band]", "fairness: *lol8"),
        "expected_values": laughs
        + _edited("  - by: country\n", "  - by: country\n    expected_values: *lol8\n"),
    }[where]
    message, path = _error(tmp_path, text)
    assert str(path) in message
    # The first anchor whose expansion passes the bound (lol4: 100,000 "lol"s).
    assert f"line {_line_of(text, 'lol4: &lol4')}:" in message, message
    assert "billion laughs" in message and "aliases expanded" in message


@pytest.mark.timeout(2)
def test_a_recursive_alias_and_deep_nesting_are_criteria_errors(tmp_path):
    """An alias inside its own anchor is an infinite tree, and a list nested thousands deep
    exhausts the stack: either escaped as a RecursionError, which is no criteria error at all."""
    recursive = "loop: &loop [*loop]\n" + EXAMPLE_TEXT
    message, path = _error(tmp_path, recursive)
    assert str(path) in message and "line 1:" in message and "recursive" in message
    deep = "model: " + "[" * 5000 + "]" * 5000 + "\n"
    message, path = _error(tmp_path, deep)
    assert str(path) in message and "nest" in message, message


@pytest.mark.timeout(2)
def test_an_oversized_file_is_refused_without_reading_it_all(tmp_path):
    """A criteria file is a few kilobytes; a huge one (by mistake or not) is refused by size,
    reading no more than the limit."""
    path = tmp_path / "huge.yaml"
    with path.open("w", encoding="utf-8") as handle:
        handle.write(EXAMPLE_TEXT)
        handle.write("# padding\n" * 500_000)  # 5 MB
    with pytest.raises(CriteriaError, match="larger than") as caught:
        load_criteria(path)
    assert str(path) in str(caught.value)


@pytest.mark.timeout(2)
def test_thousands_of_errors_are_summarised_not_listed(tmp_path):
    """A list of 3000 wrong values gave a 3000-line message; the first errors, each naming its
    line, and a count of the rest say as much."""
    values = ", ".join(["{a: 1}"] * 3000)
    text = _edited("  - by: country\n", f"  - by: country\n    expected_values: [{values}]\n")
    message, path = _error(tmp_path, text)
    lines = message.splitlines()
    assert len(lines) <= 21, len(lines)
    assert all(str(path) in line for line in lines)
    assert re.search(r": and [0-9,]+ more problem\(s\)$", lines[-1]), lines[-1]


# --- column names that hold "=" -----------------------------------------------------------------


def test_a_gate_may_name_one_value_of_a_column_whose_name_holds_equals(tmp_path):
    """A value slice of column "plan=tier" is "plan=tier=gold"; splitting at the first "="
    read it as column "plan" and refused the gate as naming an unknown slice."""
    text = _edited("  - by: country\n", "  - by: country\n  - by: plan=tier\n")
    text = text.replace("    country: string\n", "    country: string\n    plan=tier: string\n")
    criteria = parse_criteria(text.replace("slices: [overall]", "slices: [plan=tier=gold]"))
    assert criteria.gates[0].slices == ["plan=tier=gold"]


def test_value_columns_whose_slice_names_would_collide_are_refused(tmp_path):
    """By "plan" and by "plan=tier", the slice "plan=tier=x" could belong to either column, and
    a gate would silently cover the wrong rows: the criteria say so at the second column."""
    text = _edited("  - by: country\n", "  - by: plan\n  - by: plan=tier\n")
    text = text.replace(
        "    country: string\n", "    country: string\n    plan: string\n    plan=tier: string\n"
    )
    message, path = _error(tmp_path, text)
    _assert_names(
        message, path, _line_of(text, "by: plan=tier"), "slices.6.by", "'plan'", "'plan=tier'"
    )
