"""The board's command line for proficient dispatchers: `ack 1234`, `res 1234`, `esc 1234 3`, `new …`,
`classify 1234 roads sensitive`.

Parsing is a pure function (tested on its own); the board turns a Command into the same engine.api call its
buttons make. Several incidents may be named at once (`ack 12 13 14`); with none, the selected rows are meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VERBS = {
    "ack": "acknowledge",
    "a": "acknowledge",
    "acknowledge": "acknowledge",
    "res": "resolve",
    "r": "resolve",
    "resolve": "resolve",
    "esc": "escalate",
    "e": "escalate",
    "escalate": "escalate",
    "note": "note",
    "n": "note",
    "cancel": "cancel",
    "can": "cancel",
    "assign": "assign",
    "as": "assign",
    "reopen": "reopen",
    "classify": "classify",
    "cl": "classify",
    "k": "classify",
    "work": "start_work",
    "w": "start_work",
    "open": "show",
    "show": "show",
    "new": "new",
    "find": "find",
    "/": "find",
}

HELP = (
    "ack ID… · work ID… (I'm on it) · res ID… [note] · esc ID [level] · note ID text · cancel ID reason · "
    "assign ID team|person HANDLE (or: assign ID me) · classify ID [category] [sensitive|not-sensitive] · "
    "reopen ID · show ID · new summary · find text"
)
# The sensitive flag in `classify`: never SLA-monitored, or monitored again.
_FLAGS = {"sensitive": True, "not-sensitive": False, "notsensitive": False, "unsensitive": False}


class CommandError(ValueError):
    """A command line that cannot be run; the message says how to write it."""


@dataclass(frozen=True)
class Command:
    action: str
    ids: tuple[int, ...] = ()
    level: int | None = None
    text: str = ""
    target_kind: str = ""  # assign: "team" or "person"
    target: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    sensitive: bool | None = None  # classify: the new flag, None to leave it


def _id(token: str) -> int:
    token = token.lstrip("#")
    if not token.isdigit():
        raise CommandError(f"{token!r} is not an incident number")
    return int(token)


def parse_command(line: str) -> Command:
    text = line.strip()
    if not text:
        raise CommandError("type a command: " + HELP)
    if text.startswith("/"):
        return Command("find", text=text[1:].strip())
    verb_token, _, rest = text.partition(" ")
    verb = VERBS.get(verb_token.lower())
    if verb is None:
        raise CommandError(f"unknown command {verb_token!r}: " + HELP)
    rest = rest.strip()
    tokens = rest.split()

    if verb == "new":
        if not rest:
            raise CommandError("new needs a summary: new Smoke reported, Block C")
        return Command("new", text=rest)
    if verb == "find":
        return Command("find", text=rest)
    if verb in ("acknowledge", "reopen", "show", "start_work"):
        ids = tuple(_id(t) for t in tokens)
        if verb == "show" and len(ids) != 1:
            raise CommandError("show needs one incident number: show 1234")
        return Command(verb, ids=ids)
    if verb == "resolve":
        ids: list[int] = []
        for n, token in enumerate(tokens):
            if token.lstrip("#").isdigit():
                ids.append(_id(token))
            else:
                return Command("resolve", ids=tuple(ids), text=" ".join(tokens[n:]))
        return Command("resolve", ids=tuple(ids))
    if verb == "escalate":
        if len(tokens) > 2:
            raise CommandError("esc takes an incident number and an optional level: esc 1234 3")
        ids = [_id(tokens[0])] if tokens else []
        level = None
        if len(tokens) == 2:
            raw = tokens[1].lower().lstrip("l")
            if not raw.isdigit() or int(raw) < 1:
                raise CommandError(f"{tokens[1]!r} is not a level: esc 1234 3")
            level = int(raw)
        return Command("escalate", ids=tuple(ids), level=level)
    if verb == "classify":
        # classify [ID] [category] [sensitive|not-sensitive]; with neither, the K dialog asks for them.
        if tokens and tokens[0].lstrip("#").isdigit():
            ids, words = [_id(tokens[0])], tokens[1:]
        else:
            ids, words = [], tokens
        flags = [_FLAGS[w.lower()] for w in words if w.lower() in _FLAGS]
        if len(flags) > 1:
            raise CommandError("classify takes sensitive or not-sensitive, not both: classify 1234 sensitive")
        category = " ".join(w for w in words if w.lower() not in _FLAGS)
        return Command("classify", ids=tuple(ids), text=category, sensitive=flags[0] if flags else None)
    if verb in ("note", "cancel"):
        if not tokens:
            raise CommandError(f"{verb_token} needs an incident number and text: {verb_token} 1234 text")
        if tokens[0].lstrip("#").isdigit():
            ids, words = [_id(tokens[0])], tokens[1:]
        else:
            ids, words = [], tokens
        if not words:
            what = "a reason" if verb == "cancel" else "the note text"
            raise CommandError(f"{verb_token} needs {what}: {verb_token} 1234 …")
        return Command(verb, ids=tuple(ids), text=" ".join(words))
    # assign
    if tokens and tokens[0].lstrip("#").isdigit():
        ids, tokens = [_id(tokens[0])], tokens[1:]
    else:
        ids = []
    if tokens and tokens[0].lower() == "me":  # the person linked to the signed-in account
        return Command("assign", ids=tuple(ids), target_kind="person", target="me", text=" ".join(tokens[1:]))
    if len(tokens) < 2 or tokens[0].lower() not in ("team", "person"):
        raise CommandError("assign needs: assign 1234 team HANDLE  (or person HANDLE)")
    return Command(
        "assign", ids=tuple(ids), target_kind=tokens[0].lower(), target=tokens[1], text=" ".join(tokens[2:])
    )
