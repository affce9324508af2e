"""The audit view: who changed what and when, for supervisors and administrators."""

from console.audit.widget import AuditWidget

__all__ = ["AuditWidget"]
