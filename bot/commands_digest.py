"""`python -m bot digest --municipality CODE --week 2026-W48 --out DIR`: the weekly digest as files.

Writes digest.txt (the message), digest.png (the chart) and digest.xlsx (the workbook), the same
files a coordinator receives. `--region NAME` writes the regional comparison instead. Without
`--week` it is the last complete week (the one the Monday send delivers). `digest_cli` does the
work on a `Database` and returns the exit status, so tests can call it directly.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO

from storage.models import utcnow
from storage.services import digest as digest_service
from storage.services.errors import NotFound
from storage.unit_of_work import Database


async def digest_cli(
    db: Database, *, out_dir: str | Path, municipality_code: str | None = None, region: str | None = None,
    week: str | None = None, now: datetime | None = None, out: TextIO | None = None, err: TextIO | None = None,
) -> int:
    """Build a municipality's (or a region's) digest and write its three files; 0 on success, 1 otherwise."""
    out, err = out or sys.stdout, err or sys.stderr
    now = now or utcnow()
    if bool(municipality_code) == bool(region):
        print("give either --municipality CODE or --region NAME", file=err)
        return 1
    async with db.unit() as uow:
        if municipality_code:
            municipality = await uow.reference.municipality_by_code(municipality_code)
            if municipality is None:
                print(f"no municipality {municipality_code}", file=err)
                return 1
            timezone = municipality.timezone
        else:
            found = await digest_service.municipalities_of_region(uow, region)
            if not found:
                print(f"no municipalities in region {region!r}", file=err)
                return 1
            timezone = found[0].timezone
        try:
            if week:
                year, number = digest_service.parse_week(week)
            else:
                year, number = digest_service.shift_week(*digest_service.week_of(now, timezone), -1)
            if municipality_code:
                digest = await digest_service.build_digest(uow, municipality.id, year, number, now)
            else:
                digest = await digest_service.build_regional_digest(uow, region, year, number, now)
        except ValueError as error:
            print(f"bad week: {error}", file=err)
            return 1
        except NotFound as error:
            print(f"not found: {error}", file=err)
            return 1
    rendered = digest_service.render(digest)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "digest.txt").write_text(rendered.text + "\n", encoding="utf-8")
    (folder / "digest.png").write_bytes(rendered.chart)
    (folder / "digest.xlsx").write_bytes(rendered.workbook)
    print(f"digest {digest.period.label} written to {folder}: digest.txt, digest.png, digest.xlsx", file=out)
    return 0


async def cmd_digest(settings, args: argparse.Namespace) -> int:
    from bot.wiring import build_app

    app = await build_app(settings)
    try:
        return await digest_cli(app.db, out_dir=args.out, municipality_code=args.municipality, region=args.region,
                                week=args.week)
    finally:
        await app.close()


def register(commands) -> None:
    """Add `digest` to the command line."""
    digest = commands.add_parser("digest", help="write a weekly digest (text, PNG chart, XLSX) to a folder")
    digest.add_argument("--municipality", help="municipality code, e.g. vsevolozhsky")
    digest.add_argument("--region", help="region name: the regional comparison instead")
    digest.add_argument("--week", help="ISO week, e.g. 2026-W48 (default: the last complete week)")
    digest.add_argument("--out", required=True, help="folder for digest.txt, digest.png and digest.xlsx")
    digest.set_defaults(handler=cmd_digest)
