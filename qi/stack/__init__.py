"""The embedded local stack: broker, Postgres, Redis, MQTT from Python packages; chDB in-process.

``LocalStack(run_dir).up()`` starts what is not running, ``status()`` checks
health, ``down()`` stops exactly the processes it started (by pid and start
time) and discards their data (the broker's log is memory-only, so derived
data would be orphaned; docs/decisions/0003-embedded-stack.md).
"""

from qi.stack.errors import StackError
from qi.stack.local import LocalStack, ServiceStatus

__all__ = ["LocalStack", "ServiceStatus", "StackError"]
