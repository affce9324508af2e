"""The command line for the shift's own work: notifications (and, below, workflow items and the message log).

Kept apart from engine.cli so that module stays about incidents and administration; engine.cli adds these
verbs' parsers (`add_parsers`) and runs them (`COMMANDS`). Each verb signs in, asks the rule book, calls one
engine function and prints its answer (or the JSON of it with --json).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.errors import ValidationError
from engine.permissions import Action

if TYPE_CHECKING:
    from engine.cli import Runner

AddParser = Callable[..., argparse.ArgumentParser]


def add_parsers(add: AddParser, common: argparse.ArgumentParser, json_flag: argparse.ArgumentParser) -> None:
    p = add(
        "notifications",
        "your notifications (yours and your role's), newest first; `notifications read` marks them read",
        json_flag,
    )
    p.add_argument("--unread", action="store_true", help="only the unread ones")
    p.add_argument("--limit", type=_positive_int, default=50, metavar="N", help="at most N (default 50)")
    n_sub = p.add_subparsers(dest="notifications_command", metavar="ACTION")
    rp = n_sub.add_parser("read", help="mark one notification read, or --all of them", parents=[common])
    rp.add_argument("id", nargs="?", type=_positive_int, metavar="ID")
    rp.add_argument("--all", action="store_true", help="mark every unread notification read")


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
    table = format_table(
        rows,
        (
            ("id", "ID"),
            ("new", "NEW"),
            ("created_at", "AT"),
            ("to", "TO"),
            ("about", "ABOUT"),
            ("title", "TITLE"),
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


COMMANDS: dict[str, Callable[[Runner], int]] = {"notifications": cmd_notifications}
