"""No personal data in logs, even at DEBUG and when something fails."""

from __future__ import annotations

import logging

from bot.__main__ import configure_logging
from tests.support.driver import register_teacher


async def test_registration_and_a_failure_log_no_personal_data(chat, caplog):
    configure_logging("DEBUG")
    caplog.set_level(logging.DEBUG)
    person = chat(1401)

    await register_teacher(person, name="Уникальнова Секретина Тестовна", birth_year="1998")
    await person.send("Уникальнова-Вторая Секретина")

    logged = "\n".join(record.getMessage() + str(record.exc_info or "") for record in caplog.records)
    assert "Уникальнова" not in logged and "Секретина" not in logged
