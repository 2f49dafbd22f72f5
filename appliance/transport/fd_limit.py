"""Enough file descriptors for the connection limits: raise the soft RLIMIT_NOFILE at start-up.

Many systems start services with a soft limit of 1024 while `kafka.max_connections` and
`mqtt.max_connections` default to 4096 per listener; past the soft limit accept() fails with
EMFILE instead of the limits refusing cleanly. The hard limit is the administrator's to raise;
we only move the soft limit up to what the listeners need (or the hard limit), and say so.
"""

from __future__ import annotations

import resource

from appliance.logs import get_logger

log = get_logger("main")

HEADROOM = 512  # WAL segments, object-store files, admin and uplink sockets, the TUI


def wanted(connection_limits: list[int]) -> int:
    """Descriptors the listeners may need at their limits, plus room for everything else."""
    return sum(connection_limits) + HEADROOM


def plan(soft: int, hard: int, needed: int) -> int | None:
    """The new soft limit, or None to leave it (already enough, or unlimited)."""
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    return needed if hard == resource.RLIM_INFINITY else min(hard, needed)


def ensure(needed: int) -> int:
    """Raise the soft limit towards `needed` if it is lower; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = plan(soft, hard, needed)
    if target is None:
        return soft
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as e:
            log.warning("fd_limit_low", soft=soft, hard=hard, needed=needed, error=str(e))
            return soft
        log.info("fd_limit_raised", old=soft, new=target, hard=hard, needed=needed)
    if target < needed:
        log.warning("fd_limit_low", soft=target, hard=hard, needed=needed,
                    note="connections beyond it fail with EMFILE; raise the hard limit (LimitNOFILE=)")
    return target
