"""What the eval's feedback states in general, and what in a proposal is specific to one training example.

Small reflection models choose well and generalize badly: shown "under our policy P1 means a customer-facing
outage ..." on three failures, a 1.5B model writes "Prioritize high severity issues like P1, P2, or P4". So
gepa-bot collects the general statements in the failures' feedback itself (rules, definitions, format
requirements), de-duplicates them, and lets the model pick and condense them (gepa_bot/search/reflection.py, the
``rules`` move). This module is the deterministic half:

- :func:`extract_statements`: feedback -> clauses -> the general ones (a rule cue, no instance detail),
  normalized and near-duplicates merged, each with the ids of the instances whose feedback states it; the
  definitions of two or more labels ("P1 means ...", "P2 means ...") are one statement, so a choice takes the
  whole scale (seen on the incidents bench: offered four definitions one by one, the 1.5B model kept two);
- :func:`specific_phrases`: the generality guard, n-grams of a proposed text that only one training
  instance's input/feedback contains (not a label the feedback states, not in the prompt, not in a statement);
- :func:`form_failures` / :func:`worked_example`: failures about the answer's form, and a train instance
  with its expected answer to show as an example line.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_STATEMENTS = 8
NEAR_DUPLICATE = 0.7  # token-set Jaccard at or above which two statements are one
MAX_EXAMPLE_INPUT = 240
LEADING_INPUT_WORDS = 8  # "6 feet: expected 1.83 metres ..." : a leading input is short

QUOTED = re.compile(r"(?<![\w])(?:'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\")(?![\w])")
MASK = "\x00{}\x00"
MASKED = re.compile(r"\x00(\d+)\x00")
WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_'\-]*")
ECHO = re.compile(r"^\s*[\w ]{1,24}:\s*\x00\d+\x00\s*\W*$")  # "ticket: '<input>'", "reply: '<output>'"
ECHO_TAIL = re.compile(r"\s*\x00\d+\x00\s*\W*(?:;|$)")
EXPECTED = re.compile(r"\bexpected\s+(\x00\d+\x00|[^\s,;:()]+)", re.IGNORECASE)
GOT = re.compile(r"\bgot\s+(\x00\d+\x00|[^\s,;:()]+)", re.IGNORECASE)
EXPECTED_FORM = re.compile(r"^\s*expected\s+(?:\x00\d+\x00|-?\d[\d.,]*)\s+([^,;()]+?)\s*(?:[,(].*)?$", re.IGNORECASE)
LIST_IN_PARENS = re.compile(r"\(([^()]*,[^()]*)\)")
RULE_CUE = re.compile(
    r"\b(must|should|always|never|only|means|mean|defined|counts? as|policy|rule|allowed|required|format|"
    r"do not|don't|instead of|exactly|bare|the (?:codes|labels|values|options|queues|categories) are)\b", re.IGNORECASE)
IMPERATIVE = re.compile(
    r"^(answer|give|keep|reply|respond|write|use|end|start|return|output|say|name|choose|pick|include|omit|avoid|"
    r"put|state|list|classify|rate|assign|follow|do not|don't|never|always|only)\b", re.IGNORECASE)
FORM_CUE = re.compile(
    r"not one of the allowed|extra words|\bonly\b|no number|no integer|cut off|empty reply|\bform(at)?\b|one word|"
    r"\bbare\b|too long|outside the scale|\bcode\b|label only", re.IGNORECASE)
STOPWORDS = frozenset("""a an the and or but if then else of to in on at by for with from as is are was were be been
being it its this that these those there their they them he she his her we our you your i me my not no nor so than
too very can could would should will shall may might must do does did done has have had having each every any all
some one two three four five six seven eight nine ten first last only just also into out up down over under about
which what who whom whose when where why how answer answers reply output model prompt""".split())


@dataclass(frozen=True)
class Statement:
    """One general statement from the feedback, and the instances whose feedback states it."""

    text: str
    ids: tuple[str, ...]
    definitions: tuple[tuple[str, str], ...] = ()
    """(label, meaning) pairs when this statement is the feedback's definitions of several labels."""
    scope: str = ""
    """What the definitions hold under ("under our policy"), when the feedback says."""

    @property
    def support(self) -> int:
        return len(self.ids)


@dataclass
class _Clauses:
    """A feedback text cut into depth-0 clauses, with its quoted spans masked out."""

    clauses: list[str]
    quotes: list[str] = field(default_factory=list)

    def unmask(self, text: str, max_quote: int = 30) -> str:
        """Short quotes (a label: 'billing') back in; long ones (echoed inputs and replies) removed."""
        def put(match: re.Match[str]) -> str:
            quote = self.quotes[int(match.group(1))]
            return quote if len(quote) <= max_quote + 2 else ""
        return tidy(MASKED.sub(put, text))


def record_id(record: Mapping[str, Any]) -> str:
    inputs = record.get("Inputs")
    if isinstance(inputs, Mapping) and inputs.get("instance_id") is not None:
        return str(inputs["instance_id"])
    return str(record.get("id", ""))


def tidy(text: str) -> str:
    text = re.sub(r"\(\s*\)", "", text)
    text = re.sub(r"\s+([,.;:)])", r"\1", text)
    return " ".join(text.split()).strip(" ,;:-")


def cut_clauses(feedback: str) -> _Clauses:
    """Clauses at parenthesis depth 0, split on ';', ': ' and sentence ends; quotes masked first."""
    quotes: list[str] = []

    def mask(match: re.Match[str]) -> str:
        quotes.append(match.group(0))
        return MASK.format(len(quotes) - 1)

    text = QUOTED.sub(mask, feedback)
    clauses, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += char == "("
        depth -= char == ")" and depth > 0
        nxt = text[index + 1:index + 2]
        if char == ":" and ECHO_TAIL.match(text, index + 1):
            continue  # "ticket: '<input>'" stays one clause
        if depth == 0 and (char == ";" or (char in ":.!?" and (nxt.isspace() or not nxt))):
            clauses.append(text[start:index])
            start = index + 1
    clauses.append(text[start:])
    return _Clauses([c for c in (c.strip() for c in clauses) if c], quotes)


def general_clause(clause: str, cut: _Clauses, current: str) -> str | None:
    """The clause as a general statement, or None when it is about this one instance."""
    if ECHO.match(clause):
        return None
    text = re.sub(r"^\s*(?:expected|correct)\b.*?,\s*but\s+", "", clause, flags=re.IGNORECASE)
    text = _without_verdict(text)
    requirement = EXPECTED_FORM.match(text)
    if requirement and RULE_CUE.search(requirement.group(1)) and not re.search(r"\d|\x00", requirement.group(1)):
        text = f"Answer with {requirement.group(1)}"  # "expected 1.83 metres as a bare number, reply was ..."
    elif re.match(r"^\s*(?:expected|got|correct)\b", text, re.IGNORECASE):
        return None
    text = LIST_IN_PARENS.sub(lambda m: m.group(0) if not re.search(r"\d|\x00", m.group(1)) else "", text)
    text = re.sub(r"\([^()]*(?:\d|\x00)[^()]*\)", "", text)  # "(limit 48 tokens)", "(reply: '...')"
    text = cut.unmask(text)
    if len(text.split()) < 3 or not (RULE_CUE.search(text) or IMPERATIVE.match(text)):
        return None
    numbers = set(re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])", text))
    if numbers - set(re.findall(r"-?\d+(?:\.\d+)?", current)):
        return None  # a number the prompt does not state: this instance's arithmetic, a count, a limit
    return text[0].upper() + text[1:]


VERDICT_PREFIX = re.compile(r"^\s*(?P<verdict>[A-Za-z][\w'-]*(?:\s+[\w'-]+){0,2}),\s*but\s+(?=\S)", re.IGNORECASE)


def _without_verdict(text: str) -> str:
    """"right continent, but answer with the code only" -> "answer with the code only": a short verdict on this
    one reply before ", but" is not part of the rule (a prefix that states a rule itself is kept)."""
    match = VERDICT_PREFIX.match(text)
    if not match or RULE_CUE.search(match.group("verdict")) or IMPERATIVE.match(match.group("verdict")):
        return text
    return text[match.end():]


def normalize(text: str) -> str:
    return " ".join(re.sub(r"\d+", "#", w.lower()) for w in WORD.findall(text))


def _tokens(text: str) -> set[str]:
    return set(normalize(text).split())


def similarity(first: str, second: str) -> float:
    a, b = _tokens(first), _tokens(second)
    return len(a & b) / len(a | b) if a and b else 0.0


SENTENCE_OR_LINE = re.compile(r"(?<=[.!?])\s+|\n+")  # a prompt's pieces: sentences, and lines without end punctuation


def added_pieces(text: str, current: str) -> list[str]:
    """The sentences and lines of ``text`` that ``current`` does not already say (:func:`covered_by`)."""
    return [piece for piece in SENTENCE_OR_LINE.split(text) if piece.strip() and not covered_by(piece, current)]


def covered_by(statement: str, current: str) -> bool:
    """True when the prompt already says it: contained, or a near-duplicate of one of its sentences."""
    if normalize(statement) in normalize(current):
        return True
    sentences = SENTENCE_OR_LINE.split(current)
    return any(similarity(statement, s) >= NEAR_DUPLICATE for s in sentences if s.strip())


def extract_statements(records: Sequence[Mapping[str, Any]], current: str = "",
                       limit: int = MAX_STATEMENTS) -> list[Statement]:
    """The general statements in the failing records' feedback, de-duplicated, most supported first.

    Near-duplicates (token-set Jaccard >= NEAR_DUPLICATE, numbers ignored) are one statement with the union
    of their instances, in the shortest wording seen. Statements the prompt already makes are left out.
    """
    merged: list[tuple[str, list[str]]] = []
    for record in records:
        if float(record.get("score", 0.0)) >= 1.0:
            continue
        rid, cut = record_id(record), cut_clauses(str(record.get("Feedback", "")))
        for clause in cut.clauses:
            text = general_clause(clause, cut, current)
            if text is None or covered_by(text, current):
                continue
            for index, (kept, ids) in enumerate(merged):
                if normalize(kept) == normalize(text) or similarity(kept, text) >= NEAR_DUPLICATE:
                    if rid not in ids:
                        ids.append(rid)
                    if len(text) < len(kept):  # the shorter wording: less context of one instance
                        merged[index] = (text, ids)
                    break
            else:
                merged.append((text, [rid]))
    order = sorted(range(len(merged)), key=lambda i: (-len(merged[i][1]), i))
    return with_definitions_grouped([Statement(merged[i][0], tuple(merged[i][1])) for i in order])[:limit]


DEFINITION = re.compile(
    r"^(?:(?P<scope>(?:under|per|by|in) (?:our|the|this) [\w ]{1,30}?),?\s+)?"
    r"(?P<label>[\w-]{1,24}|'[^']{1,24}'|\"[^\"]{1,24}\") (?:means|is defined as|stands for) (?P<meaning>.+)$",
    re.IGNORECASE)


def definition(text: str) -> tuple[str, str, str] | None:
    """(scope, label as written, meaning) of a statement that defines one label ("Under our policy P1 means ...",
    "'billing' means ..."), else None."""
    found = DEFINITION.match(text.strip().rstrip("."))
    if not found or found.group("label").lower() in STOPWORDS:  # "This means ...", "It means ..."
        return None
    return (found.group("scope") or "").strip(), found.group("label"), found.group("meaning").strip()


def bare_label(label: str) -> str:
    return label.strip("'\"").lower()


def with_definitions_grouped(statements: Sequence[Statement]) -> list[Statement]:
    """``statements`` with the definitions of two or more distinct labels replaced by one statement, in label
    order, at the place of the best-supported one; a label defined twice keeps its better-supported meaning."""
    found: dict[str, tuple[tuple[str, str, str], Statement]] = {}
    for statement in statements:
        parsed = definition(statement.text)
        if parsed and bare_label(parsed[1]) not in found:
            found[bare_label(parsed[1])] = (parsed, statement)
    if len(found) < 2:
        return list(statements)
    pairs = tuple(sorted(((label, meaning) for (_, label, meaning), _ in found.values()),
                         key=lambda pair: _label_order(bare_label(pair[0]))))
    scope = next((scope for (scope, _, _), _ in found.values() if scope), "")
    scale = "; ".join(f"{label} means {meaning}" for label, meaning in pairs)
    text = (scope[0].upper() + scope[1:] + ": " if scope else "") + scale
    group = Statement(text, tuple(dict.fromkeys(i for _, s in found.values() for i in s.ids)), pairs, scope)
    members = {id(s) for _, s in found.values()}
    grouped: list[Statement] = []
    for statement in statements:
        if id(statement) not in members:
            grouped.append(statement)
        elif group not in grouped:
            grouped.append(group)
    return grouped


def _label_order(label: str) -> tuple[str, int]:
    """"P2" before "P10": the label's letters, then its number."""
    number = re.search(r"\d+", label)
    return re.sub(r"\d+", "", label.lower()), int(number.group(0)) if number else -1


def stated_labels(records: Iterable[Mapping[str, Any]]) -> set[str]:
    """Label names and values the feedback itself states: after "expected"/"got" and in listed alternatives.

    A number is one instance's answer ("expected 2500 metres"), not a label: it counts only when two records
    state it (an edit quoting "2500 metres" from one failure passed the generality guard before)."""
    labels: Counter[str] = Counter()
    for record in records:
        cut = cut_clauses(str(record.get("Feedback", "")))
        found: set[str] = set()
        for clause in cut.clauses:
            for pattern in (EXPECTED, GOT):
                for match in pattern.finditer(clause):
                    found.add(_unquote(cut, match.group(1)).lower())
            for match in LIST_IN_PARENS.finditer(clause):
                found.update(p.strip(" '\"").lower() for p in match.group(1).split(",") if len(p.split()) <= 3)
        labels.update(found)
    return {label for label, count in labels.items() if label and (count > 1 or not NUMBER_ONLY.fullmatch(label))}


def _unquote(cut: _Clauses, token: str) -> str:
    found = MASKED.fullmatch(token)
    text = cut.quotes[int(found.group(1))] if found else token
    return text.strip().strip("'\"").strip(" .")


def content_words(text: str) -> list[str]:
    """The words of ``text`` that carry meaning (lowercased, no stopwords), in order."""
    return [w for w in _words(text) if w not in STOPWORDS]


def _words(text: str) -> list[str]:
    return [w.lower().strip("'-") for w in WORD.findall(text)]


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return list(dict.fromkeys(tuple(words[i:i + n]) for i in range(len(words) - n + 1)))


def _identifier_like(word: str, original: str) -> bool:
    """A name, a number or a code: 'Firefox', 'INV-2231', 'order_id', '16'."""
    return bool(re.search(r"\d|_", word)) or original[:1].isupper()


def specific_phrases(text: str, records: Sequence[Mapping[str, Any]], current: str,
                     statements: Sequence[Statement] = ()) -> list[tuple[str, str]]:
    """(phrase, instance id) for each phrase of ``text`` that only one record's input/feedback contains.

    A phrase is two or three consecutive words with at least two content words, or one identifier-like word
    (a capitalized name, a number, a snake_case token) that is not the text's first word. Allowed whatever
    their spread: words of the current prompt, of the general statements, and label names/values the
    feedback states. With fewer than two records nothing can be told apart, so nothing is refused.
    """
    if len(records) < 2:
        return []
    allowed = set(_words(current)) | {w for s in statements for w in _words(s.text)}
    labels = stated_labels(records)
    allowed |= labels | {w for label in labels for w in _words(label)}
    texts = [(record_id(r), _instance_text(r)) for r in records]
    matches = list(WORD.finditer(text))
    originals = [m.group(0) for m in matches]
    words = [w.lower().strip("'-") for w in originals]
    found: list[tuple[str, str]] = []
    candidates: list[tuple[tuple[str, ...], str]] = [((w,), originals[i]) for i, w in enumerate(words)
                  if _identifier_like(w, originals[i]) and not _sentence_start(text, matches[i].start())]
    for n in (3, 2):
        candidates += [(g, " ".join(g)) for g in _ngrams(words, n)
                       if sum(w not in STOPWORDS and w not in allowed for w in g) >= 2]
    seen: set[str] = set()
    for gram, shown in candidates:
        if all(w in allowed or w in STOPWORDS for w in gram) or shown.lower() in seen:
            continue
        holders = [rid for rid, words_of in texts if _contains(words_of, gram)]
        if len(holders) == 1:
            seen.add(shown.lower())
            found.append((shown, holders[0]))
    return found


def _sentence_start(text: str, at: int) -> bool:
    return not text[:at].strip() or text[:at].rstrip()[-1] in ".!?:\n\"'("


def _instance_text(record: Mapping[str, Any]) -> list[str]:
    inputs = record.get("Inputs")
    parts = [str(v) for k, v in inputs.items() if k != "instance_id"] if isinstance(inputs, Mapping) else []
    return _words(" ".join(parts + [str(record.get("Feedback", ""))]))


def _contains(words: Sequence[str], gram: tuple[str, ...]) -> bool:
    n = len(gram)
    return any(tuple(words[i:i + n]) == gram for i in range(len(words) - n + 1))


def form_failures(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The failing records whose feedback says the answer's form was wrong, when they are at least half of the
    failures (else none: the failures are about content, not shape)."""
    failing = [r for r in records if float(r.get("score", 0.0)) < 1.0]
    form = [r for r in failing if FORM_CUE.search(_without_quotes(str(r.get("Feedback", ""))))]
    return form if failing and 2 * len(form) >= len(failing) else []


def _without_quotes(text: str) -> str:
    return QUOTED.sub("", text)


@dataclass(frozen=True)
class WorkedExample:
    instance_id: str
    input: str
    expected: str
    leading: bool = False  # the input is the feedback's leading "<input>: expected X", not a quoted echo

    def line(self) -> str:
        return f'Example: "{self.input}" -> {self.expected}'


def parse_example(record: Mapping[str, Any]) -> WorkedExample | None:
    """The instance's input and expected answer, when its feedback states both: ``expected X`` and a trailing
    ``<noun>: '<input>'`` echo, as gepa_bot.evalkit's template evals write it, or a leading ``<input>: expected X``
    as docs/adapters.md's pytest example does (see :func:`worked_example` for when a leading one is trusted)."""
    cut = cut_clauses(str(record.get("Feedback", "")))
    expected = next((_unquote(cut, m.group(1)) for c in cut.clauses for m in EXPECTED.finditer(c)), None)
    echoes = [c for c in cut.clauses if ECHO.match(c) and not re.match(r"\s*(raw\s+)?reply\b", c, re.IGNORECASE)]
    if not expected:
        return None
    leading = not echoes
    if echoes:
        quote = MASKED.search(echoes[-1])
        assert quote is not None
        text = cut.quotes[int(quote.group(1))][1:-1]
    elif len(cut.clauses) > 1 and re.match(r"\s*expected\b", cut.clauses[1], re.IGNORECASE):
        text = cut.unmask(cut.clauses[0], max_quote=MAX_EXAMPLE_INPUT)
        if len(text.split()) > LEADING_INPUT_WORDS:
            return None
    else:
        return None
    try:
        text = bytes(text, "utf-8").decode("unicode_escape") if "\\" in text else text
    except UnicodeDecodeError:
        return None
    if not text.strip() or len(text) > MAX_EXAMPLE_INPUT or "{" in text or "}" in text or "\n" in text:
        return None
    return WorkedExample(record_id(record), " ".join(text.split()), expected, leading)


def worked_example(records: Sequence[Mapping[str, Any]], current: str) -> WorkedExample | None:
    """One form failure's instance with its expected answer (the shortest input), not already in the prompt.

    A leading ``<text>: expected X`` is an input only when the form failures' leading texts all differ (an input
    varies from instance to instance; "policy: expected P1" on every record is a fixed word, not an input)."""
    parsed = [e for e in (parse_example(r) for r in form_failures(records)) if e]
    leading = [e for e in parsed if e.leading]
    if leading and (len(leading) < 2 or len({e.input.lower() for e in leading}) < len(leading)):
        parsed = [e for e in parsed if e not in leading]
    examples = [e for e in parsed if e.input not in current]
    return min(examples, key=lambda e: (len(e.input), e.instance_id)) if examples else None


NUMBER_ONLY = re.compile(r"[-+]?\$?\d[\d,]*(?:\.\d+)?%?[.!]?")


def output_shape(output: Any) -> tuple[str, str, str]:
    """The form of one answer: length class, one or several lines, and kind (number, JSON, text, empty)."""
    text = str(output or "").strip()
    words = len(text.split())
    length = "0" if not words else "1" if words == 1 else "2-5" if words <= 5 else "6-20" if words <= 20 else "21+"
    kind = ("empty" if not text else "number" if NUMBER_ONLY.fullmatch(text) else
            "json" if text[:1] in "{[" else "text")
    return length, "lines" if "\n" in text else "line", kind


def shape_changed(before: Sequence[Any], after: Sequence[Any]) -> bool:
    """True when at least half of the paired answers (and at least one) changed form (see :func:`output_shape`)."""
    changed = sum(output_shape(b) != output_shape(a) for b, a in zip(before, after, strict=False))
    return changed > 0 and 2 * changed >= min(len(before), len(after))
