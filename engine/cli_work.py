"""The command line for the shift's own work: notifications, who is on call, workflow items and the message log.

Kept apart from engine.cli so that module stays about incidents and administration; engine.cli adds these
verbs' parsers (`add_parsers`) and runs them (`COMMANDS`). Each verb signs in, asks the rule book, calls one
engine function and prints its answer (or the JSON of it with --json).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.errors import ValidationError
from engine.models import Channel, MessageStatus
from engine.permissions import Action

if TYPE_CHECKING:
    from engine.cli import Runner

AddParser = Callable[..., argparse.ArgumentParser]
STATUSES = [s.value for s in MessageStatus]
CHANNELS = [c.value for c in Channel]


def add_parsers(add: AddParser, common: argparse.ArgumentParser, json_flag: argparse.ArgumentParser) -> None:
    p = add(
        "notifications",
        "your notifications (yours, your role's, your teams'), newest first; `notifications read` marks them read",
        json_flag,
    )
    p.add_argument("--unread", action="store_true", help="only the unread ones")
    p.add_argument("--limit", type=_positive_int, default=50, metavar="N", help="at most N (default 50)")
    n_sub = p.add_subparsers(dest="notifications_command", metavar="ACTION")
    rp = n_sub.add_parser("read", help="mark one notification read, or --all of them", parents=[common])
    rp.add_argument("id", nargs="?", type=_positive_int, metavar="ID")
    rp.add_argument("--all", action="store_true", help="mark every unread notification read")

    add(
        "oncall", "who is on call now per team and schedule, until when, and who is next from when", json_flag
    )

    p = add("items", "workflow items: steps with a time limit (reminded at 1x, escalated to a role at 2x)")
    i_sub = p.add_subparsers(dest="items_command", metavar="ACTION", required=True)
    ip = i_sub.add_parser(
        "list",
        help="open items, soonest due first (or --status done|expired|all)",
        parents=[common, json_flag],
    )
    ip.add_argument("--status", choices=["open", "done", "expired", "all"], default="open")
    whose = ip.add_mutually_exclusive_group()
    whose.add_argument("--mine", action="store_true", help="only the items assigned to you")
    whose.add_argument("--assignee", metavar="HANDLE", help="only the items assigned to this person")
    ip.add_argument("--limit", type=_positive_int, default=100, metavar="N")
    ip = i_sub.add_parser("add", help="add an item, started now", parents=[common, json_flag])
    ip.add_argument("title", metavar="TITLE")
    ip.add_argument(
        "--time-limit",
        required=True,
        type=parse_duration,
        metavar="DURATION",
        help="e.g. 90s, 15m, 2h (a bare number is minutes)",
    )
    ip.add_argument("--incident", metavar="ID", help="the incident it belongs to (id or key)")
    ip.add_argument("--assignee", metavar="HANDLE", help="a person's handle, or 'me' (your linked person)")
    ip.add_argument(
        "--escalate-to",
        choices=["operator", "supervisor", "admin"],
        default="supervisor",
        help="the role told at twice the time limit (default supervisor)",
    )
    ip = i_sub.add_parser("assign", help="give an open item to a person", parents=[common, json_flag])
    ip.add_argument("id", type=_positive_int, metavar="ID")
    ip.add_argument("assignee", metavar="HANDLE", help="a person's handle, or 'me'")
    ip = i_sub.add_parser("done", help="mark an open item done", parents=[common, json_flag])
    ip.add_argument("id", type=_positive_int, metavar="ID")

    p = add(
        "messages",
        "the message log, newest first; `messages retry ID`, `messages resend ID --channel CH`",
        json_flag,
    )
    p.add_argument(
        "--status", choices=STATUSES, metavar="STATUS", help="e.g. failed, sent, delivered, pending"
    )
    p.add_argument("--channel", choices=CHANNELS, metavar="CHANNEL", help="sms, whatsapp, voice, email, …")
    p.add_argument("--person", metavar="HANDLE")
    p.add_argument("--incident", type=_positive_int, metavar="ID")
    p.add_argument("--since", type=_iso_datetime, metavar="ISO", help="from (ISO 8601; no offset means UTC)")
    p.add_argument("--until", type=_iso_datetime, metavar="ISO", help="until (ISO 8601; no offset means UTC)")
    p.add_argument("--limit", type=_positive_int, default=50, metavar="N")
    m_sub = p.add_subparsers(dest="messages_command", metavar="ACTION")
    mp = m_sub.add_parser(
        "retry", help="send a failed message again, as a new message", parents=[common, json_flag]
    )
    mp.add_argument("id", type=_positive_int, metavar="ID")
    mp = m_sub.add_parser(
        "resend",
        help="send a message again to the same person on another channel",
        parents=[common, json_flag],
    )
    mp.add_argument("id", type=_positive_int, metavar="ID")
    mp.add_argument("--channel", dest="to_channel", required=True, choices=CHANNELS, metavar="CHANNEL")


def _iso_datetime(text: str) -> Any:
    from engine.cli import _iso_datetime as parse

    return parse(text)


def parse_duration(text: str) -> int:
    """'90s', '15m', '2h' (or a bare number of minutes) as seconds; argparse reports anything else."""
    raw = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    scale = units.get(raw[-1:], 0)
    number = raw[:-1] if scale else raw
    if not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m or 2h")
    return int(number) * (scale or 60)


def _positive_int(text: str) -> int:
    from engine.cli import _positive_int as parse

    return parse(text)


def _print_json(value: Any, out: Any) -> None:
    from engine.cli import _print_json as dump

    dump(value, out)


def _show_notifications(data: dict[str, Any]) -> str:
    from engine.cli import format_table

    rows = data["notifications"]
    head = f"{data['unread']} unread"
    if not rows:
        return head + "; no notifications"
    for row in rows:
        row["new"] = "●" if row["unread"] else ""
        link = row["link"]
        row["about"] = f"{'incident' if link['kind'] == 'incident' else 'item'} {link['id']}" if link else ""
        row["read_by"] = row["read_by"] or ""
    table = format_table(
        rows,
        (
            ("id", "ID"),
            ("new", "NEW"),
            ("created_at", "AT"),
            ("to", "TO"),
            ("about", "ABOUT"),
            ("title", "TITLE"),
            ("read_by", "READ BY"),
        ),
    )
    return f"{head}\n{table}"


def cmd_notifications(runner: Runner) -> int:
    args = runner.args

    def run(_fn: Any, ctx: Any) -> int:
        from engine import inbox

        who = runner.authorized(ctx, Action.NOTIFICATIONS)
        if args.notifications_command == "read":
            if args.all == (args.id is not None):
                raise ValidationError("name one notification (ID) or --all", field="notifications read")
            if args.all:
                count = inbox.mark_all_read(ctx, who)
                runner.out.write(f"{count} notification(s) marked read\n")
            else:
                done = inbox.mark_read(ctx, who, args.id)
                runner.out.write(f"notification {done.id} marked read\n")
            return 0
        data = inbox.inbox(ctx, who, unread_only=args.unread, limit=args.limit)
        if args.json:
            _print_json(data, runner.out)
        else:
            runner.out.write(_show_notifications(data) + "\n")
        return 0

    return runner.with_context("notifications", "engine.inbox", "inbox", run)


ITEM_COLUMNS = (
    ("id", "ID"),
    ("status", "STATUS"),
    ("due_at", "DUE"),
    ("assignee", "ASSIGNEE"),
    ("incident_id", "INCIDENT"),
    ("escalate_to_role", "THEN"),
    ("title", "TITLE"),
)


def cmd_items(runner: Runner) -> int:
    args = runner.args

    def run(_fn: Any, ctx: Any) -> int:
        from engine import items
        from engine.cli import _ref, format_table
        from engine.db import read_session

        who = runner.authorized(ctx, Action.WORKFLOW_ITEMS)
        action = args.items_command
        if action == "list":
            if args.mine and who.person_id is None:
                raise ValidationError(f"{who.label} is not linked to a person record", field="--mine")
            with read_session(ctx.sessions) as session:
                assignee_id = who.person_id if args.mine else None
                if args.assignee:
                    assignee_id = items.person_id(session, args.assignee)
                rows = items.list_items(
                    session,
                    status=None if args.status == "all" else args.status,
                    assignee_id=assignee_id,
                    limit=args.limit,
                )
            data = [r.as_dict() for r in rows]
            if args.json:
                _print_json(data, runner.out)
            else:
                runner.out.write((format_table(data, ITEM_COLUMNS) if data else "no workflow items") + "\n")
            return 0
        if action == "add":
            done = items.create_item(
                ctx,
                who,
                title=args.title,
                time_limit_seconds=args.time_limit,
                incident=_ref(args.incident) if args.incident else None,
                assignee=_handle(ctx, who, args.assignee),
                escalate_to_role=args.escalate_to,
            )
            said = f"workflow item {done.id} added, due {done.due_at:%Y-%m-%d %H:%M} UTC"
        elif action == "assign":
            done = items.assign_item(ctx, who, args.id, str(_handle(ctx, who, args.assignee)))
            said = f"workflow item {done.id} assigned to {done.assignee_name}"
        else:
            done = items.complete_item(ctx, who, args.id)
            said = f"workflow item {done.id} done"
        if args.json:
            _print_json(done.as_dict(), runner.out)
        else:
            runner.out.write(said + "\n")
        return 0

    return runner.with_context("items", "engine.items", "create_item", run)


def _handle(ctx: Any, who: Any, handle: str | None) -> str | None:
    """A person's handle; 'me' is the person the signed-in account is linked to."""
    from engine.cli import _my_person

    return _my_person(ctx, who) if handle == "me" else handle


MESSAGE_COLUMNS = (
    ("id", "ID"),
    ("created_at", "CREATED"),
    ("incident_id", "INCIDENT"),
    ("person", "PERSON"),
    ("channel", "CHANNEL"),
    ("status", "STATUS"),
    ("cost", "COST"),
    ("provider_id", "PROVIDER ID"),
    ("error", "ERROR"),
)


def cmd_messages(runner: Runner) -> int:
    args = runner.args

    def run(_fn: Any, ctx: Any) -> int:
        from engine import messages
        from engine.cli import format_table
        from engine.db import read_session

        if args.messages_command in ("retry", "resend"):
            who = runner.authorized(ctx, Action.RESEND_MESSAGE)
            if args.messages_command == "retry":
                new = messages.retry(ctx, who, args.id)
                said = f"message {args.id} retried as message {new.id} ({new.channel} to {new.address})"
            else:
                new = messages.resend(ctx, who, args.id, args.to_channel)
                said = f"message {args.id} sent again as message {new.id} ({new.channel} to {new.address})"
            if args.json:
                _print_json(new.as_dict(), runner.out)
            else:
                runner.out.write(said + "\n")
            return 0
        runner.authorized(ctx, Action.MESSAGE_LOG)
        with read_session(ctx.sessions) as session:
            rows = messages.search(
                session,
                status=args.status,
                channel=args.channel,
                person=args.person,
                incident_id=args.incident,
                since=args.since,
                until=args.until,
                limit=args.limit,
            )
        data = [r.as_dict() for r in rows]
        if args.json:
            _print_json(data, runner.out)
            return 0
        for row in data:
            row["cost"] = f"{row['price']} {row['currency'] or ''}".strip() if row["price"] else ""
        runner.out.write((format_table(data, MESSAGE_COLUMNS) if data else "no messages") + "\n")
        return 0

    return runner.with_context("messages", "engine.messages", "search", run)


def on_call_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """engine.oncall.on_call_now as JSON-ready rows (the CLI's and HTTP's answer): times in ISO 8601."""
    return [{**e, "until": _iso(e["until"]), "next_from": _iso(e["next_from"])} for e in entries]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def cmd_oncall(runner: Runner) -> int:
    def run(on_call_now: Any, ctx: Any) -> int:
        from engine.cli import format_table
        from engine.db import read_session

        runner.authorized(ctx, Action.VIEW_INCIDENTS)
        with read_session(ctx.sessions) as session:
            rows = on_call_rows(on_call_now(session, ctx.clock.now()))
        if runner.args.json:
            _print_json(rows, runner.out)
            return 0
        for row in rows:
            row["who"] = " and ".join(row["now"]) or "nobody"
            row["team"] = ", ".join(row["teams"])
            row["then"] = " and ".join(row["next"])
        columns = (
            ("team", "TEAM"),
            ("name", "SCHEDULE"),
            ("who", "ON CALL"),
            ("until", "UNTIL"),
            ("then", "NEXT"),
            ("next_from", "FROM"),
        )
        runner.out.write((format_table(rows, columns) if rows else "no on-call schedules") + "\n")
        return 0

    return runner.with_context("oncall", "engine.oncall", "on_call_now", run)


COMMANDS: dict[str, Callable[[Runner], int]] = {
    "notifications": cmd_notifications,
    "oncall": cmd_oncall,
    "items": cmd_items,
    "messages": cmd_messages,
}
