"""The rule book: who may do what. Every entry point (console, command line, HTTP) asks here, and nowhere else.

A person acts through an `Identity`: an operator account signed in with its password, an API token (a script
or another system, named by its label), the local administrator of a SQLite file (the operating-system user
who owns it, see engine.cli), or the engine itself. Each action has the lowest role that may do it; a higher
role may do everything a lower one may. `RULES` also says where each action is offered (console, command
line, HTTP), which is what the README's permission table and the tests that drive every entry point read.

`authorize` is the check the entry points make: for an account it reads the account's role and state again
from the database, so an administrator's change (a new role, a disabled account) counts from that person's
next action, not from their next sign-in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from engine.errors import WatchkeeperError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# The roles of engine.models.Role, lowest first (kept here as text so the command line can read the rule book
# without loading the data model).
OP, SUP, ADM = "operator", "supervisor", "admin"
ROLE_RANK = {OP: 0, SUP: 1, ADM: 2}
ROLES = tuple(ROLE_RANK)


class PermissionDenied(WatchkeeperError):
    """The person signed in may not do this (the message names the role it needs)."""


class Action(StrEnum):
    VIEW_INCIDENTS = "view_incidents"
    OPEN_INCIDENT = "open_incident"
    ACKNOWLEDGE = "acknowledge"
    START_WORK = "start_work"
    RESOLVE = "resolve"
    ESCALATE = "escalate"
    ADD_NOTE = "add_note"
    ASSIGN = "assign"
    CLASSIFY = "classify"
    REOPEN = "reopen"
    CANCEL = "cancel"
    VIEW_REPORTS = "view_reports"
    HANDOVER = "handover"
    NOTIFICATIONS = "notifications"
    WORKFLOW_ITEMS = "workflow_items"
    MESSAGE_LOG = "message_log"
    RESEND_MESSAGE = "resend_message"
    CHANGE_OWN_PASSWORD = "change_own_password"
    VIEW_CONFIGURATION = "view_configuration"
    EDIT_CONFIGURATION = "edit_configuration"
    MASTER_SWITCHES = "master_switches"
    EDIT_SETTINGS = "edit_settings"
    MANAGE_SECRETS = "manage_secrets"
    TEST_SEND = "test_send"
    VIEW_AUDIT = "view_audit"
    MANAGE_ROUTING_KEYS = "manage_routing_keys"
    MANAGE_API_TOKENS = "manage_api_tokens"
    MANAGE_ACCOUNTS = "manage_accounts"
    DATABASE_ROLES = "database_roles"


@dataclass(frozen=True)
class Rule:
    action: Action
    least: str  # the lowest role that may do it
    says: str  # what it is, in the README's words
    console: str = ""  # where the console offers it ("" = not in the console)
    cli: str = ""  # the command-line verbs ("" = not on the command line)
    http: str = ""  # the HTTP routes ("" = not over HTTP)


RULES: tuple[Rule, ...] = (
    Rule(
        Action.VIEW_INCIDENTS,
        OP,
        "see incidents, their timelines and messages, and who is on call",
        "Board, incident detail",
        "`list`, `show`, `oncall`",
        "`GET /api/incidents`, `GET /api/incidents/{id}`, `GET /api/oncall`",
    ),
    Rule(
        Action.OPEN_INCIDENT,
        OP,
        "open an incident",
        "New incident (Ctrl+N)",
        "`trigger`",
        "`POST /api/incidents`",
    ),
    Rule(Action.ACKNOWLEDGE, OP, "acknowledge", "A, `ack`", "`ack`", "`POST …/acknowledge`"),
    Rule(
        Action.START_WORK,
        OP,
        'mark in progress ("I\'m on it")',
        "W, `work`",
        "`start-work`",
        "`POST …/start-work`",
    ),
    Rule(Action.RESOLVE, OP, "resolve", "R, `res`", "`resolve`", "`POST …/resolve`"),
    Rule(Action.ESCALATE, OP, "escalate now", "E, Shift+E, `esc`", "`escalate`", "`POST …/escalate`"),
    Rule(Action.ADD_NOTE, OP, "add a note", "N, `note`", "`note`", "`POST …/notes`"),
    Rule(Action.ASSIGN, OP, "re-assign to a team or person", "G, `assign`", "`assign`", "`POST …/assign`"),
    # An operator: whoever takes the call sets the category and the flag when opening the incident, and the
    # timeline names whoever changes them later (a recorded breach stays recorded).
    Rule(
        Action.CLASSIFY,
        OP,
        "change an incident's category or sensitive flag",
        "K, `classify`, Classify… in the incident detail",
        "`classify`",
        "`POST …/classify`",
    ),
    Rule(Action.REOPEN, OP, "re-open a closed incident", "`reopen`", "`reopen`", "`POST …/reopen`"),
    Rule(Action.CANCEL, SUP, "cancel an incident", "Delete, `cancel`", "`cancel`", "`POST …/cancel`"),
    Rule(
        Action.VIEW_REPORTS,
        OP,
        "see statistics and closed incidents",
        "Statistics, History",
        "`stats`",
        "`GET /api/stats`",
    ),
    Rule(
        Action.HANDOVER,
        OP,
        "write and read the shift handover",
        "File → Sign out, File → Handover",
        "`handover`",
        "`GET`/`POST /api/handover`",
    ),
    Rule(
        Action.NOTIFICATIONS,
        OP,
        "see one's own, one's role's and one's teams' notifications and mark them read",
        "Notifications (F3): Enter, Mark all read",
        "`notifications`",
        "`/api/notifications`",
    ),
    Rule(
        Action.WORKFLOW_ITEMS,
        OP,
        "see, add, re-assign and complete workflow items",
        "Work items (N, G, D)",
        "`items`",
        "`/api/items`",
    ),
    Rule(
        Action.MESSAGE_LOG,
        OP,
        "see the message log (every message, its status, cost and error)",
        "Messages",
        "`messages`",
        "`GET /api/messages`",
    ),
    Rule(
        Action.RESEND_MESSAGE,
        OP,
        "retry a failed message, or send a message again on another channel",
        "Messages: R, S",
        "`messages retry`, `messages resend`",
        "`POST /api/messages/{id}/retry`, `…/resend`",
    ),
    Rule(
        Action.CHANGE_OWN_PASSWORD,
        OP,
        "change one's own password",
        "File → Change password",
        "`users passwd`",
    ),
    Rule(
        Action.VIEW_CONFIGURATION,
        OP,
        "see and export the configuration, settings and switches",
        "Editors (read-only), Export YAML, Settings (read-only)",
        "`export`, `switches list`, `secrets list`",
        "`GET /api/config`, `GET /api/switches`",
    ),
    Rule(
        Action.EDIT_CONFIGURATION,
        SUP,
        "save, delete and import configuration; load the demo",
        "Editors: Save, Delete, Import YAML",
        "`import`, `demo`",
        "`POST /api/config`",
    ),
    Rule(
        Action.MASTER_SWITCHES,
        SUP,
        "turn the master switches on or off",
        "Settings → Engine",
        "`switches set`",
        "`PUT /api/switches/{name}`",
    ),
    Rule(Action.EDIT_SETTINGS, SUP, "change this workstation's settings", "Settings: Save"),
    Rule(
        Action.MANAGE_SECRETS,
        SUP,
        "set or remove secrets (keyring)",
        "Settings: token, password, Remove",
        "`secrets set`, `secrets delete`",
    ),
    Rule(Action.TEST_SEND, SUP, "send a test message", "Settings: Send test", "`test-send`"),
    Rule(
        Action.VIEW_AUDIT,
        SUP,
        "see and export the audit trail",
        "Audit (CSV export)",
        "`audit`",
        "`GET /api/audit`",
    ),
    Rule(
        Action.MANAGE_ROUTING_KEYS,
        ADM,
        "create, list and revoke Events API routing keys",
        "",
        "`keys`",
        "`/api/routing-keys`",
    ),
    Rule(
        Action.MANAGE_API_TOKENS,
        ADM,
        "create, list and revoke API tokens",
        "",
        "`tokens`",
        "`/api/tokens`",
    ),
    Rule(
        Action.MANAGE_ACCOUNTS,
        ADM,
        "add, change, disable and enable accounts, reset passwords, see last sign-ins",
        "Editors → Accounts",
        "`users`",
        "`/api/users`",
    ),
    Rule(
        Action.DATABASE_ROLES,
        ADM,
        "create the PostgreSQL roles and grants of a shared database",
        "",
        "`db roles`",
    ),
)

RULE_OF: dict[Action, Rule] = {rule.action: rule for rule in RULES}
assert set(RULE_OF) == set(Action), "every action needs a rule"


def least_role(action: Action | str) -> str:
    return RULE_OF[Action(action)].least


def role_allows(role: str, action: Action | str) -> bool:
    """The rule book itself: may a person with `role` do `action`?"""
    return ROLE_RANK.get(role, -1) >= ROLE_RANK[least_role(action)]


@dataclass(frozen=True)
class Identity:
    """Who acts. `name` is what the audit trail and the timeline record: the account's user name, `api:<label>`
    for a token, `local:<login>` for a SQLite file's owner, `system` for the engine and internal callers."""

    name: str
    role: str
    kind: str = "account"  # account, token, local, system
    account_id: int | None = None
    display_name: str = ""
    person_id: int | None = None
    via: str = ""  # console, cli, api

    def can(self, action: Action | str) -> bool:
        return self.kind == "system" or role_allows(self.role, action)

    def require(self, action: Action | str) -> None:
        """PermissionDenied unless this identity's role allows `action` (no database look-up)."""
        if not self.can(action):
            raise PermissionDenied(denied_message(self, Action(action)))

    @property
    def label(self) -> str:
        return self.display_name or self.name


SYSTEM = Identity(name="system", role=ADM, kind="system")


def system(name: str) -> Identity:
    """An internal caller (the demo loader, a migration, a test) named in the audit trail; never refused."""
    return Identity(name=name or "system", role=ADM, kind="system")


def as_identity(actor: Identity | str) -> Identity:
    """Engine functions accept an Identity or, from internal callers, a plain name (a system identity)."""
    return actor if isinstance(actor, Identity) else system(actor)


def denied_message(identity: Identity, action: Action) -> str:
    rule = RULE_OF[action]
    who = (
        f"token {identity.name.removeprefix('api:')!r} has role {identity.role}"
        if identity.kind == "token"
        else f"{identity.label} is signed in as {identity.role or 'no role'}"
    )
    article = "an" if rule.least[0] in "aeiou" else "a"
    higher = "" if rule.least == ADM else " or higher"
    return f"{who}; only {article} {rule.least}{higher} may {rule.says}"


def refresh(session: Session, identity: Identity) -> Identity:
    """The identity with its account's current role; PermissionDenied when the account is gone or disabled."""
    if identity.kind != "account" or identity.account_id is None:
        return identity
    from sqlalchemy import select

    from engine.models import Operator

    row = session.execute(
        select(Operator.role, Operator.active, Operator.person_id).where(Operator.id == identity.account_id)
    ).first()
    if row is None or not row.active:
        raise PermissionDenied(f"the account {identity.name!r} has been disabled; sign in again")
    if row.role == identity.role and row.person_id == identity.person_id:
        return identity
    return replace(identity, role=row.role, person_id=row.person_id)


def authorize(session: Session, identity: Identity, action: Action | str) -> Identity:
    """Check `action` against the account as it is now in the database; returns the refreshed identity."""
    current = refresh(session, identity)
    current.require(action)
    return current


def permission_table() -> list[tuple[Rule, dict[str, bool]]]:
    """Every rule with its yes/no per role, in the README's order."""
    return [(rule, {role: role_allows(role, rule.action) for role in ROLES}) for rule in RULES]
