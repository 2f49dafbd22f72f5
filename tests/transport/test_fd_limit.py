"""The start-up fd limit: raised to what the connection limits need, never above the hard limit."""

from __future__ import annotations

import resource

from appliance.transport import fd_limit

INF = resource.RLIM_INFINITY


def test_the_soft_limit_is_raised_to_what_the_listeners_need_within_the_hard_limit():
    needed = fd_limit.wanted([4096, 4096])
    assert needed == 8192 + fd_limit.HEADROOM
    assert fd_limit.plan(1024, 1_048_576, needed) == needed
    assert fd_limit.plan(1024, 4096, needed) == 4096  # the hard limit is the administrator's
    assert fd_limit.plan(1024, INF, needed) == needed
    assert fd_limit.plan(65536, 65536, needed) is None
    assert fd_limit.plan(INF, INF, needed) is None


def test_ensure_never_lowers_the_limit():
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert fd_limit.ensure(16) == soft
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == soft
