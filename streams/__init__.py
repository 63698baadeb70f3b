"""Stream processors (faust-streaming workers): certificate validation, anomaly
scoring, the audit log and dead-lettering. Built on the event log of
:mod:`events`; see docs/architecture.md for what lands here next.
"""
