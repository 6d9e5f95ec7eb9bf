"""Tests of the questionnaire schema, loader, placeholders and the shipped questionnaires."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from dialogs.questionnaires.schema import (
    BUILTIN_DIR,
    FEED_CODES,
    PLACEHOLDER_DEFAULTS,
    Condition,
    Need,
    QuestionnaireError,
    load_builtin,
    load_questionnaire,
    placeholders_in,
    render,
)
from storage.taxonomy import DeficitGroup, Difficulty, HelpDirection

# Option counts of Приложение 3, Q1..Q28, checked against the source (KIR L629–755).
# Free-text and year questions (Q6, Q7, Q16, Q20, Q23, Q24, Q27, Q28) have none.
YOUNG_TEACHER_OPTION_COUNTS = [2, 3, 3, 7, 2, 0, 0, 5, 5, 3, 5, 7, 6, 6, 3, 0, 6, 4, 2, 0, 7, 2, 0, 0, 2, 2, 0, 0]

VSEVOLOZHSK = {
    "mms_full_name": "Всеволожский районный методический центр",
    "mms_name": "ВРМЦ",
    "mms_name_genitive": "ВРМЦ",
    "district_genitive": "Всеволожского района",
    "region_genitive": "Ленинградской области",
    "regional_level_genitive": "областного",
    "events_level": "областных",
    "events_examples": "форум «Наставник», конкурс «Педагогический дебют» и т.д.",
    "club_name_genitive": "Ассоциации молодых педагогов Всеволожского района",
    "club_name_short_genitive": "Ассоциации молодых педагогов",
    "club_name_short_instrumental": "Ассоциацией молодых педагогов",
}


@pytest.fixture(scope="module")
def builtin():
    return load_builtin()


@pytest.fixture(scope="module")
def young(builtin):
    return builtin["young_teacher"]


@pytest.fixture(scope="module")
def support(builtin):
    return builtin["teacher_support"]


# ---------------------------------------------------------------- built-ins


def test_builtins_load(builtin):
    assert set(builtin) == {"young_teacher", "teacher_support", "course_feedback", "event_feedback"}
    assert {path.stem for path in BUILTIN_DIR.glob("*.yaml")} == set(builtin)
    for questionnaire in builtin.values():
        assert questionnaire.version >= 1
        questionnaire.rendered()  # every placeholder renders


def test_young_teacher_shape(young):
    assert young.source == "Приложение 3"
    assert young.audience == "young_teachers"
    assert young.title == "Анкета для молодых педагогов"
    assert [q.number for q in young.questions] == list(range(1, 29))
    assert [q.code for q in young.questions] == [f"q{n}" for n in range(1, 29)]
    assert all(q.required for q in young.questions)
    assert [len(q.options) for q in young.questions] == YOUNG_TEACHER_OPTION_COUNTS


def test_young_teacher_types(young):
    types = {q.number: q.type for q in young.questions}
    assert [n for n, t in types.items() if t == "text"] == [6, 16, 20, 23, 24, 27, 28]
    assert [n for n, t in types.items() if t == "year"] == [7]
    assert [n for n, t in types.items() if t == "multi"] == [9, 12, 13, 14, 21]
    assert types[17] == "single"
    q9 = young.question("q9")
    assert q9.exclusive == ["no"] and q9.option("no").text == "нет"
    assert q9.note and q9.note.startswith("inferred")
    assert young.question("q17").note.startswith("inferred")
    assert young.question("q7").year_bounds(dt.date(2025, 5, 1)) == (1950, 2025)


def test_young_teacher_exact_texts(young):
    r = young.rendered()
    assert r.question("q1").text == "Ваш пол"
    assert r.question("q13").text == "Дефицит каких знаний и умений Вы испытываете в работе"
    assert r.question("q28").text == (
        "Какие мероприятия, встречи, организованные Клубом молодых педагогов, "
        "Вам бы хотелось посетить в следующем учебном году?"
    )
    assert [o.text for o in r.question("q4").options] == [
        "Среднее профессиональное",
        "Высшее – специалитет",  # en dash, as in the source
        "Высшее - магистратура",
        "Высшее - бакалавриат",
        "Высшее - подготовка кадров высшей квалификации",
        "Аспирантура",
        "Другое:",
    ]
    assert r.question("q14").option("qualification").text == (
        'В повышении квалификации (поясните в строке "другое" по каким вопросам)'
    )
    assert r.preamble.split("\n") == [
        "Уважаемые молодые педагоги! Информационно-методический центр проводит ежегодный опрос "
        "среди молодых педагогов (педагогический стаж работы до 3 лет) для определения степени "
        "эффективности научно-методического сопровождения и поддержки молодых педагогов и "
        "организации работы по профессиональному развитию молодых педагогов в следующем учебном году.",
        "Просим Вас ответить на ниже приведенные вопросы.",
        "Благодарим за сотрудничество!",
    ]


def test_young_teacher_other_options(young):
    for q in young.questions:
        for opt in q.options:
            assert opt.other == (opt.text == "Другое:"), (q.code, opt.text)
    with_other = [q.number for q in young.questions if q.other_option]
    assert with_other == [4, 5, 8, 11, 12, 13, 14, 15, 17, 18, 21]


def test_young_teacher_feeds(young):
    def codes(code):
        return {o.code for o in young.question(code).options if not o.other}

    assert young.question("q12").feeds == "difficulty"
    assert codes("q12") == {d.value for d in Difficulty}
    assert young.question("q13").feeds == "deficit_group"
    assert [o.code for o in young.question("q13").options] == [
        DeficitGroup.SUBJECT, DeficitGroup.PSYCHOLOGICAL, DeficitGroup.METHODICAL,
        DeficitGroup.COMMUNICATIVE, DeficitGroup.SELFORG, "other",
    ]
    assert young.question("q14").feeds == "need"
    assert codes("q14") == {n.value for n in Need}


def test_young_teacher_conditions(young):
    yes = young.question("q26").option("yes")
    assert yes.text == "Да"
    for code in ("q27", "q28"):
        cond = young.question(code).when
        assert cond == Condition(question="q26", equals="yes")
    cond = young.question("q27").when
    assert cond.is_met("yes") and not cond.is_met("no") and not cond.is_met(None)


def test_teacher_support(support):
    assert support.anonymous is True
    assert support.audience == "all_teachers"
    assert support.source == "Приложение 2"
    assert len(support.questions) == 17
    assert [q.number for q in support.questions] == list(range(1, 18))
    assert [q.number for q in support.questions if q.type == "matrix"] == [2, 5, 8]
    assert [len(q.rows) for q in support.questions if q.type == "matrix"] == [5, 3, 3]
    q1 = support.question("q1")
    assert q1.feeds == "help_direction"
    assert {o.code for o in q1.options if not o.other} == {h.value for h in HelpDirection}
    assert q1.option("assessment").text == "Мотивирование и формирующее оценивание учащихся"
    assert q1.other_option.text == "Если хотите, сформулируйте Ваш вариант ответа:"
    assert support.question("q4").other_option.other_prompt == (
        "Если Вы отметили «Другое», по возможности, укажите, что имелось в виду:"
    )
    assert support.question("q14").option("y15_19").text == "14–19"
    for q in support.questions:
        assert q.required == (q.type != "text"), q.code
        assert "*" not in q.text and "*" not in (q.hint or "")
    r = support.rendered()
    assert r.preamble.startswith(
        "Уважаемые коллеги! Приглашаем к участию в социологическом исследовании по проблемам "
        "методического сопровождения в общеобразовательных организациях Кировского района "
        "Санкт-Петербурга.\n"
    )
    assert [o.text for o in r.question("q4").options][2:6] == [
        "На сайте ИМЦ", "На сайте СПб АППО", "На сайте Комитета по образованию", "На сайте ГДТЮ",
    ]
    assert r.question("q8").rows[2].text == "...городского уровня и выше?"


def test_course_and_event_feedback(builtin):
    course = builtin["course_feedback"]
    assert course.source == "Приложение 1"
    assert [q.number for q in course.questions] == list(range(1, 8))
    assert [q.type for q in course.questions] == ["single"] * 6 + ["text"]
    assert course.questions[-1].required is False
    assert [o.text for o in course.question("recommend").options] == [
        "Да или скорее да", "Затрудняюсь ответить.", "Скорее нет или однозначно нет",
    ]
    assert course.rendered({"programme": "«Формирующее оценивание»"}).title == (
        "Анкета слушателя по итогам обучения по дополнительной профессиональной программе "
        "«Формирующее оценивание»"
    )
    assert course.rendered().title.endswith("программе _____")
    assert course.rendered().preamble.startswith("Уважаемый слушатель! ИМЦ Кировского района стремится")

    event = builtin["event_feedback"]
    assert event.source == "по мотивам Приложения 1"
    singles = [q for q in event.questions if q.type == "single"]
    assert len(singles) == 4 and all(len(q.options) == 3 for q in singles)
    assert event.questions[-1].type == "text" and event.questions[-1].required is False
    assert all("программ" not in q.text for q in event.questions)


# ---------------------------------------------------------------- placeholders


def test_placeholders_default_reproduces_source(young):
    assert render("{club_name_genitive}", {}) == "Клуба молодых педагогов Кировского района"
    r = young.rendered()
    assert r.question("q19").text == "Посещаете ли Вы консультации методистов ИМЦ по своей предметной области"
    assert r.question("q24").text == (
        "В каких городских мероприятиях Вы приняли участие в этом учебном году? "
        '(Герценовская олимпиада, конференция "Созвездие молодых" и т.д.)'
    )
    assert r.question("q26").text == (
        "Принимаете ли Вы участие в мероприятиях Клуба молодых педагогов Кировского района?"
    )
    assert r.question("q27").text == "Какие мероприятия Клуба молодых педагогов Вам наиболее интересны и почему?"
    # the unrendered model keeps the placeholders
    assert placeholders_in(young.question("q26").text) == ["club_name_genitive"]


def test_placeholders_other_municipality(young, support):
    r = young.rendered(VSEVOLOZHSK)
    assert r.question("q26").text == (
        "Принимаете ли Вы участие в мероприятиях Ассоциации молодых педагогов Всеволожского района?"
    )
    assert r.question("q28").text.startswith(
        "Какие мероприятия, встречи, организованные Ассоциацией молодых педагогов, Вам"
    )
    assert r.question("q19").text == "Посещаете ли Вы консультации методистов ВРМЦ по своей предметной области"
    assert r.preamble.startswith("Уважаемые молодые педагоги! Всеволожский районный методический центр проводит")
    s = support.rendered(VSEVOLOZHSK)
    assert "Всеволожского района Ленинградской области." in s.preamble
    assert s.question("q4").option("mms_site").text == "На сайте ВРМЦ"
    # a placeholder without a value falls back to its default
    assert s.question("q4").option("youth_centre_site").text == "На сайте ГДТЮ"


def test_render_rules():
    assert render("{mms_name}: {programme}", {"mms_name": "ИМДЦ", "programme": None}) == "ИМДЦ: _____"
    assert render("без подстановок", {"unused": "x"}) == "без подстановок"
    with pytest.raises(KeyError):
        render("{no_such_placeholder}", {})


def test_builtin_placeholders_are_known(builtin):
    texts = []
    for qn in builtin.values():
        texts += [qn.title, qn.subtitle, qn.preamble, qn.closing]
        for q in qn.questions:
            texts += [q.text, q.hint] + [r.text for r in q.rows]
            texts += [t for o in q.options for t in (o.text, o.other_prompt)]
    used = {name for text in texts if text for name in placeholders_in(text)}
    # every placeholder is known, and every known placeholder is used somewhere
    assert used == set(PLACEHOLDER_DEFAULTS)


def test_feed_codes_cover_taxonomy():
    assert FEED_CODES["difficulty"] == {d.value for d in Difficulty}
    assert FEED_CODES["need"] == {n.value for n in Need}


# ---------------------------------------------------------------- loader and validation

BASE = """\
code: demo
version: 1
title: "Демо"
source: "test"
audience: young_teachers
preamble: "Текст"
questions:
  - code: a
    number: 1
    text: "Вопрос A"
    type: single
    options:
      - {code: "yes", text: "Да"}
      - {code: "no", text: "Нет"}
"""


def _line(text: str, marker: str) -> int:
    """1-based number of the first line containing marker."""
    for number, line in enumerate(text.splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"marker {marker!r} not in text")


def _assert_error(text: str, marker: str, *fragments: str) -> QuestionnaireError:
    with pytest.raises(QuestionnaireError) as info:
        load_questionnaire(text)
    message = str(info.value)
    line = _line(text, marker)
    assert f"line {line}:" in message, message
    assert info.value.line == line
    for fragment in fragments:
        assert fragment in message, message
    return info.value


def _with(extra: str) -> str:
    """BASE plus more question items (written flush left, indented here under `questions:`)."""
    return BASE + textwrap.indent(textwrap.dedent(extra), "  ")


def test_base_is_valid():
    q = load_questionnaire(BASE)
    assert q.code == "demo" and q.anonymous is False and q.closing is None


def test_load_from_path(tmp_path: Path):
    path = tmp_path / "demo.yaml"
    path.write_text(BASE, encoding="utf-8")
    assert load_questionnaire(path).code == "demo"
    assert load_questionnaire(str(path)).code == "demo"
    broken = tmp_path / "broken.yaml"
    broken.write_text(BASE.replace("version: 1", "version: 0"), encoding="utf-8")
    with pytest.raises(QuestionnaireError, match=r"^broken\.yaml, line 2: version"):
        load_questionnaire(broken)


def test_error_duplicate_question_code():
    text = _with("""\
      - code: a  # dup
        number: 2
        text: "Снова A"
        type: text
    """)
    _assert_error(text, "# dup", "duplicate question code 'a'")


def test_error_duplicate_option_code():
    text = _with("""\
      - code: b
        number: 2
        text: "Вопрос B"
        type: multi
        options:
          - {code: x, text: "Икс"}
          - {code: x, text: "Икс снова"}  # dup
    """)
    _assert_error(text, "# dup", "duplicate option code 'x'")


def test_error_choice_without_options():
    text = _with("""\
      - code: b  # here
        number: 2
        text: "Вопрос B"
        type: single
    """)
    _assert_error(text, "# here", "needs options")


def test_error_options_on_text_question():
    text = _with("""\
      - code: b
        number: 2
        text: "Вопрос B"
        type: text
        options:  # here
          - {code: x, text: "Икс"}
    """)
    _assert_error(text, "# here", "cannot have options")


def test_error_matrix_without_rows():
    text = _with("""\
      - code: m  # here
        number: 2
        text: "Матрица"
        type: matrix
        options:
          - {code: "yes", text: "Да"}
    """)
    _assert_error(text, "# here", "needs rows")


def test_error_unknown_exclusive_code():
    text = _with("""\
      - code: b
        number: 2
        text: "Вопрос B"
        type: multi
        exclusive:
          - nothing  # here
        options:
          - {code: x, text: "Икс"}
    """)
    _assert_error(text, "# here", "exclusive code 'nothing'")


def test_error_when_refers_to_later_question():
    text = BASE.replace(
        '    type: single\n',
        '    type: single\n    when: {question: b, equals: "yes"}  # here\n',
    ) + textwrap.indent(textwrap.dedent("""\
      - code: b
        number: 2
        text: "Вопрос B"
        type: single
        options:
          - {code: "yes", text: "Да"}
    """), "  ")
    _assert_error(text, "# here", "earlier question")


def test_error_when_refers_to_unknown_option():
    text = _with("""\
      - code: b
        number: 2
        text: "Вопрос B"
        type: text
        when:
          question: a
          equals: maybe  # here
    """)
    _assert_error(text, "# here", "'maybe' is not an option of question 'a'")


def test_error_when_needs_one_test():
    text = _with("""\
      - code: b
        number: 2
        text: "Вопрос B"
        type: text
        when: {question: a}  # here
    """)
    _assert_error(text, "# here", "exactly one of 'equals' or 'includes'")


def test_error_feeds_unknown_code_and_other_exemption():
    text = _with("""\
      - code: b
        number: 2
        text: "Трудности"
        type: multi
        feeds: difficulty
        options:
          - {code: discipline, text: "Дисциплина"}
          - {code: boredom, text: "Скука"}  # here
          - {code: other, text: "Другое:", other: true}
    """)
    _assert_error(text, "# here", "'boredom' is not a difficulty code")
    valid = text.replace('      - {code: boredom, text: "Скука"}  # here\n', "")
    assert load_questionnaire(valid).question("b").feeds == "difficulty"


def test_error_unknown_placeholder():
    text = _with("""\
      - code: b
        number: 2
        text: "Консультации методистов {mms_nmae}"  # here
        type: text
    """)
    _assert_error(text, "# here", "unknown placeholder {mms_nmae}")


def test_error_two_other_options():
    text = _with("""\
      - code: b
        number: 2
        text: "Вопрос B"
        type: single
        options:
          - {code: other, text: "Другое:", other: true}
          - {code: other2, text: "Иное:", other: true}  # here
    """)
    _assert_error(text, "# here", "more than one 'other' option")


def test_error_pydantic_unknown_key_and_bad_value():
    text = _with("""\
      - code: b
        number: 2
        text: "Вопрос B"
        type: text
        requried: false  # here
    """)
    _assert_error(text, "# here", "questions[1].requried", "Extra inputs are not permitted")
    text = _with("""\
      - code: b
        number: 2
        text: "Вопрос B"
        type: choice  # here
    """)
    _assert_error(text, "# here", "questions[1].type")


def test_error_yaml_syntax_and_duplicate_key():
    text = BASE + "  - code: b\n    text: \"unclosed\n"
    with pytest.raises(QuestionnaireError, match=r"line \d+: invalid YAML"):
        load_questionnaire(text)
    text = BASE.replace('title: "Демо"\n', 'title: "Демо"\ntitle: "Снова"  # here\n')
    _assert_error(text, "# here", "duplicate key")


def test_rendered_does_not_mutate(young):
    before = young.question("q26").text
    young.rendered(VSEVOLOZHSK)
    assert young.question("q26").text == before
