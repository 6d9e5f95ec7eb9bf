"""Assemble every flow and command into the registry the engine interprets."""

from __future__ import annotations

from dialogs.context import Ctx
from dialogs.engine import Command, Registry, check_flow
from dialogs.flows import (
    deficits,
    digest,
    events,
    linking,
    menu,
    mentoring,
    onboarding,
    privacy,
    questionnaire,
    registration,
)
from storage.services import consent as consent_service

# Each feature module exposes FLOWS (a list of Flow) and may expose COMMANDS (a list of Command);
# importing it also registers its main-menu entries.
FEATURES = [onboarding, registration, menu, questionnaire, deficits, mentoring, events, linking, privacy, digest]


async def has_consent(ctx: Ctx) -> bool:
    """Whether the person has a current consent (flows that collect personal data need it)."""
    return await consent_service.current_consent(ctx.uow, ctx.who) is not None


def build_registry() -> Registry:
    """All flows and commands of the bot."""
    registry = Registry(entry="start", consent_flow="consent", member_flow="registration", consent_check=has_consent)
    for feature in FEATURES:
        registry.add(*feature.FLOWS)
        for command in getattr(feature, "COMMANDS", []):
            registry.command(command)
    registry.command(Command("start", "flow:start", description="Начать или продолжить"))
    registry.command(Command("menu", "flow:menu", description="Главное меню"))
    registry.command(Command("profile", "flow:profile", description="Мой профиль"))
    registry.command(Command("help", inline=lambda ctx: onboarding.HELP, description="Справка", in_sticky=True))
    registry.command(Command("cancel", "flow:menu", description="Прервать текущее действие", in_sticky=True))
    problems = [problem for flow in registry.flows.values() for problem in check_flow(flow, list(registry.flows))]
    if problems:
        raise RuntimeError("broken flows: " + "; ".join(problems))
    return registry
