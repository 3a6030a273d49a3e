"""`.gepa-bot.yml` loading: valid files load, every invalid file is one precise UserError."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gepa_bot.config import LOCAL_MODEL, CommandSuiteConfig, load_config
from gepa_bot.errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "prompts.example" / ".gepa-bot.yml"

MINIMAL = "prompts:\n  - path: prompts/main.txt\neval:\n  command: python evals/eval.py\n"


def write(tmp_path: Path, text: str | bytes, name: str = ".gepa-bot.yml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> UserError:
    with pytest.raises(UserError) as info:
        load_config(path)
    error = info.value
    assert str(path) in error.message
    assert error.fix, "every config error says what to do"
    assert "\n" not in str(error)
    return error


# --- valid files -------------------------------------------------------------------------------------

def test_example_config_loads_with_expected_values():
    config = load_config(EXAMPLE)
    assert [p.path for p in config.prompts] == ["prompts/classify.md", "prompts/system.yaml"]
    assert config.prompts[0].format == "auto" and config.prompts[0].keys == []
    assert config.prompts[1].keys == ["system"]
    assert isinstance(config.eval, CommandSuiteConfig)
    assert config.eval.type == "command"
    assert config.eval.command == '"${GEPA_BOT_PYTHON:-python}" evals/run_eval.py'
    assert config.eval.watch == ["evals/**", "data/**"]
    assert config.eval.timeout == 300
    assert config.eval.instances is None
    assert config.split.val_fraction == 0.5
    assert config.budget.rollouts == 300
    assert config.budget.wall_time_minutes == 9
    assert config.budget.max_llm_cost_usd is None
    assert config.models.task == LOCAL_MODEL and config.models.reflection == LOCAL_MODEL
    assert config.models.reflection_max_tokens == 400
    assert config.optimizer.minibatch_size == 4
    assert config.optimizer.reflection_style == "auto"
    assert config.optimizer.workers == 2
    assert config.optimizer.seed == 0
    assert config.output.labels == ["gepa-bot", "prompts"]
    assert config.output.run_dir == ".gepa-bot/run"  # default


def test_eval_without_type_defaults_to_command(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert isinstance(config.eval, CommandSuiteConfig)
    assert config.eval.type == "command"
    assert config.eval.command == "python evals/eval.py"
    assert config.eval.timeout == 300.0
    assert config.budget.rollouts == 150
    assert config.output.labels == ["gepa-bot"]


def test_yaml_prompt_with_keys_loads(tmp_path):
    config = load_config(write(tmp_path, MINIMAL.replace(
        "  - path: prompts/main.txt\n", "  - path: 'prompts/**/*.yaml'\n    format: yaml\n    keys: [a.b, items.0]\n")))
    assert config.prompts[0].keys == ["a.b", "items.0"]
    assert config.prompts[0].format == "yaml"


# --- file-level problems -----------------------------------------------------------------------------

def test_missing_file(tmp_path):
    error = load_error(tmp_path / "nope.yml")
    assert "not found" in error.message
    assert "--config" in error.fix


def test_directory_instead_of_file(tmp_path):
    (tmp_path / "cfg.yml").mkdir()
    assert "not found" in load_error(tmp_path / "cfg.yml").message


def test_invalid_yaml_reports_line_and_column(tmp_path):
    path = write(tmp_path, "prompts:\n  - path: a.txt\neval: [unclosed\n  command: x\n")
    error = load_error(path)
    assert "invalid YAML" in error.message
    assert "line " in error.message and "column " in error.message
    assert "syntax" in error.fix


def test_invalid_yaml_line_number_is_right(tmp_path):
    path = write(tmp_path, "prompts:\n  - path: a.txt\neval:\n  command: x\n\tbad: tab\n")
    assert "line 5" in load_error(path).message


def test_not_utf8(tmp_path):
    error = load_error(write(tmp_path, b"prompts: \xff\xfe\n"))
    assert "UTF-8" in error.message


def test_control_character_gives_one_line_error(tmp_path):
    # PyYAML's ReaderError has a multi-line str(); the config error must still be one line
    error = load_error(write(tmp_path, "prompts: \x07\n"))
    assert "invalid YAML" in error.message


def test_impossible_date_is_a_user_error(tmp_path):
    # yaml.safe_load raises a bare ValueError for timestamps like this one
    error = load_error(write(tmp_path, MINIMAL + "when: 2001-02-30\n"))
    assert "invalid YAML" in error.message


@pytest.mark.parametrize("text", ["!!int\n", "x: !!float abc\n", "x: !!binary a\n", "x: !!timestamp 2001-13-01\n",
                                  "x: !!python/object:os.system {}\n"])
def test_bad_tagged_values_are_user_errors(tmp_path, text):
    # PyYAML's constructors raise IndexError / ValueError / ConstructorError for these
    assert "invalid YAML" in load_error(write(tmp_path, text)).message


def test_deeply_nested_yaml_is_a_user_error(tmp_path):
    load_error(write(tmp_path, "[" * 5000))


@pytest.mark.parametrize("text,kind", [("- a\n- b\n", "list"), ("just text\n", "str"), ("", "NoneType"), ("42\n", "int")])
def test_top_level_must_be_a_mapping(tmp_path, text, kind):
    error = load_error(write(tmp_path, text))
    assert "mapping" in error.message and kind in error.message
    assert "prompts:" in error.fix


# --- field problems ----------------------------------------------------------------------------------

def test_unknown_top_level_field(tmp_path):
    error = load_error(write(tmp_path, MINIMAL + "budgett:\n  rollouts: 10\n"))
    assert "field 'budgett'" in error.message
    assert "unknown field" in error.message
    assert "remove or rename" in error.fix


def test_unknown_nested_field_is_dotted(tmp_path):
    error = load_error(write(tmp_path, MINIMAL + "budget:\n  rolouts: 10\n"))
    assert "field 'budget.rolouts'" in error.message and "unknown field (did you mean 'rollouts'?)" in error.message


def test_unknown_field_in_prompt_entry(tmp_path):
    error = load_error(write(tmp_path, MINIMAL.replace("prompts/main.txt\n", "prompts/main.txt\n    kyes: [a]\n")))
    assert "field 'prompts[0].kyes'" in error.message and "unknown field" in error.message


def test_unknown_field_in_eval(tmp_path):
    error = load_error(write(tmp_path, MINIMAL + "  comand: oops\n"))
    assert "field 'eval.comand'" in error.message and "unknown field" in error.message


def test_a_typo_is_named_first_with_a_suggestion(tmp_path):
    """`comand:` instead of `command:`: the typo is the problem, not the 'missing' command it causes."""
    error = load_error(write(tmp_path, "prompts:\n  - path: prompts/main.txt\neval:\n  comand: python eval.py\n"))
    assert error.message.split(": ", 1)[1].startswith("field 'eval.comand': unknown field (did you mean 'command'?)")
    assert "required field is missing" in error.message  # still listed, after it
    assert "remove or rename" in error.fix


@pytest.mark.parametrize("field", ["prompts", "eval"])
def test_missing_required_section(tmp_path, field):
    text = {"prompts": "eval:\n  command: x\n", "eval": "prompts:\n  - path: a.txt\n"}[field]
    error = load_error(write(tmp_path, text))
    assert f"field '{field}'" in error.message
    assert "required field is missing" in error.message
    assert "add the field" in error.fix


def test_missing_command(tmp_path):
    error = load_error(write(tmp_path, "prompts:\n  - path: a.txt\neval:\n  timeout: 5\n"))
    assert "field 'eval.command'" in error.message and "missing" in error.message


def test_empty_prompts_list(tmp_path):
    error = load_error(write(tmp_path, "prompts: []\neval:\n  command: x\n"))
    assert "field 'prompts'" in error.message


@pytest.mark.parametrize("value,shown", [("-5", "-5"), ("0", "0"), ("lots", "'lots'"), ("[1, 2]", "[1, 2]")])
def test_wrong_rollouts(tmp_path, value, shown):
    error = load_error(write(tmp_path, MINIMAL + f"budget:\n  rollouts: {value}\n"))
    assert "field 'budget.rollouts'" in error.message
    assert f"(got {shown})" in error.message
    assert "change the value" in error.fix


def test_wrong_type_deep_in_eval_names_the_field_not_the_tag(tmp_path):
    # eval.command is both the union tag and a field name: the field must still be named
    error = load_error(write(tmp_path, "prompts:\n  - path: a.txt\neval:\n  command: ''\n"))
    assert "field 'eval.command'" in error.message


def test_eval_timeout_must_be_positive(tmp_path):
    error = load_error(write(tmp_path, MINIMAL + "  timeout: 0\n"))
    assert "field 'eval.timeout'" in error.message


def test_several_problems_are_all_reported(tmp_path):
    error = load_error(write(tmp_path, MINIMAL + "budget:\n  rollouts: -1\noptimizer:\n  workers: 1000\n"))
    assert "field 'budget.rollouts'" in error.message and "field 'optimizer.workers'" in error.message


def test_unknown_eval_type(tmp_path):
    error = load_error(write(tmp_path, MINIMAL + "  type: magic\n"))
    assert "field 'eval'" in error.message
    assert "magic" in error.message
    assert "eval.type" in error.fix and "command" in error.fix


def test_bad_format_value(tmp_path):
    error = load_error(write(tmp_path, MINIMAL.replace("prompts/main.txt\n", "prompts/main.txt\n    format: markdown\n")))
    assert "field 'prompts[0].format'" in error.message and "'markdown'" in error.message


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "prompts/../../x", "  "])
def test_prompt_path_must_stay_in_repo(tmp_path, bad):
    error = load_error(write(tmp_path, MINIMAL.replace("prompts/main.txt", repr(bad))))
    assert "field 'prompts[0].path'" in error.message
    if bad.strip():
        assert "escapes the repository" in error.message


def test_second_prompt_entry_is_indexed(tmp_path):
    error = load_error(write(tmp_path, MINIMAL.replace("prompts/main.txt\n", "prompts/main.txt\n  - path: /abs.txt\n")))
    assert "field 'prompts[1].path'" in error.message and "escapes the repository" in error.message


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd"])
def test_watch_must_stay_in_repo(tmp_path, bad):
    error = load_error(write(tmp_path, MINIMAL + f"  watch: ['evals/**', '{bad}']\n"))
    assert "field 'eval.watch'" in error.message and "escapes the repository" in error.message


@pytest.mark.parametrize("field", ["run_dir", "cache_dir"])
@pytest.mark.parametrize("bad", ["../x", "/etc/passwd"])
def test_output_dirs_must_stay_in_repo(tmp_path, field, bad):
    error = load_error(write(tmp_path, MINIMAL + f"output:\n  {field}: '{bad}'\n"))
    assert f"field 'output.{field}'" in error.message and "escapes the repository" in error.message


@pytest.mark.parametrize("fmt", ["text", "frontmatter"])
def test_keys_only_with_yaml_format(tmp_path, fmt):
    error = load_error(write(tmp_path, MINIMAL.replace(
        "prompts/main.txt\n", f"prompts/main.txt\n    format: {fmt}\n    keys: [system]\n")))
    assert "field 'prompts[0]'" in error.message
    assert "'keys' only applies to YAML files" in error.message and repr(fmt) in error.message


def test_non_string_keys_at_top_level(tmp_path):
    error = load_error(write(tmp_path, MINIMAL + "1: x\n"))
    assert "field '[1]'" in error.message or "field '1'" in error.message


# --- fuzzing -----------------------------------------------------------------------------------------

FIELD_NAMES = ["prompts", "eval", "path", "format", "keys", "type", "command", "watch", "instances", "timeout",
               "split", "budget", "rollouts", "models", "optimizer", "output", "run_dir", "labels", "workers"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True),
                    st.sampled_from(["command", "pytest", "magic", "../x", "/etc/passwd", "prompts/*.md", "",
                                     "auto", "yaml", "text", "2001-02-30"]),
                    st.text(max_size=20))
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8), st.integers(-3, 3))
documents = st.recursive(scalars, lambda children: st.one_of(st.lists(children, max_size=4),
                                                               st.dictionaries(keys, children, max_size=5)),
                         max_leaves=25)


def _check_loader(path: Path) -> None:
    try:
        load_config(path)
    except UserError as error:
        text = str(error)
        assert "\n" not in text and "\r" not in text, text
        assert str(path) in text
        assert error.fix


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_fuzz_structured_documents(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ".gepa-bot.yml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        _check_loader(path)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELD_NAMES[:2] + FIELD_NAMES[10:]), documents, max_size=4),
       st.sampled_from(["command", "pytest", "promptfoo", "nope", None]))
def test_fuzz_near_valid_documents(extra, eval_type):
    data = yaml.safe_load(MINIMAL)
    data.update(extra)
    if eval_type and isinstance(data.get("eval"), dict):
        data["eval"]["type"] = eval_type
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ".gepa-bot.yml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        _check_loader(path)


yamlish = st.lists(st.one_of(st.sampled_from(["prompts:", "eval:", "  - path: x", "  command: y", "- ", ": ", "  ",
                                              "\n", "\t", "[", "]", "{", "}", "&a", "*a", "!!int", "!!float x",
                                              "!!binary", "'", '"', "#", "---", "...", "|", ">", "? ",
                                              "2001-02-30", "1e5", "~", "%YAML 1.1", "@", "`", "\\", "\x07",
                                              "\x00", "\ufeff", "\x85", "\u2028", "\r\n"]),
                                   st.text(alphabet=string.printable, max_size=6),
                                   st.text(max_size=4)), max_size=30).map("".join)


@settings(max_examples=500, deadline=None)
@given(yamlish)
def test_fuzz_yamlish_text(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ".gepa-bot.yml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _check_loader(path)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_bytes(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ".gepa-bot.yml"
        path.write_bytes(data)
        _check_loader(path)


def test_overrides_from_flags_or_action_inputs_are_validated():
    from gepa_bot.config import with_overrides

    config = load_config(Path("prompts.example/.gepa-bot.yml"))
    updated = with_overrides(config, budget="77", model="openai/gpt-4o-mini", reflection_model="", workers=None)
    assert (updated.budget.rollouts, updated.models.task) == (77, "openai/gpt-4o-mini")
    assert updated.models.reflection == config.models.reflection and updated.optimizer.workers == config.optimizer.workers
    with pytest.raises(UserError, match=r"action inputs: budget: .*integer.*'lots'"):
        with_overrides(config, source="action inputs", budget="lots")
    with pytest.raises(UserError, match=r"command line: workers"):
        with_overrides(config, workers=0)
