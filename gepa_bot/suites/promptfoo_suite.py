"""The ``promptfoo`` adapter: reads a promptfooconfig.yaml and scores its tests natively, without Node.

Every promptfoo test case (after ``defaultTest`` is merged in and array vars are expanded) is one
instance. Scoring a test renders each prompt of the config *from the workdir* (so the materialized
candidate is what gets evaluated) with the test's vars, asks the task model through litellm, and checks
the test's deterministic assertions: equals, contains, icontains, contains-any, contains-all,
icontains-any, icontains-all, regex, starts-with, is-json, contains-json, levenshtein, and each one's
``not-`` form. The score is the weight-averaged fraction of passing assertions (promptfoo's own
aggregate), averaged over the config's prompts.

Assertion types that need code execution (javascript, python) or another model (llm-rubric, similar,
model-graded ones, ...) are rejected up front, in one error listing every occurrence.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gepa_bot.completion import chat
from gepa_bot.evalsuite import (
    EvalSuite,
    Instance,
    InstanceResult,
    SuiteContext,
    SuiteError,
    Workdir,
    failure,
    hash_files,
    repo_relative,
    truncate,
)

BASE_TYPES = ("equals", "contains", "icontains", "contains-any", "contains-all", "icontains-any",
              "icontains-all", "regex", "starts-with", "is-json", "contains-json", "levenshtein")
SUPPORTED_TYPES = frozenset(BASE_TYPES + tuple(f"not-{t}" for t in BASE_TYPES))
CODE_TYPES = ("javascript", "python", "webhook")
PROMPT_FILE_SUFFIXES = (".txt", ".md", ".j2", ".jinja", ".nunjucks", ".prompt", ".json", ".yaml", ".yml", "")
TEXT_VAR_SUFFIXES = (".txt", ".md", ".json", ".yaml", ".yml", ".csv", ".html", ".xml")
OUTPUT_PREVIEW = 300


class PromptfooSuiteConfig(BaseModel):
    """``eval: {type: promptfoo, config: promptfooconfig.yaml}``: one instance per promptfoo test case."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["promptfoo"]
    config: str = Field(default="promptfooconfig.yaml", description="promptfoo config path relative to the repo")
    timeout: float = Field(default=120, gt=0, description="seconds per task-model call")
    max_tokens: int = Field(default=256, gt=0)

    @field_validator("config")
    @classmethod
    def _inside_repo(cls, value: str) -> str:
        return repo_relative(value)

    def build(self, context: SuiteContext) -> PromptfooSuite:
        return PromptfooSuite(context, self)


# --- the loaded config -----------------------------------------------------------------------------

@dataclass
class Prompt:
    label: str
    text: str
    source: str  # repo-relative file path, or "inline"


@dataclass
class Assertion:
    type: str
    value: Any = None
    weight: float = 1.0
    threshold: float | None = None


@dataclass
class TestCase:
    id: str
    number: int  # 1-based position in the config's test list
    description: str | None
    vars: dict[str, Any]
    asserts: list[Assertion]
    threshold: float | None = None


@dataclass
class LoadedConfig:
    prompts: list[Prompt]
    tests: list[TestCase]
    files: list[str] = field(default_factory=list)  # repo-relative files the config pulled in


def load_config(root: Path, config_path: str) -> LoadedConfig:
    """Parse ``root/config_path``; raise one :class:`SuiteError` listing everything unsupported."""
    return _Loader(root, config_path).load()


class _Loader:
    def __init__(self, root: Path, config_path: str):
        self.root = root.resolve()
        self.path = (self.root / config_path).resolve()
        self.base = self.path.parent
        self.config_path = config_path
        self.problems: list[str] = []  # unsupported features, reported together
        self.files: list[str] = [self._relative(self.path)]

    def load(self) -> LoadedConfig:
        if not self.path.is_file():
            raise SuiteError(f"promptfoo config {self.config_path} not found in {self.root}: fix eval.config")
        data = self._read_structured(self.path)
        if not isinstance(data, dict):
            raise SuiteError(f"promptfoo config {self.config_path} is not a YAML mapping")
        prompts = self._prompts(data.get("prompts"))
        default = data.get("defaultTest") or {}
        if isinstance(default, str):
            default = self._read_structured(self._ref_path(default))
        if not isinstance(default, dict):
            raise SuiteError(f"{self.config_path}: defaultTest must be a mapping")
        for key in ("scenarios", "nunjucksFilters"):
            if data.get(key):
                self.problems.append(f"top-level `{key}` (not supported by gepa-bot's promptfoo adapter)")
        tests = self._tests(data.get("tests"), default)
        if self.problems:
            raise SuiteError(self._problem_report())
        if not prompts:
            raise SuiteError(f"{self.config_path}: no prompts found (expected a `prompts:` list)")
        if not tests:
            raise SuiteError(f"{self.config_path}: no tests found (expected a `tests:` list or file)")
        return LoadedConfig(prompts=prompts, tests=tests, files=sorted(set(self.files)))

    def _problem_report(self) -> str:
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return (f"promptfoo config {self.config_path} uses features gepa-bot cannot evaluate natively:\n{lines}\n"
                f"gepa-bot checks only deterministic assertions ({', '.join(BASE_TYPES)} and their not- forms). "
                "javascript and python assertions are excluded on purpose: gepa-bot does not execute code from "
                "an eval config, and model-graded types (llm-rubric, similar, factuality, ...) would need a "
                "second model. Remove those assertions (or move them to a config gepa-bot does not read), or "
                "run promptfoo itself through the command adapter (eval: {type: command, command: ...}) and "
                "emit one result line per test.")

    # --- files ---

    def _relative(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def _ref_path(self, ref: str) -> Path:
        return (self.base / ref.removeprefix("file://")).resolve()

    def _glob(self, ref: str) -> list[Path]:
        pattern = ref.removeprefix("file://")
        if glob.has_magic(pattern):
            return [Path(p).resolve() for p in sorted(glob.glob(str(self.base / pattern), recursive=True))]
        return [self._ref_path(ref)]

    def _read_text(self, path: Path) -> str:
        if not path.is_file():
            raise SuiteError(f"{self.config_path} refers to {self._relative(path)}, which does not exist")
        self.files.append(self._relative(path))
        return path.read_text(encoding="utf-8")

    def _read_structured(self, path: Path) -> Any:
        text = self._read_text(path)
        try:
            return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise SuiteError(f"cannot parse {self._relative(path)}: {exc}") from exc

    # --- prompts ---

    def _prompts(self, raw: Any) -> list[Prompt]:
        items = raw if isinstance(raw, list) else [] if raw is None else [raw]
        prompts: list[Prompt] = []
        for position, item in enumerate(items, start=1):
            label = None
            if isinstance(item, dict):
                label = item.get("label") or item.get("id")
                item = item.get("raw", item.get("id"))
            if not isinstance(item, str):
                self.problems.append(f"prompt {position}: {type(item).__name__} prompt entries are not supported")
                continue
            prompts.extend(self._prompt_entry(item, label, position))
        return prompts

    def _prompt_entry(self, item: str, label: str | None, position: int) -> list[Prompt]:
        is_ref = item.startswith("file://")
        candidate = item.removeprefix("file://")
        if not is_ref and ("\n" in item or "{{" in item or not (self.base / item).is_file()):
            return [Prompt(label=label or item[:60], text=item, source="inline")]
        code_suffixes = (".py", ".js", ".ts", ".mjs", ".cjs")
        if candidate.split(":", 1)[0].endswith(code_suffixes):  # also file://prompts.py:function_name
            self.problems.append(f"prompt {position}: {item} is a code prompt (only text/JSON prompt files work)")
            return []
        prompts: list[Prompt] = []
        for path in self._glob(candidate):
            if path.suffix.lower() not in PROMPT_FILE_SUFFIXES:
                self.problems.append(f"prompt {position}: {self._relative(path)} has an unsupported file type")
                continue
            text = self._read_text(path)
            # promptfoo splits text prompt files on lines consisting of `---`
            parts = [text] if path.suffix == ".json" else re.split(r"\n---\n", text)
            for index, part in enumerate(parts):
                name = self._relative(path) + (f"#{index + 1}" if len(parts) > 1 else "")
                prompts.append(Prompt(label=label or name, text=part, source=self._relative(path)))
        return prompts

    # --- tests ---

    def _tests(self, raw: Any, default: dict[str, Any]) -> list[TestCase]:
        entries: list[tuple[dict[str, Any], str]] = []
        for item in raw if isinstance(raw, list) else [] if raw is None else [raw]:
            if isinstance(item, str):
                for path in self._glob(item):
                    entries.extend((entry, self._relative(path)) for entry in self._tests_from_file(path))
            elif isinstance(item, dict):
                entries.append((item, self.config_path))
            else:
                self.problems.append(f"tests entry {item!r} is neither a mapping nor a file reference")
        cases: list[TestCase] = []
        default_asserts = default.get("assert") or []
        self._check_asserts(default_asserts, "defaultTest")
        for number, (entry, origin) in enumerate(entries, start=1):
            where = f"test {number}" + (f" ({entry['description']!r})" if entry.get("description") else "")
            where += f" in {origin}" if origin != self.config_path else ""
            raw_asserts = entry.get("assert") or []
            self._check_asserts(raw_asserts, where)
            options = entry.get("options") or {}
            for key in ("transform", "postprocess"):
                if key in options:
                    self.problems.append(f"{where}: options.{key} (JavaScript transforms are not supported)")
            merged_asserts = ([] if options.get("disableDefaultAsserts") else list(default_asserts)) + raw_asserts
            threshold = entry.get("threshold", default.get("threshold"))
            merged_vars = {**(default.get("vars") or {}), **(entry.get("vars") or {})}
            combos = self._expand_vars(merged_vars, where)
            base_id = f"test-{number:02d}"
            if entry.get("description"):
                slug = re.sub(r"[^a-z0-9]+", "-", str(entry["description"]).lower()).strip("-")[:48]
                base_id = f"{base_id}-{slug}" if slug else base_id
            for variant, combo in enumerate(combos, start=1):
                cases.append(TestCase(
                    id=base_id if len(combos) == 1 else f"{base_id}-v{variant}", number=number,
                    description=entry.get("description"), vars=combo,
                    asserts=[self._assertion(a) for a in merged_asserts if isinstance(a, dict)],
                    threshold=None if threshold is None else float(threshold)))
        return cases

    def _tests_from_file(self, path: Path) -> list[dict[str, Any]]:
        if path.suffix.lower() == ".csv":
            rows = list(csv.DictReader(io.StringIO(self._read_text(path))))
            return [_test_from_csv_row(row) for row in rows]
        if path.suffix.lower() in (".yaml", ".yml", ".json"):
            data = self._read_structured(path)
            data = data if isinstance(data, list) else [data]
            return [d for d in data if isinstance(d, dict)]
        self.problems.append(f"tests file {self._relative(path)}: only .yaml, .yml, .json and .csv are supported")
        return []

    def _check_asserts(self, raw_asserts: Any, where: str) -> None:
        if not isinstance(raw_asserts, list):
            self.problems.append(f"{where}: `assert` must be a list")
            return
        for number, assertion in enumerate(raw_asserts, start=1):
            kind = assertion.get("type") if isinstance(assertion, dict) else None
            if kind not in SUPPORTED_TYPES:
                hint = " (code execution: excluded on purpose)" if str(kind).removeprefix("not-") in CODE_TYPES else ""
                self.problems.append(f"{where}, assertion {number}: type {kind!r}{hint}")
            elif isinstance(assertion.get("transform"), str):
                self.problems.append(f"{where}, assertion {number}: `transform` (JavaScript) is not supported")

    def _assertion(self, raw: dict[str, Any]) -> Assertion:
        value = raw.get("value")
        if isinstance(value, str) and value.startswith("file://") and raw["type"].endswith(("is-json", "contains-json")):
            value = self._read_structured(self._ref_path(value))
        threshold = raw.get("threshold")
        return Assertion(type=raw["type"], value=value, weight=float(raw.get("weight", 1)),
                         threshold=None if threshold is None else float(threshold))

    def _expand_vars(self, variables: dict[str, Any], where: str) -> list[dict[str, Any]]:
        """promptfoo's combinations: a list of strings makes one test per value; file:// vars are read."""
        combos: list[dict[str, Any]] = [{}]
        for key, value in variables.items():
            values = value if isinstance(value, list) and value and isinstance(value[0], str) else [value]
            resolved: list[Any] = []
            for item in values:
                if isinstance(item, str) and item.startswith("file://"):
                    paths = self._glob(item)
                    for path in paths:
                        if path.suffix.lower() in TEXT_VAR_SUFFIXES:
                            resolved.append(self._read_text(path))
                        else:
                            self.problems.append(f"{where}: var {key!r} loads {self._relative(path)}; only text "
                                                 f"files ({', '.join(TEXT_VAR_SUFFIXES)}) are supported")
                else:
                    resolved.append(item)
            combos = [{**combo, key: item} for combo in combos for item in resolved]
        return combos


_CSV_ASSERTION = re.compile(r"^(not-)?(" + "|".join(re.escape(t) for t in sorted(BASE_TYPES, key=len, reverse=True))
                            + r"|[a-z][a-z0-9-]*)(?:\((\d+(?:\.\d+)?)\))?(?::([\s\S]*))?$")


def _assertion_from_string(expected: str) -> dict[str, Any]:
    """promptfoo's ``__expected`` CSV cell syntax (``contains: billing``, ``not-regex:^x``, ``fn:...``)."""
    for prefix, kind in (("javascript:", "javascript"), ("fn:", "javascript"), ("eval:", "javascript"),
                         ("python:", "python"), ("grade:", "llm-rubric"), ("llm-rubric:", "llm-rubric")):
        if expected.startswith(prefix):
            return {"type": kind, "value": expected[len(prefix):].strip()}
    match = _CSV_ASSERTION.match(expected)
    if match and (match.group(2) in BASE_TYPES or match.group(4) is not None):
        inverse, kind, threshold, value = match.groups()
        result: dict[str, Any] = {"type": f"{inverse or ''}{kind}"}
        if kind in ("contains-any", "contains-all", "icontains-any", "icontains-all"):
            result["value"] = _split_commas(value) if value else value
        elif kind in ("is-json", "contains-json"):
            result["value"] = value
        else:
            result["value"] = value.strip() if value is not None else None
            if kind in ("levenshtein", "starts-with"):
                result["threshold"] = float(threshold) if threshold else 0.75
        return result
    return {"type": "equals", "value": expected}


def _test_from_csv_row(row: dict[str, str]) -> dict[str, Any]:
    test: dict[str, Any] = {"vars": {}, "assert": []}
    for key, value in row.items():
        if key is None:
            continue
        if key.startswith("__expected"):
            if value and value.strip():
                test["assert"].append(_assertion_from_string(value.strip()))
        elif key == "__description":
            test["description"] = value
        elif key == "__threshold":
            test["threshold"] = float(value) if value and value.strip() else None
        elif not key.startswith("__"):
            test["vars"][key] = value
    return test


# --- rendering and assertions ---------------------------------------------------------------------

_JINJA = jinja2.Environment(autoescape=False, keep_trailing_newline=True, undefined=jinja2.Undefined)
_JINJA.filters["dump"] = lambda value, indent=None: json.dumps(value, indent=indent, ensure_ascii=False)


def render(template: str, variables: dict[str, Any]) -> str:
    """Render a nunjucks-style template (the common subset jinja2 shares: {{ var }}, filters, if/for)."""
    return _JINJA.from_string(template).render(**variables)


def _render_value(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return render(value, variables) if "{{" in value or "{%" in value else value
    if isinstance(value, list):
        return [_render_value(v, variables) for v in value]
    return value


@dataclass
class AssertionResult:
    assertion: Assertion
    passed: bool
    reason: str


def check(assertion: Assertion, output: str, variables: dict[str, Any]) -> AssertionResult:
    """Evaluate one supported assertion against ``output`` with promptfoo's semantics."""
    inverse = assertion.type.startswith("not-")
    kind = assertion.type.removeprefix("not-")
    value = _render_value(assertion.value, variables)
    try:
        ok, expectation = _CHECKS[kind](value, output, assertion)
    except _BadAssertion as exc:
        return AssertionResult(assertion, False, f"{assertion.type} assertion is unusable: {exc}")
    passed = ok != inverse
    if passed:
        return AssertionResult(assertion, True, "passed")
    expectation = expectation.replace("expected output to ", "expected output not to " if inverse else
                                      "expected output to ", 1)
    return AssertionResult(assertion, False, f"{expectation}, got: {_preview(output)}")


class _BadAssertion(Exception):
    pass


def _preview(text: str) -> str:
    text = text if len(text) <= OUTPUT_PREVIEW else text[:OUTPUT_PREVIEW] + "..."
    return repr(text)


def _string_value(value: Any, kind: str) -> str:
    if isinstance(value, bool) or value is None or (isinstance(value, str) and value == ""):
        raise _BadAssertion(f'"{kind}" needs a non-empty string or number value')
    if isinstance(value, (int, float, str)):
        return str(value)
    raise _BadAssertion(f'"{kind}" needs a string or number value, not {type(value).__name__}')


def _list_value(value: Any, kind: str) -> list[str]:
    if isinstance(value, str):
        value = _split_commas(value)
    if not isinstance(value, list) or not value:
        raise _BadAssertion(f'"{kind}" needs a list value (or a comma-separated string)')
    return [str(v) for v in value]


def _split_commas(value: str) -> list[str]:
    return [cell.strip() for cell in next(csv.reader([value], skipinitialspace=True), []) if cell.strip()]


def _check_equals(value: Any, output: str, _: Assertion) -> tuple[bool, str]:
    if isinstance(value, (dict, list)):
        try:
            ok = json.loads(output) == value
        except ValueError:
            ok = False
        return ok, f"expected output to equal JSON {json.dumps(value)}"
    return str(value) == output, f"expected output to equal {str(value)!r}"


def _contains(case: bool) -> Callable[[Any, str, Assertion], tuple[bool, str]]:
    def run(value: Any, output: str, assertion: Assertion) -> tuple[bool, str]:
        needle = _string_value(value, assertion.type)
        hay, pin = (output, needle) if case else (output.lower(), needle.lower())
        return pin in hay, f"expected output to contain {needle!r}" + ("" if case else " (any case)")
    return run


def _contains_many(case: bool, every: bool) -> Callable[[Any, str, Assertion], tuple[bool, str]]:
    def run(value: Any, output: str, assertion: Assertion) -> tuple[bool, str]:
        needles = _list_value(value, assertion.type)
        hay = output if case else output.lower()
        found = [n for n in needles if (n if case else n.lower()) in hay]
        suffix = "" if case else " (any case)"
        if every:
            missing = [n for n in needles if n not in found]
            return not missing, f"expected output to contain all of {needles}{suffix}; missing {missing}"
        return bool(found), f"expected output to contain one of {needles}{suffix}"
    return run


def _check_regex(value: Any, output: str, assertion: Assertion) -> tuple[bool, str]:
    pattern = _string_value(value, assertion.type)
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise _BadAssertion(f"invalid regex {pattern!r}: {exc}") from exc
    return compiled.search(output) is not None, f"expected output to match regex {pattern!r}"


def _check_starts_with(value: Any, output: str, assertion: Assertion) -> tuple[bool, str]:
    prefix = _string_value(value, assertion.type)
    return output.startswith(prefix), f"expected output to start with {prefix!r}"


def _schema_errors(schema: Any, instance: Any) -> str | None:
    if isinstance(schema, str):
        schema = yaml.safe_load(schema)
    import jsonschema  # a litellm dependency; only needed when an assertion carries a schema

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(instance), key=lambda e: list(e.path))
    return "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors[:5]) or None


def _check_is_json(value: Any, output: str, _: Assertion) -> tuple[bool, str]:
    try:
        parsed = json.loads(output)
    except ValueError as exc:
        return False, f"expected output to be valid JSON ({exc})"
    if value:
        errors = _schema_errors(value, parsed)
        if errors:
            return False, f"expected output to be JSON matching the schema ({errors})"
    return True, "expected output to be valid JSON matching the schema" if value else "expected output to be valid JSON"


def extract_json_objects(text: str) -> list[Any]:
    """JSON objects embedded in ``text`` (promptfoo's brace scan; unclosed objects are closed)."""
    found: list[Any] = []
    i = 0
    while i < len(text):
        if text[i] != "{":
            i += 1
            continue
        depth, j, parsed = 1, i + 1, None
        while j < len(text) and depth > 0:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
            if depth == 0 or j == len(text):
                candidate = text[i:j] + "}" * max(depth, 0)
                try:
                    parsed = json.loads(candidate)
                except ValueError:
                    try:
                        parsed = yaml.safe_load(candidate)
                    except yaml.YAMLError:
                        parsed = None
                if not isinstance(parsed, dict):
                    parsed = None
                break
        if parsed is not None:
            found.append(parsed)
            i = j
        else:
            i += 1
    return found


def _check_contains_json(value: Any, output: str, _: Assertion) -> tuple[bool, str]:
    objects = extract_json_objects(output)
    if not objects:
        return False, "expected output to contain valid JSON"
    if not value:
        return True, "expected output to contain valid JSON"
    errors = ""
    for obj in objects:
        problem = _schema_errors(value, obj)
        if problem is None:
            return True, "expected output to contain JSON matching the schema"
        errors = problem
    return False, f"expected output to contain JSON matching the schema ({errors})"


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _check_levenshtein(value: Any, output: str, assertion: Assertion) -> tuple[bool, str]:
    target = _string_value(value, assertion.type)
    threshold = 5.0 if assertion.threshold is None else assertion.threshold
    distance = levenshtein(output, target)
    return distance <= threshold, (f"expected output to be within Levenshtein distance {threshold:g} of "
                                   f"{target!r} (distance {distance})")


_CHECKS: dict[str, Callable[[Any, str, Assertion], tuple[bool, str]]] = {
    "equals": _check_equals,
    "contains": _contains(True),
    "icontains": _contains(False),
    "contains-any": _contains_many(True, every=False),
    "contains-all": _contains_many(True, every=True),
    "icontains-any": _contains_many(False, every=False),
    "icontains-all": _contains_many(False, every=True),
    "regex": _check_regex,
    "starts-with": _check_starts_with,
    "is-json": _check_is_json,
    "contains-json": _check_contains_json,
    "levenshtein": _check_levenshtein,
}


def aggregate(results: list[AssertionResult]) -> float:
    """promptfoo's aggregate: weighted mean of assertion scores; 1.0 with no assertions, 0.0 if all weigh 0."""
    if not results:
        return 1.0
    total = sum(r.assertion.weight for r in results)
    return sum(r.assertion.weight for r in results if r.passed) / total if total > 0 else 0.0


# --- the model seam --------------------------------------------------------------------------------

def complete(messages: list[dict[str, Any]], *, model: str, api_base: str | None, api_key: str | None,
             max_tokens: int, timeout: float, **extra: Any) -> str:
    """One deterministic task-model call (tests pass litellm's ``mock_response`` via ``extra``)."""
    return chat(model, messages, api_base=api_base, api_key=api_key, temperature=0, max_tokens=max_tokens,
                timeout=timeout, **extra).text


def _messages(rendered: str) -> list[dict[str, Any]]:
    """A rendered prompt that is a JSON list of chat messages is sent as such (promptfoo's chat format)."""
    stripped = rendered.strip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
        if isinstance(data, list) and data and all(isinstance(m, dict) and "role" in m and "content" in m
                                                   for m in data):
            return data
    return [{"role": "user", "content": rendered}]


# --- the suite -------------------------------------------------------------------------------------

class PromptfooSuite(EvalSuite):
    """Scores a promptfoo config's tests natively; see the module docstring."""

    def __init__(self, context: SuiteContext, config: PromptfooSuiteConfig,
                 completion_kwargs: dict[str, Any] | None = None):
        super().__init__(context)
        self.config = config
        self.completion_kwargs = dict(completion_kwargs or {})  # extra litellm.completion arguments
        self.loaded = load_config(context.repo, config.config)  # fails fast on unsupported features

    def list_instances(self) -> list[Instance]:
        return [Instance(id=test.id) for test in self.loaded.tests]

    def fingerprint_parts(self) -> list[str]:
        # prompt files are the candidate and change per evaluation: hash everything else the config uses
        prompt_files = {p.source for p in self.loaded.prompts}
        data_files = [f for f in self.loaded.files if f not in prompt_files]
        return ["promptfoo", self.config.config, str(self.config.max_tokens),
                *hash_files(self.context.repo, data_files)]

    def evaluate(self, workdir: Workdir, ids: list[str]) -> dict[str, InstanceResult]:
        try:
            loaded = load_config(workdir.path, self.config.config)  # the candidate's prompts
        except Exception as exc:
            return {i: failure(i, f"cannot load the promptfoo config in the candidate workdir: {exc}") for i in ids}
        by_id = {test.id: test for test in loaded.tests}
        results: dict[str, InstanceResult] = {}
        for instance_id in ids:
            test = by_id.get(instance_id)
            if test is None:
                results[instance_id] = failure(instance_id, f"no test with id {instance_id} in {self.config.config}")
                continue
            try:
                results[instance_id] = self._evaluate_test(test, loaded.prompts)
            except Exception as exc:  # model errors, template errors: this instance fails, the run goes on
                results[instance_id] = failure(instance_id, f"{type(exc).__name__}: {exc}\n{_vars_text(test.vars)}")
        return results

    def _evaluate_test(self, test: TestCase, prompts: list[Prompt]) -> InstanceResult:
        if not self.context.model:
            return failure(test.id, "no task model configured (model) for the promptfoo adapter")
        scores: list[float] = []
        sections: list[str] = []
        outputs: list[str] = []
        trace: list[dict[str, Any]] = []
        for prompt in prompts:
            try:
                rendered = render(prompt.text, test.vars)
            except jinja2.TemplateError as exc:
                return failure(test.id, f"prompt {prompt.label} does not render: {type(exc).__name__}: {exc}")
            try:
                output = complete(_messages(rendered), model=self.context.model, api_base=self.context.api_base,
                                  api_key=self.context.api_key, max_tokens=self.config.max_tokens,
                                  timeout=self.context.clamp(self.config.timeout), **self.completion_kwargs)
            except Exception as exc:
                return failure(test.id, f"task model call failed for prompt {prompt.label}: "
                                        f"{type(exc).__name__}: {exc}\n{_vars_text(test.vars)}")
            checks = [check(a, output, test.vars) for a in test.asserts]
            score = aggregate(checks)
            passed = all(c.passed for c in checks) if test.threshold is None else score >= test.threshold
            scores.append(score)
            outputs.append(output)
            trace.append({"prompt": prompt.label, "output": output, "score": score, "pass": passed,
                          "assertions": [{"type": c.assertion.type, "pass": c.passed, "reason": c.reason}
                                         for c in checks]})
            sections.append(_section(prompt, test, checks, score, passed, output, many=len(prompts) > 1))
        header = f"test {test.number}" + (f": {test.description}" if test.description else "")
        feedback = "\n".join([header, _vars_text(test.vars), *sections])
        return InstanceResult(id=test.id, score=sum(scores) / len(scores), feedback=truncate(feedback),
                              trace=trace, output=outputs[0] if len(outputs) == 1 else json.dumps(outputs))


def _vars_text(variables: dict[str, Any]) -> str:
    if not variables:
        return "vars: (none)"
    return "vars: " + ", ".join(f"{k}={truncate(v if isinstance(v, str) else json.dumps(v), 200)!r}"
                                for k, v in variables.items())


def _section(prompt: Prompt, test: TestCase, checks: list[AssertionResult], score: float, passed: bool,
             output: str, many: bool) -> str:
    lines = [f"[prompt {prompt.label}]"] if many else []
    failed = [c for c in checks if not c.passed]
    verdict = "PASS" if passed else "FAIL"
    threshold = f", threshold {test.threshold:g}" if test.threshold is not None else ""
    if not checks:
        lines.append(f"{verdict}: the test has no assertions; output: {_preview(output)}")
        return "\n".join(lines)
    lines.append(f"{verdict}: score {score:.2f} ({len(checks) - len(failed)}/{len(checks)} assertions "
                 f"passed{threshold})")
    for c in failed:
        weight = f" [weight {c.assertion.weight:g}]" if c.assertion.weight != 1 else ""
        lines.append(f"- {c.reason}{weight}")
    return "\n".join(lines)
