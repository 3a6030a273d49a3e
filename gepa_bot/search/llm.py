"""The reflection model's seam: retries with backoff, cost cap, write-ahead replay (calls: gepa_bot.models.completion).

Every reply is written to the run log before it is used. On resume the same request (same model,
messages and parameters, n-th occurrence) is answered from the log, so a resumed run proposes the same
candidates at no cost. Tests swap the transport for a scripted callable; nothing else changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from tenacity import RetryError, retry, retry_if_exception, stop_after_attempt, wait_exponential

from gepa_bot.models.completion import Reply, chat, is_loopback
from gepa_bot.models.modelserver import check_model_servers
from gepa_bot.redact import redact
from gepa_bot.runlog import RunLog
from gepa_bot.search.budget import Budget, BudgetExhausted
from gepa_bot.search.errorpolicy import ErrorPolicy

Messages = list[dict[str, str]]


Transport = Callable[..., Reply]


class LLMError(Exception):
    """A call failed for good (after retries, or with a non-transient error)."""


def default_transport(model: str, messages: Messages, **params: Any) -> Reply:
    """The production transport: gepa_bot.models.completion.chat (direct HTTP for local servers, else litellm)."""
    return chat(model, messages, **params)


def is_transient(exc: BaseException) -> bool:
    """Rate limits, timeouts, connection problems and 5xx are worth retrying."""
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    litellm = sys.modules.get("litellm")  # never imported: the error cannot be one of litellm's
    if litellm is None:
        return False
    transient = (litellm.RateLimitError, litellm.Timeout, litellm.APIConnectionError,
                 litellm.ServiceUnavailableError, litellm.InternalServerError, litellm.BadGatewayError)
    return isinstance(exc, transient)


def worst_case_cost(model: str, prompt_chars: int, max_tokens: int) -> float:
    """Upper bound of one call's cost from litellm's price table (0 when the model is unpriced)."""
    import litellm

    try:
        prompt_cost, completion_cost = litellm.cost_per_token(model=model, prompt_tokens=prompt_chars // 2 + 1,
                                                              completion_tokens=max_tokens)
        return float(prompt_cost + completion_cost)
    except Exception:
        return 0.0


SEED_STRIDE = 1_000_003  # runs with seeds s and s+1 must not share sampling seeds (s + k would: s+1 == (s+1) + 0)


def repeat_seed(seed: int, occurrence: int) -> int:
    """The sampling seed of the ``occurrence``-th repeat of one request; a run's seeds never meet another's."""
    return (seed * SEED_STRIDE + occurrence) % 2**31


class LLM:
    """A model behind the seam, with budget accounting and replay from the run log."""

    def __init__(self, model: str, budget: Budget, runlog: RunLog, *, transport: Transport = default_transport,
                 replay: Iterable[dict[str, Any]] = (), max_tokens: int = 1024, temperature: float = 0.7,
                 attempts: int = 4, extra: dict[str, Any] | None = None, min_wait: float = 1.0,
                 errors: ErrorPolicy | None = None):
        self.model = model
        self.errors = errors  # told of every live call's outcome: failures in a row stop the run
        self.budget = budget
        self.runlog = runlog
        self.transport = transport
        self.params = {"max_tokens": max_tokens, "temperature": temperature, **(extra or {})}
        self._secret_params = {k: self.params.pop(k) for k in ("api_key",) if k in self.params}
        self.attempts = attempts
        self.min_wait = min_wait
        self._replay = {(r["key"], r["occurrence"]): r for r in replay
                        if r.get("model") == model and {"key", "occurrence", "text"} <= set(r)}
        self._seen: Counter[str] = Counter()

    def request_key(self, messages: Messages, params: dict[str, Any] | None = None) -> str:
        public = {k: v for k, v in {**self.params, **(params or {})}.items() if k != "api_base"}
        raw = json.dumps([self.model, messages, public], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(raw.encode()).hexdigest()

    def complete(self, messages: Messages, purpose: str = "reflection", params: dict[str, Any] | None = None) -> Reply:
        """One completion: from the replay log if this exact request was answered before, else live.

        ``params`` add to or override the model parameters for this call. When the same request is made
        again, its sampling ``seed`` (if any) is offset by the repeat count, so repeats draw new samples (see
        ``repeat_seed``: runs with other seeds never draw the same ones).
        """
        key = self.request_key(messages, params)
        occurrence = self._seen[key]
        self._seen[key] += 1
        call_params = {**self.params, **(params or {})}
        if isinstance(call_params.get("seed"), int):
            call_params["seed"] = repeat_seed(call_params["seed"], occurrence)
        recorded = self._replay.get((key, occurrence))
        if recorded is not None:
            reply = Reply(text=recorded["text"], prompt_tokens=recorded.get("prompt_tokens", 0),
                          completion_tokens=recorded.get("completion_tokens", 0),
                          finish_reason=recorded.get("finish_reason"))
            self.budget.record_llm(reply.prompt_tokens, reply.completion_tokens, 0.0, 0.0, replayed=True)
            return reply
        prompt_chars = sum(len(m.get("content", "")) for m in messages)
        if not is_loopback(call_params.get("api_base")):  # a server on this machine is free (and needs no litellm)
            capped = self.budget.max_cost_usd is not None  # litellm's price table only when a cap needs it
            self.budget.check_llm_call(worst_case_cost(self.model, prompt_chars, int(call_params["max_tokens"]))
                                       if capped else 0.0)
        started = time.monotonic()
        reply = self._watched_call(messages, call_params)
        reply = dataclasses.replace(reply, text=redact(reply.text))  # the reply feeds proposals and reports
        self.runlog.write("llm", model=self.model, key=key, occurrence=occurrence, purpose=purpose, text=reply.text,
                          prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                          cost_usd=reply.cost_usd, finish_reason=reply.finish_reason,
                          seconds=round(time.monotonic() - started, 3))
        self.budget.record_llm(reply.prompt_tokens, reply.completion_tokens, reply.cost_usd,
                               time.monotonic() - started, replayed=False)
        return reply

    def _watched_call(self, messages: Messages, params: dict[str, Any]) -> Reply:
        """A live call with retries; the error policy hears how it went, the embedded server is checked first."""
        if self.errors is None:
            return self._call_with_retries(messages, params)
        if self.errors.stop_cause:
            raise self.errors.stopped()
        if (cause := check_model_servers()) is not None:
            self.errors.stop_now(cause, "the embedded model crashed (docs/faults.md); then run the same command again")
            self.budget.stop(f"stopped by errors: {cause}")
            raise self.errors.stopped()
        try:
            reply = self._call_with_retries(messages, params)
        except LLMError as exc:
            self.errors.record_llm(str(exc))
            if self.errors.stop_cause:
                self.budget.stop(f"stopped by errors: {self.errors.stop_cause}")
            raise
        self.errors.record_llm(None)
        return reply

    def _call_with_retries(self, messages: Messages, params: dict[str, Any]) -> Reply:
        @retry(retry=retry_if_exception(is_transient), stop=stop_after_attempt(self.attempts),
               wait=wait_exponential(multiplier=self.min_wait, max=30), reraise=False)
        def call() -> Reply:
            self.budget.check_time()  # no attempt (and no retry) past the wall-time cap
            timeout = self.budget.remaining_seconds()
            limits = {} if timeout is None else {"timeout": max(1.0, min(timeout, 600.0))}
            return self.transport(self.model, messages, **params, **limits, **self._secret_params)

        try:
            return call()
        except BudgetExhausted:
            raise
        except RetryError as exc:
            self.budget.check_time()  # the cap cut the call short: a budget stop, not a model failure
            last = exc.last_attempt.exception()
            raise LLMError(f"{self.model}: still failing after {self.attempts} attempts: {_describe(last)}") from None
        except Exception as exc:
            self.budget.check_time()
            raise LLMError(f"{self.model}: {_describe(exc)}") from None


def _describe(exc: BaseException | None) -> str:
    # providers quote the rejected key in auth errors: mask before cutting (a cut key escapes redaction)
    return f"{type(exc).__name__}: {redact(str(exc))[:300]}" if exc else "unknown error"
