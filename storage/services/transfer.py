"""Move all data between databases (SQLite → PostgreSQL when a municipality moves up, and back).

The dump is JSON lines, one row per line in dependency order, following the schema's metadata,
so every table (present and future) is included.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, delete, func, insert, select, text

from storage.models_all import Base
from storage.unit_of_work import Database

BATCH = 1000
SKIP = {"alembic_version"}
PEOPLE_TABLES = ("members", "accounts", "conversations")


class TransferError(RuntimeError):
    """The target is not ready for the dump (not empty, or an unknown table)."""


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, (bytes, bytearray)):
        return {"$b64": base64.b64encode(value).decode()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        if "$dt" in value:
            return datetime.fromisoformat(value["$dt"])
        if "$b64" in value:
            return base64.b64decode(value["$b64"])
    return value


async def dump(db: Database, path: Path) -> dict[str, int]:
    """Write every row of every table to `path`; returns the row count per table."""
    counts: dict[str, int] = {}
    with path.open("w", encoding="utf-8") as out:
        async with db.unit() as uow:
            for table in Base.metadata.sorted_tables:
                if table.name in SKIP:
                    continue
                order = list(table.primary_key.columns)
                result = await uow.session.stream(select(table).order_by(*order))
                async for row in result:
                    record = {key: _encode(value) for key, value in row._mapping.items()}
                    out.write(json.dumps({"table": table.name, "row": record}, ensure_ascii=False) + "\n")
                    counts[table.name] = counts.get(table.name, 0) + 1
    return counts


async def load(db: Database, path: Path, *, replace: bool = False) -> dict[str, int]:
    """Insert a dump into a migrated database, replacing what it holds.

    A fresh install (no people in it: only reference rows seeded by migrations or demo data) is
    replaced silently; a database with people in it needs `replace=True`.
    """
    tables = {table.name: table for table in Base.metadata.sorted_tables}
    counts: dict[str, int] = {}
    async with db.unit() as uow:
        for name in PEOPLE_TABLES:
            if not replace and (await uow.session.execute(select(func.count()).select_from(tables[name]))).scalar_one():
                raise TransferError(f"table {name} is not empty; use --replace to overwrite the target")
        for table in reversed(Base.metadata.sorted_tables):
            await uow.session.execute(delete(table))
        batch: list[dict] = []
        current = None
        with path.open(encoding="utf-8") as source:
            for number, line in enumerate(source, start=1):
                item = json.loads(line)
                table = tables.get(item["table"])
                if table is None:
                    raise TransferError(f"line {number}: unknown table {item['table']!r} (migrate the target first)")
                if table is not current and batch:
                    await uow.session.execute(insert(current), batch)
                    batch = []
                current = table
                batch.append({key: _decode(value) for key, value in item["row"].items()})
                counts[table.name] = counts.get(table.name, 0) + 1
                if len(batch) >= BATCH:
                    await uow.session.execute(insert(current), batch)
                    batch = []
        if batch:
            await uow.session.execute(insert(current), batch)
        if uow.dialect == "postgresql":
            await _reset_sequences(uow)
        await uow.commit()
    return counts


async def _reset_sequences(uow) -> None:
    """After explicit ids were inserted, move PostgreSQL's sequences past them."""
    for table in Base.metadata.sorted_tables:
        primary = list(table.primary_key.columns)
        if len(primary) == 1 and isinstance(primary[0].type, Integer) and primary[0].autoincrement in (True, "auto"):
            await uow.session.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', '{primary[0].name}'), "
                    f"COALESCE((SELECT MAX({primary[0].name}) FROM {table.name}), 0) + 1, false)"
                )
            )
