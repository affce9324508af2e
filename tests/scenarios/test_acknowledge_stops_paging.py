"""Acknowledging, resolving or cancelling ends every page for the incident, whichever escalation wrote it,
in the same transaction: nothing reaches anyone afterwards but the notice that someone took it."""

from __future__ import annotations

from .centre import SIPHO, THANDI, THREE_LEVELS, ZULU, centre
from .story import Story

SLA_ONE_MINUTE = """
version: 1
policies:
  - name: duty-manager
    levels:
      - level: 1
        delay: 0s
        targets: [{type: person, identifier: zulu}]
sla:
  - site: ""
    category: water
    response: 3m
    resolution: 4h
    breach_policy: duty-manager
"""


def test_ack_during_level_one_stops_level_two_and_the_fallbacks(story: Story) -> None:
    centre(story, THREE_LEVELS)
    thandi, sipho = story.phone(THANDI), story.phone(SIPHO)
    incident = story.trigger("water", "Pump station 7 offline")
    thandi.expect_sms("Pump station 7 offline")
    story.advance(minutes=1)
    story.ack(incident, by="Lerato (operator)")
    thandi.expect_sms("acknowledged by Lerato")
    assert story.status(incident) == "acknowledged"
    story.quiet_for(hours=1)  # no level 2 for Sipho, no WhatsApp/voice/e-mail fallback for Thandi
    assert sipho.received("whatsapp") == 0
    assert story.page_statuses(incident) == ["cancelled"]
    story.finish()


def test_ack_after_an_sla_breach_ends_the_escalation_the_breach_raised(story: Story) -> None:
    """The defect behind "an acknowledged incident kept paging for 11 minutes": the SLA breach started a second
    escalation and acknowledging stopped only that one. Now the breach raises the one live escalation, and the
    acknowledgement ends all of it."""
    centre(story, THREE_LEVELS, SLA_ONE_MINUTE)
    thandi, sipho, zulu = story.phone(THANDI), story.phone(SIPHO), story.phone(ZULU)
    incident = story.trigger("water", "Reservoir level low", category="water")
    thandi.expect_sms("Reservoir level low")
    story.advance(minutes=2)
    sipho.expect_whatsapp("Reservoir level low")  # level 2
    story.advance(minutes=1)  # 3 minutes: the response deadline passes
    assert any("Response deadline missed" in line for line in story.said(incident, "sla_breached"))
    zulu.expect_sms("Reservoir level low")  # the breach raised the live escalation to level 3 at once
    assert story.escalation_states(incident) == ["active"]  # one escalation, not two
    assert story.status(incident) == "escalated"
    story.advance(seconds=20)
    story.ack(incident, by="Lerato (operator)")
    thandi.expect_sms("acknowledged by Lerato")
    sipho.expect_whatsapp("acknowledged by Lerato")
    zulu.expect_sms("acknowledged by Lerato")
    # Eleven minutes and more: no repeat of level 3, no fallback to voice for anyone, no "timed out".
    story.quiet_for(minutes=30)
    assert story.status(incident) == "acknowledged"
    assert story.escalation_states(incident) == ["acknowledged"]
    assert not story.said(incident, "escalation_timed_out")
    assert set(story.page_statuses(incident)) == {"cancelled"}
    story.finish()


REPEATING = """
version: 1
policies:
  - name: repeating
    levels:
      - level: 1
        delay: 0s
        repeat_count: 3
        repeat_interval: 2m
        targets: [{type: person, identifier: thandi}]
"""


def test_resolve_during_a_repeat(story: Story) -> None:
    centre(story, REPEATING)
    thandi = story.phone(THANDI)
    incident = story.trigger("repeating", "Main burst on Smith St")
    thandi.expect_sms("Main burst")
    story.advance(minutes=2)
    thandi.expect_sms("Main burst")  # the repeat
    assert len(story.said(incident, "level_repeated")) == 1
    story.advance(minutes=1)
    story.resolve(incident, by="Lerato (operator)")
    thandi.expect_sms("resolved by Lerato")
    story.quiet_for(hours=1)  # no further repeat, no fallback for either round
    assert story.status(incident) == "resolved"
    assert story.escalation_states(incident) == ["resolved"]
    assert story.page_statuses(incident) == ["cancelled", "cancelled"]
    story.finish()


def test_cancel_withdraws_pages_not_yet_sent(story: Story) -> None:
    centre(story, THREE_LEVELS)
    thandi = story.phone(THANDI)
    incident = story.trigger("water", "Hydrant leaking")
    thandi.expect_sms("Hydrant leaking")
    story.cancel(incident, reason="duplicate of a call already dispatched")
    story.quiet_for(hours=1)
    assert story.status(incident) == "cancelled"
    assert story.escalation_states(incident) == ["cancelled"]
    assert any("duplicate of a call" in line for line in story.said(incident, "cancelled"))
    story.finish()
