"""How escalations start and move besides the clock: dedup and cooldown, the default policy, each policy
trigger, manual escalation to a level, re-opening, "I'm on it"."""

from __future__ import annotations

from engine import api
from engine.models import WorkflowItem

from .centre import SIPHO, THANDI, THREE_LEVELS, ZULU, centre
from .story import Story


def _policy(name: str, triggers: str, **level: str) -> str:
    extra = "".join(f"\n        {k}: {v}" for k, v in level.items())
    return f"""
version: 1
policies:
  - name: {name}
    triggers: {triggers}
    levels:
      - level: 1
        targets: [{{type: person, identifier: thandi}}]{extra}
      - level: 2
        delay: 2m
        targets: [{{type: person, identifier: sipho}}]
"""


def test_a_repeated_alert_joins_the_open_incident_and_pages_nobody_again(story: Story) -> None:
    centre(story, THREE_LEVELS)
    thandi = story.phone(THANDI)
    first = story.trigger("water", "Disk full on db1", key="db1-disk", source="monitoring")
    thandi.expect_sms("Disk full")
    story.advance(seconds=30)
    for _ in range(3):
        assert story.trigger("water", "Disk full on db1", key="db1-disk", source="monitoring") == first
    assert story.board(first)["status"] == "open"
    assert len(story.said(first, "retriggered")) == 3
    story.ack(first)
    thandi.expect_sms("acknowledged")
    story.advance(minutes=30)  # the monitor keeps sending: still the one incident, nobody paged
    assert story.trigger("water", "Disk full on db1", key="db1-disk", source="monitoring") == first
    story.quiet_for(minutes=30)
    story.finish()


def test_an_alert_back_within_the_cooldown_reopens_its_incident(story: Story) -> None:
    centre(story, _policy("flappy", "[unacknowledged]").replace("levels:", "cooldown: 10m\n    levels:"))
    thandi = story.phone(THANDI)
    first = story.trigger("flappy", "Link down, site 4", key="site4-link")
    thandi.expect_sms("Link down")
    story.resolve(first, by="monitoring")
    thandi.expect_sms("resolved")
    story.advance(minutes=3)
    assert story.trigger("flappy", "Link down, site 4", key="site4-link") == first  # within ten minutes
    thandi.expect_sms("Link down")  # paged again, on the same incident
    assert story.status(first) == "open"
    story.ack(first, by="Thandi Nkosi")
    story.resolve(first, by="monitoring")
    story.advance(minutes=11)
    second = story.trigger("flappy", "Link down, site 4", key="site4-link")
    assert second != first  # after the cooldown, a new incident
    thandi.expect_sms("Link down")
    story.ack(second, by="Thandi Nkosi")
    story.quiet_for(hours=1)
    story.finish()


def test_a_trigger_without_a_policy_uses_the_default_policy(story: Story) -> None:
    centre(story, THREE_LEVELS)
    story.load("version: 1\ndefault_policy: water\n")
    incident = story.trigger(None, "Caller reports smoke from a drain")
    story.phone(THANDI).expect_sms("smoke from a drain")
    assert story.board(incident)["policy"] == "water"
    story.ack(incident, by="Thandi Nkosi")
    story.quiet_for(hours=1)
    story.finish()


def test_a_manual_policy_waits_for_an_operator_then_escalates_to_the_chosen_level(story: Story) -> None:
    centre(story, _policy("by-hand", "[manual]"))
    incident = story.trigger("by-hand", "Noise complaint, Musgrave Rd", severity="low")
    story.advance(minutes=10)
    story.phone(THANDI).nothing()
    assert any("not when an incident opens" in line for line in story.said(incident, "not_escalated"))
    story.escalate(incident, level=2, by="Lerato (supervisor)")
    story.phone(SIPHO).expect_whatsapp("Noise complaint")
    story.phone(THANDI).nothing()  # straight to level 2
    assert story.status(incident) == "escalated"
    story.ack(incident)
    story.phone(SIPHO).expect_whatsapp("acknowledged")
    story.quiet_for(hours=1)
    story.finish()


def test_manual_escalation_to_a_level_pages_it_now(story: Story) -> None:
    centre(story, THREE_LEVELS)
    incident = story.trigger("water", "Reservoir overflow")
    story.phone(THANDI).expect_sms("Reservoir overflow")
    story.escalate(incident, level=3, by="Lerato (supervisor)")
    story.phone(ZULU).expect_sms("Reservoir overflow")
    assert story.board(incident)["current_level"] == 3
    assert any("by hand" in line for line in story.said(incident, "escalation_escalating"))
    story.ack(incident, by="Dr Zulu")
    story.phone(THANDI).expect_sms("acknowledged by Dr Zulu")
    story.quiet_for(hours=1)  # Sipho's level is never paged: the escalation is acknowledged
    story.phone(SIPHO).nothing()
    story.finish()


def test_a_reopened_incident_escalates_again_from_level_one(story: Story) -> None:
    centre(story, THREE_LEVELS)
    thandi = story.phone(THANDI)
    incident = story.trigger("water", "Manhole cover missing")
    thandi.expect_sms("Manhole cover")
    story.resolve(incident, by="Thandi Nkosi")
    story.advance(minutes=30)
    api.reopen(story.ctx, incident, by="Lerato (operator)", reason="caller says it is still open")
    story.run()
    thandi.expect_sms("Manhole cover")
    assert story.escalation_states(incident) == ["resolved", "active"]
    story.ack(incident, by="Thandi Nkosi")
    story.quiet_for(hours=1)
    story.finish()


def test_im_on_it_ends_paging_and_keeps_the_resolution_clock(story: Story) -> None:
    centre(story, THREE_LEVELS)
    incident = story.trigger("water", "Leak at the clinic")
    story.phone(THANDI).expect_sms("Leak at the clinic")
    api.start_work(story.ctx, incident, by="Thandi Nkosi")
    story.run()
    assert story.status(incident) == "in_progress"
    assert story.escalation_states(incident) == ["acknowledged"]
    story.quiet_for(hours=1)
    story.finish()


def test_an_sla_breach_policy_starts_only_at_the_breach(story: Story) -> None:
    centre(
        story,
        _policy("breach-only", "[sla_breach]"),
        """
version: 1
sla:
  - site: ""
    category: roads
    response: 15m
    resolution: 8h
    warning_percent: 80
""",
    )
    incident = story.trigger("breach-only", "Pothole on M4 fast lane", category="roads", severity="medium")
    story.advance(minutes=14)
    story.phone(THANDI).nothing()
    story.advance(minutes=1)
    story.phone(THANDI).expect_sms("Pothole on M4")
    assert story.status(incident) == "escalated"
    story.ack(incident, by="Thandi Nkosi")
    story.quiet_for(hours=1)
    story.finish()


def test_an_unresolved_policy_starts_when_the_resolution_deadline_passes(story: Story) -> None:
    centre(
        story,
        _policy("unresolved", "[unacknowledged, unresolved]"),
        """
version: 1
sla:
  - site: ""
    category: water
    response: 1h
    resolution: 30m
""",
    )
    thandi = story.phone(THANDI)
    incident = story.trigger("unresolved", "No water in Sydenham", category="water")
    thandi.expect_sms("No water")
    story.ack(incident, by="Thandi Nkosi")
    story.advance(minutes=29)
    thandi.nothing()
    story.advance(minutes=1)
    thandi.expect_sms("No water")  # acknowledged but not resolved in time: paged again by the policy
    assert story.escalation_states(incident) == ["acknowledged", "active"]
    story.ack(incident, by="Thandi Nkosi")
    story.quiet_for(hours=1)
    story.finish()


def test_a_repeated_failure_policy_pages_when_the_alert_comes_back(story: Story) -> None:
    centre(story, _policy("second-time", "[repeated_failure]"))
    thandi = story.phone(THANDI)
    incident = story.trigger("second-time", "Backup job failed", key="backup-nightly")
    story.advance(minutes=5)
    thandi.nothing()  # once may be a blip
    assert story.trigger("second-time", "Backup job failed", key="backup-nightly") == incident
    thandi.expect_sms("Backup job failed")
    story.ack(incident, by="Thandi Nkosi")
    story.quiet_for(hours=1)
    story.finish()


def test_an_overdue_policy_escalates_when_a_task_is_overdue_twice_over(story: Story) -> None:
    centre(story, _policy("tasks", "[unacknowledged, overdue]"))
    thandi, sipho = story.phone(THANDI), story.phone(SIPHO)
    incident = story.trigger("tasks", "Road closure needs signage")
    thandi.expect_sms("Road closure")
    story.ack(incident, by="Thandi Nkosi")
    with story.ctx.sessions.begin() as s:
        s.add(
            WorkflowItem(
                title="Put out the closure signs",
                incident_id=incident,
                time_limit_seconds=600,
                started_at=story.now,
            )
        )
    story.advance(minutes=20)
    # At twice its limit the task escalates the incident: its policy starts again from level 1.
    thandi.expect_sms("Road closure")
    assert story.status(incident) == "escalated"
    assert story.escalation_states(incident) == ["acknowledged", "active"]
    story.advance(minutes=2)
    sipho.expect_whatsapp("Road closure")
    story.resolve(incident, by="Thandi Nkosi")
    sipho.expect_whatsapp("resolved")
    story.quiet_for(hours=1)
    story.finish()
