"""`millstream install-service`: write a hardened systemd unit for the plant or cloud role.

The unit text is rendered here (packaging/systemd/*.service are this output with the default
paths, checked by a test), so the pyz can write it without shipping extra files.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import NamedTuple

DEFAULT_PYZ = "/opt/millstream/millstream.pyz"
DEFAULT_PYTHON = "/usr/bin/python3"
DEFAULT_DATA_DIRS = {"plant": "/var/lib/millstream", "cloud": "/var/lib/millstream-cloud"}
DEFAULT_CACHE_DIR = "/var/cache/millstream"
DEFAULT_UNIT_DIR = "/etc/systemd/system"
DEFAULT_USER = "millstream"
# systemd's stop timeout is the drain deadline (node.shutdown_grace) plus room to flush the WAL.
STOP_MARGIN_SECONDS = 20


class UnitSpec(NamedTuple):  # immutable like a frozen dataclass, without importing dataclasses at CLI start
    role: str = "plant"
    python: str = DEFAULT_PYTHON
    pyz: str | None = DEFAULT_PYZ  # None: run the installed package (`python -m appliance`)
    data_dir: str = DEFAULT_DATA_DIRS["plant"]
    config: str | None = None
    log_dir: str | None = None  # parent of [log] file, when the config sends logs to a file
    user: str = DEFAULT_USER
    cache_dir: str = DEFAULT_CACHE_DIR
    shutdown_grace: float = 10.0

    @property
    def unit_name(self) -> str:
        return "millstream.service" if self.role == "plant" else "millstream-cloud.service"

    def exec_start(self) -> str:
        program = [self.python, self.pyz] if self.pyz else [self.python, "-m", "appliance"]
        args = [*program, "run", "--role", self.role, "--data-dir", self.data_dir]
        if self.config:
            args += ["--config", self.config]
        return " ".join(_systemd_quote(a) for a in args)


def _systemd_quote(arg: str) -> str:
    # systemd splits ExecStart like a shell, and expands % specifiers and $VARS: escape those
    return shlex.quote(arg).replace("%", "%%").replace("$", "$$")


def _managed_dir(path: str, base: str) -> str | None:
    """`millstream` for /var/lib/millstream when base is /var/lib: systemd then creates and owns it."""
    p, b = Path(path), Path(base)
    if p.parent == b and p.name:
        return p.name
    return None


def render_unit(spec: UnitSpec) -> str:
    role_text = "plant (MQTT ingestion, Kafka broker, uplink)" if spec.role == "plant" else "cloud receiver"
    state = _managed_dir(spec.data_dir, "/var/lib")
    cache = _managed_dir(spec.cache_dir, "/var/cache")
    timeout = int(spec.shutdown_grace + STOP_MARGIN_SECONDS)
    lines = [
        "# Written by `millstream install-service`; re-run it rather than editing by hand.",
        "[Unit]",
        f"Description=Millstream {role_text}",
        "Wants=network-online.target",
        "After=network-online.target",
        "StartLimitIntervalSec=300",
        "StartLimitBurst=10",
        "",
        "[Service]",
        "Type=simple",
        f"User={spec.user}",
        f"Group={spec.user}",
        f"ExecStart={spec.exec_start()}",
        # native libraries are extracted here on first start (must be writable and not noexec)
        f"Environment=MILLSTREAM_CACHE={spec.cache_dir}",
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if state:
        lines.append(f"StateDirectory={state}")
        lines.append("StateDirectoryMode=0750")
    if cache:
        lines.append(f"CacheDirectory={cache}")
    lines += [
        "Restart=on-failure",
        "RestartSec=2s",
        # SIGTERM drains: listeners close, in-flight requests get node.shutdown_grace, the WAL is flushed
        "KillSignal=SIGTERM",
        "KillMode=mixed",
        f"TimeoutStopSec={timeout}s",
        "LimitNOFILE=65536",
        "UMask=0027",
        "",
        "# Hardening: read-only system, private /tmp, no privilege gain, writable data dir only.",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        f"ReadWritePaths={_systemd_quote(spec.data_dir)}",
    ]
    for extra in ([] if cache else [spec.cache_dir]) + ([spec.log_dir] if spec.log_dir else []):
        lines.append(f"ReadWritePaths={_systemd_quote(extra)}")
    lines += [
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        "SystemCallArchitectures=native",
        "CapabilityBoundingSet=",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "install-service", help="write a hardened systemd unit for this appliance",
        description="Write millstream.service (plant) or millstream-cloud.service (cloud) with the right paths.")
    p.add_argument("--role", choices=["plant", "cloud"], default="plant")
    p.add_argument("--pyz", metavar="PATH",
                   help="the millstream.pyz to run (default: the running pyz, else `python -m appliance`)")
    p.add_argument("--python", metavar="PATH", help="interpreter for ExecStart (default: the running one)")
    p.add_argument("--data-dir", metavar="DIR",
                   help=f"data directory (default {DEFAULT_DATA_DIRS['plant']}, cloud {DEFAULT_DATA_DIRS['cloud']})")
    p.add_argument("--config", metavar="FILE", help="site config passed to `millstream run --config`")
    p.add_argument("--user", default=DEFAULT_USER, help=f"service account (default {DEFAULT_USER})")
    p.add_argument("--cache-dir", metavar="DIR", default=DEFAULT_CACHE_DIR,
                   help=f"where the pyz extracts native libraries (default {DEFAULT_CACHE_DIR})")
    p.add_argument("--unit-dir", metavar="DIR", default=DEFAULT_UNIT_DIR, help=f"default {DEFAULT_UNIT_DIR}")
    p.add_argument("--dry-run", action="store_true", help="print the unit instead of writing it")
    p.set_defaults(handler=cmd_install_service)


def spec_from_args(args: argparse.Namespace) -> UnitSpec:
    """Resolve defaults: the running pyz and interpreter, data dir and drain deadline from the config."""
    from appliance.config import load_settings

    config = os.path.abspath(args.config) if args.config else None
    grace = 10.0
    data_dir = args.data_dir
    log_dir = None
    if config:
        settings = load_settings(config)  # a broken config fails here, not at the first start
        grace = settings.node.shutdown_grace
        if data_dir is None and settings.node.data_dir.is_absolute():  # ./var would be relative to /
            data_dir = str(settings.node.data_dir)
        if settings.log.file:
            log_dir = os.path.dirname(os.path.abspath(settings.log.file))
    pyz = args.pyz or os.environ.get("MILLSTREAM_PYZ")
    return UnitSpec(
        role=args.role,
        python=os.path.abspath(args.python) if args.python else sys.executable,
        pyz=os.path.abspath(pyz) if pyz else None,
        data_dir=os.path.abspath(data_dir or DEFAULT_DATA_DIRS[args.role]),
        config=config,
        log_dir=log_dir,
        user=args.user,
        cache_dir=os.path.abspath(args.cache_dir),
        shutdown_grace=grace,
    )


def cmd_install_service(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    text = render_unit(spec)
    if args.dry_run:
        sys.stdout.write(text)
        return 0
    target = Path(args.unit_dir) / spec.unit_name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(target)
    except OSError as e:
        print(f"millstream: cannot write {target}: {e.strerror or e} (run as root, or use --dry-run)",
              file=sys.stderr)
        return 1
    print(f"wrote {target}")
    print("next steps:")
    u = shlex.quote(spec.user)
    print(f"  id {u} >/dev/null 2>&1 || useradd --system --home-dir {shlex.quote(spec.data_dir)} "
          f"--shell /usr/sbin/nologin {u}")
    if not _managed_dir(spec.data_dir, "/var/lib"):
        print(f"  install -d -o {u} -g {u} -m 0750 {shlex.quote(spec.data_dir)}")
    if not _managed_dir(spec.cache_dir, "/var/cache"):
        print(f"  install -d -o {u} -g {u} -m 0750 {shlex.quote(spec.cache_dir)}")
    print(f"  systemctl daemon-reload && systemctl enable --now {spec.unit_name}")
    print(f"  journalctl -u {spec.unit_name} -f")
    return 0
