"""The one way gepa-bot calls a model: ``chat(model, messages, ...) -> Reply``.

Used by the reflection LLM seam (gepa_bot/search/llm.py, which adds retries, the cost cap and replay) and by
evalkit inside eval processes (the promptfoo suite lets promptfoo call its providers). Stdlib-only at import time, so an eval
process that imports evalkit starts fast.

- ``openai/<name>`` served on a loopback ``api_base`` (the embedded llama.cpp server, or any local
  OpenAI-compatible server) is called directly over HTTP: free (cost 0) and without litellm's
  multi-second import.
- Every other model goes through litellm, its cost computed from litellm's bundled price table (0 when the
  model is unpriced; gepa_bot/__init__.py sets ``LITELLM_LOCAL_MODEL_COST_MAP=True`` so it is never fetched).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

LOOPBACK = re.compile(r"https?://(127\.0\.0\.1|localhost|\[::1\])[:/]")
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Reply:
    """One completion, normalized."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    finish_reason: str | None = None


class CompletionError(RuntimeError):
    """The server refused the request (4xx) or answered with something that is not a completion."""


class TransientCompletionError(CompletionError, ConnectionError):
    """No answer, or a 5xx: worth retrying."""


def is_loopback(api_base: str | None) -> bool:
    return bool(api_base and LOOPBACK.match(api_base))


def chat(model: str, messages: list[dict[str, Any]], *, api_base: str | None = None, api_key: str | None = None,
         **params: Any) -> Reply:
    """One chat completion; ``params`` are OpenAI-style (temperature, max_tokens, seed, response_format, timeout)."""
    if model.startswith("openai/") and is_loopback(api_base) and "mock_response" not in params:  # litellm's own mock
        return http_chat(api_base or "", model.removeprefix("openai/"), messages, api_key=api_key, **params)
    return litellm_chat(model, messages, api_base=api_base, api_key=api_key, **params)


def litellm_chat(model: str, messages: list[dict[str, Any]], *, api_base: str | None = None,
                 api_key: str | None = None, **params: Any) -> Reply:
    import litellm

    litellm.suppress_debug_info = True  # its help banner would land on stdout (the eval protocol's channel)
    if api_base:
        params["api_base"] = api_base
    if api_key:
        params["api_key"] = api_key
    response = litellm.completion(model=model, messages=messages, **params)
    choice = response.choices[0]
    usage = getattr(response, "usage", None)
    try:
        cost = float(litellm.completion_cost(completion_response=response) or 0.0)
    except Exception:  # litellm raises for models missing from its cost map (e.g. a local server)
        cost = 0.0
    return Reply(text=choice.message.content or "", prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                 completion_tokens=getattr(usage, "completion_tokens", 0) or 0, cost_usd=cost,
                 finish_reason=getattr(choice, "finish_reason", None))


def http_chat(api_base: str, model: str, messages: list[dict[str, Any]], *, api_key: str | None = None,
              timeout: float = DEFAULT_TIMEOUT, **params: Any) -> Reply:
    """One ``POST {api_base}/chat/completions`` to an OpenAI-compatible server."""
    import urllib.error
    import urllib.request

    body = json.dumps({"model": model, "messages": messages, **params}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    request = urllib.request.Request(api_base.rstrip("/") + "/chat/completions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        error = TransientCompletionError if exc.code >= 500 else CompletionError
        raise error(f"HTTP {exc.code} from {api_base}: {exc.read()[:300]!r}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise TransientCompletionError(f"no answer from {api_base}: {exc}") from None
    except ValueError as exc:
        raise CompletionError(f"the answer from {api_base} is not JSON: {exc}") from None
    try:
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return Reply(text=choice["message"]["content"] or "", prompt_tokens=int(usage.get("prompt_tokens") or 0),
                     completion_tokens=int(usage.get("completion_tokens") or 0),
                     finish_reason=choice.get("finish_reason"))
    except (KeyError, IndexError, TypeError, AttributeError):
        raise CompletionError(f"unexpected reply from {api_base}: {str(data)[:300]}") from None
