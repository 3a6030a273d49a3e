"""gepa_bot.github.git and gepa_bot.github.rest end to end against the fake GitHub, with real git repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gepa_bot.github import git as gitops
from gepa_bot.github import rest
from gepa_bot.text import BODY_CUT_NOTE, BODY_LIMIT
from tests.fakegithub.server import ACTIONS_LOGIN

pytest_plugins = ["tests.fakegithub.fixtures"]

BASELINE = "You are a helpful assistant.\n"


def _git(*args, cwd=None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _commit_all(path: Path, message: str) -> None:
    _git("add", ".", cwd=path)
    _git("-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-qm", message, cwd=path)


@pytest.fixture
def env(fake_github, tmp_path):
    """octo/hello on the fake, a workflow token, and a checkout of it (like actions/checkout)."""
    src = tmp_path / "src"
    (src / "prompts").mkdir(parents=True)
    (src / "prompts" / "system.txt").write_text(BASELINE)
    (src / "README.md").write_text("hello\n")
    _git("init", "-q", "-b", "main", cwd=src)
    _commit_all(src, "initial")
    fake_github.create_repo("octo", "hello", src)
    token = fake_github.add_actions_token("ghs_workflow", "octo", "hello")
    remote = fake_github.git_url("octo", "hello")
    work = tmp_path / "work"
    _git("clone", "-q", remote.replace("http://", f"http://x-access-token:{token}@"), str(work))
    _git("remote", "set-url", "origin", remote, cwd=work)  # like persist-credentials: false
    client = rest.connect(token, api_url=fake_github.api_url, seconds_between_requests=0,
                        seconds_between_writes=0, retry=None)
    repo = rest.get_repository(client, "octo/hello")
    return fake_github, token, remote, work, repo


def _publish(env, content: str, **kwargs) -> str:
    fake, token, remote, work, _repo = env
    return gitops.publish_branch(work, "main", {"prompts/system.txt": content}, "gepa-bot: optimize prompts",
                             remote, token, **kwargs)


def test_publish_then_upsert_creates_then_updates_the_same_pull(env):
    fake, _token, _remote, work, repo = env
    main_sha = fake.branch_sha("octo/hello", "main")

    branch = _publish(env, "v1: be concise\n")
    assert branch == "gepa-bot/main"
    assert fake.read_file("octo", "hello", branch, "prompts/system.txt") == "v1: be concise\n"
    assert fake.read_file("octo", "hello", branch, "README.md") == "hello\n"
    first_sha = fake.branch_sha("octo/hello", branch)
    op, pr = rest.upsert_pull_request(repo, "main", branch, "Optimized prompts (score 0.7)", "body 1",
                                    ["gepa-bot", "prompts"])
    assert op == "created"
    assert (pr.number, pr.head.ref, pr.base.ref, pr.state) == (1, branch, "main", "open")
    assert fake.issues[("octo/hello", 1)].labels == ["gepa-bot", "prompts"]

    branch2 = _publish(env, "v2: be concise and kind\n")
    assert branch2 == branch
    second_sha = fake.branch_sha("octo/hello", branch)
    assert second_sha != first_sha
    # force-pushed from the base commit: the old proposal is gone, not stacked under the new one
    assert _git("--git-dir", str(fake.repos["octo/hello"].git_dir), "rev-parse", f"{second_sha}^") \
        .strip() == main_sha
    assert fake.read_file("octo", "hello", branch, "prompts/system.txt") == "v2: be concise and kind\n"
    author = _git("--git-dir", str(fake.repos["octo/hello"].git_dir), "log", "-1", "--format=%an <%ae>",
                  second_sha).strip()
    assert author == f"{gitops.BOT_NAME} <{gitops.BOT_EMAIL}>"

    op2, pr2 = rest.upsert_pull_request(repo, "main", branch, "Optimized prompts (score 0.8)", "body 2",
                                      ["gepa-bot"])
    assert (op2, pr2.number) == ("updated", 1)
    pulls = fake.pulls("octo", "hello")
    assert len(pulls) == 1
    assert (pulls[0].title, pulls[0].body) == ("Optimized prompts (score 0.8)", "body 2")
    assert repo.get_pull(1).head.sha == second_sha
    # the checkout's work tree and base branch are untouched
    assert (work / "prompts" / "system.txt").read_text() == BASELINE
    assert _git("rev-parse", "main", cwd=work).strip() == main_sha
    assert _git("status", "--porcelain", cwd=work) == ""


def test_create_race_falls_back_to_update(env):
    fake, _token, _remote, _work, repo = env
    branch = _publish(env, "v1\n")
    # another run opens the same pull request between our lookup and our create
    fake.before_operation["pulls/create"] = lambda: fake.add_pull(
        "octo", "hello", head=branch, base="main", title="from the other run", user=ACTIONS_LOGIN)
    op, pr = rest.upsert_pull_request(repo, "main", branch, "ours", "our body", ["gepa-bot"])
    assert op == "updated"
    assert len(fake.pulls("octo", "hello")) == 1
    assert (pr.number, fake.pulls("octo", "hello")[0].title) == (1, "ours")
    assert fake.pulls("octo", "hello")[0].labels == ["gepa-bot"]


def test_long_body_is_truncated_to_githubs_limit(env):
    fake, *_rest, repo = env
    branch = _publish(env, "v1\n")
    _op, pr = rest.upsert_pull_request(repo, "main", branch, "t", "x" * 70_000)
    body = fake.pulls("octo", "hello")[0].body
    assert len(body) == BODY_LIMIT
    assert body.endswith(BODY_CUT_NOTE)
    comment = rest.post_comment(repo, pr.number, "y" * 100_000)
    assert len(fake.comments[comment.id].body) == BODY_LIMIT


def test_push_to_base_or_default_branch_is_refused(env):
    fake, token, remote, work, _repo = env
    main_sha = fake.branch_sha("octo/hello", "main")
    with pytest.raises(gitops.GitHubError, match="base branch"):
        _publish(env, "evil\n", branch="main")
    # base "dev", target "main": main is the remote's default branch
    _git("branch", "dev", cwd=work)
    with pytest.raises(gitops.GitHubError, match="default branch"):
        gitops.publish_branch(work, "dev", {"prompts/system.txt": "evil\n"}, "m", remote, token, branch="main")
    assert fake.branch_sha("octo/hello", "main") == main_sha
    assert fake.read_file("octo", "hello", "main", "prompts/system.txt") == BASELINE


def test_publish_rejects_paths_outside_the_repo_and_no_op_changes(env):
    _fake, token, remote, work, _repo = env
    with pytest.raises(ValueError, match="inside the repository"):
        gitops.publish_branch(work, "main", {"../escape.txt": "x"}, "m", remote, token)
    with pytest.raises(ValueError, match="nothing to publish"):
        gitops.publish_branch(work, "main", {"prompts/system.txt": BASELINE}, "m", remote, token)


def test_push_with_a_stale_checkout_header_and_a_bad_token(env):
    fake, token, remote, work, _repo = env
    # actions/checkout leaves an extraheader for the server; ours must replace it, not add to it
    stale = "AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46c3RhbGU="  # x-access-token:stale
    prefix = remote.split("/octo/")[0] + "/"
    _git("config", f"http.{prefix}.extraheader", stale, cwd=work)
    assert _publish(env, "v1\n") == "gepa-bot/main"
    assert fake.read_file("octo", "hello", "gepa-bot/main", "prompts/system.txt") == "v1\n"

    secret = "ghp_not_a_real_token_123"
    with pytest.raises(gitops.GitHubError) as err:
        gitops.publish_branch(work, "main", {"prompts/system.txt": "v2\n"}, "m", remote, secret)
    assert secret not in str(err.value)
    assert "check the token input / GITHUB_TOKEN" in str(err.value)
    assert fake.read_file("octo", "hello", "gepa-bot/main", "prompts/system.txt") == "v1\n"


def test_push_without_contents_write_explains_permissions(env):
    fake, _token, remote, work, _repo = env
    fake.add_token("ghs_readonly", ACTIONS_LOGIN, actions=True,
                   permissions={"contents": "read", "pull_requests": "write", "issues": "write"})
    with pytest.raises(gitops.GitHubError) as err:
        gitops.publish_branch(work, "main", {"prompts/system.txt": "v1\n"}, "m", remote, "ghs_readonly")
    assert "contents: write" in str(err.value)
    assert fake.branch_sha("octo/hello", "gepa-bot/main") is None


def test_close_pull_request_comments_then_closes(env):
    fake, *_rest, repo = env
    branch = _publish(env, "v1\n")
    _op, pr = rest.upsert_pull_request(repo, "main", branch, "t", "b")
    closed = rest.close_pull_request(repo, branch, "No candidate beats the baseline any more.")
    assert closed.number == pr.number
    assert fake.pulls("octo", "hello")[0].state == "closed"
    assert [c.body for c in fake.comments.values() if c.issue_number == pr.number] == [
        "No candidate beats the baseline any more."]
    assert rest.close_pull_request(repo, branch, "again") is None
    # after closing, a new run opens a fresh pull request
    assert rest.upsert_pull_request(repo, "main", branch, "t2", "b2")[0] == "created"
    assert [p.state for p in fake.pulls("octo", "hello")] == ["closed", "open"]


@pytest.mark.parametrize("level, allowed", [
    ("admin", True), ("maintain", True), ("write", True), ("triage", False), ("read", False),
    ("none", False)])
def test_commenter_can_write(env, level, allowed):
    fake, *_rest, repo = env
    fake.set_permission("octo", "hello", "someone", level)
    assert rest.commenter_can_write(repo, "someone") is allowed


def test_commenter_can_write_unknown_user_and_owner(env):
    *_rest, repo = env
    assert rest.commenter_can_write(repo, "octo") is True
    assert rest.commenter_can_write(repo, "nobody-at-all") is False


def test_comment_and_reaction_on_a_pull_request(env):
    fake, *_rest, repo = env
    branch = _publish(env, "v1\n")
    _op, pr = rest.upsert_pull_request(repo, "main", branch, "t", "b")
    command = fake.add_comment("octo", "hello", pr.number, "/gepa-bot rerun", "octo")
    rest.react(repo, command.id, "eyes")
    rest.react(repo, command.id, "eyes")  # idempotent on GitHub: answered 200, not a second reaction
    assert [(r["user"], r["content"]) for r in fake.comments[command.id].reactions] == [
        (ACTIONS_LOGIN, "eyes")]
    reply = rest.post_comment(repo, pr.number, "Re-running the optimization.")
    assert fake.comments[reply.id].body == "Re-running the optimization."
    assert fake.comments[reply.id].user == ACTIONS_LOGIN
    with pytest.raises(ValueError):
        rest.react(repo, command.id, "thumbsup")


def test_is_fork_pull(env, tmp_path):
    fake, *_rest, repo = env
    branch = _publish(env, "v1\n")
    _op, own = rest.upsert_pull_request(repo, "main", branch, "t", "b")
    fork_src = tmp_path / "fork"
    _git("clone", "-q", str(fake.repos["octo/hello"].git_dir), str(fork_src))
    (fork_src / "prompts" / "system.txt").write_text("from a fork\n")
    _commit_all(fork_src, "fork change")
    fake.create_repo("mallory", "hello", fork_src, fork_of="octo/hello")
    fork_pr = fake.add_pull("octo", "hello", head="main", base="main", title="fork",
                            head_repo="mallory/hello")
    assert rest.is_fork_pull(repo.get_pull(own.number)) is False
    assert rest.is_fork_pull(repo.get_pull(fork_pr.number)) is True


def test_actions_not_permitted_message(env):
    fake, *_rest, repo = env
    branch = _publish(env, "v1\n")
    fake.actions_can_create_prs = False
    with pytest.raises(gitops.GitHubError) as err:
        rest.upsert_pull_request(repo, "main", branch, "t", "b")
    text = str(err.value)
    assert "GitHub Actions is not permitted to create or approve pull requests" in text
    assert "Settings > Actions > General" in text
    assert "Allow GitHub Actions to create and approve pull requests" in text
    assert fake.pulls("octo", "hello") == []


def test_missing_pull_requests_permission_message(env):
    fake, _token, _remote, _work, _repo = env
    branch = _publish(env, "v1\n")
    fake.add_token("ghs_nopr", ACTIONS_LOGIN, actions=True,
                   permissions={"contents": "write", "pull_requests": "read", "issues": "read"})
    client = rest.connect("ghs_nopr", api_url=fake.api_url, seconds_between_requests=0,
                        seconds_between_writes=0, retry=None)
    repo = rest.get_repository(client, "octo/hello")
    with pytest.raises(gitops.GitHubError) as err:
        rest.upsert_pull_request(repo, "main", branch, "t", "b")
    assert "403" in str(err.value) and "Resource not accessible by integration" in str(err.value)
    assert "pull-requests: write" in str(err.value) and "issues: write" in str(err.value)


def test_bad_token_message(env, monkeypatch):
    fake, *_rest = env
    monkeypatch.setenv("GITHUB_API_URL", fake.api_url)
    client = rest.connect("ghp_expired", seconds_between_requests=0, seconds_between_writes=0, retry=None)
    with pytest.raises(gitops.GitHubError) as err:
        rest.get_repository(client, "octo/hello")
    assert "401" in str(err.value) and "Bad credentials" in str(err.value)
    assert "check the token input / GITHUB_TOKEN" in str(err.value)
    assert "ghp_expired" not in str(err.value)


def test_token_revoked_mid_run(env):
    fake, token, _remote, _work, repo = env
    branch = _publish(env, "v1\n")
    del fake.tokens[token]
    with pytest.raises(gitops.GitHubError, match="check the token input"):
        rest.upsert_pull_request(repo, "main", branch, "t", "b")


def test_missing_repository_is_explained(env):
    fake, token, *_rest = env
    client = rest.connect(token, api_url=fake.api_url, retry=None, seconds_between_requests=0,
                        seconds_between_writes=0)
    with pytest.raises(gitops.GitHubError, match="lacks a permission or cannot see the repository"):
        rest.get_repository(client, "octo/missing")
