"""Budget accounting with hard caps on rollouts, LLM cost and wall time.

A *rollout* is one (candidate, instance) evaluation as GEPA counts it (its "metric call"), whether it
was executed or served from the cache: the budget fixes the search, the cache only makes repeated work
free. Every charge is checked *before* the work starts, so a cap is never crossed (gepa 0.1.4's own
``max_metric_calls`` can overshoot by a minibatch).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


class BudgetExhausted(Exception):
    """Raised instead of starting work that would cross a cap; gepa then ends the iteration."""


@dataclass
class Budget:
    """Running totals and the caps they are held to."""

    max_rollouts: int
    max_cost_usd: float | None = None
    max_seconds: float | None = None
    rollouts: int = 0
    executed: int = 0
    cache_hits: int = 0
    repeats: int = 0  # an id named twice in one batch (gepa pads short epochs): run once, counted once more
    llm_calls: int = 0
    llm_replayed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    eval_seconds: float = 0.0
    llm_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)
    exhausted_reason: str | None = None
    held_back: int = 0  # rollouts the search may not use: kept for trimming the best prompt (gepa_bot/search/trim.py)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def reserve_rollouts(self, count: int) -> None:
        """Claim ``count`` rollouts or raise BudgetExhausted without claiming any."""
        with self._lock:
            self._check_time()
            if self.rollouts + count > self.max_rollouts:
                self._exhaust(f"rollout budget: {self.rollouts} used, {count} more needed, cap {self.max_rollouts}")
            if self.rollouts + count > self.max_rollouts - self.held_back:
                self._exhaust(self._held_back_reason())
            self.rollouts += count

    def check_llm_call(self, worst_case_cost: float) -> None:
        """Refuse an LLM call whose worst-case cost would cross the cost cap."""
        with self._lock:
            self._check_time()
            if self.max_cost_usd is not None and self.cost_usd + worst_case_cost > self.max_cost_usd:
                self._exhaust(f"LLM cost cap ${self.max_cost_usd:.4f}: ${self.cost_usd:.4f} spent, "
                              f"next call could cost ${worst_case_cost:.4f}")

    def record_llm(self, prompt_tokens: int, completion_tokens: int, cost: float, seconds: float, replayed: bool) -> None:
        with self._lock:
            self.llm_calls += 1
            self.llm_replayed += int(replayed)
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.cost_usd += cost
            self.llm_seconds += seconds

    def record_eval(self, executed: int, cache_hits: int, seconds: float, repeats: int = 0) -> None:
        with self._lock:
            self.executed += executed
            self.cache_hits += cache_hits
            self.repeats += repeats
            self.eval_seconds += seconds

    def should_stop(self) -> bool:
        """True once any cap is reached: the gepa stopper."""
        with self._lock:
            if self.exhausted_reason is None:
                if self.rollouts >= self.max_rollouts:
                    self.exhausted_reason = f"rollout budget of {self.max_rollouts} used up"
                elif self.rollouts >= self.max_rollouts - self.held_back:
                    self.exhausted_reason = self._held_back_reason()
                elif self.max_seconds is not None and self.elapsed() >= self.max_seconds:
                    self.exhausted_reason = f"wall-time cap of {self.max_seconds:g}s reached"
                elif self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
                    self.exhausted_reason = f"LLM cost cap ${self.max_cost_usd:g} reached"
            return self.exhausted_reason is not None

    def stop(self, reason: str) -> None:
        """End the search for a reason that is not a cap (the first reason recorded stays)."""
        with self._lock:
            self.exhausted_reason = self.exhausted_reason or reason

    def _held_back_reason(self) -> str:
        return (f"rollout budget of {self.max_rollouts}: the search stopped at {self.rollouts}, "
                f"{self.held_back} held back for trimming the best prompt")

    def release_held_back(self) -> int:
        """The search is over: the held-back rollouts may be spent (the stop reason stays). Returns those left."""
        with self._lock:
            self.held_back = 0
            return self.rollouts_left()

    def rollouts_left(self) -> int:
        """Rollouts under the cap not yet spent (held-back ones included)."""
        return max(0, self.max_rollouts - self.rollouts)

    def remaining_seconds(self) -> float | None:
        """Wall time left under the cap (None when there is no cap)."""
        return None if self.max_seconds is None else max(0.0, self.max_seconds - self.elapsed())

    def deadline(self) -> float | None:
        """The monotonic time at which the wall-time cap is reached."""
        return None if self.max_seconds is None else self.started + self.max_seconds

    def check_time(self) -> None:
        """Raise BudgetExhausted once the wall-time cap is reached (an eval cut at the deadline is not an error)."""
        with self._lock:
            self._check_time()

    def _check_time(self) -> None:
        if self.max_seconds is not None and self.elapsed() >= self.max_seconds:
            self._exhaust(f"wall-time cap of {self.max_seconds:g}s reached")

    def _exhaust(self, reason: str) -> None:
        self.exhausted_reason = reason
        raise BudgetExhausted(reason)

    def to_json(self) -> dict[str, object]:
        total = self.elapsed()
        return {
            "rollouts_limit": self.max_rollouts, "rollouts_used": self.rollouts, "rollouts_executed": self.executed,
            "cache_hits": self.cache_hits, "repeats_in_batch": self.repeats,
            "llm_calls": self.llm_calls, "llm_calls_replayed": self.llm_replayed,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "llm_cost_usd": round(self.cost_usd, 6), "max_llm_cost_usd": self.max_cost_usd,
            "wall_time_s": round(total, 3), "eval_time_s": round(self.eval_seconds, 3),
            "llm_time_s": round(self.llm_seconds, 3),
            "overhead_share": round(max(0.0, total - self.eval_seconds - self.llm_seconds) / total, 4) if total else 0.0,
            "stop_reason": self.exhausted_reason,
        }
