"""The fake GitHub itself: real PyGithub and git clients against it, and its spec validation."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests
from github import Auth, BadCredentialsException, Github, GithubException

from tests.fakegithub.server import ACTIONS_PR_MESSAGE, FakeGitHub, SpecValidator

pytest_plugins = ["tests.fakegithub.fixtures", "pytester"]

SPEC = json.loads((Path(__file__).parent / "fakegithub" / "openapi-subset.json").read_text())


def _git(*args, cwd=None, env=None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout


def _make_source(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    _git("init", "-q", "-b", "main", cwd=path)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    _git("add", ".", cwd=path)
    _git("-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", "init", cwd=path)
    return path


def _push_branch(fake: FakeGitHub, token: str, src: Path, branch: str, change: str | None) -> None:
    if change is not None:
        (src / "prompt.txt").write_text(change)
        _git("-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qam", change, cwd=src)
    url = fake.git_url("octo", "hello").replace("http://", f"http://x-access-token:{token}@")
    _git("push", "-q", url, f"HEAD:refs/heads/{branch}", cwd=src)


def _client(fake: FakeGitHub, token: str) -> Github:
    return Github(auth=Auth.Token(token), base_url=fake.api_url, seconds_between_requests=0,
                  seconds_between_writes=0, retry=None)


@pytest.fixture
def hello(fake_github, tmp_path):
    src = _make_source(tmp_path / "src", {"prompt.txt": "seed\n"})
    fake_github.create_repo("octo", "hello", src)
    token = fake_github.add_actions_token("ghs_actions", "octo", "hello")
    return fake_github, token, src


def test_subset_is_a_real_extract_of_the_pinned_spec():
    info = SPEC["info"]
    assert info["x-octokit-openapi-version"] == "23.0.2"
    assert SPEC["openapi"] == "3.0.3"
    operations = {op["operationId"] for item in SPEC["paths"].values()
                  for op in item.values() if isinstance(op, dict) and "operationId" in op}
    assert operations == set(info["x-subset-operations"])
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(SPEC)
    for ref in refs:  # self-contained: every reference resolves inside the subset
        _, _, section, name = ref.split("/", 3)
        assert name in SPEC["components"][section], ref


def test_create_list_update_pull_with_pygithub(hello):
    fake, token, src = hello
    _push_branch(fake, token, src, "feature", "better\n")
    repo = _client(fake, token).get_repo("octo/hello")
    assert repo.default_branch == "main"
    pr = repo.create_pull(base="main", head="feature", title="Better prompt", body="why")
    assert (pr.number, pr.state, pr.head.ref, pr.base.ref) == (1, "open", "feature", "main")
    assert pr.head.sha == fake.branch_sha("octo/hello", "feature")
    assert pr.user.login == "github-actions[bot]"
    assert [p.number for p in repo.get_pulls(state="open", head="octo:feature")] == [1]
    assert list(repo.get_pulls(state="open", head="octo:other")) == []
    # a bare branch name is not a valid head filter: GitHub ignores it
    assert [p.number for p in repo.get_pulls(state="open", head="other")] == [1]
    pr.edit(title="Even better", state="closed")
    again = repo.get_pull(1)
    assert (again.title, again.state) == ("Even better", "closed")
    assert list(repo.get_pulls(state="open")) == []
    assert [p.number for p in repo.get_pulls(state="closed", base="main")] == [1]


def test_duplicate_pull_is_422_with_githubs_error_body(hello):
    fake, token, src = hello
    _push_branch(fake, token, src, "feature", "better\n")
    repo = _client(fake, token).get_repo("octo/hello")
    repo.create_pull(base="main", head="feature", title="t", body="b")
    with pytest.raises(GithubException) as err:
        repo.create_pull(base="main", head="feature", title="t", body="b")
    assert err.value.status == 422
    assert err.value.data["message"] == "Validation Failed"
    assert err.value.data["errors"] == [{
        "resource": "PullRequest", "code": "custom",
        "message": "A pull request already exists for octo:feature."}]
    assert len(fake.pulls("octo", "hello")) == 1


def test_no_commits_and_missing_head_are_422(hello):
    fake, token, src = hello
    _push_branch(fake, token, src, "same", None)
    repo = _client(fake, token).get_repo("octo/hello")
    with pytest.raises(GithubException) as err:
        repo.create_pull(base="main", head="same", title="t", body="b")
    assert err.value.status == 422
    assert err.value.data["errors"][0]["message"] == "No commits between main and same"
    with pytest.raises(GithubException) as err:
        repo.create_pull(base="main", head="nope", title="t", body="b")
    assert err.value.status == 422
    assert err.value.data["errors"] == [{"resource": "PullRequest", "field": "head", "code": "invalid"}]
    assert fake.pulls("octo", "hello") == []


def test_bad_token_is_401(hello):
    fake, _token, _src = hello
    with pytest.raises(BadCredentialsException) as err:
        _client(fake, "ghp_wrong").get_repo("octo/hello")
    assert err.value.status == 401
    assert err.value.data["message"] == "Bad credentials"


def test_actions_not_permitted_to_create_pulls_is_403(hello):
    fake, token, src = hello
    _push_branch(fake, token, src, "feature", "better\n")
    fake.actions_can_create_prs = False
    repo = _client(fake, token).get_repo("octo/hello")
    with pytest.raises(GithubException) as err:
        repo.create_pull(base="main", head="feature", title="t", body="b")
    assert err.value.status == 403
    assert err.value.data["message"] == ACTIONS_PR_MESSAGE
    # a personal token of a maintainer is not affected by the Actions setting
    fake.add_token("ghp_maint", "maint")
    fake.set_permission("octo", "hello", "maint", "maintain")
    pr = _client(fake, "ghp_maint").get_repo("octo/hello").create_pull(
        base="main", head="feature", title="t", body="b")
    assert pr.user.login == "maint"


def test_token_without_pull_request_permission_is_403(hello):
    fake, _token, src = hello
    fake.add_token("ghs_ro", "github-actions[bot]", actions=True,
                   permissions={"contents": "write", "pull_requests": "read"})
    _push_branch(fake, "ghs_ro", src, "feature", "better\n")
    repo = _client(fake, "ghs_ro").get_repo("octo/hello")
    with pytest.raises(GithubException) as err:
        repo.create_pull(base="main", head="feature", title="t", body="b")
    assert (err.value.status, err.value.data["message"]) == (403, "Resource not accessible by integration")


def test_comments_reactions_labels_and_permissions(hello):
    fake, token, _src = hello
    issue = fake.add_issue("octo", "hello", "Please optimize")
    fake.add_token("ghp_reader", "reader")
    fake.set_permission("octo", "hello", "reader", "read")
    repo = _client(fake, token).get_repo("octo/hello")
    comment = repo.get_issue(issue.number).create_comment("/gepa-bot optimize")
    assert comment.body == "/gepa-bot optimize"
    comment.edit("/gepa-bot optimize now")
    assert [c.body for c in repo.get_issue(issue.number).get_comments()] == ["/gepa-bot optimize now"]
    reaction = repo.get_issue(issue.number).get_comment(comment.id).create_reaction("eyes")
    assert reaction.content == "eyes"
    assert fake.comments[comment.id].reactions[0]["content"] == "eyes"
    repo.requester.requestJsonAndCheck("POST", f"{repo.url}/issues/{issue.number}/labels",
                                       input={"labels": ["gepa-bot"]})
    assert [lb.name for lb in repo.get_issue(issue.number).labels] == ["gepa-bot"]
    assert repo.get_collaborator_permission("octo") == "admin"
    assert repo.get_collaborator_permission("reader") == "read"


def test_invalid_requests_are_caught_by_validation(tmp_path):
    fake = FakeGitHub(tmp_path / "gh").start()
    try:
        fake.create_repo("octo", "hello", _make_source(tmp_path / "src", {"a.txt": "a"}))
        headers = {"Authorization": "token ghs_x", "Accept": "application/vnd.github+json"}
        fake.add_actions_token("ghs_x", "octo", "hello")
        missing_base = requests.post(f"{fake.api_url}/repos/octo/hello/pulls", headers=headers,
                                     json={"title": "t", "head": "feature"}, timeout=10)
        assert missing_base.status_code == 422
        bad_state = requests.get(f"{fake.api_url}/repos/octo/hello/pulls", headers=headers,
                                 params={"state": "merged"}, timeout=10)
        assert bad_state.status_code == 422
        # PyGithub's add_to_labels posts a bare list, which the spec does not describe
        fake.add_issue("octo", "hello", "x")
        bare = requests.post(f"{fake.api_url}/repos/octo/hello/issues/1/labels", headers=headers,
                             json=["bug"], timeout=10)
        assert bare.status_code == 422
        unknown = requests.get(f"{fake.api_url}/repos/octo/hello/branches", headers=headers, timeout=10)
        assert unknown.status_code == 404
    finally:
        fake.stop()
    errors = fake.validation_errors
    assert len(errors) == 4
    assert "POST /api/v3/repos/octo/hello/pulls" in errors[0] and "'base' is a required property" in errors[0]
    assert "'merged' is not one of" in errors[1]
    assert "/issues/1/labels" in errors[2]
    assert "no such operation" in errors[3]


def test_invalid_responses_are_caught_by_validation(tmp_path):
    fake = FakeGitHub(tmp_path / "gh").start()
    try:
        fake.create_repo("octo", "hello", _make_source(tmp_path / "src", {"a.txt": "a"}))
        token = fake.add_actions_token("ghs_x", "octo", "hello")
        broken = fake._repo_json
        fake._repo_json = lambda *a, **k: {**broken(*a, **k), "id": "not-an-int", "private": None}
        assert _client(fake, token).get_repo("octo/hello").name == "hello"
    finally:
        fake.stop()
    assert len(fake.validation_errors) == 1
    assert "response 200 does not match the spec" in fake.validation_errors[0]
    assert "not-an-int" in fake.validation_errors[0]


def test_slashy_path_parameters_are_percent_encoded():
    validator = SpecValidator()
    validator._templates.append(("/repos/{owner}/{repo}/git/ref/{ref}", validator._template_regex(
        "/repos/{owner}/{repo}/git/ref/{ref}")))
    assert validator.encode_path("/repos/o/r/git/ref/heads/gepa-bot/main") == \
        "/repos/o/r/git/ref/heads%2Fgepa-bot%2Fmain"
    assert validator.encode_path("/repos/o/r/pulls/3") == "/repos/o/r/pulls/3"


def test_git_clone_and_push_over_http_backend(hello, tmp_path):
    fake, token, _src = hello
    fake.create_repo("octo", "secret", _make_source(tmp_path / "s2", {"x.txt": "x\n"}), private=True)
    authed = fake.git_url("octo", "hello").replace("http://", f"http://x-access-token:{token}@")
    clone = tmp_path / "clone"
    _git("clone", "-q", authed, str(clone))
    assert (clone / "prompt.txt").read_text() == "seed\n"
    (clone / "prompt.txt").write_text("pushed\n")
    _git("-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qam", "p", cwd=clone)
    _git("push", "-q", "origin", "HEAD:refs/heads/topic", cwd=clone)
    assert fake.read_file("octo", "hello", "topic", "prompt.txt") == "pushed\n"
    noprompt = {"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    # anonymous push is refused; so is a wrong token, and reading a private repo anonymously
    anon_push = subprocess.run(["git", "push", fake.git_url("octo", "hello"), "HEAD:refs/heads/x"],
                               cwd=clone, env=noprompt, capture_output=True, text=True)
    assert anon_push.returncode != 0
    bad = fake.git_url("octo", "hello").replace("http://", "http://x-access-token:wrong@")
    assert subprocess.run(["git", "push", bad, "HEAD:refs/heads/x"], cwd=clone, env=noprompt,
                          capture_output=True).returncode != 0
    assert subprocess.run(["git", "clone", fake.git_url("octo", "secret"), str(tmp_path / "c2")],
                          env=noprompt, capture_output=True).returncode != 0
    assert fake.branch_sha("octo/hello", "x") is None
    # a reader can clone but not push
    fake.add_token("ghp_reader", "reader")
    fake.set_permission("octo", "hello", "reader", "read")
    reader = fake.git_url("octo", "hello").replace("http://", "http://x-access-token:ghp_reader@")
    _git("clone", "-q", reader, str(tmp_path / "c3"))
    denied = subprocess.run(["git", "push", reader, "HEAD:refs/heads/x"], cwd=clone, env=noprompt,
                            capture_output=True, text=True)
    assert denied.returncode != 0 and "403" in denied.stderr


def test_fixture_fails_a_test_whose_traffic_breaks_the_spec(pytester):
    pytester.makepyfile(
        """
        import requests
        pytest_plugins = ["tests.fakegithub.fixtures"]

        def test_sends_garbage(fake_github):
            r = requests.post(fake_github.api_url + "/repos/o/r/pulls", json={"title": 1}, timeout=10)
            assert r.status_code == 422

        def test_clean(fake_github):
            assert fake_github.validation_errors == []
        """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*do not match GitHub's OpenAPI description*",
                                 "*POST /api/v3/repos/o/r/pulls: request does not match the spec*"])
