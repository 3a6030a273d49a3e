"""Finding prompt components in a real temp repo and writing candidate texts back into their files."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gepa_bot.config import Config
from gepa_bot.discovery import discover, placeholder_problem, placeholders_in, render_files, splice_yaml_value
from gepa_bot.errors import UserError

CONFIG_PATH = Path(".gepa-bot.yml")


def config(*prompts: dict) -> Config:
    return Config.model_validate({"prompts": list(prompts), "eval": {"command": "true"}})


def make_repo(root: Path, files: dict[str, str | bytes]) -> Path:
    repo = root / "repo"
    repo.mkdir()
    for relative, content in files.items():
        path = repo / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode("utf-8"))  # no newline translation: byte-exact fixtures
    return repo


def discover_error(repo: Path, cfg: Config) -> UserError:
    with pytest.raises(UserError) as info:
        discover(repo, cfg, CONFIG_PATH)
    assert info.value.fix
    return info.value


FRONT = "---\ntitle: Classify  \ntags: [a, b]\n# a comment\n---\n"
AGENT_YAML = ("# agent settings: keep me\n"
              "name: triage   # inline comment\n"
              "a:\n"
              "  b: |\n"
              "    You are helpful.\n"
              "    Answer {question}.\n"
              "  other: 'keep'\n"
              "items:\n"
              "  - first\n"
              "  - \"second {x}\"\n"
              "count: 3\n"
              "flag: true\n"
              "# trailing comment\n")


# --- discovery ---------------------------------------------------------------------------------------

def test_plain_text_file(tmp_path):
    repo = make_repo(tmp_path, {"prompts/main.txt": "Classify {ticket}.\n"})
    [component] = discover(repo, config({"path": "prompts/main.txt"}), CONFIG_PATH)
    assert component.name == component.path == "prompts/main.txt"
    assert component.kind == "text" and component.key is None
    assert component.text == "Classify {ticket}.\n"
    assert component.placeholders == {"{ticket}"}


def test_markdown_front_matter_body_is_the_component(tmp_path):
    repo = make_repo(tmp_path, {"prompts/classify.md": FRONT + "Body {x}\nline 2\n"})
    [component] = discover(repo, config({"path": "prompts/*.md"}), CONFIG_PATH)
    assert component.kind == "frontmatter"
    assert component.text == "Body {x}\nline 2\n"
    files = render_files([component], {component.name: "New body {x}\n"})
    assert files == {"prompts/classify.md": FRONT + "New body {x}\n"}


def test_front_matter_kept_byte_for_byte_with_crlf(tmp_path):
    front = "---  \r\nmodel: x\r\n\r\nnote: 'a: b'\r\n---\r\n"
    repo = make_repo(tmp_path, {"p.md": front + "body\r\n"})
    [component] = discover(repo, config({"path": "p.md"}), CONFIG_PATH)
    assert component.text == "body\r\n"
    rendered = render_files([component], {"p.md": "other"})["p.md"]
    assert rendered.encode() == (front + "other").encode()


def test_markdown_without_front_matter_is_plain_text(tmp_path):
    repo = make_repo(tmp_path, {"p.md": "# Title\n---\nnot front matter\n"})
    [component] = discover(repo, config({"path": "p.md"}), CONFIG_PATH)
    assert component.kind == "text" and component.text == "# Title\n---\nnot front matter\n"


def test_format_text_overrides_front_matter(tmp_path):
    repo = make_repo(tmp_path, {"p.md": FRONT + "body\n"})
    [component] = discover(repo, config({"path": "p.md", "format": "text"}), CONFIG_PATH)
    assert component.kind == "text" and component.text == FRONT + "body\n"


def test_format_frontmatter_without_block_is_an_error(tmp_path):
    repo = make_repo(tmp_path, {"p.md": "no front matter\n"})
    error = discover_error(repo, config({"path": "p.md", "format": "frontmatter"}))
    assert "p.md" in error.message and "front-matter" in error.message
    assert "prompts[0]" in error.fix


def test_yaml_nested_key_and_list_index(tmp_path):
    repo = make_repo(tmp_path, {"prompts/agent.yaml": AGENT_YAML})
    components = discover(repo, config({"path": "prompts/agent.yaml", "keys": ["a.b", "items.1", "items.0"]}),
                          CONFIG_PATH)
    assert [(c.name, c.kind, c.key) for c in components] == [
        ("prompts/agent.yaml#a.b", "yaml", "a.b"),
        ("prompts/agent.yaml#items.1", "yaml", "items.1"),
        ("prompts/agent.yaml#items.0", "yaml", "items.0")]
    assert [c.text for c in components] == ["You are helpful.\nAnswer {question}.\n", "second {x}", "first"]
    assert all(c.path == "prompts/agent.yaml" for c in components)


def test_yaml_render_rewrites_only_the_selected_values(tmp_path):
    repo = make_repo(tmp_path, {"agent.yml": AGENT_YAML})
    components = discover(repo, config({"path": "agent.yml", "keys": ["a.b", "items.1"]}), CONFIG_PATH)
    texts = {"agent.yml#a.b": "Be brief.\nAnswer {question} now.\n", "agent.yml#items.1": "2nd: {x} # not a comment"}
    rendered = render_files(components, texts)["agent.yml"]
    data = yaml.safe_load(rendered)
    assert data["a"]["b"] == texts["agent.yml#a.b"]
    assert data["items"] == ["first", texts["agent.yml#items.1"]]
    assert data["a"]["other"] == "keep" and data["count"] == 3 and data["flag"] is True
    original_lines = AGENT_YAML.splitlines(keepends=True)
    rendered_lines = rendered.splitlines(keepends=True)
    assert rendered_lines[:4] == original_lines[:4]  # comments and unrelated keys, byte for byte
    assert rendered_lines[-3:] == original_lines[-3:]
    assert "  other: 'keep'\n" in rendered_lines and "  - first\n" in rendered_lines
    assert (repo / "agent.yml").read_text() == AGENT_YAML  # render_files does not write


def test_yaml_file_needs_keys(tmp_path):
    repo = make_repo(tmp_path, {"agent.yaml": AGENT_YAML})
    error = discover_error(repo, config({"path": "agent.yaml"}))
    assert "agent.yaml" in error.message and "keys" in error.message


@pytest.mark.parametrize("key,missing", [("nope", "nope"), ("a.c", "c"), ("items.5", "5"), ("items.x", "x"),
                                         ("name.deeper", "deeper")])
def test_yaml_missing_key(tmp_path, key, missing):
    repo = make_repo(tmp_path, {"prompts/agent.yaml": AGENT_YAML})
    error = discover_error(repo, config({"path": "prompts/agent.yaml", "keys": ["a.b", key]}))
    assert "prompts/agent.yaml" in error.message
    assert f"key '{key}' not found" in error.message and f"'{missing}'" in error.message
    assert "prompts[0]" in error.fix


@pytest.mark.parametrize("key", ["count", "flag", "a", "items"])
def test_yaml_non_string_key(tmp_path, key):
    repo = make_repo(tmp_path, {"prompts/agent.yaml": AGENT_YAML})
    error = discover_error(repo, config({"path": "prompts/agent.yaml", "keys": [key]}))
    assert "prompts/agent.yaml" in error.message and f"key '{key}' is not a string" in error.message


def test_invalid_yaml_prompt_file(tmp_path):
    repo = make_repo(tmp_path, {"agent.yaml": "a: [unclosed\n"})
    error = discover_error(repo, config({"path": "agent.yaml", "keys": ["a"]}))
    assert "agent.yaml" in error.message and "invalid YAML" in error.message


def test_glob_without_match_names_the_entry(tmp_path):
    repo = make_repo(tmp_path, {"prompts/main.txt": "x"})
    error = discover_error(repo, config({"path": "prompts/main.txt"}, {"path": "prompts/**/*.md"}))
    assert str(CONFIG_PATH) in error.message
    assert "prompts[1].path" in error.message and "prompts/**/*.md" in error.message


def test_directories_only_match_counts_as_no_match(tmp_path):
    repo = make_repo(tmp_path, {"prompts/sub/x.txt": "x"})
    error = discover_error(repo, config({"path": "prompts/*"}))
    assert "prompts[0].path" in error.message


def test_non_utf8_file(tmp_path):
    repo = make_repo(tmp_path, {"prompts/a.txt": "fine", "prompts/b.txt": b"caf\xe9 latin-1\n"})
    error = discover_error(repo, config({"path": "prompts/*.txt"}))
    assert "prompts/b.txt" in error.message and "UTF-8" in error.message
    assert "prompts[0]" in error.fix


def test_symlink_outside_repo_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("outside\n")
    repo = make_repo(tmp_path, {"prompts/a.txt": "inside\n"})
    os.symlink(secret, repo / "prompts" / "evil.txt")
    error = discover_error(repo, config({"path": "prompts/*.txt"}))
    assert "prompts/evil.txt is a symlink" in error.message and "prompts[0].path" in error.message


def test_symlink_inside_repo_is_refused(tmp_path):
    """Any symlink: one to a file inside the repo would still be optimized and proposed in its target's name."""
    repo = make_repo(tmp_path, {"shared/a.txt": "inside\n"})
    (repo / "prompts").mkdir()
    os.symlink("../shared/a.txt", repo / "prompts" / "link.txt")
    error = discover_error(repo, config({"path": "prompts/*.txt"}))
    assert "prompts/link.txt is a symlink" in error.message and "regular files" in error.message
    assert "\n" not in str(error)


def test_symlink_to_git_config_is_refused(tmp_path):
    repo = make_repo(tmp_path, {".git/config": "[core]\n", "prompts/a.txt": "a\n"})
    os.symlink("../.git/config", repo / "prompts" / "b.txt")
    error = discover_error(repo, config({"path": "prompts/b.txt"}))
    assert error.message == (f"{CONFIG_PATH}: field 'prompts[0].path': prompts/b.txt is a symlink (prompts/b.txt -> "
                             "../.git/config); prompt files must be regular files")


def test_file_under_a_symlinked_directory_is_refused(tmp_path):
    repo = make_repo(tmp_path, {".git/config": "[core]\n"})
    os.symlink(".git", repo / "prompts")
    error = discover_error(repo, config({"path": "prompts/config"}))
    assert "prompts/config is a symlink (prompts -> .git)" in error.message


def test_duplicate_selection(tmp_path):
    repo = make_repo(tmp_path, {"prompts/a.txt": "a", "prompts/b.txt": "b"})
    error = discover_error(repo, config({"path": "prompts/*.txt"}, {"path": "prompts/b.txt"}))
    assert "prompts/b.txt" in error.message and "more than one" in error.message
    assert "prompts/a.txt" not in error.message


def test_duplicate_yaml_key(tmp_path):
    repo = make_repo(tmp_path, {"agent.yaml": AGENT_YAML})
    error = discover_error(repo, config({"path": "agent.yaml", "keys": ["a.b", "a.b"]}))
    assert "agent.yaml#a.b" in error.message


def test_ignored_dirs_and_stable_order(tmp_path):
    repo = make_repo(tmp_path, {"b.txt": "b", "a/z.txt": "z", "a.txt": "a", ".git/x.txt": "git",
                                ".gepa-bot/run/y.txt": "run"})
    components = discover(repo, config({"path": "**/*.txt"}), CONFIG_PATH)
    assert [c.name for c in components] == sorted(["b.txt", "a.txt", "a/z.txt"], key=lambda n: Path(n).parts)
    assert discover(repo, config({"path": "**/*.txt"}), CONFIG_PATH) == components


def test_crlf_yaml_keeps_other_lines_byte_for_byte(tmp_path):
    content = "# c\r\nname: triage\r\nsystem: |\r\n  old\r\n  text\r\nretries: 2\r\n"
    repo = make_repo(tmp_path, {"agent.yaml": content})
    [component] = discover(repo, config({"path": "agent.yaml", "keys": ["system"]}), CONFIG_PATH)
    assert component.text == "old\ntext\n"
    for value in ["new", "new\nlines\n"]:
        rendered = render_files([component], {component.name: value})["agent.yaml"]
        assert yaml.safe_load(rendered)["system"] == value
        assert rendered.startswith("# c\r\nname: triage\r\nsystem: ") and rendered.endswith("\nretries: 2\r\n")
        assert "\n\r\n" not in rendered and "\n\n" not in rendered  # no blank line slipped in
    content = "# c\r\nsystem: old\r\nretries: 2\r\n"
    for value in ["new", "new\nlines\n"]:
        rendered = splice_yaml_value(content, "system", value)
        assert yaml.safe_load(rendered)["system"] == value
        assert rendered.startswith("# c\r\nsystem: ") and rendered.endswith("\r\nretries: 2\r\n")
        assert "\n\r\n" not in rendered


def test_render_several_files(tmp_path):
    repo = make_repo(tmp_path, {"p.txt": "old", "q.md": FRONT + "old body\n", "r.yaml": AGENT_YAML})
    components = discover(repo, config({"path": "p.txt"}, {"path": "q.md"}, {"path": "r.yaml", "keys": ["name"]}),
                          CONFIG_PATH)
    files = render_files(components, {"p.txt": "new", "q.md": "new body\n", "r.yaml#name": "router"})
    assert files["p.txt"] == "new"
    assert files["q.md"] == FRONT + "new body\n"
    assert files["r.yaml"] == AGENT_YAML.replace("name: triage   #", "name: router   #")  # still plain


def test_render_unchanged_texts_is_identity(tmp_path):
    repo = make_repo(tmp_path, {"p.md": FRONT + "body\n", "r.yaml": AGENT_YAML})
    components = discover(repo, config({"path": "p.md"}, {"path": "r.yaml", "keys": ["a.b", "items.0"]}), CONFIG_PATH)
    files = render_files(components, {c.name: c.text for c in components})
    assert files == {"p.md": FRONT + "body\n", "r.yaml": AGENT_YAML}


# --- splice_yaml_value -------------------------------------------------------------------------------

BLOCK = "# settings: keep\nname: triage\nsystem: |\n  You are helpful.\n  Be brief.\nretries: 2  # why\n"


@pytest.mark.parametrize("value", [
    "single line", "multi\nline\n", "multi\nline", "keep\ntrailing\n\n\n", "x\n", "", "\n", "  leading spaces",
    "  leading\nmulti", "key: value # hash 'single' \"double\"", "- dash", "{braces}: [x]", "tab\there",
    "trailing spaces   ", "ünïcødé ✓ 🙂", "a\r\nb", "null", "true", "123", "~", "@at", "`tick`", "%pct", "*star",
    "&amp", "!bang", "|pipe", ">gt", "#hash start", "'quoted'", '"dq"', "\x7f del", "nel\x85x", "ls\u2028x",
    "\ufeffbom", "back\\slash",
])
def test_splice_round_trips_and_keeps_other_lines(value):
    spliced = splice_yaml_value(BLOCK, "system", value)
    assert yaml.safe_load(spliced) == {"name": "triage", "system": value, "retries": 2}
    assert spliced.startswith("# settings: keep\nname: triage\nsystem: ")
    assert spliced.endswith("\nretries: 2  # why\n")


@pytest.mark.parametrize("original", [
    "system: plain text\n", "system: 'single'\n", 'system: "double"\n', "system: |\n  a\n  b\n",
    "system: |-\n  a\n  b\n", "system: >\n  folded\n  text\n", "system: |+\n  keep\n\n"])
@pytest.mark.parametrize("value", ["one line", "two\nlines\n", "two\nlines", "with: colon # and hash"])
def test_splice_from_every_scalar_style(original, value):
    content = "top: 1  # c\n" + original + "bottom: 2\n"
    spliced = splice_yaml_value(content, "system", value)
    assert yaml.safe_load(spliced) == {"top": 1, "system": value, "bottom": 2}
    assert spliced.startswith("top: 1  # c\nsystem: ")
    assert spliced.endswith("\nbottom: 2\n")


@pytest.mark.parametrize("content", ["system: old", "system: |-\n  old\n  text", "system: 'old'\n",
                                     "system: |\n  old\n"])
@pytest.mark.parametrize("value", ["one", "a\nb", "a\nb\n"])
def test_splice_keeps_trailing_newline_state(content, value):
    spliced = splice_yaml_value(content, "system", value)
    assert yaml.safe_load(spliced) == {"system": value}
    assert spliced.endswith("\n") == content.endswith("\n") or value.endswith("\n")


def test_splice_keeps_trailing_comment_on_the_line():
    content = "a: x\nsystem: \"old\"  # explain\nb: y\n"
    spliced = splice_yaml_value(content, "system", "new text")
    assert spliced == "a: x\nsystem: \"new text\"  # explain\nb: y\n"
    spliced = splice_yaml_value(content, "system", "two\nlines")
    assert yaml.safe_load(spliced)["system"] == "two\nlines"
    assert spliced.startswith("a: x\nsystem: ") and spliced.endswith("  # explain\nb: y\n")


def test_splice_literal_block_is_readable_and_indented():
    content = "outer:\n  inner: old\n  other: x\n"
    spliced = splice_yaml_value(content, "outer.inner", "line one\nline two\n")
    assert spliced == "outer:\n  inner: |\n    line one\n    line two\n  other: x\n"


def test_splice_same_value_is_identity():
    assert splice_yaml_value(BLOCK, "system", "You are helpful.\nBe brief.\n") is BLOCK


def test_splice_list_item_and_flow_sequence():
    content = "items:\n  - first\n  - second\nflow: [a, 'b', c]  # k\n"
    spliced = splice_yaml_value(content, "items.1", "new\nsecond\n")
    assert yaml.safe_load(spliced)["items"] == ["first", "new\nsecond\n"]
    assert spliced.endswith("flow: [a, 'b', c]  # k\n")
    spliced = splice_yaml_value(content, "flow.1", "x, y\nz")
    assert yaml.safe_load(spliced)["flow"] == ["a", "x, y\nz", "c"]
    assert spliced.startswith("items:\n  - first\n  - second\nflow: [a, ")
    assert spliced.endswith(", c]  # k\n")


def test_splice_missing_key_is_user_error():
    with pytest.raises(UserError, match="key 'nope' not found"):
        splice_yaml_value(BLOCK, "nope", "x")


# --- layout kept when a value is rewritten ------------------------------------------------------------

EXAMPLE_SYSTEM = Path(__file__).resolve().parents[1] / "prompts.example" / "prompts" / "system.yaml"


def _changed_lines(old: str, new: str) -> list[str]:
    return [line for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


@pytest.mark.parametrize("value, changed", [
    ("You are a helpful assistant working on a SaaS company's support desk.\nBe brief: name one queue.\n",
     ["-  Be brief.", "+  Be brief: name one queue."]),
    ("You are a helpful assistant working on a SaaS company's support desk.\nBe brief.\nNever guess.\n",
     ["+  Never guess."]),
    ("You triage support tickets.\n", ["-  You are a helpful assistant working on a SaaS company's support desk.",
                                       "-  Be brief.", "+  You triage support tickets."]),
])
def test_example_system_prompt_stays_a_literal_block_with_a_minimal_diff(tmp_path, value, changed):
    content = EXAMPLE_SYSTEM.read_bytes().decode("utf-8")
    repo = make_repo(tmp_path, {"prompts/system.yaml": content})
    [component] = discover(repo, config({"path": "prompts/system.yaml", "keys": ["system"]}), CONFIG_PATH)
    rendered = render_files([component], {component.name: value})["prompts/system.yaml"]
    assert yaml.safe_load(rendered) == {**yaml.safe_load(content), "system": value}
    assert "\nsystem: |\n  " in rendered  # still a `|` block scalar, same indentation
    assert _changed_lines(content, rendered) == changed  # comment, header and other keys untouched


@pytest.mark.parametrize("original, value, expected", [
    # chomping indicator, header comment and a 4-space indentation all survive
    ("a: 1\nsystem: |-  # note\n    first\n    second\nb: 2\n", "first\nthird",
     "a: 1\nsystem: |-  # note\n    first\n    third\nb: 2\n"),
    ("a: 1\nsystem: |+\n  keep\n\n\nb: 2\n", "new\n\n", "a: 1\nsystem: |+\n  new\n\nb: 2\n"),
    ("a: 1\nsystem: >\n  keep\nb: 2\n", "one\ntwo\n", "a: 1\nsystem: >\n  one\n\n  two\nb: 2\n"),
    ("a: 1\nsystem: >-\n  keep\n\n  this\nb: 2\n", "keep\nthat", "a: 1\nsystem: >-\n  keep\n\n  that\nb: 2\n"),
    ("system: |2\n    x\n  y\nb: 2\n", "  z\ny\n", "system: |2\n    z\n  y\nb: 2\n"),  # indentation indicator
    ("outer:\n  inner: |\n      deep\n      indent\n  x: 1\n", "deep\nchanged\n",
     "outer:\n  inner: |\n      deep\n      changed\n  x: 1\n"),
    # one-line values keep the plain or single-quoted style
    ("system: plain  # c\nb: 2\n", "new text", "system: new text  # c\nb: 2\n"),
    ("system: 'single'  # c\nb: 2\n", "it's new", "system: 'it''s new'  # c\nb: 2\n"),
    ("system: \"double\"  # c\nb: 2\n", "it's new", "system: \"it's new\"  # c\nb: 2\n"),
    # a block scalar rewritten to one line stays a block scalar (only the chomping indicator follows the text)
    ("system: |\n  two\n  lines\nb: 2\n", "one line\n", "system: |\n  one line\nb: 2\n"),
    ("system: |\n  two\n  lines\nb: 2\n", "one line", "system: |-\n  one line\nb: 2\n"),
])
def test_splice_keeps_the_scalar_style(original, value, expected):
    key = "outer.inner" if original.startswith("outer") else "system"
    spliced = splice_yaml_value(original, key, value)
    assert spliced == expected
    assert _lookup(yaml.safe_load(spliced), key) == value


@pytest.mark.parametrize("original, value, expected", [
    ("system: plain\n", "true", 'system: "true"\n'),  # plain would read as a boolean
    ("system: plain\n", "key: value", 'system: "key: value"\n'),  # plain would be a mapping
    ("system: 'q'\n", "line\nbreak\n", "system: |\n  line\n  break\n"),  # a quoted one-liner cannot hold lines
    ("system: >\n  x\nb: 2\n", "  indented first\n", 'system: "  indented first\\n"\nb: 2\n'),
    ("system: |\n  x\nb: 2\n", "\n", 'system: "\\n"\nb: 2\n'),  # no block scalar is only a line break
])
def test_splice_falls_back_to_a_style_that_round_trips(original, value, expected):
    spliced = splice_yaml_value(original, "system", value)
    assert spliced == expected
    assert yaml.safe_load(spliced)["system"] == value


def test_folded_block_keeps_the_wrapping_of_unchanged_paragraphs():
    original = ("system: >\n  This paragraph was wrapped\n  by hand at a short width.\n\n  Second paragraph.\n"
                "retries: 2\n")
    value = "This paragraph was wrapped by hand at a short width.\nA new second paragraph that is longer.\n"
    spliced = splice_yaml_value(original, "system", value)
    assert yaml.safe_load(spliced)["system"] == value
    assert spliced == ("system: >\n  This paragraph was wrapped\n  by hand at a short width.\n\n"
                       "  A new second paragraph\n  that is longer.\nretries: 2\n")  # wrapped as wide as before


def test_crlf_block_scalar_keeps_crlf_inside_the_block():
    content = "a: 1\r\nsystem: |\r\n  old\r\n  text\r\nb: 2\r\n"
    spliced = splice_yaml_value(content, "system", "old\nnew\n")
    assert spliced == "a: 1\r\nsystem: |\r\n  old\r\n  new\r\nb: 2\r\n"
    assert yaml.safe_load(spliced)["system"] == "old\nnew\n"


def test_markdown_body_is_written_exactly_so_unchanged_lines_keep_their_wrapping(tmp_path):
    body = ("You help our support team triage incoming customer tickets.\n\n"
            "Read the ticket below and decide which queue it should go to. The queues are\n"
            "billing, bug, account, feature_request and other.\n\nTicket:\n{ticket}\n\nQueue:\n")
    repo = make_repo(tmp_path, {"prompts/classify.md": FRONT + body})
    [component] = discover(repo, config({"path": "prompts/classify.md"}), CONFIG_PATH)
    new = body.replace("Queue:\n", "Answer with the queue name only.\nQueue:\n")
    rendered = render_files([component], {component.name: new})["prompts/classify.md"]
    assert rendered == FRONT + new
    assert _changed_lines(FRONT + body, rendered) == ["+Answer with the queue name only."]


def test_crlf_text_file_stays_crlf_when_the_new_text_has_lf_line_endings(tmp_path):
    repo = make_repo(tmp_path, {"p.txt": "line one\r\nline two\r\n", "q.md": FRONT.replace("\n", "\r\n") + "a\r\nb\r\n"})
    components = discover(repo, config({"path": "p.txt"}, {"path": "q.md"}), CONFIG_PATH)
    files = render_files(components, {"p.txt": "line one\nline 2\n", "q.md": "a\nc\n"})
    assert files["p.txt"] == "line one\r\nline 2\r\n"
    assert files["q.md"] == FRONT.replace("\n", "\r\n") + "a\r\nc\r\n"
    assert render_files(components, {"p.txt": "mixed\r\nnew\n", "q.md": "x"})["p.txt"] == "mixed\r\nnew\r\n"


LAYOUTS = [  # (text before the value, key, value's original rendering, text after it)
    ("# head: 'c'\nname: triage  # why\nsystem: ", "system", "old", "\nretries: 2\nnested:\n  a: b\n# end\n"),
    ("# head\nsystem: ", "system", "'it''s old'", "  # c\nz: 1\n"),
    ("system: ", "system", '"dq \\" old"', "\nz: [1, 2]\n"),
    ("a: 1\nsystem: ", "system", "|\n  You are helpful.\n  Be brief.\n", "retries: 2\n"),
    ("a: 1\nsystem: ", "system", "|\n  blank lines follow\n", "\n\nretries: 2\n"),
    ("a: 1\nsystem: ", "system", ">-\n  folded\n  text", ""),
    ("outer:\n  x: 1\n  inner: ", "outer.inner", "plain", "\n  y: 2\nz: 3\n"),
    ("outer:\n  inner: ", "outer.inner", "|-\n    nested\n    block\n", "  y: 2\n"),
    ("items:\n  - first\n  - ", "items.1", "second", "\n  - third\nk: v\n"),
    ("items:\n- ", "items.0", "|\n  zero-indented\n  list\n", "- other\n"),
    ("flow: {a: 1, b: ", "flow.b", "'old'", ", c: 3}\n"),
    ("a: 1\nsystem: ", "system", "|+  # keep\n  kept\n\n", "b: 2\n"),
    ("system: ", "system", ">\n  wrapped\n  paragraph\n\n  two\n", "b: 2\n"),
    ("system: ", "system", "|2  # c\n    x\n  y\n", "b: 2\n"),
    ("a:\n  system: ", "a.system", "|-\n      deep\n", "  b: 2\n"),
]


def _lookup(data, key):
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=st.sampled_from(LAYOUTS), value=st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(["\n", ": ", " #", "#", "'", '"', "  ", "\t", "- ", "|", ">", "{x}", "\\",
                                        "---", "...", "\r", "\x85", "\u2028", "\ufeff", "\x7f", "🙂"]),
                       st.text(max_size=5)), max_size=12).map("".join)))
@example(layout=LAYOUTS[0], value="")
@example(layout=LAYOUTS[3], value="single")
@example(layout=LAYOUTS[5], value="a\nb\n")
def test_splice_property(layout, value):
    before, key, original, after = layout
    content = before + original + after
    spliced = splice_yaml_value(content, key, value)
    assert _lookup(yaml.safe_load(spliced), key) == value
    other = yaml.safe_load(content)
    new = yaml.safe_load(spliced)
    if isinstance(other, dict) and key.count(".") == 0:
        assert {k: v for k, v in new.items() if k != key} == {k: v for k, v in other.items() if k != key}
    # everything before the value is byte-identical, and every line after the value's own lines is too
    assert spliced.startswith(before)
    tail_lines = after.split("\n")[1:] if not original.endswith("\n") else after.split("\n")
    tail = "\n".join(tail_lines)
    assert spliced.endswith(tail)


# --- placeholders ------------------------------------------------------------------------------------

def test_placeholders_found():
    text = "Hi {x}, see {{ y }} and {{z2}}; {z!r} {w:>10} {obj.attr} {a.b!s:^5}"
    assert placeholders_in(text) == {"{x}", "{{y}}", "{{z2}}", "{z!r}", "{w:>10}", "{obj.attr}", "{a.b!s:^5}"}


def test_placeholder_whitespace_is_normalized():
    assert placeholders_in("{{ name }}") == placeholders_in("{{name}}") == {"{{name}}"}


@pytest.mark.parametrize("text", ['{"a": 1}', "{'a': 1}", '{"a": {"b": [1, 2]}}', "{}", "{ x }", "{1}", "{-x}",
                                  "a {b c} d", "set {1, 2}", "{{}}", "function() { return x; }"])
def test_not_placeholders(text):
    assert placeholders_in(text) == frozenset()


def test_json_next_to_placeholder():
    assert placeholders_in('Reply as {"label": "x"} for {ticket}') == {"{ticket}"}


def test_placeholder_problem():
    original = "Classify {ticket} for {{ user }} with {n:>3}."
    assert placeholder_problem(original, original) is None
    assert placeholder_problem(original, "For {{user}}: {n:>3} then {ticket}!") is None
    assert placeholder_problem("no placeholders", "still none {\"a\": 1}") is None
    dropped = placeholder_problem(original, "Classify {ticket}.")
    assert dropped is not None and "drops" in dropped and "{{user}}" in dropped and "{n:>3}" in dropped
    assert "adds" not in dropped
    invented = placeholder_problem(original, original + " {extra}")
    assert invented is not None and "adds unknown placeholder(s) {extra}" in invented and "drops" not in invented
    both = placeholder_problem("{a} {b}", "{b} {c}")
    assert both == "drops placeholder(s) {a}; adds unknown placeholder(s) {c}"
    # a real Qwen-1.5B rewrite from the bench: the prose "mentions" the placeholder, which would put the
    # whole question into the prompt twice
    echoed = "Solve this math word problem.\n\n{question}\n\nThe prompt now includes the placeholder {question}.\n"
    assert placeholder_problem("Solve this math word problem.\n\n{question}\n", echoed) == (
        "repeats placeholder(s) {question}")
    assert placeholder_problem("{x} and {x}", "{x}, {x}") is None  # as often as before: fine


# --- one glob matcher: push triggers and files= filters agree with discovery's Path.glob --------------

GLOB_FILES = ["a.md", "prompts/a.md", "prompts/x/b.md", "prompts/x/y/c.txt", "evals/run.py", "evals/data/d.jsonl",
              ".gepa-bot.yml", "p[1].md", "prompts/readme"]
GLOB_PATTERNS = ["prompts/**/*.md", "prompts/*.md", "**/*.md", "*.md", "prompts/?/*.md", "evals/*.py",
                 ".gepa-bot.yml", "prompts/[ax]/*.md", "p[[]1].md", "prompts/**/c.txt", "prompts/[!x]*.md"]


@pytest.mark.parametrize("pattern", GLOB_PATTERNS)
def test_glob_matches_agrees_with_path_glob(tmp_path, pattern):
    from gepa_bot.discovery import glob_matches

    for name in GLOB_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    selected = {p.relative_to(tmp_path).as_posix() for p in tmp_path.glob(pattern) if p.is_file()}
    assert {name for name in GLOB_FILES if glob_matches(name, pattern)} == selected


def test_trailing_double_star_matches_every_file_below():
    from gepa_bot.discovery import glob_matches

    assert glob_matches("evals/data/d.jsonl", "evals/**") and glob_matches("evals/run.py", "evals/**")
    assert not glob_matches("evalsx/run.py", "evals/**")


def test_push_to_a_file_the_readmes_glob_selects_triggers_a_run():
    """README's own `prompts/**/*.md`: a push to prompts/a.md must optimize (fnmatch said no)."""
    from gepa_bot.config import Config
    from gepa_bot.github.trigger import plan_for

    config = Config.model_validate({"prompts": [{"path": "prompts/**/*.md"}], "eval": {"command": "true"}})
    push = {"ref": "refs/heads/main", "commits": [{"added": [], "removed": [], "modified": ["prompts/a.md"]}]}
    assert plan_for("push", push, config, ".gepa-bot.yml").verb == "optimize"
    push["commits"][0]["modified"] = ["docs/a.md"]
    assert plan_for("push", push, config, ".gepa-bot.yml").verb == "skip"


def test_file_names_with_newlines_still_match():
    """Git allows a newline in a file name; a push touching one under a watched dir must still count."""
    from gepa_bot.discovery import glob_matches

    assert glob_matches("evals/x\n::error::injected", "evals/**")
