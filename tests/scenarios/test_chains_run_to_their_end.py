"""Running out of levels stops escalating; it never cancels anyone already paged. Each person is tried through
their whole chain until they confirm, respond or are exhausted, and the incident reads "timed out" only when
the last chain has ended."""

from __future__ import annotations

from .centre import ANNA, ONE_LEVEL, SIPHO, THANDI, THREE_LEVELS, ZULU, centre
from .story import Story

QUIET_THANDI = """
version: 1
people:
  - handle: thandi
    name: Thandi Nkosi
    phone: "+27825550101"
    email: thandi@dispatch.example.org
    preferred_channel: sms
    fallback_channels: [whatsapp, voice, email]
    confirm_wait: 5m
    fallback_wait: 3m
    timezone: Africa/Johannesburg
    quiet_hours: {start: "13:00", end: "15:00"}
"""


def test_a_one_level_policy_tries_every_channel_before_it_times_out(story: Story) -> None:
    """The defect: the last level timed out five minutes after it paged and cancelled Thandi's page, so her
    voice call and e-mail were never tried."""
    centre(story, ONE_LEVEL)
    thandi = story.phone(THANDI)
    incident = story.trigger("single", "Chlorine dosing pump tripped")
    thandi.expect_sms("Chlorine dosing pump")
    story.advance(minutes=5)
    thandi.expect_whatsapp("Chlorine dosing pump")
    assert story.said(incident, "levels_done"), "no level left after five minutes"
    assert story.board(incident)["escalation_state"] == "active"  # not "timed out": her chain still runs
    story.advance(minutes=3)
    thandi.expect_call("Chlorine dosing pump")
    story.advance(minutes=3)
    story.mailbox("thandi@dispatch.example.org").expect_mail("Chlorine dosing pump")
    assert not story.said(incident, "escalation_timed_out")
    story.advance(minutes=3)
    assert story.page_statuses(incident) == ["exhausted"]
    (timed_out,) = story.said(incident, "escalation_timed_out")
    assert "every person paged was tried" in timed_out
    assert story.board(incident)["escalation_state"] == "timed_out"
    assert story.status(incident) == "open"  # still the operators' to handle
    story.quiet_for(hours=2)
    story.finish()


def test_every_level_ran_and_every_chain_ended(story: Story) -> None:
    centre(story, THREE_LEVELS)
    thandi, sipho, zulu = story.phone(THANDI), story.phone(SIPHO), story.phone(ZULU)
    incident = story.trigger("water", "Pump station 7 offline")
    story.advance(minutes=30)
    # Thandi: SMS, WhatsApp (+5), voice (+8), e-mail (+11); Sipho: WhatsApp (+2), SMS (+7), e-mail (+10);
    # Dr Zulu: SMS (+4), voice (+9), and level 3's two repeats, each round its own chain.
    thandi.expect_sms("Pump station 7")
    thandi.expect_whatsapp("Pump station 7")
    thandi.expect_call("Pump station 7")
    story.mailbox("thandi@dispatch.example.org").expect_mail("Pump station 7")
    sipho.expect_whatsapp("Pump station 7")
    sipho.expect_sms("Pump station 7")
    story.mailbox("sipho@dispatch.example.org").expect_mail("Pump station 7")
    for _round in range(3):
        zulu.expect_sms("Pump station 7")
        zulu.expect_call("Pump station 7")
    assert set(story.page_statuses(incident)) == {"exhausted"}
    assert story.board(incident)["escalation_state"] == "timed_out"
    assert len(story.said(incident, "page_exhausted")) == 5
    story.quiet_for(hours=1)
    story.finish()


def test_a_page_held_for_quiet_hours_is_sent_when_they_end(story: Story) -> None:
    """The defect: the last level's time-out cancelled a page held for quiet hours; it was never sent and no
    event said so."""
    centre(story, ONE_LEVEL, QUIET_THANDI)
    thandi = story.phone(THANDI)
    incident = story.trigger("single", "Street light out on Main Rd", severity="low")
    thandi.nothing()  # 14:00 in Johannesburg: her quiet hours run to 15:00
    assert story.said(incident, "page_held")
    story.advance(minutes=59)
    thandi.nothing()
    story.advance(minutes=1)
    thandi.expect_sms("Street light out")  # 15:00: quiet hours over
    assert story.said(incident, "levels_done")  # the only level had ended long before; her page waited
    story.advance(minutes=1)
    story.ack(incident, by="Lerato (operator)")
    thandi.expect_sms("acknowledged by Lerato")
    story.quiet_for(hours=1)
    story.finish()


def test_ack_during_quiet_hours_means_the_held_page_is_never_sent(story: Story) -> None:
    centre(story, ONE_LEVEL, QUIET_THANDI)
    thandi = story.phone(THANDI)
    incident = story.trigger("single", "Pothole reported on N3 off-ramp", severity="low")
    story.advance(minutes=30)
    story.ack(incident, by="Lerato (operator)")
    story.quiet_for(hours=2)  # 15:00 comes and goes: no page, and no notice about a page she never had
    thandi.nothing()
    assert story.page_statuses(incident) == ["cancelled"]
    story.finish()


def test_a_critical_page_goes_through_quiet_hours(story: Story) -> None:
    centre(story, ONE_LEVEL, QUIET_THANDI)
    thandi = story.phone(THANDI)
    incident = story.trigger("single", "Structure fire, Warwick Ave", severity="critical")
    thandi.expect_sms("Structure fire")
    story.ack(incident, by="Thandi Nkosi")
    story.quiet_for(hours=1)
    story.finish()


def test_ack_during_a_fallback(story: Story) -> None:
    centre(story, THREE_LEVELS)
    thandi, sipho, zulu = story.phone(THANDI), story.phone(SIPHO), story.phone(ZULU)
    incident = story.trigger("water", "Sewer overflow at the park")
    thandi.expect_sms("Sewer overflow")
    story.advance(minutes=2)
    sipho.expect_whatsapp("Sewer overflow")
    story.advance(minutes=2)
    zulu.expect_sms("Sewer overflow")  # level 3
    story.advance(minutes=1)  # Thandi's SMS went unconfirmed: her WhatsApp
    thandi.expect_whatsapp("Sewer overflow")
    story.advance(seconds=30)
    story.ack(incident, by="Lerato (operator)")
    thandi.expect_whatsapp("acknowledged by Lerato")
    sipho.expect_whatsapp("acknowledged by Lerato")
    zulu.expect_sms("acknowledged by Lerato")
    story.quiet_for(hours=1)  # no voice call for Thandi, no SMS for Sipho, no repeat of level 3
    story.finish()


def test_a_level_that_needs_no_acknowledgement_sends_once_and_is_done(story: Story) -> None:
    centre(
        story,
        """
version: 1
policies:
  - name: fyi
    levels:
      - level: 1
        require_ack: false
        targets: [{type: person, identifier: anna}]
""",
    )
    anna = story.mailbox("anna@dispatch.example.org")
    incident = story.trigger("fyi", "Scheduled water outage tomorrow 09:00")
    anna.expect_mail("Scheduled water outage")
    story.advance(minutes=10)
    assert story.page_statuses(incident) == ["sent"]
    assert story.board(incident)["escalation_state"] == "timed_out"
    story.quiet_for(hours=1)  # no SMS fallback: nothing was waiting for her answer
    story.phone(ANNA).nothing()
    story.finish()


def test_every_channel_failing_exhausts_the_chain_at_once(story: Story) -> None:
    centre(story, ONE_LEVEL)
    story.twilio.invalid_numbers.add(THANDI)  # 21211: a number Twilio will never reach
    story.smtp.refuse.add("thandi@dispatch.example.org")
    incident = story.trigger("single", "Gas smell reported, Berea")
    story.advance(seconds=30)
    assert story.page_statuses(incident) == ["exhausted"]
    fallbacks = story.said(incident, "page_fallback")
    assert [line.split("; trying ")[1] for line in fallbacks] == ["whatsapp", "voice", "email"]
    story.advance(minutes=5)  # the level ends: nobody is being tried, so it times out now
    assert story.said(incident, "escalation_timed_out")
    story.quiet_for(hours=1)
    story.finish()
