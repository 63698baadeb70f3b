"""The embedded local stack: broker, Postgres, Redis, MQTT from Python packages; chDB in-process.

``LocalStack(run_dir).up()`` starts what is not running, ``status()`` checks
health, ``down()`` stops exactly the processes it started (by pid and start
time) and keeps their data: the broker's log lives in a local object store
(docs/decisions/0070-durable-embedded-log.md); ``down(purge=True)`` deletes it.
"""

from qi.stack.errors import StackError
from qi.stack.local import LocalStack, ServiceStatus

__all__ = ["LocalStack", "ServiceStatus", "StackError"]
