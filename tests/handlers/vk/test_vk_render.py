"""Drawing replies for VK: limits of texts and keyboards, random ids, files (no network unless named)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from dialogs.model import OutButton, OutFile, OutMessage, Reply
from handlers.vk.render import (
    CONTINUATION,
    ClientCaps,
    keyboards,
    plan_reply,
    random_id,
    send_reply,
    short_label,
    split_text,
)
from tests.support.fake_vk import validate_keyboard

USER = 300_301


def rows_of(*sizes: int, label: str = "Вариант") -> list[list[OutButton]]:
    counter = iter(range(1000))
    return [[OutButton(f"{label} {next(counter)}", f"abcdef.{i}") for i in range(size)] for size in sizes]


def labels(board: str) -> list[str]:
    return [button["action"]["label"] for row in json.loads(board)["buttons"] for button in row]


def test_a_long_text_is_split_at_paragraphs_within_9000_characters():
    paragraphs = [("Абзац %d. " % i) + "слово " * 300 for i in range(10)]
    text = "\n\n".join(p.strip() for p in paragraphs)

    parts = split_text(text)

    assert all(len(part) <= 9000 for part in parts) and len(parts) > 1
    assert all(part.startswith("Абзац") for part in parts)
    assert "".join(parts).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")


def test_a_text_without_breaks_is_cut_hard_and_nothing_is_lost():
    text = "я" * 9001

    assert split_text(text) == ["я" * 9000, "я"]


def test_emoji_count_double_so_parts_stay_within_the_limit_in_utf16():
    text = "😀" * 5000

    parts = split_text(text)

    assert [len(p.encode("utf-16-le")) // 2 for p in parts] == [9000, 1000]


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("аб в\n😀x"), max_size=400), st.integers(min_value=5, max_value=60))
def test_split_keeps_every_visible_character_in_order(text, limit):
    parts = split_text(text, limit)

    assert all(len(p.encode("utf-16-le")) // 2 <= limit for p in parts)
    visible = "".join(ch for ch in text if not ch.isspace())
    assert "".join(ch for ch in "".join(parts) if not ch.isspace()).replace(CONTINUATION, "") == visible


def test_labels_over_40_characters_are_cut_with_an_ellipsis():
    label = "Работа с детьми с особыми образовательными потребностями"

    assert short_label(label) == label[:39] + "…"
    assert len(short_label(label)) == 40
    assert short_label("Школа") == "Школа"


def test_a_screen_with_more_than_ten_buttons_spreads_over_keyboards_within_the_inline_limits():
    rows = rows_of(1, 1, 1, 1, 1, 1, 1, 1, 2, 2)  # 8 choices, page arrows, back and cancel

    boards = keyboards(rows)

    assert len(boards) == 2
    for board in boards:
        validate_keyboard(board)
        parsed = json.loads(board)
        assert parsed["inline"] and len(parsed["buttons"]) <= 6
    assert sum(map(len, map(labels, boards))) == 12


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=8), max_size=15), st.booleans(), st.booleans())
def test_keyboards_never_exceed_vk_limits_and_keep_every_button_when_inline(sizes, inline, callback):
    rows = rows_of(*sizes, label="Очень длинное название варианта для проверки")
    caps = ClientCaps(inline=inline, callback=callback)

    boards = keyboards(rows, caps)

    for board in boards:
        validate_keyboard(board)  # raises on anything VK would refuse (error 911)
    if inline:
        assert sum(len(labels(b)) for b in boards) == sum(sizes)
    else:
        assert len(boards) <= 1


def test_buttons_carry_the_engine_token_as_callback_payload():
    (board,) = keyboards([[OutButton("Да", "x1y2z3.0")]])

    (button,) = json.loads(board)["buttons"][0]
    assert button["action"] == {"type": "callback", "label": "Да", "payload": '{"t":"x1y2z3.0"}'}


def test_without_callback_support_buttons_are_text_buttons_with_the_same_payload():
    (board,) = keyboards([[OutButton("Да", "x1y2z3.0")]], ClientCaps(callback=False))

    (button,) = json.loads(board)["buttons"][0]
    assert button["action"]["type"] == "text" and json.loads(button["action"]["payload"]) == {"t": "x1y2z3.0"}


def test_a_client_without_inline_keyboards_gets_a_standard_one_that_is_hidden_on_a_screen_without_buttons():
    caps = ClientCaps(inline=False)

    with_buttons = plan_reply(Reply([OutMessage("Выбор", rows_of(1, 1))]), caps)
    without = plan_reply(Reply([OutMessage("Напишите ФИО")]), caps)

    standard = json.loads(with_buttons[-1].keyboard)
    assert "inline" not in standard and len(standard["buttons"]) == 2
    assert json.loads(without[-1].keyboard) == {"one_time": False, "buttons": []}


def test_a_client_without_keyboards_sees_the_choices_listed_in_the_text():
    (part,) = plan_reply(Reply([OutMessage("Кто вы?", [[OutButton("Наставник", "t.0")]])]), ClientCaps(keyboard=False))

    assert part.text == "Кто вы?\n\n• Наставник" and part.keyboard is None


def test_the_keyboard_goes_with_the_last_part_of_a_long_text():
    message = OutMessage("слово " * 2000, rows_of(1))

    parts = plan_reply(Reply([message]))

    assert len(parts) == 2 and parts[0].keyboard is None and parts[1].keyboard is not None


def test_random_ids_are_stable_positive_and_distinct_per_part():
    ids = [random_id("u:event", i) for i in range(50)]

    assert ids == [random_id("u:event", i) for i in range(50)]
    assert len(set(ids)) == 50 and all(0 < i < 2**31 for i in ids)
    assert random_id("u:other", 0) != ids[0]


async def test_files_are_uploaded_and_attached_after_the_text(fake, vk_client):
    report = OutFile("Отчёт.xlsx", b"PK\x03\x04 synthetic", "document", caption="Сводка за ноябрь")
    chart = OutFile("chart.png", b"\x89PNG synthetic", "photo")
    reply = Reply([OutMessage("Ваши файлы:", files=[report, chart])])

    sent = await send_reply(vk_client, USER, reply, key="u:files")

    text, doc, photo = fake.messages_to(USER)
    assert sent.parts == 3 and sent.settled and text["text"] == "Ваши файлы:"
    assert doc["text"] == "Сводка за ноябрь" and doc["attachments"][0].startswith("doc-")
    assert photo["attachments"][0].startswith("photo-")
    assert fake.uploads[0]["bytes"] == report.content and fake.uploads[1]["bytes"] == chart.content
    assert fake.calls_to("docs.save")[0]["params"]["title"] == "Отчёт.xlsx"


async def test_a_screen_over_the_limit_arrives_as_several_messages_whose_buttons_all_work(vk_person, fake):
    person = vk_person(USER)
    await person.start()
    await person.tap("Всеволожский район")
    await person.tap("Согласен(на)")
    await person.tap("Молодой (начинающий) педагог")
    await person.write("Петрова Анна Сергеевна")
    await person.tap("Школа")
    await person.write("СОШ")
    await person.tap("МОБУ «СОШ № 2», Кудрово")

    assert len(person.last) == 2 and person.last[1]["text"] == CONTINUATION
    assert all(len(fake.buttons_of(m)) <= 10 for m in person.last)
    assert "« Назад" in person.buttons() and "Отмена" in person.buttons()
    await person.tap("Отмена")
    assert person.text().startswith("Общая информация")
