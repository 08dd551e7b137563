"""The versioned evaluation contract: one YAML file per registered model.

It declares the dataset contract, the slices, the fairness attributes, the gates and the policies
for outcomes that are not a plain pass. It is validated with pydantic; any error names the file,
the line and the key at fault. Its canonical hash is stamped on every verdict.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from eval_assets.core.predicates import PredicateError, parse_predicate, predicate_columns
from eval_assets.core.vocabulary import (
    FAIRNESS_METRICS,
    HIGHER_IS_BETTER,
    METRIC_NAMES,
    METRIC_RANGES,
    OVERALL,
)

CRITERIA_SCHEMA_VERSION = 1
# Metrics whose value always lies in [0, 1] (log loss is unbounded above).
UNIT_INTERVAL_METRICS = frozenset(m for m in METRIC_NAMES if METRIC_RANGES[m] == (0.0, 1.0))
_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"
# A real criteria file is a few kilobytes. These bounds are far above that and keep a hostile file
# from holding the code location: a "billion laughs" (aliases of aliases, each repeating an anchor
# ten times) is a few hundred bytes that expand to a billion nodes, and the duplicate-key walk,
# pydantic and the digest would each visit every one of them. The expanded size counts a node
# once per place it appears, plus the characters of each scalar (a long string repeated by aliases
# is as large as its copies).
MAX_CRITERIA_CHARS = 64 * 1024
MAX_CRITERIA_EXPANDED = 2 * MAX_CRITERIA_CHARS
MAX_CRITERIA_DEPTH = 40
_MAX_PROBLEMS = 20
# libyaml parses about ten times faster than PyYAML's Python parser (a file at the size limit in
# well under a second) and refuses nesting deeper than 1000 levels itself; the Python parser,
# where libyaml is missing, meets the same bounds, only slower.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
ColumnType = Literal["integer", "float", "string", "boolean"]
DecisionMode = Literal["point", "non_inferiority"]


class CriteriaError(ValueError):
    """Criteria that cannot be used; the message names the file, line and key."""


class _KeyError(ValueError):
    """A validation error that knows which key (below the validated object) is at fault.

    pydantic reports errors of a model validator at the model itself; `loc` lets the criteria
    loader point at the exact key and line instead (pydantic keeps the exception in the error's
    context).
    """

    def __init__(self, message: str, *loc: str | int):
        super().__init__(message)
        self.loc = loc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetContract(_Strict):
    """What a golden snapshot must look like."""

    name: str = Field("golden", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", description="dataset name")
    id_column: str
    label_column: str
    positive_class: int | str = 1
    negative_class: int | str = 0
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="score >= threshold is positive")
    features: list[str] | Literal["all"] = Field(
        "all", description="feature columns, or 'all' for every column but id and label"
    )
    columns: dict[str, ColumnType] = Field(
        default_factory=dict, description="expected type of each declared column"
    )
    extra_columns: Literal["error", "ignore"] = "error"
    max_rows: int = Field(
        20_000_000,
        ge=1,
        description="larger snapshots are refused before they are read, so memory stays bounded",
    )
    allow_missing_features: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> DatasetContract:
        if self.positive_class == self.negative_class:
            raise ValueError("positive_class and negative_class must differ")
        if self.id_column == self.label_column:
            raise ValueError("id_column and label_column must differ")
        if isinstance(self.features, list):
            for reserved in (self.id_column, self.label_column):
                if reserved in self.features:
                    raise ValueError(f"features must not include {reserved!r}")
        return self

    def declared_columns(self) -> list[str]:
        """Columns the contract names, in a stable order."""
        names = [self.id_column, self.label_column]
        if isinstance(self.features, list):
            names += self.features
        names += [c for c in self.columns if c not in names]
        return names


class PredicateSlice(_Strict):
    """A named slice defined by a predicate."""

    name: str = Field(pattern=_NAME)
    where: str
    key: bool = False

    @field_validator("where")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            parse_predicate(value)
        except PredicateError as exc:
            raise ValueError(str(exc)) from None
        return value


class ValueSlices(_Strict):
    """One slice per value of a column, named ``column=value``."""

    by: str
    key: bool = False
    expected_values: list[str | int] | None = Field(
        None, description="values that must be present; an absent one is a missing slice"
    )


def _slice_kind(value: Any) -> str:
    # A slice is a predicate slice when it says `where`, else a value slice (`by`); choosing the
    # member up front keeps the other member's irrelevant errors out of the message.
    if isinstance(value, dict):
        return "value" if "by" in value and "where" not in value else "predicate"
    return "value" if isinstance(value, ValueSlices) else "predicate"


SliceSpec = Annotated[
    Annotated[PredicateSlice, Tag("predicate")] | Annotated[ValueSlices, Tag("value")],
    Discriminator(_slice_kind),
]
SliceSelector = Literal["key", "all"] | Annotated[list[str], Field(min_length=1)]


class _Gate(_Strict):
    name: str = Field(pattern=_NAME, description="unique; becomes the Dagster check name")
    description: str | None = None


class AbsoluteGate(_Gate):
    """A bound on a metric's value in each selected slice."""

    kind: Literal["absolute"]
    metric: str
    slices: SliceSelector = [OVERALL]
    min: float | None = None
    max: float | None = None
    mode: DecisionMode | None = None

    @model_validator(mode="after")
    def _bounds(self) -> AbsoluteGate:
        _check_metric(self.metric)
        if self.min is None and self.max is None:
            raise ValueError("an absolute gate needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise _KeyError(f"min {self.min} is above max {self.max}: no value can pass", "min")
        if self.metric in UNIT_INTERVAL_METRICS:
            if self.min is not None and self.min > 1:
                raise _KeyError(
                    f"{self.metric} lies in [0, 1]; min {self.min} can never pass", "min"
                )
            if self.max is not None and self.max < 0:
                raise _KeyError(
                    f"{self.metric} lies in [0, 1]; max {self.max} can never pass", "max"
                )
        elif self.max is not None and self.max < 0:
            raise _KeyError(
                f"{self.metric} is never negative; max {self.max} can never pass", "max"
            )
        return self


class ChangeGate(_Gate):
    """A bound on how much a metric may degrade against the champion in each selected slice."""

    kind: Literal["change"]
    metric: str
    slices: SliceSelector = "key"
    max_relative_drop: float | None = Field(None, ge=0.0)
    max_absolute_drop: float | None = Field(None, ge=0.0)
    direction: Literal["auto", "higher_is_better", "lower_is_better"] = "auto"
    mode: DecisionMode | None = None

    @model_validator(mode="after")
    def _one_tolerance(self) -> ChangeGate:
        _check_metric(self.metric)
        if (self.max_relative_drop is None) == (self.max_absolute_drop is None):
            raise ValueError(
                "a change gate needs exactly one of max_relative_drop, max_absolute_drop"
            )
        return self

    @property
    def higher_is_better(self) -> bool:
        if self.direction == "auto":
            return HIGHER_IS_BETTER[self.metric]
        return self.direction == "higher_is_better"


class FairnessGate(_Gate):
    """A bound on a disparity between the groups of a fairness attribute."""

    kind: Literal["fairness"]
    attribute: str
    metric: str
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _bound(self) -> FairnessGate:
        if self.metric not in FAIRNESS_METRICS:
            raise ValueError(
                f"unknown fairness metric {self.metric!r}; known: {', '.join(FAIRNESS_METRICS)}"
            )
        if self.min is None and self.max is None:
            raise ValueError("a fairness gate needs max (a difference) or min (a ratio)")
        # Differences of rates and ratios of rates both lie in [0, 1].
        kind = "ratio" if self.metric.endswith("ratio") else "difference"
        if self.min is not None and self.min > 1:
            raise _KeyError(f"a {kind} lies in [0, 1]; min {self.min} can never pass", "min")
        if self.max is not None and self.max < 0:
            raise _KeyError(f"a {kind} lies in [0, 1]; max {self.max} can never pass", "max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise _KeyError(f"min {self.min} is above max {self.max}: no value can pass", "min")
        return self


class SupportGate(_Gate):
    """A minimum number of rows, positives and negatives in each selected slice."""

    kind: Literal["support"]
    slices: SliceSelector = "key"
    min_rows: int = Field(0, ge=0)
    min_positives: int = Field(0, ge=0)
    min_negatives: int = Field(0, ge=0)


Gate = Annotated[
    AbsoluteGate | ChangeGate | FairnessGate | SupportGate, Field(discriminator="kind")
]


class Policy(_Strict):
    """What counts as passing when the evidence is not a plain pass or fail (fail closed)."""

    no_champion: Literal["fail", "absolute_only"] = Field(
        "fail", description="absolute_only: with no champion, change gates record no_champion"
    )
    allow_insufficient_evidence: bool = False
    allow_missing_slices: bool = False
    min_slice_rows: int = Field(30, ge=0, description="below this a slice's gates are inconclusive")
    min_slice_positives: int = Field(5, ge=0)
    min_slice_negatives: int = Field(5, ge=0)
    decision_mode: DecisionMode = "point"


class BootstrapSpec(_Strict):
    resamples: int = Field(1000, ge=0, le=100_000)
    seed: int = 0
    confidence: float = Field(0.95, gt=0.0, lt=1.0)


class ModelPolicy(_Strict):
    """Which artifact formats unattended runs may load for this model."""

    allow_pickle: bool = False
    trusted_skops_types: list[str] = Field(default_factory=list)


class Criteria(_Strict):
    """The evaluation contract of one registered model."""

    schema_version: Literal[1] = CRITERIA_SCHEMA_VERSION
    model: str = Field(description="registered model name")
    dataset: DatasetContract
    slices: list[SliceSpec] = Field(default_factory=list)
    fairness: list[str] = Field(default_factory=list, description="fairness attribute columns")
    gates: list[Gate] = Field(default_factory=list)
    policy: Policy = Policy()
    bootstrap: BootstrapSpec = BootstrapSpec()
    loading: ModelPolicy = ModelPolicy()

    @model_validator(mode="after")
    def _references(self) -> Criteria:
        names = [OVERALL]
        value_columns = set()
        for index, spec in enumerate(self.slices):
            name = spec.name if isinstance(spec, PredicateSlice) else spec.by
            if name in names:
                field = "name" if isinstance(spec, PredicateSlice) else "by"
                raise _KeyError(f"slice {name!r} is declared twice", "slices", index, field)
            names.append(name)
            if isinstance(spec, ValueSlices):
                # Slice names are ``column=value``: by "a" and by "a=b" both name a slice
                # "a=b=x", and no name could say which column it came from.
                clash = next(
                    (
                        c
                        for c in value_columns
                        if spec.by.startswith(f"{c}=") or c.startswith(f"{spec.by}=")
                    ),
                    None,
                )
                if clash is not None:
                    raise _KeyError(
                        f"value slices by {clash!r} and by {spec.by!r} would share slice names "
                        f"(such as {max(clash, spec.by, key=len)}=x); rename one of the columns",
                        "slices",
                        index,
                        "by",
                    )
                value_columns.add(spec.by)
        seen: set[str] = set()
        for index, gate in enumerate(self.gates):
            if gate.name in seen:
                raise _KeyError(
                    f"gate names must be unique; {gate.name!r} is used twice",
                    "gates",
                    index,
                    "name",
                )
            seen.add(gate.name)
        known = self.known_columns()
        for index, spec in enumerate(self.slices):
            if isinstance(spec, PredicateSlice):
                where = ("slices", index, "where")
                try:
                    used = predicate_columns(parse_predicate(spec.where, columns=known))
                except PredicateError as exc:
                    raise _KeyError(str(exc), *where) from None
                _check_columns(used, known, f"slice {spec.name!r}", where)
            else:
                _check_columns({spec.by}, known, f"slice by {spec.by!r}", ("slices", index, "by"))
        for index, attribute in enumerate(self.fairness):
            _check_columns({attribute}, known, "fairness", ("fairness", index))
        for index, gate in enumerate(self.gates):
            if isinstance(gate, FairnessGate):
                if gate.attribute not in self.fairness:
                    raise _KeyError(
                        f"gate {gate.name!r}: attribute {gate.attribute!r} is not listed under "
                        f"fairness ({', '.join(self.fairness) or 'none'})",
                        "gates",
                        index,
                        "attribute",
                    )
            elif isinstance(gate.slices, list):
                unknown = [
                    s
                    for s in gate.slices
                    if s not in names and not any(s.startswith(f"{c}=") for c in value_columns)
                ]
                if unknown:
                    raise _KeyError(
                        f"gate {gate.name!r}: unknown slice(s) {', '.join(unknown)}; "
                        f"declared: {', '.join(names)}",
                        "gates",
                        index,
                        "slices",
                    )
        return self

    def referenced_columns(self) -> list[str]:
        """Columns the slices and fairness attributes read, which the data must therefore have."""
        used: set[str] = set(self.fairness)
        for spec in self.slices:
            if isinstance(spec, PredicateSlice):
                used |= predicate_columns(parse_predicate(spec.where))
            else:
                used.add(spec.by)
        return sorted(used)

    def known_columns(self) -> set[str] | None:
        """Columns the contract declares, or None when features are 'all other columns'."""
        if self.dataset.features == "all" and not self.dataset.columns:
            return None
        return set(self.dataset.declared_columns())

    @property
    def key_slices(self) -> list[str]:
        """Names of the slice specs marked key (value slices by their column); overall is key."""
        return [OVERALL] + [
            s.name if isinstance(s, PredicateSlice) else s.by for s in self.slices if s.key
        ]

    def digest(self) -> str:
        """Canonical content hash: formatting and comments do not change it, any setting does."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def default_criteria(label_column: str, id_column: str | None = None) -> Criteria:
    """Criteria for a bare CLI run: every other column is a feature, only the overall slice."""
    return Criteria(
        model="adhoc",
        dataset=DatasetContract(
            id_column=id_column or "__row__",
            label_column=label_column,
            extra_columns="ignore",
        ),
    )


def load_criteria(path: str | Path) -> Criteria:
    """Load and validate one criteria file; errors name the file, line and key."""
    path = Path(path)
    try:
        # Never more than the limit is read: a huge file is refused, not loaded into memory.
        with path.open("rb") as handle:
            raw = handle.read(4 * MAX_CRITERIA_CHARS + 1)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CriteriaError(f"{path}: cannot read criteria file: {exc}") from None
    return parse_criteria(text, source=str(path))


def parse_criteria(text: str, source: str = "<criteria>") -> Criteria:
    """Validate criteria YAML text; `source` names it in errors.

    The YAML is parsed once into nodes, whose size with every alias expanded is bounded before
    anything walks it as a tree (see `MAX_CRITERIA_EXPANDED`), so any text is refused or accepted
    in a bounded time.
    """
    if len(text) > MAX_CRITERIA_CHARS:
        raise CriteriaError(
            f"{source}: the criteria file is larger than {MAX_CRITERIA_CHARS:,} characters; "
            "criteria files are a few kilobytes"
        )
    loader = _YAML_LOADER(text)
    try:
        node = loader.get_single_node()
        _check_expanded_size(node, source)
        # Parsed again for the values: constructing merge keys (`<<: *base`) rewrites the nodes,
        # and the duplicate-key walk and error lines must see the file as written.
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        raise CriteriaError(f"{source}: {where}: not valid YAML: {exc}") from None
    except RecursionError:
        # The YAML composer recurses per level: thousands of nested brackets exhaust the stack.
        raise CriteriaError(
            f"{source}: the YAML is nested too deeply (more than {MAX_CRITERIA_DEPTH} levels)"
        ) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise CriteriaError(f"{source}: the criteria file must be a YAML mapping")
    duplicates = _duplicate_keys(node)
    if duplicates:
        # YAML keeps the last of two equal keys silently: a threshold written twice is a mistake.
        raise CriteriaError(
            "\n".join(f"{source}: line {line}: {key}: duplicate key" for line, key in duplicates)
        )
    try:
        return Criteria.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not _is_union_tag(p))
            cause = (error.get("ctx") or {}).get("error")
            loc += tuple(getattr(cause, "loc", ()))
            key = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_of(node, loc)
            message = error["msg"].removeprefix("Value error, ")
            value = error.get("input")
            shown = (
                ""
                if isinstance(value, (dict, list)) or value is None
                else f" (got {_shorten(repr(value))})"
            )
            problems.append(f"{source}: line {line}: {key}: {message}{shown}")
            if len(problems) == _MAX_PROBLEMS:
                break
        more = exc.error_count() - len(problems)
        if more > 0:
            problems.append(f"{source}: and {more:,} more problem(s)")
        raise CriteriaError("\n".join(problems)) from None


def criteria_json_schema() -> dict[str, Any]:
    """JSON Schema of the criteria file format."""
    return Criteria.model_json_schema()


def _check_metric(metric: str) -> None:
    if metric not in METRIC_NAMES:
        raise _KeyError(f"unknown metric {metric!r}; known: {', '.join(METRIC_NAMES)}", "metric")


def _check_columns(
    used: set[str], known: set[str] | None, where: str, loc: tuple[str | int, ...]
) -> None:
    if known is None:
        return
    unknown = sorted(used - known)
    if unknown:
        raise _KeyError(
            f"{where} uses column(s) {', '.join(unknown)} that the dataset contract does not "
            "declare",
            *loc,
        )


_UNION_TAGS = frozenset(
    {"absolute", "change", "fairness", "support", "predicate", "value"}
    | {"int", "str", "float", "bool", "none"}
)


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the chosen union member ("absolute", "int", "list[str]", ...) into error paths.
    return isinstance(part, str) and (
        part in _UNION_TAGS or part.startswith(("list[", "literal[", "function-"))
    )


def _shorten(text: str, limit: int = 200) -> str:
    # A value in an error message is shown in part: a 60,000-character value is not a message.
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text):,} characters)"


def _check_expanded_size(root: yaml.Node | None, source: str) -> None:
    """Refuse a node graph that is cyclic, nested too deeply, or too large once aliases expand.

    Aliases make the nodes a graph whose tree can be exponentially larger than the text; each
    node's expanded size is computed once (memoized), so this takes time linear in the text.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        line = node.start_mark.line + 1
        if key in open_nodes:
            raise CriteriaError(
                f"{source}: line {line}: an alias refers to a node that contains it; criteria "
                "cannot be recursive"
            )
        if depth > MAX_CRITERIA_DEPTH:
            raise CriteriaError(
                f"{source}: line {line}: the YAML is nested too deeply (more than "
                f"{MAX_CRITERIA_DEPTH} levels)"
            )
        open_nodes.add(key)
        if isinstance(node, yaml.ScalarNode):
            total = 1 + len(node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(item, depth + 1) for item in node.value)
        else:
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        open_nodes.discard(key)
        if total > MAX_CRITERIA_EXPANDED:
            raise CriteriaError(
                f"{source}: line {line}: with its aliases expanded, this value holds more than "
                f"{MAX_CRITERIA_EXPANDED:,} nodes and characters (aliases that repeat an anchor, "
                "as in a 'billion laughs'); criteria files are far smaller"
            )
        sizes[key] = total
        return total

    if root is not None:
        size(root, 0)


def _duplicate_keys(node: yaml.Node | None, path: str = "") -> list[tuple[int, str]]:
    """(line, dotted key) of every mapping key that repeats an earlier key of its mapping."""
    found: list[tuple[int, str]] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            dotted = f"{path}.{name}" if path else name
            if name in seen:
                found.append((key.start_mark.line + 1, dotted))
            seen.add(name)
            found += _duplicate_keys(value, dotted)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found += _duplicate_keys(item, f"{path}.{index}" if path else str(index))
    return found


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """Line of the deepest YAML node along `loc` (1-based)."""
    best = node
    for part in loc:
        if isinstance(best, yaml.MappingNode):
            match = next((v for k, v in best.value if k.value == str(part)), None)
        elif (
            isinstance(best, yaml.SequenceNode) and isinstance(part, int) and part < len(best.value)
        ):
            match = best.value[part]
        else:
            match = None
        if match is None:
            break
        best = match
    return best.start_mark.line + 1 if best is not None else 1
