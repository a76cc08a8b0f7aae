"""``lbcore control``: run the control plane's REST API, and make its first tokens.

    lbcore control init  --db URL [--secrets-key FILE] [--tenant admin]
        migrate the database, create the key file if missing (0600), create a tenant
        and an admin token for it; the token is printed once (only its hash is kept)
    lbcore control token --db URL --tenant NAME|ID [--admin] [--create]
        another token for a tenant (--create: make the tenant if it is not there)
    lbcore control serve --db URL --secrets-key FILE [--listen 127.0.0.1:9876]
                         [--mgmt-cert FILE --mgmt-key FILE --mgmt-ca FILE]
        serve the API with uvicorn; with the management TLS files, every change is
        pushed to the clusters' lbcore nodes (the native driver, mutual TLS)

``--db`` is a SQLite file path or a PostgreSQL URL (default ``$LBCORE_CONTROL_DB``);
``--secrets-key`` defaults to ``$LBCORE_SECRETS_KEY``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import Any

__all__ = ["build_service", "main", "parse_listen"]

DEFAULT_LISTEN = "127.0.0.1:9876"


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT or [V6]:PORT, got {text!r}")
    return host, int(port)


def build_service(db: str, secrets_key: str | None, *, applier: Any = None, create_key: bool = False) -> Any:
    """A ControlService on ``db`` (migrated to head); ``secrets_key`` None: an in-memory
    key (good for token work, which stores no secret)."""
    from lbcore.control.secrets import Secrets
    from lbcore.control.service import ControlService
    from lbcore.control.store import Store

    secrets = Secrets.load(secrets_key, create=create_key) if secrets_key else Secrets.generate()
    return ControlService(Store(db), secrets, applier)


def _applier(args: argparse.Namespace) -> Any:
    given = [args.mgmt_cert, args.mgmt_key, args.mgmt_ca]
    if not any(given):
        return None
    if not all(given):
        raise SystemExit("lbcore control serve: --mgmt-cert, --mgmt-key and --mgmt-ca go together")
    from lbcore.control.drivers.native import ManagementTls, NativeDriver

    return NativeDriver(ManagementTls(cert=args.mgmt_cert, key=args.mgmt_key, ca=args.mgmt_ca))


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from lbcore.control.api import create_app

    if not args.secrets_key:
        print("lbcore control serve: --secrets-key FILE (or $LBCORE_SECRETS_KEY) is required: "
              "certificates' private keys are encrypted with it", file=sys.stderr)
        return 2
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        print(f"--listen: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s lbcore[control pid %(process)d] %(levelname)s %(name)s %(message)s")
    applier = _applier(args)
    service = build_service(args.db, args.secrets_key, applier=applier, create_key=args.create_key)
    if applier is not None and args.reconcile_interval > 0:
        start_reconciler(service, args.reconcile_interval)
    uvicorn.run(create_app(service), host=host, port=port, log_level=args.log_level.lower(),
                access_log=not args.no_access_log)
    return 0


def start_reconciler(service: Any, interval: float) -> threading.Thread:
    """Every ``interval`` seconds, push the current revision to nodes left in ERROR
    (down or refusing when a change was made): a node that comes back is brought up
    to date without an operator."""
    log = logging.getLogger("lbcore.control.reconcile")

    def loop() -> None:
        while not _stop.wait(interval):
            try:
                clusters = service.reconcile()
            except Exception:  # keep reconciling whatever one round hit
                log.exception("reconcile round failed")
                continue
            if clusters:
                log.info("re-pushed clusters with failed nodes: %s", ", ".join(clusters))

    thread = threading.Thread(target=loop, name="lbcore-reconcile", daemon=True)
    thread.start()
    return thread


_stop = threading.Event()


def cmd_init(args: argparse.Namespace) -> int:
    from lbcore.control.errors import ControlError

    service = build_service(args.db, args.secrets_key, create_key=True)
    try:
        tenant = service.create_tenant(args.tenant)
    except ControlError as exc:
        print(f"lbcore control init: {exc.message} (lbcore control token --tenant {args.tenant} --admin "
              f"makes another token)", file=sys.stderr)
        return 1
    token = service.create_token(tenant["id"], admin=True)
    print(f"tenant {tenant['name']} ({tenant['id']}); admin token (shown once, keep it):", file=sys.stderr)
    print(token)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from lbcore.control.service import Principal

    service = build_service(args.db, args.secrets_key)
    tenants = service.list_tenants(Principal(tenant_id="", is_admin=True))
    found = [t for t in tenants if args.tenant in (t["id"], t["name"])]
    if found:
        tenant = found[0]
    elif args.create:
        tenant = service.create_tenant(args.tenant)
        print(f"created tenant {tenant['name']} ({tenant['id']})", file=sys.stderr)
    else:
        print(f"lbcore control token: no tenant {args.tenant!r} (--create makes it)", file=sys.stderr)
        return 1
    token = service.create_token(tenant["id"], admin=args.admin)
    kind = "admin token" if args.admin else "token"
    print(f"{kind} for tenant {tenant['name']} ({tenant['id']}), shown once:", file=sys.stderr)
    print(token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lbcore control", description="the control plane: REST API and tokens")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=os.environ.get("LBCORE_CONTROL_DB"),
                       required="LBCORE_CONTROL_DB" not in os.environ,
                       help="SQLite file or PostgreSQL URL (default: $LBCORE_CONTROL_DB)")
        p.add_argument("--secrets-key", default=os.environ.get("LBCORE_SECRETS_KEY"),
                       help="key file for secrets at rest (default: $LBCORE_SECRETS_KEY)")

    p = sub.add_parser("serve", help="serve the REST API (uvicorn)")
    common(p)
    p.add_argument("--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT or [V6]:PORT (default {DEFAULT_LISTEN})")
    p.add_argument("--create-key", action="store_true", help="create the --secrets-key file (0600) if it is missing")
    p.add_argument("--mgmt-cert", help="client certificate for the nodes' agents (native driver)")
    p.add_argument("--mgmt-key", help="its private key")
    p.add_argument("--mgmt-ca", help="the management CA the nodes' certificates chain to")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--no-access-log", action="store_true")
    p.add_argument("--reconcile-interval", type=float, default=10.0,
                   help="seconds between retries of nodes left in ERROR (0: off)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("init", help="first setup: a tenant and its admin token (printed once)")
    common(p)
    p.add_argument("--tenant", default="admin", help="the tenant's name (default: admin)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("token", help="a new token for a tenant (printed once)")
    common(p)
    p.add_argument("--tenant", required=True, help="the tenant's name or id")
    p.add_argument("--admin", action="store_true", help="an admin token")
    p.add_argument("--create", action="store_true", help="create the tenant if it does not exist")
    p.set_defaults(func=cmd_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    from lbcore.control.secrets import SecretError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SecretError as exc:
        print(f"lbcore control {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
