"""A fake GitHub (REST API subset + git smart HTTP) for tests, on 127.0.0.1.

Every API request and every API response is validated against
``openapi-subset.json``, an extract of GitHub's official OpenAPI description
(npm ``@octokit/openapi``, see README.md). Problems are collected in
``FakeGitHub.validation_errors``; the ``fake_github`` pytest fixture fails the
test when that list is not empty at teardown.

Git repositories are real bare repositories served by the system
``git http-backend`` (CGI) under ``/{owner}/{repo}.git``, with HTTP basic auth
checked against the fake's token map (user ``x-access-token``, password = token).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openapi_core import OpenAPI
from openapi_core.configurations import Config
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_schema_validator import OAS30Validator
from werkzeug.datastructures import Headers, ImmutableMultiDict
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

SPEC_PATH = Path(__file__).with_name("openapi-subset.json")
GITHUB_API = "https://api.github.com"
GITHUB_WEB = "https://github.com"
DOCS = "https://docs.github.com/rest"
PERMISSION_LEVELS = ("none", "read", "triage", "write", "maintain", "admin")
ACTIONS_LOGIN = "github-actions[bot]"
ACTIONS_PR_MESSAGE = "GitHub Actions is not permitted to create or approve pull requests."
REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
# Path parameters whose values may contain "/" (openapi-core's matcher needs them encoded).
SLASHY_PARAMS = ("ref", "path")
_API_PREFIX = "/api/v3"
_GIT_PATH = re.compile(r"^/(?P<owner>[^/]+)/(?P<repo>[^/]+)\.git(?P<rest>/.*)?$")


class ApiError(Exception):
    """An error answer, shaped like GitHub's JSON error bodies."""

    def __init__(self, status: int, message: str, errors: list[dict] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.errors, self.headers = status, message, errors, headers or {}


BODY_LIMIT = 65536


def _check_body(data: dict, resource: str = "Issue") -> None:
    body = data.get("body")
    if isinstance(body, str) and len(body) > BODY_LIMIT:
        raise ApiError(422, "Validation Failed", [{
            "resource": resource, "code": "custom", "field": "body",
            "message": f"body is too long (maximum is {BODY_LIMIT} characters)"}])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_id(kind: str, number: int) -> str:
    return kind + "_" + base64.b64encode(f"{kind}{number}".encode()).decode().rstrip("=")


@dataclass
class Token:
    login: str
    # None: a classic token limited only by collaborator permissions.
    # Otherwise GITHUB_TOKEN-style scopes, e.g. {"contents": "write", "pull_requests": "read"}.
    permissions: dict[str, str] | None = None
    actions: bool = False


@dataclass
class Repo:
    id: int
    owner: str
    name: str
    default_branch: str
    private: bool
    git_dir: Path
    created_at: str
    fork_of: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Issue:
    """An issue or pull request (they share numbers, comments and labels)."""

    id: int
    number: int
    repo: str
    title: str
    body: str | None
    user: str
    created_at: str
    updated_at: str
    state: str = "open"
    closed_at: str | None = None
    labels: list[str] = field(default_factory=list)
    # pull request fields
    is_pull: bool = False
    head_ref: str | None = None
    head_repo: str | None = None
    base_ref: str | None = None
    head_sha: str | None = None
    base_sha: str | None = None
    draft: bool = False
    maintainer_can_modify: bool = False
    assignees: list[str] = field(default_factory=list)
    requested_reviewers: list[str] = field(default_factory=list)
    requested_teams: list[str] = field(default_factory=list)
    pr_id: int | None = None


@dataclass
class Comment:
    id: int
    repo: str
    issue_number: int
    body: str
    user: str
    created_at: str
    updated_at: str
    reactions: list[dict] = field(default_factory=list)


class _OpenAPIRequest:
    """openapi-core request adapter for a request made to the fake's /api/v3."""

    def __init__(self, request: Request, path: str):
        self.host_url = GITHUB_API
        self.path = path
        self.method = request.method.lower()
        self.body = request.get_data() or None
        self.content_type = request.content_type or "application/octet-stream"
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(request.args), header=Headers(request.headers), cookie={})


class _OpenAPIResponse:
    def __init__(self, status: int, data: bytes, headers: Headers):
        self.status_code, self.data, self.headers = status, data, headers
        self.content_type = headers.get("Content-Type", "application/json").split(";")[0]


class SpecValidator:
    """Validates requests and responses against the committed OpenAPI subset."""

    def __init__(self, spec_path: Path = SPEC_PATH):
        self.spec = json.loads(spec_path.read_text())
        self.openapi = OpenAPI.from_dict(self.spec, config=Config(spec_validator_cls=None))
        self._templates = [(t, self._template_regex(t)) for t in self.spec["paths"]]
        self._error_validator = OAS30Validator(self.spec["components"]["schemas"]["basic-error"])

    @staticmethod
    def _template_regex(template: str) -> re.Pattern:
        out, pos = "", 0
        for m in re.finditer(r"\{(\w+)\}", template):
            out += re.escape(template[pos:m.start()])
            pattern = ".+" if m.group(1) in SLASHY_PARAMS else "[^/]+"
            out += f"(?P<{m.group(1)}>{pattern})"
            pos = m.end()
        return re.compile("^" + out + re.escape(template[pos:]) + "$")

    def encode_path(self, path: str) -> str:
        """Percent-encode ``{ref}``/``{path}`` values containing ``/`` so the matcher sees one segment."""
        for template, regex in self._templates:
            m = regex.match(path)
            if m and any(name in SLASHY_PARAMS for name in m.groupdict()):
                values = {k: (urllib.parse.quote(v, safe="") if k in SLASHY_PARAMS else v)
                          for k, v in m.groupdict().items()}
                return template.format(**values)
        return path

    def operation(self, path: str, method: str) -> dict | None:
        for template, regex in self._templates:
            if regex.match(path) and method in self.spec["paths"][template]:
                return self.spec["paths"][template][method]
        return None

    def request_errors(self, request: _OpenAPIRequest) -> list[str]:
        return [_describe(e) for e in self.openapi.iter_request_errors(request)]

    def response_errors(self, request: _OpenAPIRequest, response: _OpenAPIResponse) -> list[str]:
        errors = list(self.openapi.iter_response_errors(request, response))
        if errors and all(isinstance(e, ResponseNotFound) for e in errors) and response.status_code >= 400:
            # GitHub answers 401/403/404 on operations that do not document them
            # (bad token, missing token permission); the body is still a basic-error.
            return self._undocumented_error_problems(response)
        return [_describe(e) for e in errors]

    def _undocumented_error_problems(self, response: _OpenAPIResponse) -> list[str]:
        try:
            body = json.loads(response.data)
        except ValueError:
            return [f"undocumented status {response.status_code} with a non-JSON body"]
        problems = [e.message for e in self._error_validator.iter_errors(body)]
        if not isinstance(body, dict) or not {"message", "documentation_url"} <= body.keys():
            problems.append(f"undocumented status {response.status_code} without message/documentation_url")
        return problems


def _describe(exc: BaseException) -> str:
    parts = [f"{type(exc).__name__}: {_clip(exc)}"]
    cause = exc.__cause__
    while cause is not None:
        parts.append(f"{type(cause).__name__}: {_clip(cause)}")
        for err in getattr(cause, "schema_errors", ()) or ():
            where = "/".join(str(p) for p in err.absolute_path)
            parts.append(f"  at {where or '<root>'}: {err.message}")
        cause = cause.__cause__
    return "\n".join(parts)


def _clip(value: object, limit: int = 300) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


class FakeGitHub:
    """In-memory GitHub with a validated REST API and git over HTTP.

    ``actions_can_create_prs`` mirrors the repository setting "Allow GitHub Actions
    to create and approve pull requests" (off on real GitHub by default, on here so
    tests opt in to the failure).
    """

    def __init__(self, root: Path, *, actions_can_create_prs: bool = True):
        self.root = Path(root)
        self.git_root = self.root / "git"
        self.git_root.mkdir(parents=True, exist_ok=True)
        self.actions_can_create_prs = actions_can_create_prs
        self.validation_errors: list[str] = []
        self.requests: list[tuple[str, str, int]] = []
        self.tokens: dict[str, Token] = {}
        self.repos: dict[str, Repo] = {}
        self.permissions: dict[tuple[str, str], str] = {}
        self.issues: dict[tuple[str, int], Issue] = {}
        self.comments: dict[int, Comment] = {}
        self.label_catalog: dict[tuple[str, str], int] = {}
        self._users: dict[str, int] = {ACTIONS_LOGIN: 41898282}
        self._ids = itertools.count(1000)
        self._numbers: dict[str, itertools.count] = {}
        self._lock = threading.RLock()
        # operationId -> callable run before the operation is served (e.g. to play a
        # concurrent workflow run that creates the same pull request first)
        self.before_operation: dict[str, Any] = {}
        self._validator = SpecValidator()
        self._server = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------
    def start(self) -> FakeGitHub:
        self._server = make_server("127.0.0.1", 0, self.wsgi_app, threaded=True,
                                   request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def api_url(self) -> str:
        return self.base_url + _API_PREFIX

    def git_url(self, owner: str, repo: str) -> str:
        return f"{self.base_url}/{owner}/{repo}.git"

    # ---- state set-up ----------------------------------------------------
    def add_token(self, token: str, login: str, *, permissions: dict[str, str] | None = None,
                  actions: bool = False) -> str:
        """Register ``token`` for ``login``; ``permissions`` limit it like a GITHUB_TOKEN."""
        self.tokens[token] = Token(login, permissions, actions)
        self._user_id(login)
        return token

    def add_actions_token(self, token: str, owner: str, repo: str,
                          permissions: dict[str, str] | None = None) -> str:
        """A GITHUB_TOKEN for ``owner/repo`` (login github-actions[bot])."""
        perms = permissions if permissions is not None else {
            "contents": "write", "pull_requests": "write", "issues": "write", "metadata": "read"}
        self.set_permission(owner, repo, ACTIONS_LOGIN, "write")
        return self.add_token(token, ACTIONS_LOGIN, permissions=perms, actions=True)

    def set_permission(self, owner: str, repo: str, login: str, permission: str) -> None:
        if permission not in PERMISSION_LEVELS:
            raise ValueError(permission)
        self._user_id(login)
        self.permissions[(f"{owner}/{repo}", login)] = permission

    def create_repo(self, owner: str, name: str, source_dir: Path | None = None, *,
                    default_branch: str = "main", private: bool = False,
                    fork_of: str | None = None) -> Repo:
        """Create ``owner/name``; its bare git repo gets ``source_dir``'s HEAD as ``default_branch``."""
        git_dir = self.git_root / owner / f"{name}.git"
        git_dir.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "--quiet", "--bare", "-b", default_branch, str(git_dir))
        _git("-C", str(git_dir), "config", "http.receivepack", "true")
        if source_dir is not None:
            _git("-C", str(source_dir), "push", "--quiet", str(git_dir),
                 f"HEAD:refs/heads/{default_branch}")
        repo = Repo(next(self._ids), owner, name, default_branch, private, git_dir, _now(), fork_of)
        with self._lock:
            self.repos[repo.full_name] = repo
            self.permissions.setdefault((repo.full_name, owner), "admin")
            self._user_id(owner)
        return repo

    def add_issue(self, owner: str, repo: str, title: str, body: str | None = None,
                  user: str | None = None) -> Issue:
        full = f"{owner}/{repo}"
        issue = Issue(next(self._ids), self._next_number(full), full, title, body,
                      user or owner, _now(), _now())
        self.issues[(full, issue.number)] = issue
        return issue

    def add_pull(self, owner: str, repo: str, *, head: str, base: str, title: str,
                 body: str | None = None, user: str | None = None,
                 head_repo: str | None = None) -> Issue:
        """Seed a pull request directly (e.g. from a fork: ``head_repo="someone/fork"``)."""
        full = f"{owner}/{repo}"
        head_repo = head_repo or full
        pr = Issue(next(self._ids), self._next_number(full), full, title, body,
                   user or head_repo.split("/")[0], _now(), _now(), is_pull=True,
                   head_ref=head, head_repo=head_repo, base_ref=base, pr_id=next(self._ids),
                   head_sha=self.branch_sha(head_repo, head), base_sha=self.branch_sha(full, base))
        self.issues[(full, pr.number)] = pr
        return pr

    def add_comment(self, owner: str, repo: str, number: int, body: str, user: str) -> Comment:
        comment = Comment(next(self._ids), f"{owner}/{repo}", number, body, user, _now(), _now())
        self.comments[comment.id] = comment
        return comment

    def pulls(self, owner: str, repo: str) -> list[Issue]:
        return [i for (r, _), i in sorted(self.issues.items()) if r == f"{owner}/{repo}" and i.is_pull]

    # ---- git helpers -----------------------------------------------------
    def branch_sha(self, full_name: str, branch: str) -> str | None:
        repo = self.repos.get(full_name)
        if repo is None:
            return None
        proc = subprocess.run(
            ["git", "--git-dir", str(repo.git_dir), "rev-parse", "--verify", "--quiet",
             f"refs/heads/{branch}^{{commit}}"], capture_output=True, text=True)
        return proc.stdout.strip() or None

    def read_file(self, owner: str, repo: str, ref: str, path: str) -> str:
        """Content of ``path`` at ``ref`` in the remote's bare repository."""
        return _git("--git-dir", str(self.repos[f"{owner}/{repo}"].git_dir), "show", f"{ref}:{path}")

    def _commits_ahead(self, base_repo: Repo, base_sha: str, head_repo: Repo, head_sha: str) -> int:
        if head_repo is not base_repo:  # make the fork's objects visible to the count
            _git("--git-dir", str(base_repo.git_dir), "fetch", "--quiet", str(head_repo.git_dir),
                 head_sha)
        out = _git("--git-dir", str(base_repo.git_dir), "rev-list", "--count", f"{base_sha}..{head_sha}")
        return int(out.strip())

    # ---- WSGI ------------------------------------------------------------
    def wsgi_app(self, environ, start_response):
        request = Request(environ)
        if request.path.startswith(_API_PREFIX + "/") or request.path == _API_PREFIX:
            response = self._api(request)
        elif _GIT_PATH.match(request.path):
            response = self._git_http(request)
        else:
            response = Response("Not Found", status=404)
        self.requests.append((request.method, request.full_path.rstrip("?"), response.status_code))
        return response(environ, start_response)

    def _api(self, request: Request) -> Response:
        path = self._validator.encode_path(request.path[len(_API_PREFIX):] or "/")
        oa_request = _OpenAPIRequest(request, path)
        op = self._validator.operation(path, oa_request.method)
        where = f"{request.method} {request.full_path.rstrip('?')}"
        doc_url = (op or {}).get("externalDocs", {}).get("url", DOCS)
        if op is None:
            self._record(f"{where}: no such operation in openapi-subset.json")
            status, body, headers = 404, {"message": "Not Found", "documentation_url": DOCS,
                                          "status": "404"}, {}
        else:
            problems = self._validator.request_errors(oa_request)
            if problems:
                self._record(f"{where}: request does not match the spec:\n" + "\n".join(problems))
                status, body, headers = 422, {
                    "message": "Invalid request.\n\n" + problems[0].splitlines()[-1].strip(),
                    "documentation_url": doc_url, "status": "422"}, {}
            else:
                status, body, headers = self._dispatch(request, op, doc_url)
        response = self._json_response(status, body, headers)
        problems = self._validator.response_errors(
            oa_request, _OpenAPIResponse(status, response.get_data(), response.headers))
        if op is not None and problems:
            self._record(f"{where}: response {status} does not match the spec:\n" + "\n".join(problems))
        return response

    def _record(self, message: str) -> None:
        with self._lock:
            self.validation_errors.append(message)

    def _json_response(self, status: int, body: Any, headers: dict[str, str]) -> Response:
        text = json.dumps(body, indent=2)
        text = text.replace(GITHUB_API, self.api_url).replace(GITHUB_WEB, self.base_url)
        response = Response(text, status=status, content_type="application/json; charset=utf-8")
        response.headers["X-GitHub-Media-Type"] = "github.v3; format=json"
        response.headers["X-GitHub-Request-Id"] = f"FAKE:{next(self._ids)}"
        for key, value in headers.items():
            response.headers[key] = value.replace(GITHUB_API, self.api_url)
        return response

    def _dispatch(self, request: Request, op: dict, doc_url: str) -> tuple[int, Any, dict]:
        try:
            with self._lock:
                token = self._authenticate(request)
                hook = self.before_operation.pop(op["operationId"], None)
                if hook is not None:
                    hook()
                handler = getattr(self, "_op_" + op["operationId"].replace("/", "_").replace("-", "_"))
                params = self._path_params(request.path[len(_API_PREFIX):])
                result = handler(request, token, **params)
            status, body = result[0], result[1]
            return status, body, (result[2] if len(result) > 2 else {})
        except ApiError as err:
            body: dict[str, Any] = {"message": err.message, "documentation_url": doc_url}
            if err.errors is not None:
                body["errors"] = err.errors
            body["status"] = str(err.status)
            return err.status, body, err.headers

    def _path_params(self, path: str) -> dict[str, str]:
        for _template, regex in self._validator._templates:
            m = regex.match(path)
            if m:
                return {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
        return {}

    # ---- auth and permission checks ----------------------------------------
    def _authenticate(self, request: Request) -> Token | None:
        auth = request.headers.get("Authorization", "")
        if not auth:
            return None
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            value = base64.b64decode(value).decode().partition(":")[2]
        token = self.tokens.get(value.strip())
        if token is None:
            raise ApiError(401, "Bad credentials", headers={"WWW-Authenticate": 'Bearer realm="GitHub"'})
        return token

    def _repo(self, token: Token | None, owner: str, repo: str, scope: str = "metadata",
              level: str = "read") -> Repo:
        found = self.repos.get(f"{owner}/{repo}")
        readable = found is not None and (
            not found.private or (token is not None and self._level(found, token.login) != "none"))
        if not readable:
            raise ApiError(404, "Not Found")
        if level == "read":
            return found
        if token is None:
            raise ApiError(401, "Requires authentication")
        if token.permissions is not None:
            granted = token.permissions.get(scope, "none")
            if PERMISSION_LEVELS.index(granted) < PERMISSION_LEVELS.index(level):
                raise ApiError(403, "Resource not accessible by integration")
        needed = "write" if level == "write" else "read"
        if PERMISSION_LEVELS.index(self._level(found, token.login)) < PERMISSION_LEVELS.index(needed):
            raise ApiError(404 if found.private else 403, "Must have admin rights to Repository."
                           if level == "admin" else "Resource not accessible by personal access token")
        return found

    def _level(self, repo: Repo, login: str) -> str:
        return self.permissions.get((repo.full_name, login), "none" if repo.private else "read")

    def _issue(self, repo: Repo, number: int, *, pull: bool = False) -> Issue:
        issue = self.issues.get((repo.full_name, int(number)))
        if issue is None or (pull and not issue.is_pull):
            raise ApiError(404, "Not Found")
        return issue

    def _comment(self, repo: Repo, comment_id: str) -> Comment:
        comment = self.comments.get(int(comment_id))
        if comment is None or comment.repo != repo.full_name:
            raise ApiError(404, "Not Found")
        return comment

    # ---- operations ------------------------------------------------------
    def _op_repos_get(self, request, token, owner, repo):
        return 200, self._repo_json(self._repo(token, owner, repo), full=True, token=token)

    def _op_repos_get_collaborator_permission_level(self, request, token, owner, repo, username):
        found = self._repo(token, owner, repo)
        if token is not None and token.permissions is None and self._level(found, token.login) == "none":
            raise ApiError(404, "Not Found")
        if username not in self._users:
            raise ApiError(404, "Not Found")
        level = self.permissions.get((found.full_name, username), "none" if found.private else "read")
        legacy = {"maintain": "write", "triage": "read"}.get(level, level)
        user = self._user_json(username)
        user.update(permissions=self._user_perm_flags(level), role_name=level)
        return 200, {"permission": legacy, "role_name": level, "user": user}

    def _op_pulls_list(self, request, token, owner, repo):
        found = self._repo(token, owner, repo)
        state = request.args.get("state", "open")
        head, base = request.args.get("head"), request.args.get("base")
        pulls = [p for p in self.pulls(owner, repo) if state == "all" or p.state == state]
        if head and ":" in head:  # GitHub ignores a head filter without "owner:"
            head_owner, _, head_ref = head.partition(":")
            pulls = [p for p in pulls if p.head_repo.split("/")[0] == head_owner and p.head_ref == head_ref]
        if base:
            pulls = [p for p in pulls if p.base_ref == base]
        pulls.sort(key=lambda p: p.number, reverse=request.args.get("direction", "desc") == "desc")
        page, headers = self._paginate(request, pulls)
        return 200, [self._pull_json(found, p, simple=True) for p in page], headers

    def _op_pulls_create(self, request, token, owner, repo):
        found = self._repo(token, owner, repo, "pull_requests", "write")
        data = request.get_json()
        _check_body(data)
        if token.actions and not self.actions_can_create_prs:
            raise ApiError(403, ACTIONS_PR_MESSAGE)
        head_owner, _, head_ref = data["head"].rpartition(":")
        head_repo = self.repos.get(data.get("head_repo") or f"{head_owner or owner}/{repo}")
        if head_owner and head_repo is None:
            head_repo = next((r for r in self.repos.values()
                              if r.owner == head_owner and r.fork_of == found.full_name), None)
        base_sha = self.branch_sha(found.full_name, data["base"])
        head_sha = head_repo and self.branch_sha(head_repo.full_name, head_ref)
        if base_sha is None:
            raise ApiError(422, "Validation Failed",
                           [{"resource": "PullRequest", "field": "base", "code": "invalid"}])
        if head_sha is None:
            raise ApiError(422, "Validation Failed",
                           [{"resource": "PullRequest", "field": "head", "code": "invalid"}])
        label = f"{head_repo.owner}:{head_ref}"
        if any(p.state == "open" and p.head_repo == head_repo.full_name and p.head_ref == head_ref
               and p.base_ref == data["base"] for p in self.pulls(owner, repo)):
            raise ApiError(422, "Validation Failed", [{
                "resource": "PullRequest", "code": "custom",
                "message": f"A pull request already exists for {label}."}])
        if self._commits_ahead(found, base_sha, head_repo, head_sha) == 0:
            raise ApiError(422, "Validation Failed", [{
                "resource": "PullRequest", "code": "custom",
                "message": f"No commits between {data['base']} and {head_ref}"}])
        if not data.get("title"):
            raise ApiError(422, "Validation Failed",
                           [{"resource": "Issue", "field": "title", "code": "missing_field"}])
        pr = Issue(next(self._ids), self._next_number(found.full_name), found.full_name,
                   data["title"], data.get("body"), token.login, _now(), _now(), is_pull=True,
                   head_ref=head_ref, head_repo=head_repo.full_name, base_ref=data["base"],
                   head_sha=head_sha, base_sha=base_sha, draft=bool(data.get("draft")),
                   maintainer_can_modify=bool(data.get("maintainer_can_modify")),
                   pr_id=next(self._ids))
        self.issues[(found.full_name, pr.number)] = pr
        return 201, self._pull_json(found, pr), {
            "Location": f"{GITHUB_API}/repos/{found.full_name}/pulls/{pr.number}"}

    def _op_pulls_get(self, request, token, owner, repo, pull_number):
        found = self._repo(token, owner, repo)
        return 200, self._pull_json(found, self._issue(found, pull_number, pull=True))

    def _op_pulls_update(self, request, token, owner, repo, pull_number):
        found = self._repo(token, owner, repo, "pull_requests", "write")
        pr = self._issue(found, pull_number, pull=True)
        data = request.get_json()
        _check_body(data)
        for key in ("title", "body"):
            if key in data:
                setattr(pr, key, data[key])
        if "base" in data:
            if self.branch_sha(found.full_name, data["base"]) is None:
                raise ApiError(422, "Validation Failed",
                               [{"resource": "PullRequest", "field": "base", "code": "invalid"}])
            pr.base_ref = data["base"]
        if data.get("state") in ("open", "closed") and data["state"] != pr.state:
            pr.state = data["state"]
            pr.closed_at = _now() if pr.state == "closed" else None
        pr.updated_at = _now()
        return 200, self._pull_json(found, pr)

    def _op_issues_get(self, request, token, owner, repo, issue_number):
        found = self._repo(token, owner, repo)
        return 200, self._issue_json(found, self._issue(found, issue_number))

    def _op_issues_add_labels(self, request, token, owner, repo, issue_number):
        found = self._repo(token, owner, repo, "issues", "write")
        issue = self._issue(found, issue_number)
        for item in (request.get_json() or {}).get("labels", []):
            name = item if isinstance(item, str) else item["name"]
            self.label_catalog.setdefault((found.full_name, name), next(self._ids))
            if name not in issue.labels:
                issue.labels.append(name)
        issue.updated_at = _now()
        return 200, [self._label_json(found, n) for n in issue.labels]

    def _op_issues_add_assignees(self, request, token, owner, repo, issue_number):
        found = self._repo(token, owner, repo, "issues", "write")
        issue = self._issue(found, issue_number)
        for item in (request.get_json() or {}).get("assignees", []):
            login = item if isinstance(item, str) else item["login"]
            # GitHub silently ignores users who cannot be assigned (no push access)
            if self._level(found, login) in ("write", "maintain", "admin") and login not in issue.assignees:
                issue.assignees.append(login)
        issue.updated_at = _now()
        return 201, self._issue_json(found, issue)

    def _op_pulls_request_reviewers(self, request, token, owner, repo, pull_number):
        found = self._repo(token, owner, repo, "pull_requests", "write")
        pr = self._issue(found, pull_number, pull=True)
        data = request.get_json() or {}
        reviewers, teams = data.get("reviewers", []), data.get("team_reviewers", [])
        if pr.user in reviewers:
            raise ApiError(422, "Review cannot be requested from pull request author.")
        strangers = [r for r in reviewers if r != found.owner and (found.full_name, r) not in self.permissions]
        if strangers:
            raise ApiError(422, "Reviews may only be requested from collaborators. One or more of the users or "
                           "teams you specified is not a collaborator of the " + f"{found.full_name} repository.")
        pr.requested_reviewers += [r for r in reviewers if r not in pr.requested_reviewers]
        pr.requested_teams += [t for t in teams if t not in pr.requested_teams]
        pr.updated_at = _now()
        return 201, self._pull_json(found, pr, simple=True)

    def _team_json(self, repo: Repo, slug: str, *, full: bool) -> dict:
        api = f"{GITHUB_API}/organizations/1/team/{self._user_id(slug)}"
        data = {"id": self._user_id(slug), "node_id": _node_id("T_kwDO", self._user_id(slug)), "url": api,
                "members_url": f"{api}/members{{/member}}", "name": slug, "slug": slug, "description": None,
                "permission": "push", "html_url": f"{GITHUB_WEB}/orgs/{repo.owner}/teams/{slug}",
                "repositories_url": f"{api}/repos", "type": "organization"}
        return {**data, "parent": None} if full else data

    def _op_issues_list_comments(self, request, token, owner, repo, issue_number):
        found = self._repo(token, owner, repo)
        self._issue(found, issue_number)
        comments = [c for c in self.comments.values()
                    if c.repo == found.full_name and c.issue_number == int(issue_number)]
        page, headers = self._paginate(request, comments)
        return 200, [self._comment_json(found, c) for c in page], headers

    def _op_issues_create_comment(self, request, token, owner, repo, issue_number):
        found = self._repo(token, owner, repo, "issues", "write")
        issue = self._issue(found, issue_number)
        _check_body(request.get_json(), "IssueComment")
        comment = self.add_comment(owner, repo, issue.number, request.get_json()["body"], token.login)
        return 201, self._comment_json(found, comment), {
            "Location": f"{GITHUB_API}/repos/{found.full_name}/issues/comments/{comment.id}"}

    def _op_issues_get_comment(self, request, token, owner, repo, comment_id):
        found = self._repo(token, owner, repo)
        return 200, self._comment_json(found, self._comment(found, comment_id))

    def _op_issues_update_comment(self, request, token, owner, repo, comment_id):
        found = self._repo(token, owner, repo, "issues", "write")
        comment = self._comment(found, comment_id)
        _check_body(request.get_json(), "IssueComment")
        comment.body, comment.updated_at = request.get_json()["body"], _now()
        return 200, self._comment_json(found, comment)

    def _op_reactions_create_for_issue_comment(self, request, token, owner, repo, comment_id):
        found = self._repo(token, owner, repo, "issues", "write")
        comment = self._comment(found, comment_id)
        content = request.get_json()["content"]
        for reaction in comment.reactions:
            if reaction["user"] == token.login and reaction["content"] == content:
                return 200, self._reaction_json(reaction)
        reaction = {"id": next(self._ids), "user": token.login, "content": content, "created_at": _now()}
        comment.reactions.append(reaction)
        return 201, self._reaction_json(reaction)

    # ---- JSON builders (shapes follow api.github.com responses) -------------
    def _next_number(self, full_name: str) -> int:
        return next(self._numbers.setdefault(full_name, itertools.count(1)))

    def _user_id(self, login: str) -> int:
        return self._users.setdefault(login, 5000 + len(self._users))

    def _paginate(self, request: Request, items: list) -> tuple[list, dict]:
        per_page = min(int(request.args.get("per_page", 30)), 100)
        page = max(int(request.args.get("page", 1)), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        links = []
        path = request.path[len(_API_PREFIX):]
        args = {k: v for k, v in request.args.items() if k != "page"}
        for rel, number in (("prev", page - 1), ("next", page + 1), ("last", last), ("first", 1)):
            if (rel in ("prev", "first") and page > 1) or (rel in ("next", "last") and page < last):
                query = urllib.parse.urlencode({**args, "page": number})
                links.append(f'<{GITHUB_API}{path}?{query}>; rel="{rel}"')
        return items[(page - 1) * per_page: page * per_page], ({"Link": ", ".join(links)} if links else {})

    def _user_json(self, login: str) -> dict:
        uid = self._user_id(login)
        api, quoted = f"{GITHUB_API}/users/{urllib.parse.quote(login)}", urllib.parse.quote(login)
        return {
            "login": login, "id": uid, "node_id": _node_id("MDQ6VXNlcg" if "[bot]" not in login
                                                            else "MDM6Qm90", uid),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4", "gravatar_id": "",
            "url": api, "html_url": f"{GITHUB_WEB}/{quoted}" if "[bot]" not in login
            else f"{GITHUB_WEB}/apps/{quoted.split('%5B')[0]}",
            "followers_url": f"{api}/followers", "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}", "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions", "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos", "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": "Bot" if login.endswith("[bot]") else "User", "user_view_type": "public",
            "site_admin": False,
        }

    @staticmethod
    def _user_perm_flags(level: str) -> dict:
        rank = PERMISSION_LEVELS.index(level)
        return {"admin": rank >= 5, "maintain": rank >= 4, "push": rank >= 3,
                "triage": rank >= 2, "pull": rank >= 1}

    def _repo_json(self, repo: Repo, *, full: bool = False, token: Token | None = None) -> dict:
        api, web = f"{GITHUB_API}/repos/{repo.full_name}", f"{GITHUB_WEB}/{repo.full_name}"
        pushed = _git("--git-dir", str(repo.git_dir), "log", "-1", "--all", "--format=%cI").strip()
        pushed = (datetime.fromisoformat(pushed).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                  if pushed else repo.created_at)
        open_issues = sum(1 for (r, _), i in self.issues.items() if r == repo.full_name and i.state == "open")
        data = {
            "id": repo.id, "node_id": _node_id("R_kgDO", repo.id), "name": repo.name,
            "full_name": repo.full_name, "private": repo.private, "owner": self._user_json(repo.owner),
            "html_url": web, "description": None, "fork": repo.fork_of is not None, "url": api,
            "forks_url": f"{api}/forks", "keys_url": f"{api}/keys{{/key_id}}",
            "collaborators_url": f"{api}/collaborators{{/collaborator}}", "teams_url": f"{api}/teams",
            "hooks_url": f"{api}/hooks", "issue_events_url": f"{api}/issues/events{{/number}}",
            "events_url": f"{api}/events", "assignees_url": f"{api}/assignees{{/user}}",
            "branches_url": f"{api}/branches{{/branch}}", "tags_url": f"{api}/tags",
            "blobs_url": f"{api}/git/blobs{{/sha}}", "git_tags_url": f"{api}/git/tags{{/sha}}",
            "git_refs_url": f"{api}/git/refs{{/sha}}", "trees_url": f"{api}/git/trees{{/sha}}",
            "statuses_url": f"{api}/statuses/{{sha}}", "languages_url": f"{api}/languages",
            "stargazers_url": f"{api}/stargazers", "contributors_url": f"{api}/contributors",
            "subscribers_url": f"{api}/subscribers", "subscription_url": f"{api}/subscription",
            "commits_url": f"{api}/commits{{/sha}}", "git_commits_url": f"{api}/git/commits{{/sha}}",
            "comments_url": f"{api}/comments{{/number}}",
            "issue_comment_url": f"{api}/issues/comments{{/number}}",
            "contents_url": f"{api}/contents/{{+path}}", "compare_url": f"{api}/compare/{{base}}...{{head}}",
            "merges_url": f"{api}/merges", "archive_url": f"{api}/{{archive_format}}{{/ref}}",
            "downloads_url": f"{api}/downloads", "issues_url": f"{api}/issues{{/number}}",
            "pulls_url": f"{api}/pulls{{/number}}", "milestones_url": f"{api}/milestones{{/number}}",
            "notifications_url": f"{api}/notifications{{?since,all,participating}}",
            "labels_url": f"{api}/labels{{/name}}", "releases_url": f"{api}/releases{{/id}}",
            "deployments_url": f"{api}/deployments",
            "created_at": repo.created_at, "updated_at": pushed, "pushed_at": pushed,
            "git_url": f"git://github.com/{repo.full_name}.git",
            "ssh_url": f"git@github.com:{repo.full_name}.git", "clone_url": f"{web}.git",
            "svn_url": web, "homepage": None, "size": 1, "stargazers_count": 0, "watchers_count": 0,
            "language": "Python", "has_issues": True, "has_projects": True, "has_downloads": True,
            "has_wiki": True, "has_pages": False, "has_discussions": False, "forks_count": 0,
            "mirror_url": None, "archived": False, "disabled": False, "open_issues_count": open_issues,
            "license": None, "allow_forking": True, "is_template": False,
            "web_commit_signoff_required": False, "topics": [],
            "visibility": "private" if repo.private else "public", "forks": 0,
            "open_issues": open_issues, "watchers": 0, "default_branch": repo.default_branch,
        }
        if full:
            if token is not None and token.permissions is None:
                data["permissions"] = self._user_perm_flags(self._level(repo, token.login))
            data.update(network_count=0, subscribers_count=0)
            if repo.fork_of and repo.fork_of in self.repos:
                parent = self._repo_json(self.repos[repo.fork_of])
                data.update(parent=parent, source=parent)
        return data

    def _label_json(self, repo: Repo, name: str) -> dict:
        lid = self.label_catalog.setdefault((repo.full_name, name), next(self._ids))
        return {"id": lid, "node_id": _node_id("LA_kwDO", lid),
                "url": f"{GITHUB_API}/repos/{repo.full_name}/labels/{urllib.parse.quote(name)}",
                # GitHub sends null for a label without description, but pull-request-simple's
                # schema says non-nullable string: "" is valid everywhere.
                "name": name, "color": "ededed", "default": False, "description": ""}

    def _reactions_rollup(self, url: str, reactions: list[dict]) -> dict:
        rollup = {"url": url, "total_count": len(reactions)}
        rollup.update({c: sum(1 for r in reactions if r["content"] == c) for c in REACTIONS})
        return rollup

    def _reaction_json(self, reaction: dict) -> dict:
        return {"id": reaction["id"], "node_id": _node_id("REA_lATO", reaction["id"]),
                "user": self._user_json(reaction["user"]), "content": reaction["content"],
                "created_at": reaction["created_at"]}

    def _association(self, repo: Repo, login: str) -> str:
        if login == repo.owner:
            return "OWNER"
        return "COLLABORATOR" if (repo.full_name, login) in self.permissions else "NONE"

    def _issue_json(self, repo: Repo, issue: Issue) -> dict:
        api = f"{GITHUB_API}/repos/{repo.full_name}/issues/{issue.number}"
        web = f"{GITHUB_WEB}/{repo.full_name}/{'pull' if issue.is_pull else 'issues'}/{issue.number}"
        comments = [c for c in self.comments.values()
                    if c.repo == repo.full_name and c.issue_number == issue.number]
        data = {
            "url": api, "repository_url": f"{GITHUB_API}/repos/{repo.full_name}",
            "labels_url": f"{api}/labels{{/name}}", "comments_url": f"{api}/comments",
            "events_url": f"{api}/events", "html_url": web, "id": issue.id,
            "node_id": _node_id("I_kwDO", issue.id), "number": issue.number, "title": issue.title,
            "user": self._user_json(issue.user), "labels": [self._label_json(repo, n) for n in issue.labels],
            "state": issue.state, "locked": False, "milestone": None,
            "assignee": self._user_json(issue.assignees[0]) if issue.assignees else None,
            "assignees": [self._user_json(a) for a in issue.assignees],
            "comments": len(comments), "created_at": issue.created_at, "updated_at": issue.updated_at,
            "closed_at": issue.closed_at, "author_association": self._association(repo, issue.user),
            "active_lock_reason": None, "body": issue.body, "closed_by": None,
            "reactions": self._reactions_rollup(f"{api}/reactions", []),
            "timeline_url": f"{api}/timeline", "performed_via_github_app": None,
        }
        if issue.state == "closed":
            # GitHub sends "state_reason": null for open issues, but the spec's nullable enum
            # lacks null (openapi-schema-validator rejects it): leave the optional key out.
            data["state_reason"] = "completed"
        if issue.is_pull:
            pr_api = f"{GITHUB_API}/repos/{repo.full_name}/pulls/{issue.number}"
            data["draft"] = issue.draft
            data["pull_request"] = {"url": pr_api, "html_url": web, "diff_url": f"{web}.diff",
                                    "patch_url": f"{web}.patch", "merged_at": None}
        return data

    def _comment_json(self, repo: Repo, comment: Comment) -> dict:
        api = f"{GITHUB_API}/repos/{repo.full_name}/issues/comments/{comment.id}"
        issue = self.issues[(repo.full_name, comment.issue_number)]
        kind = "pull" if issue.is_pull else "issues"
        return {
            "url": api, "html_url": f"{GITHUB_WEB}/{repo.full_name}/{kind}/{issue.number}"
                                    f"#issuecomment-{comment.id}",
            "issue_url": f"{GITHUB_API}/repos/{repo.full_name}/issues/{issue.number}",
            "id": comment.id, "node_id": _node_id("IC_kwDO", comment.id),
            "user": self._user_json(comment.user), "created_at": comment.created_at,
            "updated_at": comment.updated_at, "body": comment.body,
            "author_association": self._association(repo, comment.user),
            "reactions": self._reactions_rollup(f"{api}/reactions", comment.reactions),
            "performed_via_github_app": None,
        }

    def _branch_json(self, repo: Repo | None, ref: str, sha: str | None, fallback_owner: str) -> dict:
        owner = repo.owner if repo else fallback_owner
        return {"label": f"{owner}:{ref}", "ref": ref, "sha": sha or "0" * 40,
                "user": self._user_json(owner),
                "repo": self._repo_json(repo) if repo else None}

    def _pull_json(self, repo: Repo, pr: Issue, *, simple: bool = False) -> dict:
        api = f"{GITHUB_API}/repos/{repo.full_name}/pulls/{pr.number}"
        issue_api = f"{GITHUB_API}/repos/{repo.full_name}/issues/{pr.number}"
        web = f"{GITHUB_WEB}/{repo.full_name}/pull/{pr.number}"
        head_repo = self.repos.get(pr.head_repo)
        pr.head_sha = self.branch_sha(pr.head_repo, pr.head_ref) or pr.head_sha
        if pr.state == "open":
            pr.base_sha = self.branch_sha(repo.full_name, pr.base_ref) or pr.base_sha
        data = {
            "url": api, "id": pr.pr_id, "node_id": _node_id("PR_kwDO", pr.pr_id), "html_url": web,
            "diff_url": f"{web}.diff", "patch_url": f"{web}.patch", "issue_url": issue_api,
            "number": pr.number, "state": pr.state, "locked": False, "title": pr.title,
            "user": self._user_json(pr.user), "body": pr.body,
            "created_at": pr.created_at, "updated_at": pr.updated_at, "closed_at": pr.closed_at,
            "merged_at": None, "merge_commit_sha": None,
            "assignee": self._user_json(pr.assignees[0]) if pr.assignees else None,
            "assignees": [self._user_json(a) for a in pr.assignees],
            "requested_reviewers": [self._user_json(r) for r in pr.requested_reviewers],
            "requested_teams": [self._team_json(repo, t, full=simple) for t in pr.requested_teams],
            "labels": [self._label_json(repo, n) for n in pr.labels], "milestone": None,
            "draft": pr.draft, "commits_url": f"{api}/commits",
            "review_comments_url": f"{api}/comments",
            "review_comment_url": f"{GITHUB_API}/repos/{repo.full_name}/pulls/comments{{/number}}",
            "comments_url": f"{issue_api}/comments",
            "statuses_url": f"{GITHUB_API}/repos/{repo.full_name}/statuses/{pr.head_sha}",
            "head": self._branch_json(head_repo, pr.head_ref, pr.head_sha, pr.head_repo.split("/")[0]),
            "base": self._branch_json(repo, pr.base_ref, pr.base_sha, repo.owner),
            "_links": {k: {"href": v} for k, v in {
                "self": api, "html": web, "issue": issue_api, "comments": f"{issue_api}/comments",
                "review_comments": f"{api}/comments",
                "review_comment": f"{GITHUB_API}/repos/{repo.full_name}/pulls/comments{{/number}}",
                "commits": f"{api}/commits",
                "statuses": f"{GITHUB_API}/repos/{repo.full_name}/statuses/{pr.head_sha}"}.items()},
            "author_association": self._association(repo, pr.user), "auto_merge": None,
            "active_lock_reason": None,
        }
        if not simple:
            comments = sum(1 for c in self.comments.values()
                           if c.repo == repo.full_name and c.issue_number == pr.number)
            data.update(merged=False, mergeable=True, rebaseable=True, mergeable_state="clean",
                        merged_by=None, comments=comments, review_comments=0,
                        maintainer_can_modify=pr.maintainer_can_modify,
                        commits=1, additions=1, deletions=0, changed_files=1)
        return data

    # ---- git smart HTTP ------------------------------------------------------
    def _git_http(self, request: Request) -> Response:
        m = _GIT_PATH.match(request.path)
        repo = self.repos.get(f"{m['owner']}/{m['repo']}")
        pushing = (request.args.get("service") == "git-receive-pack"
                   or request.path.endswith("/git-receive-pack"))
        login = self._git_login(request)
        if repo is None:
            return Response("Repository not found.\n", status=404)
        if login is None and (pushing or repo.private):
            return Response("Authentication required\n", status=401,
                            headers={"WWW-Authenticate": 'Basic realm="GitHub"'})
        if login is not None and pushing and not self._can_push(repo, login):
            return Response(f"Permission to {repo.full_name}.git denied to {login.login}.\n", status=403)
        return self._run_http_backend(request, login.login if login else None)

    def _git_login(self, request: Request) -> Token | None:
        auth = request.authorization
        if auth is None or auth.type != "basic":
            return None
        return self.tokens.get(auth.password or "")

    def _can_push(self, repo: Repo, token: Token) -> bool:
        if token.permissions is not None and token.permissions.get("contents") != "write":
            return False
        return PERMISSION_LEVELS.index(self._level(repo, token.login)) >= PERMISSION_LEVELS.index("write")

    def _run_http_backend(self, request: Request, user: str | None) -> Response:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.git_root), "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": request.path, "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.query_string.decode(),
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "REMOTE_ADDR": request.remote_addr or "127.0.0.1",
            "GIT_HTTP_MAX_REQUEST_BUFFER": "100M",
        }
        if user:
            env["REMOTE_USER"] = user
        if request.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = request.headers["Content-Encoding"]
        if request.headers.get("Git-Protocol"):
            env["HTTP_GIT_PROTOCOL"] = request.headers["Git-Protocol"]
        body = request.get_data()
        env["CONTENT_LENGTH"] = str(len(body))
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        response = Response(payload, status=200)
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                response.status = value.strip()
            elif key:
                response.headers[key.strip()] = value.strip()
        if proc.returncode != 0 and response.status_code == 200:
            response = Response(proc.stderr, status=500)
        return response


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout
