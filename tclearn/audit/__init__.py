"""The auditor's side: check a coalition run against its ledger (`verify`) and report on it (`report`).

See docs/audit.md.
"""

from tclearn.audit.verify import AuditReport, Finding, Severity, audit

__all__ = ["AuditReport", "Finding", "Severity", "audit"]
