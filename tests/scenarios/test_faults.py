"""When the world misbehaves: a template that breaks on real data, an acknowledgement racing the escalate pass
on PostgreSQL. Nothing costs a page, and nothing pages after the acknowledgement."""

from __future__ import annotations

from engine import api
from engine.api import TriggerRequest

from .centre import THANDI, centre
from .story import Story

FLAT = """
version: 1
policies:
  - name: flat
    levels:
      - level: 1
        targets: [{type: person, identifier: thandi}]
templates:
  - kind: page
    channel: sms
    language: en
    version: 2
    active: true
    body: "CUSTOM #{{ incident_id }} {{ summary }} load {{ 100 // (incident_id - 1) }}"
"""


def test_a_template_that_breaks_on_real_data_never_costs_a_page(story: Story) -> None:
    """The defect: a template that raised at render time (outside Jinja's own errors) failed the escalation —
    no page, no fallback — and on SQLite every later escalation in the same batch failed too. Incident #1
    divides by zero in the custom template: its page goes out on the shipped text and the timeline says why;
    incident #2, in the same batch, gets the custom text."""
    centre(story, FLAT)
    thandi = story.phone(THANDI)
    first, second = (
        r.incident_id
        for r in api.trigger_many(
            story.ctx,
            [
                TriggerRequest(policy="flat", summary="Pump 1 tripped"),
                TriggerRequest(policy="flat", summary="Pump 2 tripped"),
            ],
        )
    )
    story.run()
    assert first == 1
    page = thandi.expect_sms("Pump 1 tripped")
    assert not page.text.startswith("CUSTOM")
    (error,) = story.said(first, "template_error")
    assert "ZeroDivisionError" in error and "next template in line was used" in error
    assert thandi.expect_sms("Pump 2 tripped").text.startswith(f"CUSTOM #{second}")
    assert story.escalation_states(first) == story.escalation_states(second) == ["active"]
    for incident in (first, second):
        story.ack(incident, by="Thandi Nkosi")
    story.quiet_for(hours=1)
    story.finish()
