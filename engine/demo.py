"""Demo data: a small, living dispatch centre for a newcomer to look at.

`load_demo` imports resources/demo/centre.yaml (eight people, two teams, a weekly duty-officer rota, three
policies, a business calendar and SLA configs per category) through the ordinary configuration import, installs
the shipped message templates (English, isiZulu, Afrikaans), and then raises a handful of incidents through the
engine's public API, acknowledging one and resolving another, so the board, the timeline and the outbox have
something in them. It refuses a database that already holds policies or incidents: demo data must never be
mixed into a real centre's records by accident.
"""

from __future__ import annotations

import contextlib
import importlib.resources
from dataclasses import dataclass
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import config_io
from engine.context import AppContext
from engine.db import read_session, write_session
from engine.errors import WatchkeeperError
from engine.models import Incident, Policy
from engine.permissions import Identity

DEMO_ACTOR = "demo"
DEMO_SOURCE = "centre.yaml"


@dataclass(frozen=True)
class DemoIncident:
    summary: str
    severity: str
    category: str
    site: str
    policy: str
    team: str
    details: str = ""
    reporter_name: str | None = None
    reporter_contact: str | None = None
    reporter_language: str = "en"
    then: str = ""  # "", "acknowledge" or "resolve"
    by: str = ""


DEMO_INCIDENTS: tuple[DemoIncident, ...] = (
    DemoIncident(
        summary="Structure fire, informal settlement, Umlazi Section C",
        severity="critical",
        category="fire",
        site="Umlazi",
        policy="critical-incidents",
        team="fire-rescue",
        details="Caller reports three dwellings alight and spreading; residents evacuating towards the school.",
        reporter_name="Zanele Khumalo",
        reporter_contact="+27825550201",
        reporter_language="zu",
    ),
    DemoIncident(
        summary="Cardiac arrest, Moses Mabhida Stadium, gate 4",
        severity="critical",
        category="medical",
        site="Durban Central",
        policy="critical-incidents",
        team="medical",
        details="Male, about 60, collapsed in the queue; bystander CPR in progress, AED on site.",
        reporter_name="Event medic desk",
        reporter_contact="+27315550202",
        then="acknowledge",
        by="nomvula.zulu",
    ),
    DemoIncident(
        summary="Two-vehicle collision, N2 southbound near Amanzimtoti off-ramp",
        severity="high",
        category="medical",
        site="Amanzimtoti",
        policy="standard-incidents",
        team="medical",
        details="One patient trapped, one walking wounded; SAPS on scene, left lane closed.",
    ),
    DemoIncident(
        summary="Burst water main flooding Florida Road, Morningside",
        severity="medium",
        category="infrastructure",
        site="Morningside",
        policy="standard-incidents",
        team="medical",
        details="Water across both lanes outside no. 214; traffic diverted by metro police.",
        reporter_name="Pieter Joubert",
        reporter_contact="pieter.joubert@example.net",
        reporter_language="af",
    ),
    DemoIncident(
        summary="Street lights out along Umgeni Road between the Connaught and Argyle bridges",
        severity="low",
        category="infrastructure",
        site="Durban Central",
        policy="standard-incidents",
        team="medical",
        then="resolve",
        by="kavitha.naidoo",
    ),
    DemoIncident(
        summary="Gas smell reported at Pinetown library, building evacuated",
        severity="high",
        category="fire",
        site="Pinetown",
        policy="standard-incidents",
        team="fire-rescue",
        details="Library staff evacuated 40 people to the car park; Egoli Gas notified.",
    ),
)


def demo_document_text() -> str:
    return (importlib.resources.files("resources") / "demo" / "centre.yaml").read_text(encoding="utf-8")


def demo_policy_names() -> set[str]:
    document = yaml.safe_load(demo_document_text())
    return {str(p["name"]) for p in document.get("policies", [])}


def has_centre_data(session: Session) -> bool:
    """True when the database holds incidents, or policies other than the demo's own: a real centre, or a
    demo already loaded. (A demo that stopped before its incidents may be loaded again: import is an upsert.)"""
    incidents = session.scalar(select(func.count()).select_from(Incident)) or 0
    policies = set(session.scalars(select(Policy.name)))
    return bool(incidents) or bool(policies - demo_policy_names())


def load_demo(ctx: AppContext, *, force: bool = False, by: Identity | str = DEMO_ACTOR) -> dict[str, Any]:
    """Load the demo centre; refuses (WatchkeeperError) a database with policies or incidents unless `force`.
    `by`: who loads it (a supervisor or administrator; the audit trail names them).

    Returns counts of what was loaded."""
    with read_session(ctx.sessions) as session:
        if has_centre_data(session) and not force:
            raise WatchkeeperError(
                "the database already has policies or incidents; the demo is only loaded into an empty "
                "database (start Watchkeeper with a new database file to try it)"
            )
    imported = config_io.import_text(ctx, demo_document_text(), DEMO_SOURCE, by)
    simulated = simulate_unset_channels(ctx)
    templates = install_templates(ctx)
    incidents, acknowledged, resolved = raise_incidents(ctx)
    return {
        "people": imported["people"],
        "teams": imported["teams"],
        "schedules": imported["schedules"],
        "policies": imported["policies"],
        "sla": imported["sla"],
        "calendars": imported["calendars"],
        "templates": templates,
        "incidents": len(incidents),
        "acknowledged": acknowledged,
        "resolved": resolved,
        "simulated_channels": simulated,
    }


def simulate_unset_channels(ctx: AppContext) -> list[str]:
    """The demo rehearses paging: the channels this site has not set up run simulated (saved in the settings,
    where Settings shows it and an administrator turns it off), so the demo's pages show as delivered and
    nobody's phone rings. A site that already sends on a channel keeps sending on it."""
    from engine.channels.setup import setup_gaps, simulated_channels

    wanted = sorted(set(setup_gaps(ctx.settings)) | simulated_channels(ctx.settings))
    if wanted and wanted != sorted(ctx.settings.simulated_channels):
        ctx.settings.simulated_channels = wanted
        with contextlib.suppress(OSError):  # a read-only settings file: simulated for this run only
            ctx.settings.save()
    return wanted


def install_templates(ctx: AppContext) -> int:
    """The shipped templates in every shipped language (engine.templates); an operator's own edits stay."""
    from engine.templates import install_default_templates

    with write_session(ctx.sessions) as session:
        return install_default_templates(session, ctx.clock.now(), by=DEMO_ACTOR)


def raise_incidents(ctx: AppContext) -> tuple[list[int], int, int]:
    """The demo incidents, through the public API as a dispatcher would raise them."""
    from engine import api

    ids: list[int] = []
    acknowledged = resolved = 0
    for n, spec in enumerate(DEMO_INCIDENTS, start=1):
        result = api.trigger(
            ctx,
            policy=spec.policy,
            summary=spec.summary,
            key=f"demo-{n}",
            severity=spec.severity,
            category=spec.category,
            site=spec.site,
            details=spec.details,
            source="operator",
            actor=DEMO_ACTOR,
            team=spec.team,
            reporter_name=spec.reporter_name,
            reporter_contact=spec.reporter_contact,
            reporter_language=spec.reporter_language,
        )
        ids.append(result.incident_id)
        if spec.then == "acknowledge":
            api.acknowledge(ctx, result.incident_id, by=spec.by, via="console")
            acknowledged += 1
        elif spec.then == "resolve":
            api.resolve(
                ctx, result.incident_id, by=spec.by, via="console", note="Repaired by the municipal crew."
            )
            resolved += 1
    return ids, acknowledged, resolved
