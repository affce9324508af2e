"""Service mode: `watchkeeper serve` runs the engine's passes and an HTTP API (Events API v2 intake, a REST
API, Twilio webhooks, /healthz, /metrics) with no window."""

from __future__ import annotations

from engine.service.server import serve

__all__ = ["serve"]
