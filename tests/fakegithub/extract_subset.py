"""Regenerate ``openapi-subset.json`` from GitHub's official OpenAPI description.

The fake GitHub server validates every request and response against this subset.
Source: npm ``@octokit/openapi`` (file ``generated/api.github.com.json``).

Usage::

    npm install --prefix /tmp/octokit-openapi @octokit/openapi@23.0.2
    python tests/fakegithub/extract_subset.py \
        /tmp/octokit-openapi/node_modules/@octokit/openapi

The subset keeps, for each operation the fake implements, the operation object
and its path-level keys, plus every component reachable through ``$ref``. Media
type ``examples`` are dropped (they are documentation only, some of them do not
match their own schemas, and they are most of the size); nothing else is edited.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# operationId values served by tests/fakegithub/server.py
OPERATIONS = {
    "repos/get",
    "repos/get-collaborator-permission-level",
    "pulls/list",
    "pulls/create",
    "pulls/get",
    "pulls/update",
    "pulls/request-reviewers",
    "issues/get",
    "issues/add-labels",
    "issues/add-assignees",
    "issues/list-comments",
    "issues/create-comment",
    "issues/get-comment",
    "issues/update-comment",
    "reactions/create-for-issue-comment",
}

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
OUT = Path(__file__).with_name("openapi-subset.json")


def _strip_examples(node):
    """Drop ``examples`` of media types and parameters (objects with a ``schema``)."""
    if isinstance(node, dict):
        drop = "examples" if "schema" in node else None
        return {k: _strip_examples(v) for k, v in node.items() if k != drop}
    if isinstance(node, list):
        return [_strip_examples(v) for v in node]
    return node


def _refs(node):
    """Yield every ``$ref`` string inside ``node``."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def extract(spec: dict, operations: set[str]) -> dict:
    """Return a self-contained spec with only ``operations`` and what they reference."""
    paths: dict = {}
    found: set[str] = set()
    for path, item in spec["paths"].items():
        kept = {
            method: op
            for method, op in item.items()
            if method in HTTP_METHODS and op.get("operationId") in operations
        }
        if kept:
            shared = {k: v for k, v in item.items() if k not in HTTP_METHODS}
            paths[path] = _strip_examples({**shared, **kept})
            found.update(op["operationId"] for op in kept.values())
    missing = operations - found
    if missing:
        raise SystemExit(f"operations not in the spec: {sorted(missing)}")

    components: dict = {}
    pending = list(_refs(paths))
    while pending:
        ref = pending.pop()
        if not ref.startswith("#/components/"):
            raise SystemExit(f"unsupported $ref {ref}")
        _, _, section, name = ref.split("/", 3)
        if name in components.get(section, {}):
            continue
        if section == "examples":
            continue
        value = _strip_examples(spec["components"][section][name])
        components.setdefault(section, {})[name] = value
        pending.extend(_refs(value))

    return {
        "openapi": spec["openapi"],
        "info": {
            **spec["info"],
            "x-subset-of": "@octokit/openapi generated/api.github.com.json",
            "x-subset-operations": sorted(operations),
        },
        "servers": spec["servers"],
        "paths": dict(sorted(paths.items())),
        "components": {s: dict(sorted(v.items())) for s, v in sorted(components.items())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package_dir", type=Path, help="node_modules/@octokit/openapi")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    version = json.loads((args.package_dir / "package.json").read_text())["version"]
    spec = json.loads((args.package_dir / "generated" / "api.github.com.json").read_text())
    subset = extract(spec, OPERATIONS)
    subset["info"]["x-octokit-openapi-version"] = version
    args.out.write_text(json.dumps(subset, indent=1, sort_keys=False) + "\n")
    print(f"wrote {args.out} from @octokit/openapi {version}: "
          f"{len(subset['paths'])} paths, "
          f"{sum(len(v) for v in subset['components'].values())} components")
    return 0


if __name__ == "__main__":
    sys.exit(main())
