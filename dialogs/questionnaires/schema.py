"""Questionnaire schema, YAML loader and municipality placeholders.

A questionnaire is a YAML file (see ``data/``) validated into the pydantic models
below. Structural errors (wrong types, unknown keys) are reported by pydantic;
cross-field rules (unique codes, conditions, taxonomy codes, placeholders, ...)
are checked by :func:`check_questionnaire`. The loader turns every failure into
:class:`QuestionnaireError` whose message names the YAML line of the offending item.

Texts may contain municipality placeholders such as ``{mms_name_genitive}``.
Their defaults (``PLACEHOLDER_DEFAULTS``) reproduce the source wording of
ИМЦ Кировского района Санкт-Петербурга, the author of the source questionnaires.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from storage.taxonomy import DeficitGroup, Difficulty, HelpDirection

__all__ = [
    "AUDIENCES",
    "BUILTIN_DIR",
    "CHOICE_TYPES",
    "FEED_CODES",
    "PLACEHOLDER_DEFAULTS",
    "PLACEHOLDER_DESCRIPTIONS",
    "QUESTION_TYPES",
    "Condition",
    "Need",
    "Option",
    "Question",
    "Questionnaire",
    "QuestionnaireError",
    "Row",
    "check_questionnaire",
    "load_builtin",
    "load_questionnaire",
    "placeholders_in",
    "render",
]

BUILTIN_DIR = Path(__file__).resolve().parent / "data"

SLUG_PATTERN = r"^[a-z][a-z0-9_]*$"

QuestionType = Literal["single", "multi", "text", "year", "matrix"]
QUESTION_TYPES: tuple[str, ...] = ("single", "multi", "text", "year", "matrix")
CHOICE_TYPES: frozenset[str] = frozenset({"single", "multi"})
AUDIENCES: tuple[str, ...] = ("young_teachers", "all_teachers", "participants")
Audience = Literal["young_teachers", "all_teachers", "participants"]
Feed = Literal["deficit_group", "difficulty", "help_direction", "need"]


class Need(StrEnum):
    """What a young teacher needs in professional life (Приложение 3, Q14)."""

    COLLEAGUE_CONTACT = "colleague_contact"  # более тесное межличностное общение с коллегами
    PEER_COMMUNITY = "peer_community"        # сообщество таких же молодых учителей
    EVENTS = "events"                        # интересные и значимые события
    SELF_EXPRESSION = "self_expression"      # творческое самовыражение и самореализация
    QUALIFICATION = "qualification"          # повышение квалификации


#: Option codes allowed for each aggregate store a question may feed.
FEED_CODES: dict[str, frozenset[str]] = {
    "deficit_group": frozenset(m.value for m in DeficitGroup),
    "difficulty": frozenset(m.value for m in Difficulty),
    "help_direction": frozenset(m.value for m in HelpDirection),
    "need": frozenset(m.value for m in Need),
}


# --------------------------------------------------------------------------
# Placeholders
# --------------------------------------------------------------------------

#: Default values reproduce the source (ИМЦ Кировского района Санкт-Петербурга).
#: The grammatical case is part of the name where it matters.
PLACEHOLDER_DEFAULTS: dict[str, str] = {
    "mms_full_name": "Информационно-методический центр",
    "mms_name": "ИМЦ",
    "mms_name_genitive": "ИМЦ",
    "district_genitive": "Кировского района",
    "region_genitive": "Санкт-Петербурга",
    "regional_level_genitive": "городского",
    "events_level": "городских",
    "events_examples": 'Герценовская олимпиада, конференция "Созвездие молодых" и т.д.',
    "club_name_genitive": "Клуба молодых педагогов Кировского района",
    "club_name_short_genitive": "Клуба молодых педагогов",
    "club_name_short_instrumental": "Клубом молодых педагогов",
    "regional_institute_genitive": "СПб АППО",
    "education_authority_genitive": "Комитета по образованию",
    "youth_centre_genitive": "ГДТЮ",
    "programme": "_____",
}

PLACEHOLDER_DESCRIPTIONS: dict[str, str] = {
    "mms_full_name": "full name of the methodical service, nominative (Прил. 3 preamble)",
    "mms_name": "short name of the methodical service, nominative (Прил. 1 preamble)",
    "mms_name_genitive": "short name of the methodical service, genitive "
                         "(Прил. 3 Q19 «методистов …», Прил. 2 Q4 «На сайте …»)",
    "district_genitive": "the municipality, genitive (Прил. 1 and Прил. 2 preambles)",
    "region_genitive": "the region, genitive (Прил. 2 preamble)",
    "regional_level_genitive": "adjective of the regional level, genitive singular "
                               "(Прил. 2 Q8 «…городского уровня и выше?»)",
    "events_level": "adjective of the regional level, prepositional plural "
                    "(Прил. 3 Q24 «В каких городских мероприятиях»)",
    "events_examples": "examples of regional events for young teachers (Прил. 3 Q24)",
    "club_name_genitive": "young teachers' club/association with the municipality, genitive (Прил. 3 Q26)",
    "club_name_short_genitive": "young teachers' club/association, genitive (Прил. 3 Q27)",
    "club_name_short_instrumental": "young teachers' club/association, instrumental (Прил. 3 Q28)",
    "regional_institute_genitive": "regional institute of teacher education, genitive (Прил. 2 Q4)",
    "education_authority_genitive": "education authority, genitive (Прил. 2 Q4)",
    "youth_centre_genitive": "regional centre of children's additional education, genitive (Прил. 2 Q4)",
    "programme": "name of the further-training programme (Прил. 1 title)",
}

_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")


def placeholders_in(text: str) -> list[str]:
    """Names of the ``{placeholders}`` used in ``text``, in order of appearance."""
    return _PLACEHOLDER_RE.findall(text)


def _placeholder_problem(text: str) -> str | None:
    """Describe the first placeholder problem in ``text``, or None if it is clean."""
    for name in _PLACEHOLDER_RE.findall(text):
        if name not in PLACEHOLDER_DEFAULTS:
            known = ", ".join(sorted(PLACEHOLDER_DEFAULTS))
            return f"unknown placeholder {{{name}}} (known: {known})"
    rest = _PLACEHOLDER_RE.sub("", text)
    if "{" in rest or "}" in rest:
        return "unbalanced '{' or '}' (placeholders look like {mms_name})"
    return None


def render(text: str, values: Mapping[str, str | None] | None = None) -> str:
    """Fill ``{placeholders}`` in ``text`` from ``values``, falling back to the defaults.

    A value that is missing or None falls back to ``PLACEHOLDER_DEFAULTS``.
    Keys of ``values`` that are not placeholders are ignored. An unknown
    placeholder in ``text`` raises ``KeyError``.
    """
    values = values or {}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in PLACEHOLDER_DEFAULTS:
            raise KeyError(f"unknown placeholder {{{name}}} in {text!r}")
        value = values.get(name)
        return PLACEHOLDER_DEFAULTS[name] if value is None else str(value)

    return _PLACEHOLDER_RE.sub(fill, text)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class QuestionnaireError(Exception):
    """An invalid questionnaire. The message names the YAML line when it is known.

    Deliberately not a ValueError: pydantic lets it through validators unchanged,
    so the loader can attach the line of ``path``.
    """

    def __init__(self, message: str, *, path: tuple[str | int, ...] = (), line: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line


def _path_str(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=False)

    #: Names of user-facing text fields (rendered and placeholder-checked).
    TEXT_FIELDS: ClassVar[tuple[str, ...]] = ()


class Option(_Model):
    """One answer option of a choice question, or one column of a matrix."""

    code: str = Field(pattern=SLUG_PATTERN)
    text: str = Field(min_length=1)
    other: bool = False
    #: Prompt for the free text after picking an ``other`` option; None → the runner's generic prompt.
    other_prompt: str | None = None

    TEXT_FIELDS = ("text", "other_prompt")


class Row(_Model):
    """One row of a matrix question; each row is answered with one option."""

    code: str = Field(pattern=SLUG_PATTERN)
    text: str = Field(min_length=1)

    TEXT_FIELDS = ("text",)


class Condition(_Model):
    """Show a question only if an earlier question's answer equals / includes a code.

    ``equals`` applies to single-choice questions, ``includes`` to multi-choice ones.
    """

    question: str = Field(pattern=SLUG_PATTERN)
    equals: str | None = Field(default=None, pattern=SLUG_PATTERN)
    includes: str | None = Field(default=None, pattern=SLUG_PATTERN)

    @model_validator(mode="after")
    def _exactly_one(self) -> Condition:
        if (self.equals is None) == (self.includes is None):
            raise ValueError("a condition needs exactly one of 'equals' or 'includes'")
        return self

    @property
    def option(self) -> str:
        """The option code the condition tests."""
        return self.equals if self.equals is not None else self.includes  # type: ignore[return-value]

    def is_met(self, answer: str | list[str] | tuple[str, ...] | set[str] | None) -> bool:
        """Whether the condition holds for the answer given to ``question``."""
        if answer is None:
            return False
        if self.equals is not None:
            return answer == self.equals
        if isinstance(answer, str):
            return answer == self.includes
        return self.includes in answer


class Question(_Model):
    """One question.

    ``options`` apply to single/multi/matrix (matrix: the columns), ``rows`` to matrix,
    ``exclusive`` to multi, ``max_length`` to text, ``year_min``/``year_max_offset`` to year.
    ``feeds`` names the aggregate store the answers go to; its option codes are then
    taxonomy codes (see ``FEED_CODES``), except the ``other`` option.
    """

    code: str = Field(pattern=SLUG_PATTERN)
    number: int = Field(ge=1)
    text: str = Field(min_length=1)
    type: QuestionType
    required: bool = True
    #: Instruction shown with the question (e.g. «Отметьте все, что считаете нужным»).
    hint: str | None = None
    options: list[Option] = Field(default_factory=list)
    rows: list[Row] = Field(default_factory=list)
    exclusive: list[str] = Field(default_factory=list)
    feeds: Feed | None = None
    when: Condition | None = None
    max_length: int = Field(default=1000, ge=1)
    year_min: int = Field(default=1950, ge=1900)
    #: The latest allowed year is the current year plus this offset.
    year_max_offset: int = 0
    #: Why a type or wording was decided where the source is ambiguous.
    note: str | None = None

    TEXT_FIELDS = ("text", "hint")

    def option(self, code: str) -> Option:
        for opt in self.options:
            if opt.code == code:
                return opt
        raise KeyError(f"question {self.code!r} has no option {code!r}")

    @property
    def option_codes(self) -> list[str]:
        return [opt.code for opt in self.options]

    @property
    def other_option(self) -> Option | None:
        return next((opt for opt in self.options if opt.other), None)

    def year_bounds(self, today: _dt.date | None = None) -> tuple[int, int]:
        """Inclusive bounds of a ``year`` answer."""
        today = today or _dt.date.today()
        return self.year_min, today.year + self.year_max_offset


class Questionnaire(_Model):
    """A whole questionnaire (one YAML file)."""

    code: str = Field(pattern=SLUG_PATTERN)
    version: int = Field(ge=1)
    title: str = Field(min_length=1)
    subtitle: str | None = None
    source: str = Field(min_length=1)
    audience: Audience
    anonymous: bool = False
    preamble: str
    closing: str | None = None
    note: str | None = None
    questions: list[Question] = Field(min_length=1)

    TEXT_FIELDS = ("title", "subtitle", "preamble", "closing")

    @model_validator(mode="after")
    def _cross_checks(self) -> Questionnaire:
        check_questionnaire(self)
        return self

    def question(self, code: str) -> Question:
        for q in self.questions:
            if q.code == code:
                return q
        raise KeyError(f"questionnaire {self.code!r} has no question {code!r}")

    def rendered(self, values: Mapping[str, str | None] | None = None) -> Questionnaire:
        """A copy with every user-facing text's placeholders filled (see :func:`render`)."""
        copy = self.model_copy(deep=True)
        for obj, _path in _walk(copy):
            for name in obj.TEXT_FIELDS:
                value = getattr(obj, name)
                if value is not None:
                    setattr(obj, name, render(value, values))
        return copy


def _walk(q: Questionnaire) -> Iterator[tuple[_Model, tuple[str | int, ...]]]:
    """Every model object of a questionnaire with its path."""
    yield q, ()
    for i, question in enumerate(q.questions):
        yield question, ("questions", i)
        for j, opt in enumerate(question.options):
            yield opt, ("questions", i, "options", j)
        for j, row in enumerate(question.rows):
            yield row, ("questions", i, "rows", j)


# --------------------------------------------------------------------------
# Cross-field checks
# --------------------------------------------------------------------------


def _fail(message: str, path: tuple[str | int, ...]) -> QuestionnaireError:
    return QuestionnaireError(f"{_path_str(path)}: {message}", path=path)


def check_questionnaire(q: Questionnaire) -> None:
    """Check the rules pydantic cannot express; raise QuestionnaireError with the item's path."""
    seen_codes: dict[str, int] = {}
    previous_number = 0
    for i, question in enumerate(q.questions):
        qp: tuple[str | int, ...] = ("questions", i)
        set_fields = question.model_fields_set

        if question.code in seen_codes:
            raise _fail(f"duplicate question code {question.code!r} "
                        f"(also questions[{seen_codes[question.code]}])", (*qp, "code"))
        if question.number <= previous_number:
            raise _fail(f"question numbers must increase: {question.number} "
                        f"after {previous_number}", (*qp, "number"))

        is_choice = question.type in CHOICE_TYPES
        has_options = is_choice or question.type == "matrix"

        # options
        if has_options and not question.options:
            raise _fail(f"a {question.type} question needs options", qp)
        if not has_options and question.options:
            raise _fail(f"a {question.type} question cannot have options", (*qp, "options"))
        seen_opts: dict[str, int] = {}
        other_seen: int | None = None
        for j, opt in enumerate(question.options):
            op = (*qp, "options", j)
            if opt.code in seen_opts:
                raise _fail(f"duplicate option code {opt.code!r} in question {question.code!r} "
                            f"(also options[{seen_opts[opt.code]}])", (*op, "code"))
            seen_opts[opt.code] = j
            if opt.other:
                if other_seen is not None:
                    raise _fail(f"question {question.code!r} has more than one 'other' option "
                                f"(also options[{other_seen}])", (*op, "other"))
                if question.type == "matrix":
                    raise _fail("a matrix column cannot be an 'other' option", (*op, "other"))
                other_seen = j
            if opt.other_prompt is not None and not opt.other:
                raise _fail("'other_prompt' needs 'other: true'", (*op, "other_prompt"))

        # rows
        if question.type == "matrix" and not question.rows:
            raise _fail("a matrix question needs rows", qp)
        if question.type != "matrix" and question.rows:
            raise _fail(f"a {question.type} question cannot have rows", (*qp, "rows"))
        seen_rows: dict[str, int] = {}
        for j, row in enumerate(question.rows):
            if row.code in seen_rows:
                raise _fail(f"duplicate row code {row.code!r} in question {question.code!r} "
                            f"(also rows[{seen_rows[row.code]}])", (*qp, "rows", j, "code"))
            seen_rows[row.code] = j

        # exclusive
        if question.exclusive and question.type != "multi":
            raise _fail("'exclusive' applies to multi questions only", (*qp, "exclusive"))
        for j, code in enumerate(question.exclusive):
            if code not in seen_opts:
                raise _fail(f"exclusive code {code!r} is not an option of question "
                            f"{question.code!r}", (*qp, "exclusive", j))

        # feeds
        if question.feeds is not None:
            if not is_choice:
                raise _fail("'feeds' applies to single/multi questions only", (*qp, "feeds"))
            allowed = FEED_CODES[question.feeds]
            for j, opt in enumerate(question.options):
                if not opt.other and opt.code not in allowed:
                    raise _fail(f"option code {opt.code!r} is not a {question.feeds} code "
                                f"(allowed: {', '.join(sorted(allowed))}; "
                                "or mark the option other: true)",
                                (*qp, "options", j, "code"))

        # type-specific settings
        if question.type != "text" and "max_length" in set_fields:
            raise _fail("'max_length' applies to text questions only", (*qp, "max_length"))
        for name in ("year_min", "year_max_offset"):
            if question.type != "year" and name in set_fields:
                raise _fail(f"'{name}' applies to year questions only", (*qp, name))
        if question.type == "year":
            low, high = question.year_bounds()
            if low > high:
                raise _fail(f"year_min {low} is after the latest allowed year {high}",
                            (*qp, "year_min"))

        # when
        cond = question.when
        if cond is not None:
            cp = (*qp, "when")
            target_index = next((k for k, other in enumerate(q.questions)
                                 if other.code == cond.question), None)
            if target_index is None:
                raise _fail(f"condition refers to unknown question {cond.question!r}",
                            (*cp, "question"))
            if target_index >= i:
                raise _fail(f"condition must refer to an earlier question; "
                            f"{cond.question!r} is not before {question.code!r}",
                            (*cp, "question"))
            target = q.questions[target_index]
            key = "equals" if cond.equals is not None else "includes"
            expected_type = "single" if key == "equals" else "multi"
            if target.type != expected_type:
                raise _fail(f"'{key}' needs a {expected_type} question; "
                            f"{target.code!r} is {target.type}", (*cp, key))
            if cond.option not in target.option_codes:
                raise _fail(f"{cond.option!r} is not an option of question {target.code!r} "
                            f"(options: {', '.join(target.option_codes)})", (*cp, key))

        seen_codes[question.code] = i
        previous_number = question.number

    # placeholders
    for obj, path in _walk(q):
        for name in obj.TEXT_FIELDS:
            value = getattr(obj, name)
            if value is None:
                continue
            problem = _placeholder_problem(value)
            if problem:
                raise _fail(problem, (*path, name))


# --------------------------------------------------------------------------
# Loader
# --------------------------------------------------------------------------


class _LineMap:
    """Maps item paths (keys and list indexes) to 1-based YAML line numbers."""

    def __init__(self, root: yaml.Node | None):
        self.lines: dict[tuple[str | int, ...], int] = {}
        self.duplicate: tuple[tuple[str | int, ...], int, int] | None = None
        if root is not None:
            self._visit(root, (), root.start_mark.line + 1)

    def _visit(self, node: yaml.Node, path: tuple[str | int, ...], line: int) -> None:
        self.lines[path] = line
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
                child = (*path, key)
                key_line = key_node.start_mark.line + 1
                if child in self.lines and self.duplicate is None:
                    self.duplicate = (child, key_line, self.lines[child])
                self._visit(value_node, child, key_line)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._visit(item, (*path, index), item.start_mark.line + 1)

    def line_of(self, path: tuple[Any, ...]) -> int:
        """Line of the deepest known prefix of ``path``."""
        best = self.lines.get((), 1)
        current: tuple[Any, ...] = ()
        for part in path:
            current = (*current, part)
            if current in self.lines:
                best = self.lines[current]
            else:
                break
        return best


def _read_source(source: str | Path) -> tuple[str, str]:
    """(YAML text, display name) for a path or YAML text."""
    if isinstance(source, Path):
        return source.read_text(encoding="utf-8"), source.name
    if "\n" not in source and source.strip().endswith((".yaml", ".yml")):
        path = Path(source.strip())
        return path.read_text(encoding="utf-8"), path.name
    return source, "<yaml>"


def load_questionnaire(source: str | Path) -> Questionnaire:
    """Load and validate a questionnaire from a YAML file path or YAML text.

    A ``str`` is a path if it is a single line ending in ``.yaml``/``.yml``,
    otherwise YAML text. Every problem raises :class:`QuestionnaireError`
    whose message starts with ``"<name>, line N: "``.
    """
    text, name = _read_source(source)

    def error(line: int, message: str, path: tuple[Any, ...] = ()) -> QuestionnaireError:
        return QuestionnaireError(f"{name}, line {line}: {message}", path=path, line=line)

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or str(exc)
        raise error(line, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:  # pragma: no cover - unmarked YAML errors are rare
        raise error(1, f"invalid YAML: {exc}") from None

    lines = _LineMap(root)
    if lines.duplicate is not None:
        path, line, first = lines.duplicate
        raise error(line, f"{_path_str(path)}: duplicate key (first at line {first})", path)
    if not isinstance(data, dict):
        raise error(1, "a questionnaire must be a YAML mapping")

    try:
        return Questionnaire.model_validate(data)
    except ValidationError as exc:
        first_error = exc.errors()[0]
        loc = tuple(first_error["loc"])
        more = exc.error_count() - 1
        suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
        raise error(lines.line_of(loc), f"{_path_str(loc)}: {first_error['msg']}{suffix}",
                    loc) from None
    except QuestionnaireError as exc:
        raise error(lines.line_of(exc.path), exc.message, exc.path) from None


def load_builtin() -> dict[str, Questionnaire]:
    """The questionnaires shipped in ``data/``, keyed by their code."""
    result: dict[str, Questionnaire] = {}
    for path in sorted(BUILTIN_DIR.glob("*.yaml")):
        questionnaire = load_questionnaire(path)
        if questionnaire.code in result:
            raise QuestionnaireError(f"{path.name}: duplicate questionnaire code "
                                     f"{questionnaire.code!r}")
        result[questionnaire.code] = questionnaire
    return result
