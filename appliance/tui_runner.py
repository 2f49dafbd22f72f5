"""`millstream run --tui`: the appliance and the operator console in one process.

Why trio guest mode (`trio.lowlevel.start_guest_run`) rather than trio-asyncio: Textual owns an
asyncio loop and expects to drive the terminal from it; the appliance is written for trio. In
guest mode trio runs its real scheduler on top of Textual's loop (its I/O waits happen in a
helper thread, its task steps on the loop's thread), so both sides run unchanged: nurseries,
cancellation and the drain on shutdown behave exactly as in `millstream run`, and the console is
the same app as `millstream tui`. trio-asyncio would instead run asyncio inside trio through a
compatibility loop, which Textual's own loop management (App.run creating and closing its loop,
signal handling, the driver's threads) would have to be bent around, and it is one more
dependency. Guest mode is part of trio itself.

The console talks to the appliance exactly as it does remotely: through the admin API over
loopback (or the unix socket), so `tui` still reaches `appliance` only through the admin client.
This module imports `tui.app` by name (importlib) so no `appliance` module imports `tui`.

While the console owns the terminal every log line (Millstream's, the console's, any library's)
goes to a file. Quitting the console (q) drains and stops the appliance and exits 0; SIGTERM and
SIGHUP make the console exit through Textual, which restores the terminal, and then the same.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import trio

from appliance import logs
from appliance.config import Settings
from appliance.logs import get_logger
from appliance.runtime import Appliance, _startup_error

log = get_logger("main")


def log_path(settings: Settings) -> Path:
    return Path(settings.log.file) if settings.log.file else settings.data_dir / "millstream.log"


def _logs_to_file(settings: Settings, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    logs.configure(settings.log.level, str(path), settings.log.file_max_size, settings.log.file_backups)
    # Everything else that logs (the console's worker threads, libraries, warnings) goes to the
    # same file: nothing may write to the terminal the console draws on.
    handler = next(h for h in logging.getLogger("millstream").handlers if not isinstance(h, logs.LogRing))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)


def _plain(admin: Any) -> bool:
    guard = getattr(admin, "guard", None)
    return admin.ssl_context is None and (guard is None or not guard.uses_tls)


def admin_url(appliance: Appliance) -> str:
    """A plain-HTTP admin listener (loopback or unix socket): the console has no client certificate."""
    servers = getattr(appliance, "admin_servers", None) or [appliance.admin]
    admin = next((a for a in servers if _plain(a)), servers[0])
    if admin.listen is not None and admin.port:
        host = admin.listen.host
        host = "127.0.0.1" if host in ("", "0.0.0.0") else ("::1" if host == "::" else host)
        return f"http://{'[' + host + ']' if ':' in host else host}:{admin.port}"
    return f"unix://{admin.unix_socket}"


async def _appliance_guest(appliance: Appliance, on_ready: Any) -> None:
    """The trio side: run the appliance; tell the host its trio token once it serves."""
    async with trio.open_nursery() as nursery:
        await nursery.start(appliance.run)
        on_ready(trio.lowlevel.current_trio_token())


async def _main(settings: Settings) -> int:
    loop = asyncio.get_running_loop()
    appliance = Appliance(settings)
    ready: asyncio.Future[trio.lowlevel.TrioToken] = loop.create_future()
    done: asyncio.Future[Any] = loop.create_future()

    def on_ready(token: trio.lowlevel.TrioToken) -> None:
        if not ready.done():
            ready.set_result(token)

    def on_done(outcome: Any) -> None:
        if not done.done():
            done.set_result(outcome)

    trio.lowlevel.start_guest_run(
        _appliance_guest, appliance, on_ready,
        run_sync_soon_threadsafe=loop.call_soon_threadsafe,
        done_callback=on_done,
        host_uses_signal_set_wakeup_fd=True,  # asyncio's signal handling owns the wakeup fd
    )
    await asyncio.wait([ready, done], return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():  # the appliance ended before it served: a start-up failure
        return _finish(done.result())
    token = ready.result()

    console = importlib.import_module("tui.app").make_console(admin_url(appliance), handle_signals=True)

    async def stop_console_if_appliance_ends() -> None:
        await asyncio.shield(done)
        log.error("appliance_stopped_under_console")
        console.exit(return_code=1)

    watcher = asyncio.ensure_future(stop_console_if_appliance_ends())
    try:
        await console.run_async()
    finally:
        watcher.cancel()
        if not done.done():
            log.info("console_closed", action="drain")
            token.run_sync_soon(appliance.stop)  # trio.Event.set must run on trio's side
        outcome = await done
    return _finish(outcome)


def _finish(outcome: Any) -> int:
    try:
        outcome.unwrap()
    except BaseException as e:  # noqa: BLE001 - a start-up failure is one clear line, as in `run`
        found = _startup_error(e)
        if found is None:
            raise
        log.error("startup_failed", error=str(found))
        print(f"millstream: cannot start: {found}", file=sys.stderr)
        return 1
    return 0


def run_with_tui(settings: Settings) -> int:
    path = log_path(settings)
    _logs_to_file(settings, path)
    code = asyncio.run(_main(settings))
    print(f"millstream: stopped; logs are in {path}", file=sys.stderr)
    return code
