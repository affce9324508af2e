"""Who each level would page now, for the escalate-to-level dialog: the running escalation's snapshot, else the
incident's policy; people by name, addresses as written, and why a target reaches nobody. Both databases."""

from __future__ import annotations

from engine import api, board
from engine.config_io import import_text
from engine.context import AppContext
from engine.db import read_session

LEVELS_CENTRE = """
version: 1
people:
  - {handle: thandi, name: Thandi Nkosi, phone: "+27825550101"}
  - {handle: sipho, name: Sipho Dlamini, phone: "+27825550102"}
teams:
  - {handle: fire, name: Fire & Rescue, members: [thandi, sipho]}
  - {handle: spare, name: Spare crew, members: []}
policies:
  - name: fire
    levels:
      - {level: 1, targets: [{type: person, identifier: thandi}]}
      - {level: 2, delay_seconds: 120, targets: [{type: team, identifier: fire}]}
      - level: 3
        delay_seconds: 120
        targets: [{type: team, identifier: spare}, {type: email, identifier: ops@example.org}]
"""


def test_each_level_says_who_it_would_page_now_and_why_a_target_reaches_nobody(ctx: AppContext) -> None:
    import_text(ctx, LEVELS_CENTRE, "centre.yaml", actor="tester")
    paged = api.trigger(ctx, policy="fire", summary="Smoke, Block C").incident_id
    quiet = api.trigger(ctx, policy=None, summary="Noise complaint").incident_id
    with read_session(ctx.sessions) as s:
        found = board.escalation_levels(s, paged, ctx.clock.now())
        nothing = board.escalation_levels(s, quiet, ctx.clock.now())
    assert found["policy"] == "fire"
    assert [level["who"] for level in found["levels"]] == [
        ["Thandi Nkosi"],
        ["Thandi Nkosi", "Sipho Dlamini"],
        ["ops@example.org"],
    ]
    assert found["levels"][2]["nobody"] == ["team Spare crew has no active members"]
    assert found["levels"][0]["nobody"] == []
    assert nothing["levels"] == []
