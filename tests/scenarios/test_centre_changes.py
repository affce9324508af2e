"""The centre changes while an escalation runs: a person is deleted, a rota changes hands, a policy is edited or
deleted, a schedule has nobody on call, a handle names nobody. The escalation keeps the policy it started
with; people are resolved when their level is paged; a level that reaches nobody is passed over at once."""

from __future__ import annotations

from engine.config_io import delete_object

from .centre import SIPHO, THANDI, THREE_LEVELS, ZULU, centre
from .story import Story

ON_CALL = """
version: 1
schedules:
  - handle: duty
    name: Duty officer
    timezone: Africa/Johannesburg
    rotations:
      - name: Daily
        start_date: "2026-12-01"
        handoff_time: "08:00"
        shift: 24h
        members: [sipho]
policies:
  - name: on-call
    levels:
      - level: 1
        targets: [{type: person, identifier: thandi}]
      - level: 2
        delay: 2m
        targets: [{type: schedule, identifier: duty}]
      - level: 3
        delay: 2m
        targets: [{type: person, identifier: zulu}]
"""

ROTA_HANDED_TO_ZULU = """
version: 1
schedules:
  - handle: duty
    name: Duty officer
    timezone: Africa/Johannesburg
    rotations:
      - name: Daily
        start_date: "2026-12-01"
        handoff_time: "08:00"
        shift: 24h
        members: [zulu]
"""

NOBODY_ON_CALL = """
version: 1
schedules:
  - handle: duty
    name: Duty officer
    timezone: Africa/Johannesburg
    rotations: []
"""


def test_a_person_deleted_while_paged_is_paged_no_more(story: Story) -> None:
    centre(story, THREE_LEVELS)
    thandi, sipho = story.phone(THANDI), story.phone(SIPHO)
    incident = story.trigger("water", "Burst main, Florida Rd")
    thandi.expect_sms("Burst main")
    delete_object(story.ctx, "people", "thandi", "supervisor")
    story.advance(minutes=2)
    sipho.expect_whatsapp("Burst main")
    story.advance(minutes=4)  # her five minutes pass: no WhatsApp, call or e-mail for a deleted person
    thandi.nothing()
    assert any("deleted or made inactive" in line for line in story.said(incident, "page_cancelled"))
    story.phone(ZULU).expect_sms("Burst main")  # the escalation itself goes on
    story.ack(incident)
    sipho.expect_whatsapp("acknowledged")
    story.phone(ZULU).expect_sms("acknowledged")
    story.quiet_for(hours=1)
    story.finish()


def test_a_rota_handed_over_mid_incident_pages_whoever_is_on_call_when_the_level_comes(story: Story) -> None:
    centre(story, ON_CALL)
    thandi, sipho, zulu = story.phone(THANDI), story.phone(SIPHO), story.phone(ZULU)
    incident = story.trigger("on-call", "Ambulance delayed, Inanda")
    thandi.expect_sms("Ambulance delayed")
    story.load(ROTA_HANDED_TO_ZULU)
    story.advance(minutes=2)
    zulu.expect_sms("Ambulance delayed")  # on call now, not Sipho who was on call when it started
    sipho.nothing()
    story.ack(incident)
    thandi.expect_sms("acknowledged")
    zulu.expect_sms("acknowledged")
    story.quiet_for(hours=1)
    story.finish()


def test_an_empty_on_call_schedule_is_passed_over_at_once(story: Story) -> None:
    centre(story, ON_CALL, NOBODY_ON_CALL)
    thandi, zulu = story.phone(THANDI), story.phone(ZULU)
    incident = story.trigger("on-call", "Power out at the pump house")
    thandi.expect_sms("Power out")
    story.advance(minutes=2)
    # Level 2 reaches nobody: said on the timeline, and level 3 is paged now rather than two minutes later.
    assert any("nobody is on call" in line for line in story.said(incident, "target_unresolved"))
    zulu.expect_sms("Power out")
    assert story.board(incident)["current_level"] == 3
    story.ack(incident)
    thandi.expect_sms("acknowledged")
    zulu.expect_sms("acknowledged")
    story.quiet_for(hours=1)
    story.finish()


def test_a_handle_that_names_nobody_is_reported_and_the_rest_of_the_level_is_paged(story: Story) -> None:
    centre(
        story,
        """
version: 1
policies:
  - name: typo
    levels:
      - level: 1
        targets:
          - {type: person, identifier: thandi}
          - {type: person, identifier: thandi-nkosi}
""",
    )
    thandi = story.phone(THANDI)
    incident = story.trigger("typo", "Traffic lights out, Berea Rd")
    thandi.expect_sms("Traffic lights out")
    assert any(
        "no person with handle 'thandi-nkosi'" in line for line in story.said(incident, "target_unresolved")
    )
    story.ack(incident, by="Thandi Nkosi")
    story.quiet_for(hours=1)
    story.finish()


def test_a_policy_edited_mid_escalation_does_not_change_it(story: Story) -> None:
    centre(story, THREE_LEVELS)
    sipho = story.phone(SIPHO)
    incident = story.trigger("water", "Low pressure, Westville")
    story.phone(THANDI).expect_sms("Low pressure")
    story.load(
        """
version: 1
policies:
  - name: water
    levels:
      - level: 1
        targets: [{type: person, identifier: thandi}]
      - level: 2
        delay: 30m
        targets: [{type: person, identifier: zulu}]
"""
    )
    story.advance(minutes=2)
    sipho.expect_whatsapp("Low pressure")  # the escalation keeps the policy it started with
    story.ack(incident)
    story.phone(THANDI).expect_sms("acknowledged")
    sipho.expect_whatsapp("acknowledged")
    # A new incident takes the policy as it is now.
    second = story.trigger("water", "Low pressure, Pinetown")
    story.phone(THANDI).expect_sms("Low pressure, Pinetown")
    story.advance(minutes=2)
    sipho.nothing()
    story.ack(second)
    story.phone(THANDI).expect_sms("acknowledged")
    story.quiet_for(hours=1)
    story.finish()


def test_a_policy_deleted_mid_escalation_still_runs_to_its_end(story: Story) -> None:
    centre(story, THREE_LEVELS)
    incident = story.trigger("water", "Sewage smell, Glenwood")
    story.phone(THANDI).expect_sms("Sewage smell")
    delete_object(story.ctx, "policies", "water", "supervisor")
    story.advance(minutes=4)
    story.phone(SIPHO).expect_whatsapp("Sewage smell")
    story.phone(ZULU).expect_sms("Sewage smell")
    story.ack(incident)
    story.phone(THANDI).expect_sms("acknowledged")
    story.phone(SIPHO).expect_whatsapp("acknowledged")
    story.phone(ZULU).expect_sms("acknowledged")
    story.quiet_for(hours=1)
    story.finish()
