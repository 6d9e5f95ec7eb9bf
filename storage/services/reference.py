"""Loading reference data (municipalities with their rules, organisations) from YAML or CSV."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from sqlalchemy import select

from storage.models import Municipality, Organisation
from storage.taxonomy import OrgKind
from storage.repositories.reference import forget_reference_cache
from storage.unit_of_work import UnitOfWork

DEMO_FILE = Path(__file__).resolve().parent.parent / "reference_data" / "demo.yaml"
MUNICIPALITY_FIELDS = (
    "name", "region", "timezone", "young_max_experience_years", "young_max_age", "operator_name",
    "operator_contacts", "retention_months", "texts",
)


class ReferenceError(ValueError):
    """A reference file is malformed; the message names the row or entry."""


@dataclass
class ImportReport:
    """What an import changed."""

    municipalities: int = 0
    organisations: int = 0


def _check_kind(kind: str, where: str) -> str:
    if kind not in {k.value for k in OrgKind}:
        raise ReferenceError(f"{where}: kind must be one of {', '.join(k.value for k in OrgKind)}, not {kind!r}")
    return kind


def _check_texts(texts: dict, where: str) -> None:
    """Per-municipality wording must use the questionnaires' placeholder names."""
    from dialogs.questionnaires.schema import PLACEHOLDER_DEFAULTS

    unknown = sorted(set(texts) - set(PLACEHOLDER_DEFAULTS))
    if unknown:
        raise ReferenceError(
            f"{where}: unknown texts {', '.join(unknown)}; known: {', '.join(sorted(PLACEHOLDER_DEFAULTS))}"
        )


def _check_timezone(name: str, where: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReferenceError(f"{where}: unknown timezone {name!r} (use an IANA name such as Europe/Moscow)") from None
    return name


async def import_reference(uow: UnitOfWork, path: Path, *, municipality_code: str | None = None) -> ImportReport:
    """Load a YAML file of municipalities with organisations, or a CSV of organisations.

    YAML: `municipalities: [{code, name, region, timezone, ..., organisations: [{name, kind}]}]`.
    CSV: columns `municipality` (code, or the --municipality option), `name`, `kind`.
    Existing rows are updated by municipality code and organisation name; nothing is deleted.
    """
    forget_reference_cache()
    if path.suffix.lower() in (".yaml", ".yml"):
        return await _import_yaml(uow, yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    if path.suffix.lower() == ".csv":
        return await _import_csv(uow, path, municipality_code)
    raise ReferenceError(f"{path.name}: expected a .yaml or .csv file")


async def _import_yaml(uow: UnitOfWork, document: dict) -> ImportReport:
    report = ImportReport()
    entries = document.get("municipalities")
    if not isinstance(entries, list):
        raise ReferenceError("the file needs a top-level list `municipalities`")
    for index, entry in enumerate(entries, start=1):
        where = f"municipality #{index}"
        if not isinstance(entry, dict) or not entry.get("code") or not entry.get("name"):
            raise ReferenceError(f"{where}: needs at least code and name")
        _check_timezone(str(entry.get("timezone", "Europe/Moscow")), where)
        _check_texts(entry.get("texts") or {}, where)
        municipality = await uow.reference.municipality_by_code(str(entry["code"]))
        if municipality is None:
            municipality = Municipality(code=str(entry["code"]), texts={}, consent_revision=1)
            report.municipalities += 1
        for name in MUNICIPALITY_FIELDS:
            if name in entry:
                setattr(municipality, name, entry[name])
        municipality.timezone = municipality.timezone or "Europe/Moscow"
        municipality.region = municipality.region or ""
        municipality.operator_name = municipality.operator_name or municipality.name
        municipality.operator_contacts = municipality.operator_contacts or ""
        uow.session.add(municipality)
        await uow.flush()
        for org_index, org in enumerate(entry.get("organisations") or [], start=1):
            org_where = f"{where}, organisation #{org_index}"
            if not isinstance(org, dict) or not org.get("name"):
                raise ReferenceError(f"{org_where}: needs a name")
            report.organisations += await _upsert_org(
                uow, municipality.id, str(org["name"]), _check_kind(str(org.get("kind", "school")), org_where)
            )
    await uow.flush()
    return report


async def _import_csv(uow: UnitOfWork, path: Path, municipality_code: str | None) -> ImportReport:
    report = ImportReport()
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for line, row in enumerate(reader, start=2):
            code = (row.get("municipality") or municipality_code or "").strip()
            if not code:
                raise ReferenceError(f"line {line}: no municipality (add a column or pass --municipality)")
            municipality = await uow.reference.municipality_by_code(code)
            if municipality is None:
                raise ReferenceError(f"line {line}: unknown municipality {code!r}; import it from YAML first")
            name = (row.get("name") or "").strip()
            if not name:
                raise ReferenceError(f"line {line}: empty name")
            kind = _check_kind((row.get("kind") or "school").strip(), f"line {line}")
            report.organisations += await _upsert_org(uow, municipality.id, name, kind)
    await uow.flush()
    return report


async def _upsert_org(uow: UnitOfWork, municipality_id: int, name: str, kind: str) -> int:
    existing = (
        await uow.session.execute(
            select(Organisation).where(Organisation.municipality_id == municipality_id, Organisation.name == name)
        )
    ).scalar_one_or_none()
    if existing is None:
        uow.session.add(Organisation(municipality_id=municipality_id, name=name, kind=kind))
        return 1
    existing.kind = kind
    return 0


async def ensure_demo_reference(uow: UnitOfWork) -> bool:
    """Load the demo municipalities when the database has none (a fresh install)."""
    if await uow.reference.municipalities():
        return False
    await import_reference(uow, DEMO_FILE)
    return True
