"""What a site has set up decides what can send: no provider, no wait. A channel that cannot send is skipped at
once with an event saying why; simulation is a choice the site makes, and its messages say so."""

from __future__ import annotations

from collections.abc import Callable

from engine import board
from engine.db import read_session

from .centre import ANNA, SIPHO, THANDI, THREE_LEVELS, centre
from .story import Story


def test_a_site_with_only_sms_reaches_a_whatsapp_first_person_by_sms_at_once(
    make_story: Callable[..., Story],
) -> None:
    """The defect: with no WhatsApp sender a critical page to a WhatsApp-first person was "delivered
    (simulated)", and the first real SMS left ten and a half minutes later."""
    story = make_story(twilio_whatsapp_from="", twilio_voice_from="", smtp_host="")
    centre(story, THREE_LEVELS)
    sipho = story.phone(SIPHO)
    incident = story.trigger("water", "Collapsed trench, worker trapped", severity="critical")
    story.advance(minutes=2)
    sipho.expect_sms("Collapsed trench")  # at level 2's moment, not ten minutes later
    (skipped,) = [line for line in story.said(incident, "message_skipped") if SIPHO in line]
    assert "no WhatsApp sender number" in skipped
    assert sipho.received("whatsapp") == 0
    with read_session(story.ctx.sessions) as s:
        health = board.board_health(s, story.now, story.ctx.settings)
    assert health["simulated_channels"] == []
    assert health["channels_not_set_up"] == {
        "whatsapp": "no WhatsApp sender number",
        "voice": "no voice caller number",
        "email": "no SMTP host",
    }
    story.phone(THANDI).expect_sms("Collapsed trench")
    story.ack(incident)
    story.phone(THANDI).expect_sms("acknowledged")
    sipho.expect_sms("acknowledged")
    story.quiet_for(hours=1)
    story.finish()


def test_a_person_reachable_on_no_channel_set_up_is_exhausted_at_once(
    make_story: Callable[..., Story],
) -> None:
    story = make_story(smtp_host="", twilio_sms_from="")  # Anna: e-mail first, then SMS — neither set up
    centre(
        story,
        """
version: 1
policies:
  - name: anna
    levels:
      - level: 1
        targets: [{type: person, identifier: anna}]
""",
    )
    incident = story.trigger("anna", "Meter reading overdue")
    story.advance(seconds=10)
    assert story.page_statuses(incident) == ["exhausted"]
    assert len(story.said(incident, "message_skipped")) == 2
    story.phone(ANNA).nothing()
    story.finish()


def test_simulated_channels_are_a_choice_and_say_so(make_story: Callable[..., Story]) -> None:
    story = make_story(simulated_channels=["sms"])
    centre(story, THREE_LEVELS)
    incident = story.trigger("water", "Drill: evacuation of the control room")
    story.advance(seconds=10)
    story.phone(THANDI).nothing()  # simulated: nothing reaches Twilio
    row = story.board(incident)
    assert row["last_simulated"] and row["last_delivery"] == "delivered"
    assert any("simulated sms" in line for line in story.said(incident, "message_sent"))
    with read_session(story.ctx.sessions) as s:
        assert board.board_health(s, story.now, story.ctx.settings)["simulated_channels"] == ["sms"]
    story.ack(incident)
    story.quiet_for(hours=1)
    story.finish()


def test_a_person_who_opted_out_by_stop_is_not_sent_to_on_that_channel(story: Story) -> None:
    centre(story, THREE_LEVELS)
    thandi = story.phone(THANDI)
    first = story.trigger("water", "Hydrant vandalised")
    thandi.expect_sms("Hydrant vandalised")
    thandi.reply("STOP")
    story.advance(seconds=15)
    story.ack(first)
    thandi.expect_whatsapp("#1", "acknowledged")  # the notice avoids SMS too
    second = story.trigger("water", "Hydrant vandalised again")
    story.advance(seconds=10)
    thandi.expect_whatsapp("Hydrant vandalised again")  # SMS is out of her chain now
    assert thandi.received("sms") == 1
    story.ack(second)
    thandi.expect_whatsapp("#2", "acknowledged")
    story.quiet_for(hours=1)
    story.finish()
