"""Time and engines: business hours across a DST change, an engine stopped mid-chain and started later, a
repeat due with the next level when the engine runs late, two engines on one database, many alerts at once,
SLA warnings and reporter updates that reach people."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from .centre import SIPHO, THANDI, THREE_LEVELS, ZULU, centre
from .story import Story

OFFICE_HOURS_BERLIN = """
version: 1
policies:
  - name: office
    business_hours_only: true
    business_days: [mon, tue, wed, thu, fri]
    business_start: "09:00"
    business_end: "17:00"
    timezone: Europe/Berlin
    levels:
      - level: 1
        targets: [{type: person, identifier: thandi}]
sla:  # office requests are answered within a working week; no breach over the weekend
  - site: ""
    category: office
    response: 5d
    resolution: 10d
"""


def test_business_hours_across_the_spring_dst_change(story: Story) -> None:
    """Berlin moves its clocks forward on Sunday 29 March 2026: Monday's 09:00 is 07:00 UTC, not 08:00."""
    story.clock.set(datetime(2026, 3, 27, 17, 30, tzinfo=UTC))  # Friday 18:30 in Berlin (CET), after hours
    centre(story, OFFICE_HOURS_BERLIN)
    thandi = story.phone(THANDI)
    incident = story.trigger(
        "office", "Printer queue stuck in the records office", severity="low", category="office"
    )
    assert any("waiting for business hours" in line for line in story.said(incident, "escalation_started"))
    story.until(datetime(2026, 3, 30, 6, 59, tzinfo=UTC))
    thandi.nothing()
    story.until(datetime(2026, 3, 30, 7, 0, tzinfo=UTC))  # 09:00 CEST
    thandi.expect_sms("Printer queue stuck")
    story.ack(incident, by="Thandi Nkosi")
    story.quiet_for(hours=1)
    story.finish()


def test_an_engine_stopped_mid_chain_picks_up_where_it_left_off(story: Story) -> None:
    centre(story, THREE_LEVELS)
    thandi, sipho, zulu = story.phone(THANDI), story.phone(SIPHO), story.phone(ZULU)
    incident = story.trigger("water", "Pump station 3 alarm")
    thandi.expect_sms("Pump station 3")
    story.stop_engines()
    story.advance(minutes=7)  # level 2, level 3 and Thandi's WhatsApp all fall due with nobody working
    story.provider.collect()
    thandi.nothing()
    story.start_engines()
    # Everything overdue happens once, at once: Thandi's next channel and the next level (one level per
    # engine pass round: level 2 now, level 3 on its own delay from now), no burst of repeats.
    thandi.expect_whatsapp("Pump station 3")
    sipho.expect_whatsapp("Pump station 3")
    story.advance(minutes=2)
    zulu.expect_sms("Pump station 3")
    story.ack(incident)
    thandi.expect_whatsapp("acknowledged")
    sipho.expect_whatsapp("acknowledged")
    zulu.expect_sms("acknowledged")
    story.quiet_for(hours=1)
    story.finish()


def test_a_repeat_due_with_the_next_level_is_not_dropped_when_the_engine_runs_late(story: Story) -> None:
    """The defect: with the repeat and the next level due together, the late engine moved to the next level
    and the repeat was never sent."""
    centre(
        story,
        """
version: 1
policies:
  - name: repeat-then-up
    levels:
      - level: 1
        repeat_count: 1
        repeat_interval: 4m
        targets: [{type: person, identifier: thandi}]
      - level: 2
        delay: 5m
        targets: [{type: person, identifier: sipho}]
""",
    )
    thandi, sipho = story.phone(THANDI), story.phone(SIPHO)
    incident = story.trigger("repeat-then-up", "Gas pressure drop")
    thandi.expect_sms("Gas pressure drop")
    story.stop_engines()
    story.advance(minutes=5, seconds=30)  # the repeat (4 min) and level 2 (5 min) both pass unattended
    story.start_engines()
    thandi.expect_sms("Gas pressure drop")  # the repeat, a new round of its own
    thandi.expect_whatsapp("Gas pressure drop")  # and her first round's chain moves on
    sipho.expect_whatsapp("Gas pressure drop")
    assert len(story.said(incident, "level_repeated")) == 1
    story.ack(incident)
    thandi.expect_sms("acknowledged")  # her newest page is the repeat's, on SMS
    sipho.expect_whatsapp("acknowledged")
    story.quiet_for(hours=1)
    story.finish()


def test_two_engines_on_one_database_page_each_person_once(make_story: Callable[..., Story]) -> None:
    story = make_story(engines=2)
    centre(story, THREE_LEVELS)
    thandi, sipho, zulu = story.phone(THANDI), story.phone(SIPHO), story.phone(ZULU)
    incidents = [story.trigger("water", f"Hydrant {n} leaking") for n in range(1, 6)]
    story.advance(minutes=4, seconds=30)
    for n in range(1, 6):
        thandi.expect_sms(f"Hydrant {n} leaking")
        sipho.expect_whatsapp(f"Hydrant {n} leaking")
        zulu.expect_sms(f"Hydrant {n} leaking")
    for incident in incidents:
        story.ack(incident)
    for n in range(1, 6):
        thandi.expect_sms(f"#{incidents[n - 1]} Hydrant {n}", "acknowledged")
        sipho.expect_whatsapp(f"#{incidents[n - 1]} Hydrant {n}", "acknowledged")
        zulu.expect_sms(f"#{incidents[n - 1]} Hydrant {n}", "acknowledged")
    story.quiet_for(hours=1)
    # Counted at the provider: each message reached Twilio once, not once per engine.
    assert thandi.received("sms") == 10 and sipho.received("whatsapp") == 10 and zulu.received("sms") == 10
    story.finish()


def test_many_alerts_at_once_page_each_person_once_per_alert(story: Story) -> None:
    centre(
        story,
        """
version: 1
policies:
  - name: storm
    levels:
      - level: 1
        targets: [{type: team, identifier: fire}]
""",
    )
    thandi, sipho = story.phone(THANDI), story.phone(SIPHO)
    incidents = [
        story.trigger("storm", f"Tree down on road {n}", key=f"storm-{n}", source="monitoring")
        for n in range(40)
    ]
    story.advance(seconds=30)
    assert thandi.received("sms") == 40 and sipho.received("whatsapp") == 40
    for n in range(40):
        thandi.expect_sms(f"Tree down on road {n}.")
        sipho.expect_whatsapp(f"Tree down on road {n}.")
    from engine import api

    api.acknowledge_many(story.ctx, incidents, by="Lerato (operator)")
    story.run()
    for n in range(40):
        thandi.expect_sms(f"Tree down on road {n}:", "acknowledged")
        sipho.expect_whatsapp(f"Tree down on road {n}:", "acknowledged")
    story.quiet_for(hours=1)
    story.finish()


def test_a_team_member_reached_twice_in_one_level_is_paged_once(story: Story) -> None:
    centre(
        story,
        """
version: 1
policies:
  - name: overlap
    levels:
      - level: 1
        targets:
          - {type: team, identifier: fire}
          - {type: person, identifier: thandi}
""",
    )
    thandi = story.phone(THANDI)
    incident = story.trigger("overlap", "Smoke alarm, block C")
    thandi.expect_sms("Smoke alarm")
    story.phone(SIPHO).expect_whatsapp("Smoke alarm")
    assert thandi.received("sms") == 1
    story.ack(incident, by="Thandi Nkosi")
    story.phone(SIPHO).expect_whatsapp("acknowledged by Thandi")
    story.quiet_for(hours=1)
    story.finish()


def test_an_sla_warning_reaches_the_team_manager_and_the_reporter_hears_each_step(story: Story) -> None:
    centre(
        story,
        THREE_LEVELS,
        """
version: 1
sla:
  - site: ""
    category: water
    response: 10m
    resolution: 2h
    warning_percent: 50
""",
    )
    zulu, reporter = story.phone(ZULU), story.phone("+27835550199")
    incident = story.trigger(
        "water",
        "Burst pipe flooding a house",
        category="water",
        team="fire",
        reporter_name="Mrs Pillay",
        reporter_contact="+27835550199",
    )
    story.phone(THANDI).expect_sms("Burst pipe")
    story.advance(minutes=2)
    story.phone(SIPHO).expect_whatsapp("Burst pipe")
    story.advance(minutes=2)
    zulu.expect_sms("Burst pipe")  # level 3
    story.advance(minutes=1)  # 5 minutes: half the response time used
    zulu.expect_sms("SLA warning", f"#{incident}")  # Dr Zulu manages the team: he is told, in a message
    assert story.said(incident, "sla_warning")
    story.phone(THANDI).expect_whatsapp("Burst pipe")  # her SMS went unanswered for five minutes
    story.ack(incident, by="Dr Zulu")
    reporter.expect_whatsapp("WK-", "seen by our team")  # the reporter's own language and channel
    story.phone(THANDI).expect_whatsapp("acknowledged by Dr Zulu")
    story.phone(SIPHO).expect_whatsapp("acknowledged by Dr Zulu")
    story.resolve(incident, by="Dr Zulu")
    reporter.expect_whatsapp("WK-", "resolved")
    story.phone(THANDI).expect_whatsapp("resolved by Dr Zulu")
    story.phone(SIPHO).expect_whatsapp("resolved by Dr Zulu")
    story.quiet_for(hours=3)
    story.finish()
