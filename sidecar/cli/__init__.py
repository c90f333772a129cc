"""The ``policy-sidecar`` command line (DESIGN §5): serve, decide, replicate, jobs, bundle, audit, …"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sidecar import __version__
from sidecar.config import Config, load_config
from sidecar.errors import ConfigError, InvalidArgument, SidecarError
from sidecar.telemetry import configure_logging

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="policy-sidecar",
        description="Policy sidecar for multi-registry container image replication.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config", "-c", help="sidecar YAML config (Freightliner registries: + policy:)"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="treat config warnings (unknown registry keys) as errors (exit 2)",
    )
    parser.add_argument(
        "--log-level", help="override policy.telemetry.log_level (debug|info|warning|error)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("serve", help="run the gRPC sidecar (managed OPA unless policy.opa.address)")

    decide = sub.add_parser("decide", help="evaluate one decision and print it as JSON")
    what = decide.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--policy-input",
        metavar="FILE",
        help="raw DESIGN §3.1 policy input (JSON or YAML; - for stdin), evaluated by a real OPA "
        "on the local bundle without enrichment; prints the §3.2 decision",
    )
    what.add_argument(
        "--image", metavar="REF", help="REGISTRY/REPOSITORY[:TAG][@DIGEST], full decision path"
    )
    decide.add_argument(
        "--label", action="append", default=[], metavar="K=V", help="image label (repeatable)"
    )
    decide.add_argument(
        "--annotation", action="append", default=[], metavar="K=V", help="manifest annotation"
    )
    decide.add_argument("--event", default="manual", help="push|reconcile|failover|manual")
    decide.add_argument("--size-bytes", type=int, default=0, help="image size in bytes")
    decide.add_argument(
        "--caller",
        default=None,
        help="caller subject (default: cli; with $POLICY_SIDECAR_TOKEN: the token's identity)",
    )
    decide.add_argument("--caller-tenant", default=None, help="caller tenant id")
    decide.add_argument(
        "--caller-role",
        action="append",
        default=[],
        metavar="ROLE",
        help="caller role (repeatable); with --server, --now and --unhealthy need a role in "
        "policy.facts.override_roles",
    )
    decide.add_argument("--now", default=None, help="RFC3339 evaluation time (default: now)")
    decide.add_argument(
        "--unhealthy",
        action="append",
        default=[],
        metavar="REGISTRY",
        help="treat REGISTRY as unhealthy for this decision (repeatable)",
    )
    decide.add_argument(
        "--present-at",
        action="append",
        default=[],
        metavar="REGISTRY",
        help="REGISTRY holds this image now (image.present_at; repeatable): the decision's "
        "remove lists the copies the policy wants gone",
    )
    decide.add_argument(
        "--server", metavar="HOST:PORT", help="ask a running sidecar over gRPC instead"
    )

    from sidecar.cli._bundle import add_parser as add_bundle_parser  # noqa: PLC0415

    add_bundle_parser(sub)

    from sidecar.cli._replicate import add_parsers  # noqa: PLC0415 - keeps startup light

    add_parsers(sub)

    from sidecar.cli._data import add_parser as add_data_parser  # noqa: PLC0415

    add_data_parser(sub)

    from sidecar.cli import _admin, _audit, _config, _reconcile  # noqa: PLC0415

    _reconcile.add_parser(sub)
    _config.add_parser(sub)
    _audit.add_parser(sub)
    _admin.add_parser(sub)

    bench = sub.add_parser("bench", help="benchmark Decide against direct OPA REST calls")
    bench.add_argument(
        "--concurrency", default="1,100,1000", help="comma-separated concurrent callers"
    )
    bench.add_argument("--requests", type=int, default=2000, help="requests per level")
    bench.add_argument(
        "--rate",
        default="",
        help="comma-separated open-loop arrival rates (decisions/s), e.g. 250,500,1000; "
        "latency counts from each request's scheduled arrival",
    )
    bench.add_argument(
        "--duration", type=float, default=5.0, help="seconds of arrivals per open-loop rate"
    )
    bench.add_argument("--policies", type=int, default=10_000, help="rules loaded as bundle data")
    bench.add_argument(
        "--decision-cache",
        action="store_true",
        help="run the sidecar with policy.decision_cache enabled; report its hit rate",
    )
    bench.add_argument(
        "--profile",
        default="",
        help="run the sidecar under cProfile and write its stats here when it stops",
    )
    bench.add_argument(
        "--sidecar-tree",
        default="",
        help="run the sidecar of another checkout (its root directory), e.g. for a before figure",
    )
    bench.add_argument(
        "--opa-samples",
        type=int,
        default=200,
        help="single OPA queries with ?metrics=true for its own evaluation time (0: none)",
    )
    bench.add_argument("--output", help="also write the report as JSON here")
    return parser


def _pairs(items: Sequence[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InvalidArgument(flag, f"{item!r} is not KEY=VALUE")
        out[key] = value
    return out


def _read_document(path: str) -> Any:
    import yaml  # noqa: PLC0415 - only this command reads YAML/JSON documents from the user

    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument("--policy-input", f"{path} is not JSON or YAML: {exc}") from exc


def _print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _run(args: argparse.Namespace, config: Config) -> int:
    # Commands import their machinery lazily so `--help` and config errors stay instant.
    if args.command == "serve":
        from sidecar.app.sidecar import run_forever  # noqa: PLC0415

        asyncio.run(run_forever(config))
        return EXIT_OK
    if args.command == "decide":
        from sidecar.cli import _decide  # noqa: PLC0415

        if args.policy_input:
            _print_json(asyncio.run(_decide.decide_raw(config, _read_document(args.policy_input))))
        else:
            request = _decide.request_from_args(
                args, _pairs(args.label, "--label"), _pairs(args.annotation, "--annotation")
            )
            _print_json(asyncio.run(_decide.decide_image(config, request, args.server)))
        return EXIT_OK
    if args.command in ("bundle", "data"):
        from sidecar.cli import _bundle, _data  # noqa: PLC0415

        action = _bundle.run if args.command == "bundle" else _data.run
        _print_json(action(args, config))
        return EXIT_OK
    if args.command in ("replicate", "jobs"):
        from sidecar.cli import _replicate  # noqa: PLC0415

        if args.command == "jobs":
            print(asyncio.run(_replicate.run_jobs(args, config)))
            return EXIT_OK
        report, ok = asyncio.run(
            _replicate.run_replicate(args, config, _pairs(args.label, "--label"))
        )
        _print_json(report)
        return EXIT_OK if ok else EXIT_FAILED
    if args.command == "bench":
        from sidecar.cli.bench import run_bench  # noqa: PLC0415

        report = asyncio.run(run_bench(config, args))
        if args.output:
            Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        _print_json(report)
        return EXIT_OK
    raise AssertionError(f"unhandled command {args.command}")  # argparse rejects unknown ones


def _inspect_config(args: argparse.Namespace, config: Config) -> int:
    from sidecar.cli import _config  # noqa: PLC0415

    _print_json(_config.run(args, config))
    return EXIT_OK


def _reconcile_command(args: argparse.Namespace, config: Config) -> int:
    from sidecar.cli import _reconcile  # noqa: PLC0415

    out, ok = asyncio.run(_reconcile.run(args, config))
    if isinstance(out, str):
        print(out)
    else:
        _print_json(out)
    return EXIT_OK if ok else EXIT_FAILED


def _governance(args: argparse.Namespace, config: Config) -> int:
    from sidecar.cli import _admin, _audit  # noqa: PLC0415

    if args.command == "admin":
        _print_json(asyncio.run(_admin.run(args, config)))
        return EXIT_OK
    report, intact = asyncio.run(_audit.run(args, config))
    _print_json(report)
    return EXIT_OK if intact else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit status (2 for bad config or arguments)."""
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config, strict=args.strict)
    except ConfigError as exc:
        print(f"policy-sidecar: invalid config: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    telemetry = config.policy.telemetry
    configure_logging(args.log_level or telemetry.log_level, telemetry.log_format)
    try:
        runners = {
            "audit": _governance,
            "admin": _governance,
            "config": _inspect_config,
            "reconcile": _reconcile_command,
        }
        runner = runners.get(args.command, _run)
        return runner(args, config)
    except (ConfigError, InvalidArgument) as exc:
        print(f"policy-sidecar: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except SidecarError as exc:
        print(f"policy-sidecar: {exc.code.value}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`): as for any Unix filter, not an error worth a trace.
        # stdout is pointed at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
