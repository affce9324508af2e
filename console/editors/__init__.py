"""Configuration editors for supervisors: policies, people, teams, schedules, templates, SLA, calendars."""

from console.editors.widget import EditorsWidget

__all__ = ["EditorsWidget"]
