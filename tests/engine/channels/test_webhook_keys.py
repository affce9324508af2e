"""Each webhook target signed with its own key: `webhook_signing_key:<target>` for the policy target of that
name, the general `webhook_signing_key` for the others. Every receiver checks the signature with the one key
it holds, as a careful integrator does, so a webhook signed with any other key is refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import WEBHOOK_KEY, events

from engine import api
from engine.config_io import import_text
from engine.context import AppContext
from engine.runner import run_once
from tests.fakes.memory_keyring import MemoryKeyring
from tests.fakes.webhook_receiver import WebhookReceiver

OPS_KEY = "whsec-ops-chat-71c2"
FIRE_KEY = "whsec-fire-desk-0b9e"


@pytest.fixture
def receivers() -> Iterator[dict[str, WebhookReceiver]]:
    found = {
        "ops": WebhookReceiver(key=OPS_KEY).start(),
        "fire": WebhookReceiver(key=FIRE_KEY).start(),
        "general": WebhookReceiver(key=WEBHOOK_KEY).start(),
    }
    yield found
    for receiver in found.values():
        receiver.stop()


def _policy(ctx: AppContext, receivers: dict[str, WebhookReceiver]) -> None:
    import_text(
        ctx,
        f"""\
policies:
  - name: hooks
    levels:
      - level: 1
        targets:
          - type: webhook
            identifier: {receivers["ops"].url}
            name: ops-chat
          - type: webhook
            identifier: {receivers["fire"].url}
            name: Fire Desk
          - type: webhook
            identifier: {receivers["general"].url}
            name: Status page
""",
        "policies.yaml",
        actor="tester",
    )


def _page(ctx: AppContext, summary: str) -> None:
    api.trigger(ctx, policy="hooks", summary=summary, key=summary)
    run_once(ctx)


def test_each_target_is_signed_with_its_own_key_and_the_rest_with_the_general_one(
    channels_ctx: AppContext, memory_keyring: MemoryKeyring, receivers: dict[str, WebhookReceiver]
) -> None:
    memory_keyring.set_password("watchkeeper", "webhook_signing_key:ops-chat", OPS_KEY)
    memory_keyring.set_password("watchkeeper", "webhook_signing_key:fire-desk", FIRE_KEY)  # "Fire Desk"
    _policy(channels_ctx, receivers)

    _page(channels_ctx, "Reservoir 3 low")

    for name, receiver in receivers.items():
        assert receiver.refused == 0, f"{name} refused a signature"
        [hook] = receiver.received
        assert hook["json"]["event"]["data"]["body"].count("Reservoir 3 low") == 1
    assert not events(channels_ctx, "message_failed")


def test_a_target_without_its_own_key_is_signed_with_the_general_key(
    channels_ctx: AppContext, receivers: dict[str, WebhookReceiver]
) -> None:
    receivers["ops"].key = WEBHOOK_KEY  # this receiver was given the general key
    receivers["fire"].key = WEBHOOK_KEY
    _policy(channels_ctx, receivers)

    _page(channels_ctx, "Reservoir 3 low")

    assert [len(r.received) for r in receivers.values()] == [1, 1, 1]
    assert sum(r.refused for r in receivers.values()) == 0


def test_a_receiver_holding_only_its_own_key_refuses_the_general_one(
    channels_ctx: AppContext, memory_keyring: MemoryKeyring, receivers: dict[str, WebhookReceiver]
) -> None:
    # Fire Desk's key is set for ops-chat only: Fire Desk gets the general key, which its receiver refuses.
    memory_keyring.set_password("watchkeeper", "webhook_signing_key:ops-chat", OPS_KEY)
    _policy(channels_ctx, receivers)

    _page(channels_ctx, "Reservoir 3 low")

    assert len(receivers["ops"].received) == 1 and receivers["ops"].refused == 0
    assert receivers["fire"].received == [] and receivers["fire"].refused == 1
    [failed] = events(channels_ctx, "message_failed")
    assert "HTTP 401" in failed.message


def test_a_target_key_from_the_environment_and_its_rotation_apply_to_the_next_webhook(
    channels_ctx: AppContext,
    memory_keyring: MemoryKeyring,
    receivers: dict[str, WebhookReceiver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHKEEPER_SECRET_WEBHOOK_SIGNING_KEY__OPS_CHAT", OPS_KEY)
    memory_keyring.set_password("watchkeeper", "webhook_signing_key:fire-desk", FIRE_KEY)
    _policy(channels_ctx, receivers)
    _page(channels_ctx, "Reservoir 3 low")
    assert len(receivers["ops"].received) == 1

    rotated = "whsec-ops-chat-rotated-5d"
    monkeypatch.setenv("WATCHKEEPER_SECRET_WEBHOOK_SIGNING_KEY__OPS_CHAT", rotated)
    receivers["ops"].key = rotated
    _page(channels_ctx, "Pump 7 offline")

    assert len(receivers["ops"].received) == 2 and receivers["ops"].refused == 0
