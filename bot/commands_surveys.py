"""Command-line tools for questionnaires: `export` a campaign's answers, `import-questionnaire FILE`.

`register(commands)` adds both to `python -m bot` (see `_extensions` in bot/__main__.py); the
two `*_cli` functions do the work on a `Database` and return the exit status, so tests and
other wiring can call them directly.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO

from dialogs.questionnaires.schema import QuestionnaireError
from storage.models import utcnow
from storage.services import export as export_service
from storage.services import surveys as survey_service
from storage.models_surveys import SurveyCampaign
from storage.services.errors import Conflict
from storage.unit_of_work import Database


async def export_campaign_cli(
    db: Database, campaign_id: int, fmt: str, out_path: str | Path, *, out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Write a campaign's submitted answers to `out_path` as CSV or XLSX; 0 on success, 1 otherwise."""
    out, err = out or sys.stdout, err or sys.stderr
    if fmt not in export_service.FORMATS:
        print(f"format must be one of: {', '.join(export_service.FORMATS)}", file=err)
        return 1
    async with db.unit() as uow:
        campaign = await uow.session.get(SurveyCampaign, campaign_id)
        if campaign is None:
            print(f"no campaign {campaign_id}", file=err)
            return 1
        version = await survey_service.version_by_id(uow, campaign.version_id)
        table = await export_service.campaign_table(uow, campaign)
    exported = export_service.render_file(table, campaign, version.code, fmt)
    path = Path(out_path)
    if path.is_dir():
        path = path / exported.name
    path.write_bytes(exported.content)
    print(f"exported {len(table.rows)} responses of campaign {campaign_id} to {path}", file=out)
    return 0


async def import_questionnaire_cli(
    db: Database, path: str | Path, *, municipality_code: str | None = None, now: datetime | None = None,
    out: TextIO | None = None, err: TextIO | None = None,
) -> int:
    """Validate a questionnaire file and store it as a new version; errors name the file and line."""
    out, err = out or sys.stdout, err or sys.stderr
    now = now or utcnow()
    async with db.unit() as uow:
        municipality_id = None
        if municipality_code:
            municipality = await uow.reference.municipality_by_code(municipality_code)
            if municipality is None:
                print(f"no municipality {municipality_code}", file=err)
                return 1
            municipality_id = municipality.id
        try:
            stored = await survey_service.import_questionnaire(uow, Path(path), now=now,
                                                               municipality_id=municipality_id)
        except QuestionnaireError as error:
            print(f"not imported: {error}", file=err)
            return 1
        except OSError as error:
            print(f"not imported: cannot read {path}: {error.strerror}", file=err)
            return 1
        except Conflict:
            print("not imported: a questionnaire with this code belongs to another owner; choose another code",
                  file=err)
            return 1
        await uow.commit()
    version = stored.version
    if stored.created:
        print(f"imported {version.code} as version {version.version}: {version.title}", file=out)
    else:
        print(f"{version.code} is unchanged: it is already stored as version {version.version}", file=out)
    return 0


# ---- `python -m bot` subcommands ---------------------------------------------------------------------


async def _with_db(settings, work) -> int:
    from bot.wiring import build_app

    app = await build_app(settings)
    try:
        async with app.db.unit() as uow:
            await survey_service.sync_builtin_questionnaires(uow, now=utcnow())
            await uow.commit()
        return await work(app.db)
    finally:
        await app.close()


async def cmd_export(settings, args: argparse.Namespace) -> int:
    fmt = args.format or Path(args.out).suffix.lstrip(".").lower() or "xlsx"
    return await _with_db(settings, lambda db: export_campaign_cli(db, args.campaign, fmt, args.out))


async def cmd_import_questionnaire(settings, args: argparse.Namespace) -> int:
    return await _with_db(
        settings, lambda db: import_questionnaire_cli(db, args.file, municipality_code=args.municipality)
    )


def register(commands) -> None:
    """Add `export` and `import-questionnaire` to the command line."""
    export = commands.add_parser("export", help="export a campaign's answers to CSV or XLSX")
    export.add_argument("campaign", type=int, help="campaign id (shown in the bot's campaign list)")
    export.add_argument("out", help="output file (.csv or .xlsx) or folder")
    export.add_argument("--format", choices=list(export_service.FORMATS), help="default: from the file name")
    export.set_defaults(handler=cmd_export)

    imported = commands.add_parser(
        "import-questionnaire", help="validate a questionnaire YAML file and store it as a new version"
    )
    imported.add_argument("file")
    imported.add_argument("--municipality", help="code of the municipality that owns it (default: everyone)")
    imported.set_defaults(handler=cmd_import_questionnaire)
