"""The ``lbcore`` command.

    lbcore serve FILE [--workers N] [--agent HOST:PORT --agent-cert C --agent-key K --agent-ca CA]
                                        run the engine on a Spec (like haproxy -f); --agent: node agent
    lbcore check FILE                   validate; exit 2 with every error found
    lbcore diff OLD NEW                 what would change between two revisions
    lbcore route FILE --host H --path P [--client-ip A] [--cookie k=v] [--header k:v] [--method M] [--listener L]
                                        explain which ACL, pool and members a request gets
    lbcore demo [FILE]                  demo members + the engine on the bundled example
    lbcore render --driver haproxy FILE OUTDIR [--tls-termination stunnel]
                                        the same Spec as haproxy.cfg, crt-lists, certificates, stunnel.conf
    lbcore ctl [--socket PATH] COMMAND...
                                        one runtime-API command to a running engine (show stat, set server ...)
    lbcore bench [--quick] [--scenario NAME] ...
                                        the benchmark harness (bench/ in a source checkout: python -m bench)
    lbcore control {serve,init,token} ...
                                        the control plane: REST API server, tenants' tokens
    lbcore api [-o json] KIND ACTION ...
                                        drive the control plane's REST API (pool list, member create ...)
"""

from __future__ import annotations

import argparse
import logging
import sys

from lbcore import __version__
from lbcore import spec as S

__all__ = ["main"]


def _load_or_report(path: str) -> S.Spec | None:
    try:
        return S.load_spec(path)
    except S.SpecError as exc:
        print(f"{path}: invalid:\n{exc}", file=sys.stderr)
        return None


def cmd_serve(args: argparse.Namespace) -> int:
    from lbcore.proxy.supervisor import serve

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s lbcore[supervisor pid %(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    agent = None
    if args.agent:
        from lbcore.proxy.agent import agent_context

        missing = [flag for flag, value in (("--agent-cert", args.agent_cert), ("--agent-key", args.agent_key), ("--agent-ca", args.agent_ca)) if not value]
        if missing:
            print(f"--agent needs {', '.join(missing)} (the management channel is mutual TLS)", file=sys.stderr)
            return 2
        try:
            address = S.Address.parse(args.agent)
            context = agent_context(args.agent_cert, args.agent_key, args.agent_ca)
        except (ValueError, OSError, S.SpecError) as exc:
            print(f"--agent: {exc}", file=sys.stderr)
            return 2
        agent = (address.host, address.port, context)
    return serve(args.file, workers=args.workers, log_level=args.log_level, agent=agent)


def cmd_check(args: argparse.Namespace) -> int:
    spec = _load_or_report(args.file)
    if spec is None:
        return 2
    print(f"{args.file}: valid, revision {spec.revision}: {len(spec.listeners)} listeners, {len(spec.pools)} pools")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    old = _load_or_report(args.old)
    new = _load_or_report(args.new)
    if old is None or new is None:
        return 2
    changes = S.diff(old, new)
    if not changes:
        print(f"no changes (revision {old.revision})")
        return 0
    print(f"revision {old.revision} -> {new.revision}: {len(changes)} changes")
    print(S.format_diff(changes))
    return 1 if args.exit_code else 0


def cmd_route(args: argparse.Namespace) -> int:
    from lbcore.l7.balance import MemberState, make_balancer
    from lbcore.l7.facts import RequestFacts
    from lbcore.l7.router import Router

    spec = _load_or_report(args.file)
    if spec is None:
        return 2
    candidates = [l for l in spec.listeners if args.listener in (None, l.name)]
    if not candidates:
        print(f"no listener named {args.listener!r}; listeners: {', '.join(l.name for l in spec.listeners)}", file=sys.stderr)
        return 2
    headers: list[tuple[str, str]] = [("Host", args.host)] if args.host else []
    for item in args.header or []:
        name, sep, value = item.partition(":")
        if not sep:
            print(f"--header {item!r}: expected NAME:VALUE", file=sys.stderr)
            return 2
        headers.append((name.strip(), value.strip()))
    if args.cookie:
        headers.append(("Cookie", "; ".join(args.cookie)))
    try:
        facts = RequestFacts(args.method, args.path, headers, args.client_ip, sni=args.sni)
    except ValueError as exc:
        print(f"--client-ip: {exc}", file=sys.stderr)
        return 2
    if args.listener is None:
        # Without --listener, explain for the first HTTP listener that routes (an HTTP
        # request's host/path/cookie/header mean nothing to a TCP listener).
        routing = [l for l in candidates if l.protocol in ("http", "https") and l.redirect is None]
        candidates = routing or candidates
    listener = candidates[0]
    others = [l.name for l in spec.listeners if l is not listener]
    hint = f" (others: {', '.join(others)}; pick with --listener)" if others and args.listener is None else ""
    print(f"listener {listener.name} ({listener.protocol} on {listener.bind}){hint}")
    if listener.redirect is not None:
        r = listener.redirect
        print(f"  redirect {r.code} to scheme={r.scheme or 'same'} host={r.host or 'same'} port={r.port or 'default'}")
        return 0
    router = Router([(a.name, a.condition, a.pool) for a in listener.acls], listener.default_pool)
    for line in router.explain(facts):
        print(f"  {line}")
    route = router.route(facts)
    if route.pool is None:
        print("result: no pool: the request gets 503")
        return 0
    pool = spec.pool(route.pool)
    states = [MemberState(m.name, weight=m.weight, backup=m.backup, admin=m.admin_state) for m in pool.members]
    balancer = make_balancer(pool.algorithm, states, hash_header=pool.hash_header)
    picked = balancer.pick(facts)
    how = pool.algorithm + (f"({pool.hash_header})" if pool.hash_header else "")
    print(f"result: pool {pool.name} via {'acl ' + route.acl if route.acl else 'default pool'}; algorithm {how}")
    if pool.persistence is not None:
        cookie = facts.cookie(pool.persistence.name) if pool.persistence.type == "cookie" else None
        note = f", request carries {pool.persistence.name}={cookie}" if cookie else ""
        print(f"  persistence: {pool.persistence.type}{note}")
    print(f"  member (assuming all healthy): {picked.name if picked else 'none available: 503'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from lbcore.demo import run_demo

    return run_demo(args.file, workers=args.workers)


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (root / "bench" / "__main__.py").exists():
        print("the benchmark harness is bench/ in lbcore's source tree: run lbcore bench from a checkout", file=sys.stderr)
        return 2
    sys.path.insert(0, str(root))
    from bench.cli import main as bench_main

    return bench_main(args.bench_args)


def cmd_ctl(args: argparse.Namespace) -> int:
    from lbcore.ctl import run_ctl

    return run_ctl(args.socket, args.words)


def cmd_control(args: argparse.Namespace) -> int:
    from lbcore.control.server import main as control_main

    return control_main(args.sub_args)


def cmd_api(args: argparse.Namespace) -> int:
    from lbcore.control.client import main as api_main

    return api_main(args.sub_args)


def cmd_render(args: argparse.Namespace) -> int:
    import os

    from lbcore.control.drivers.haproxy import RenderError, ensure_runtime, render

    spec = _load_or_report(args.file)
    if spec is None:
        return 2
    try:
        rendering = render(
            spec, args.outdir, spec_dir=os.path.dirname(os.path.abspath(args.file)),
            runtime_dir=args.runtime_dir, tls_termination=args.tls_termination,
        )
    except RenderError as exc:
        print(f"{args.file}: cannot be served by {args.driver}:\n{exc}", file=sys.stderr)
        return 2
    rendering.write()
    ensure_runtime(args.runtime_dir or rendering.directory)
    for item in rendering.files:
        print(f"{oct(item.mode)[2:]} {os.path.join(rendering.directory, item.path)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lbcore", description="lbcore load-balancer engine")
    parser.add_argument("--version", action="version", version=f"lbcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the engine on a Spec file")
    p.add_argument("file")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--agent", metavar="HOST:PORT", help="node agent: the control plane pushes Specs here (mutual TLS)")
    p.add_argument("--agent-cert", help="node agent certificate (PEM)")
    p.add_argument("--agent-key", help="node agent private key (PEM)")
    p.add_argument("--agent-ca", help="CA that signs the control plane's client certificate")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check", help="validate a Spec file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("diff", help="show what changes between two Spec files")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--exit-code", action="store_true", help="exit 1 when there are changes")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("route", help="explain how a request would be routed")
    p.add_argument("file")
    p.add_argument("--listener")
    p.add_argument("--host", default="")
    p.add_argument("--path", default="/")
    p.add_argument("--method", default="GET")
    p.add_argument("--client-ip")
    p.add_argument("--sni")
    p.add_argument("--cookie", action="append", help="NAME=VALUE (repeatable)")
    p.add_argument("--header", action="append", help="NAME:VALUE (repeatable)")
    p.set_defaults(func=cmd_route)

    p = sub.add_parser("demo", help="run demo members and the engine on the bundled example")
    p.add_argument("file", nargs="?")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", add_help=False, help="run the benchmark harness (options: lbcore bench --help)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("ctl", help="send a runtime-API command to a running engine ('help' lists them)")
    p.add_argument("--socket", help="the runtime socket (default: $LBCORE_SOCKET or /run/lbcore/lbcore.sock)")
    p.add_argument("words", nargs="+", metavar="COMMAND", help="e.g. show stat, set server POOL/MEMBER state drain")
    p.set_defaults(func=cmd_ctl)

    p = sub.add_parser("render", help="write another engine's configuration for a Spec (haproxy, stunnel)")
    p.add_argument("file")
    p.add_argument("outdir")
    p.add_argument("--driver", default="haproxy", choices=["haproxy"])
    p.add_argument("--tls-termination", default="haproxy", choices=["haproxy", "stunnel"],
                   help="who terminates TLS for https listeners (stunnel: stunnel.conf in front of haproxy)")
    p.add_argument("--runtime-dir", help="where haproxy's sockets and server-state file go (default: OUTDIR)")
    p.set_defaults(func=cmd_render)

    # These two parse their own arguments (lbcore.control.server, lbcore.control.client).
    p = sub.add_parser("control", add_help=False, help="the control plane: serve the REST API, make tokens")
    p.set_defaults(func=cmd_control)
    p = sub.add_parser("api", add_help=False, help="drive the control plane's REST API (lbcore api --help)")
    p.set_defaults(func=cmd_api)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_args = rest  # bench parses its own options
    elif args.command in ("control", "api"):
        args.sub_args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
