"""Lesson markdown -> the lesson text plus its "predict, then reveal" quiz.

A lesson may hold one fenced block (agreed format, shared by every lab's lesson):

    ```quiz
    question: Which model do you expect to ...?
    - Option A
    - [x] Option B            <- the correct one
    - Option C
    reveal: One or two sentences shown after the result, comparing the answer with what the data show.
    ```

The block is cut out of the lesson text; the page asks the question before Run and answers it after
the result. A lesson without the block has no quiz; a malformed block is left in the text (and logged)
rather than half-parsed.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass

log = logging.getLogger("biaslab.ui")

_BLOCK = re.compile(r"^```quiz[ \t]*\n(.*?)^```[ \t]*$\n?", re.DOTALL | re.MULTILINE)
_OPTION = re.compile(r"^-\s*(\[[xX ]\]\s*)?(.+?)\s*$")


@dataclass(frozen=True)
class Quiz:
    question: str
    options: tuple[str, ...]
    correct: int  # index into options
    reveal: str = ""


def parse_quiz(block: str) -> Quiz:
    """The body of one ```quiz block -> Quiz; ValueError with the reason when it is malformed."""
    question = ""
    reveal: list[str] = []
    options: list[str] = []
    correct: list[int] = []
    in_reveal = False
    for raw in block.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.lower().startswith("question:"):
            question, in_reveal = line.split(":", 1)[1].strip(), False
        elif line.lower().startswith("reveal:"):
            reveal, in_reveal = [line.split(":", 1)[1].strip()], True
        elif (m := _OPTION.match(line)) and not in_reveal:
            if m.group(1) and m.group(1).strip().lower() == "[x]":
                correct.append(len(options))
            options.append(m.group(2))
        elif in_reveal:
            reveal.append(line)
        else:
            raise ValueError(f"unexpected line in quiz: {line!r}")
    if not question:
        raise ValueError("quiz has no 'question:' line")
    if len(options) < 2:
        raise ValueError("quiz needs at least two options")
    if len(correct) != 1:
        raise ValueError(f"quiz needs exactly one option marked [x], found {len(correct)}")
    return Quiz(question, tuple(options), correct[0], " ".join(reveal))


def split_lesson(markdown: str | None) -> tuple[str, Quiz | None]:
    """(lesson text without the quiz block, the quiz or None)."""
    if not markdown:
        return markdown or "", None
    match = _BLOCK.search(markdown)
    if match is None:
        return markdown, None
    try:
        quiz = parse_quiz(match.group(1))
    except ValueError as exc:
        log.warning("lesson quiz ignored: %s", exc)
        return markdown, None
    text = (markdown[: match.start()] + markdown[match.end() :]).strip()
    return text, quiz


def feedback_html(quiz: Quiz, answer: str | None) -> str:
    """What the page says after the result: the learner's prediction against the right one, and why."""
    right = quiz.options[quiz.correct]
    reveal = f"<p>{html.escape(quiz.reveal)}</p>" if quiz.reveal else ""
    if not answer:
        head = (
            f"<p><strong>No prediction this time.</strong> The expected answer: "
            f"<em>{html.escape(right)}</em>.</p>"
        )
        kind = "skipped"
    elif answer == right:
        head = f"<p><strong>Your prediction was right:</strong> <em>{html.escape(right)}</em>.</p>"
        kind = "right"
    else:
        head = (
            f"<p><strong>You predicted</strong> <em>{html.escape(answer)}</em>; "
            f"<strong>the data say</strong> <em>{html.escape(right)}</em>.</p>"
        )
        kind = "wrong"
    return f'<div class="bl-reveal" data-quiz="{kind}" role="status">{head}{reveal}</div>'
