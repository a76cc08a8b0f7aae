"""Provisioning and operating status: the transition table and the operating roll-up.

Theory of operation (Octavia's split, kept whole):

- ``provisioning_status`` says where the control plane is with an object's
  configuration. A change starts from ACTIVE or ERROR (or from nothing, for a
  create) and moves the object to PENDING_CREATE / PENDING_UPDATE / PENDING_DELETE;
  the cluster the change lands on moves to PENDING_UPDATE at the same time, in the
  same transaction, with a test-and-set (``UPDATE ... WHERE provisioning_status IN
  (ACTIVE, ERROR)``). That test-and-set is the lock: a second change to anything on a
  cluster mid-change finds no row to update and is refused (409). When the engines
  have answered, ``applied`` or ``failed`` ends every PENDING_* in ACTIVE or ERROR
  (a PENDING_DELETE that applied is removed instead). ERROR is not a dead end: an
  update (even an empty one) retries, and a delete is allowed.
- ``operating_status`` says how the object is doing: derived from what the engines
  report of members' health and from admin states, rolled up member -> pool ->
  listener -> instance -> cluster (``roll_up``).

The table below is the only place transitions are decided; a missing key raises.
"""

from __future__ import annotations

from typing import Iterable

__all__ = [
    "ACTIVE",
    "DEGRADED",
    "DELETED",
    "DRAINING",
    "ERROR",
    "NO_MONITOR",
    "OFFLINE",
    "ONLINE",
    "OPERATING_STATUSES",
    "PENDING",
    "PENDING_CREATE",
    "PENDING_DELETE",
    "PENDING_UPDATE",
    "PROVISIONING_STATUSES",
    "SETTLED",
    "TransitionError",
    "is_pending",
    "member_status",
    "next_status",
    "roll_up",
]

PENDING_CREATE = "PENDING_CREATE"
PENDING_UPDATE = "PENDING_UPDATE"
PENDING_DELETE = "PENDING_DELETE"
ACTIVE = "ACTIVE"
ERROR = "ERROR"
DELETED = "DELETED"  # not stored: the row is removed
PROVISIONING_STATUSES = (PENDING_CREATE, PENDING_UPDATE, PENDING_DELETE, ACTIVE, ERROR)
PENDING = (PENDING_CREATE, PENDING_UPDATE, PENDING_DELETE)
SETTLED = (ACTIVE, ERROR)

ONLINE = "ONLINE"
OFFLINE = "OFFLINE"
DEGRADED = "DEGRADED"
NO_MONITOR = "NO_MONITOR"
DRAINING = "DRAINING"
OPERATING_STATUSES = (ONLINE, OFFLINE, DEGRADED, ERROR, NO_MONITOR, DRAINING)

# (current provisioning status, event) -> next. None: the object does not exist yet.
_TRANSITIONS: dict[tuple[str | None, str], str] = {
    (None, "create"): PENDING_CREATE,
    (ACTIVE, "update"): PENDING_UPDATE,
    (ERROR, "update"): PENDING_UPDATE,
    (ACTIVE, "delete"): PENDING_DELETE,
    (ERROR, "delete"): PENDING_DELETE,
    (PENDING_CREATE, "applied"): ACTIVE,
    (PENDING_UPDATE, "applied"): ACTIVE,
    (PENDING_DELETE, "applied"): DELETED,
    (PENDING_CREATE, "failed"): ERROR,
    (PENDING_UPDATE, "failed"): ERROR,
    (PENDING_DELETE, "failed"): ERROR,
    # A settled object that a change touched only through its cluster (the lock).
    (ACTIVE, "applied"): ACTIVE,
    (ERROR, "applied"): ACTIVE,
    (ACTIVE, "failed"): ERROR,
    (ERROR, "failed"): ERROR,
}


class TransitionError(ValueError):
    """An event that the current status does not allow (a change to an object mid-change)."""


def next_status(current: str | None, event: str) -> str:
    """The provisioning status after ``event``; TransitionError when not allowed."""
    try:
        return _TRANSITIONS[(current, event)]
    except KeyError:
        raise TransitionError(f"cannot {event} while {current or 'absent'}") from None


def is_pending(status: str | None) -> bool:
    return status in PENDING


# -- operating status ------------------------------------------------------------------------------


def member_status(admin_state: str, has_monitor: bool, health: str | None, provisioning: str) -> str:
    """A member: maint -> OFFLINE, drain -> DRAINING, a failed provisioning -> ERROR,
    no monitor -> NO_MONITOR, else what the engines reported (DOWN -> ERROR, UP ->
    ONLINE; nothing yet -> OFFLINE, as Octavia before the first report)."""
    if admin_state == "maint":
        return OFFLINE
    if admin_state == "drain":
        return DRAINING
    if provisioning == ERROR:
        return ERROR
    if not has_monitor:
        return NO_MONITOR
    return {"UP": ONLINE, "DOWN": ERROR}.get(health or "", OFFLINE)


_SERVING = (ONLINE, NO_MONITOR, DRAINING)


def roll_up(children: Iterable[str], *, empty: str = OFFLINE) -> str:
    """A parent's operating status from its children's: every one serving -> ONLINE,
    none -> ERROR, some -> DEGRADED; children OFFLINE by choice (maint, a listener
    not yet routable) are left out; no child left -> ``empty``."""
    states = [state for state in children if state != OFFLINE]
    if not states:
        return empty
    good = sum(1 for state in states if state in _SERVING)
    degraded = any(state == DEGRADED for state in states)
    if good == len(states) and not degraded:
        return ONLINE
    if good == 0 and not degraded:
        return ERROR
    return DEGRADED
