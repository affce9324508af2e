"""People answer their pages: a reply code, a plain "ack", any reply at all, a keypress on the call, the link in
the e-mail. Each answer ends that person's chain; an acknowledgement ends everyone's."""

from __future__ import annotations

import re

from .centre import ANNA, SIPHO, THANDI, THREE_LEVELS, ZULU, centre
from .story import Story

VOICE_FIRST = """
version: 1
policies:
  - name: call-zulu
    levels:
      - level: 1
        targets: [{type: person, identifier: zulu}]
      - level: 2
        delay: 10m
        targets: [{type: person, identifier: sipho}]
"""

MAIL_FIRST = """
version: 1
policies:
  - name: mail-anna
    levels:
      - level: 1
        targets: [{type: person, identifier: anna}]
      - level: 2
        delay: 10m
        targets: [{type: person, identifier: sipho}]
"""


def _code(text: str) -> str:
    found = re.search(r'"(\d{6}) ack"', text)
    assert found, f"no reply code in {text!r}"
    return found.group(1)


def test_ack_by_sms_reply_code(story: Story) -> None:
    centre(story, THREE_LEVELS)
    thandi, sipho = story.phone(THANDI), story.phone(SIPHO)
    incident = story.trigger("water", "Pipe burst, Umgeni Rd")
    page = thandi.expect_sms("Pipe burst")
    story.advance(minutes=2)
    sipho.expect_whatsapp("Pipe burst")
    thandi.reply(f"{_code(page.text)} ack")
    story.advance(seconds=15)  # the poll pass fetches her reply from Twilio
    assert story.status(incident) == "acknowledged"
    assert story.board(incident)["acknowledged_by"] == "Thandi Nkosi"
    assert "confirmed" in story.page_statuses(incident)
    sipho.expect_whatsapp("acknowledged by Thandi Nkosi")  # Thandi is not told what she just did
    story.quiet_for(hours=1)
    story.finish()


def test_a_plain_ack_reply_acknowledges_the_latest_page(story: Story) -> None:
    centre(story, THREE_LEVELS)
    thandi = story.phone(THANDI)
    incident = story.trigger("water", "Valve stuck open, reservoir 3")
    thandi.expect_sms("Valve stuck open")
    thandi.reply("ACK")
    story.advance(seconds=15)
    assert story.status(incident) == "acknowledged"
    story.quiet_for(hours=1)
    story.finish()


def test_any_reply_is_a_response_that_ends_that_persons_chain(story: Story) -> None:
    """A reply that is not a command ("on my way") answers the page: Thandi's chain stops there. The incident
    is not acknowledged by it, so the next level still comes."""
    centre(story, THREE_LEVELS)
    thandi, sipho = story.phone(THANDI), story.phone(SIPHO)
    incident = story.trigger("water", "Flooding in the underpass")
    thandi.expect_sms("Flooding")
    thandi.reply("on my way, 10 min")
    story.advance(seconds=30)
    assert story.page_statuses(incident) == ["confirmed"]
    assert story.status(incident) == "open"
    story.advance(minutes=2)
    sipho.expect_whatsapp("Flooding")  # level 2 comes all the same
    story.advance(minutes=2)
    story.phone(ZULU).expect_sms("Flooding")  # and level 3
    story.advance(minutes=1, seconds=30)  # past Thandi's five minutes: no WhatsApp for her, she answered
    thandi.nothing()
    story.ack(incident, by="Lerato (operator)")
    thandi.expect_sms("acknowledged")
    sipho.expect_whatsapp("acknowledged")
    story.phone(ZULU).expect_sms("acknowledged")
    story.quiet_for(hours=1)
    story.finish()


def test_ack_by_voice_keypress(story: Story) -> None:
    centre(story, VOICE_FIRST)
    zulu = story.phone(ZULU)
    incident = story.trigger("call-zulu", "Patient transfer needs a doctor", severity="critical")
    zulu.expect_sms("Patient transfer")
    story.advance(minutes=5)  # no answer to the SMS: his chain calls him
    call = zulu.expect_call("Patient transfer")
    assert "Press 1 to acknowledge" in call.text
    said = zulu.press(call, "1")
    assert "acknowledged" in said
    assert story.status(incident) == "acknowledged"
    assert story.board(incident)["acknowledged_by"] == "Dr Zulu"
    assert story.page_statuses(incident) == ["confirmed"]
    story.quiet_for(hours=1)  # no level 2 for Sipho
    story.finish()


def test_ack_by_the_link_in_the_email(story: Story) -> None:
    centre(story, MAIL_FIRST)
    anna = story.mailbox("anna@dispatch.example.org")
    incident = story.trigger("mail-anna", "Water quality sample failed")
    mail = anna.expect_mail("Water quality sample failed")
    link = re.search(r"/ack\?incident=(\d+)&code=(\d+)", mail.text)
    assert link, mail.text
    service = story._make_service()
    shown = service.get(link.group(0))
    assert shown.status == 200 and "Water quality sample failed" in shown.text
    assert story.status(incident) == "open"  # looking at the link acknowledges nothing
    done = service.post(
        "/ack",
        body=f"incident={link.group(1)}&code={link.group(2)}".encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert done.status == 200, done.text
    story.run()
    assert story.status(incident) == "acknowledged"
    story.quiet_for(hours=1)  # no SMS fallback for Anna, no level 2
    story.phone(ANNA).nothing()
    story.finish()


def test_two_people_acknowledge_at_once_and_one_acknowledgement_counts(story: Story) -> None:
    centre(story, THREE_LEVELS)
    thandi, sipho = story.phone(THANDI), story.phone(SIPHO)
    incident = story.trigger("water", "Chemical spill at the depot")
    first = thandi.expect_sms("Chemical spill")
    story.advance(minutes=2)
    second = sipho.expect_whatsapp("Chemical spill")
    thandi.reply(f"{_code(first.text)} ack")
    sipho.reply(f"{_code(second.text)} ack", channel="whatsapp")
    story.advance(seconds=15)
    assert story.status(incident) == "acknowledged"
    acked = story.said(incident, "acknowledged")
    assert len(acked) == 1  # one acknowledgement; the other reply is recorded as not applied
    assert story.said(incident, "reply_not_applied")
    # Thandi's page shows her answer; Sipho's ended with her acknowledgement (his reply is on the timeline).
    assert story.page_statuses(incident) == ["confirmed", "cancelled"]
    sipho.expect_whatsapp("acknowledged by Thandi Nkosi")
    story.quiet_for(hours=1)
    story.finish()
