"""The demo centre the stories run in: people with phones and mailboxes, a team, an on-call schedule, and the
policies each story needs. Loaded through the configuration import, as a supervisor would."""

from __future__ import annotations

THANDI = "+27825550101"
SIPHO = "+27825550102"
ZULU = "+27825550103"
ANNA = "+27825550104"

PEOPLE = f"""
version: 1
people:
  - handle: thandi
    name: Thandi Nkosi
    phone: "{THANDI}"
    email: thandi@dispatch.example.org
    preferred_channel: sms
    fallback_channels: [whatsapp, voice, email]
    confirm_wait: 5m
    fallback_wait: 3m
    language: en
    timezone: Africa/Johannesburg
  - handle: sipho
    name: Sipho Dlamini
    phone: "{SIPHO}"
    email: sipho@dispatch.example.org
    preferred_channel: whatsapp
    fallback_channels: [sms, email]
    confirm_wait: 5m
    fallback_wait: 3m
    timezone: Africa/Johannesburg
  - handle: zulu
    name: Dr Zulu
    phone: "{ZULU}"
    email: zulu@dispatch.example.org
    preferred_channel: sms
    fallback_channels: [voice]
    confirm_wait: 5m
    fallback_wait: 3m
    timezone: Africa/Johannesburg
  - handle: anna
    name: Anna van Wyk
    phone: "{ANNA}"
    email: anna@dispatch.example.org
    preferred_channel: email
    fallback_channels: [sms]
    confirm_wait: 5m
    fallback_wait: 3m
    language: af
    timezone: Africa/Johannesburg
teams:
  - handle: fire
    name: Fire & Rescue
    manager: zulu
    members: [thandi, sipho]
"""

# Three levels two minutes apart; level 3 repeats every five minutes.
THREE_LEVELS = """
version: 1
policies:
  - name: water
    levels:
      - level: 1
        delay: 0s
        targets: [{type: person, identifier: thandi}]
      - level: 2
        delay: 2m
        targets: [{type: person, identifier: sipho}]
      - level: 3
        delay: 2m
        repeat_count: 2
        repeat_interval: 5m
        targets: [{type: person, identifier: zulu}]
"""

ONE_LEVEL = """
version: 1
policies:
  - name: single
    levels:
      - level: 1
        delay: 0s
        repeat_interval: 5m
        targets: [{type: person, identifier: thandi}]
"""


def centre(story: object, *documents: str) -> None:
    """Load the people and the given policy documents into the story's centre."""
    load = story.load  # type: ignore[attr-defined]
    load(PEOPLE)
    for doc in documents:
        load(doc)
