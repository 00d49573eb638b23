"""`livelog serve api|socketio|all`, `livelog smoke`, `livelog tail` and `livelog token`."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from typing import Any

from pydantic import ValidationError

from livelog import __version__
from livelog.config import (
    LOOPBACK,
    WILDCARD_HOSTS,
    ConfigurationError,
    Settings,
    api_endpoint,
    load_settings,
    reveal,
    reveal_all,
    socketio_endpoint,
    socketio_endpoints,
)
from livelog.gc_tuning import tune_gc
from livelog.logs import TaggedLogger, configure_logging
from livelog.models import RUN_ID_PATTERN, ViewerTokenRequest
from livelog.sqlite import unavailable

# `serve all` is the seed's `python main.py`: its own lines carry the seed's [MAIN] tag
main_log = TaggedLogger("livelog.main", "[MAIN]")
socketio_log = TaggedLogger("livelog.socketio", "[SOCKETIO_SERVER]")

# how long `serve all` lets the Socket.IO server take to listen before it starts the API anyway
SOCKETIO_START_SECONDS = 10.0


def settings_or_exit(env_file: str | None = None, serving: bool = False) -> Settings:
    """The settings (`serving`: enough to run a service); a bad value ends the process with the variable's name,
    not a traceback."""
    try:
        settings = load_settings(env_file)
    except ConfigurationError as exc:
        raise SystemExit(f"livelog: bad configuration: {exc}") from None
    if serving and (problems := settings.problems_serving()):
        raise SystemExit(f"livelog: bad configuration: {'; '.join(problems)}")
    return settings


def serve(component: str) -> int:
    if component == "all":
        return serve_all()
    settings = settings_or_exit(serving=True)
    configure_logging(settings.log_level)
    import uvicorn
    from starlette.types import ASGIApp
    from uvicorn.config import STARTUP_FAILURE

    app: ASGIApp
    ws: Any = "auto"
    deflate = True
    try:
        if component == "socketio":
            from livelog.socketio_server import create_socketio_app
            from livelog.websocket_protocol import stall_guarded

            app, host, port = create_socketio_app(settings), settings.socketio_host, settings.socketio_port
            ws = stall_guarded(settings.stalled_client_seconds)
            # no permessage-deflate, which browsers always ask for: a compressor per viewer takes up to about 300 KiB
            # of memory and the CPU of compressing every line once per viewer; log lines are small
            deflate = False
            socketio_log.info("Starting Socket.IO server on %s:%s", host, port)
        else:
            from livelog.api_app import create_api

            app, host, port = create_api(settings), settings.rest_api_host, settings.rest_api_port
    except (sqlite3.OperationalError, OSError) as exc:
        # a database another process has locked, a full or read-only disk, a data directory it may not write
        if isinstance(exc, sqlite3.OperationalError) and not unavailable(exc):
            raise
        raise SystemExit(f"livelog: the {component} service cannot use {settings.data_dir}: {exc}") from None
    tune_gc()
    # log_config=None: uvicorn's records go through the root logger configured above
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        ws=ws,
        ws_per_message_deflate=deflate,
    )
    listeners = None
    if component == "socketio" and settings.socketio_socket is not None:
        from livelog.listeners import tcp_listeners, unix_listener

        listeners = [*tcp_listeners(host, port), unix_listener(settings.socketio_socket)]
    # what uvicorn.run does, with the listeners: a Ctrl-C stops gracefully, a failed startup exits 3
    server = uvicorn.Server(config)
    try:
        server.run(sockets=listeners)
    except KeyboardInterrupt:
        pass
    return 0 if server.started else STARTUP_FAILURE


def serve_all() -> int:
    """Both services for a developer's terminal: two processes, as under systemd; Ctrl-C stops both."""
    from livelog.broadcaster import log_endpoints

    settings = settings_or_exit()
    configure_logging(settings.log_level)
    command = [sys.executable, "-m", "livelog", "serve"]
    # the seed's startup lines, in its order; each service adds its own
    log_endpoints(socketio_endpoints(settings))
    main_log.info("Starting Socket.IO server...")
    children = {"socketio": subprocess.Popen([*command, "socketio"])}
    # the API dials the Socket.IO server at once: start it when the server listens
    _wait_listening(settings, children["socketio"])
    main_log.info("Starting REST API server...")
    children["api"] = subprocess.Popen([*command, "api"])
    asked_to_stop = False

    def stop(*_: object) -> None:
        nonlocal asked_to_stop
        asked_to_stop = True
        for child in children.values():
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while all(child.poll() is None for child in children.values()):
        time.sleep(0.05)
    if not asked_to_stop:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"livelog: the {name} service exited ({child.returncode}); stopping the other", file=sys.stderr)
        stop()
        asked_to_stop = False
    for child in children.values():
        child.wait()
    return 0 if asked_to_stop else 1


def _wait_listening(settings: Settings, child: subprocess.Popen[bytes]) -> None:
    host = LOOPBACK if settings.socketio_host in WILDCARD_HOSTS else settings.socketio_host.strip("[]")
    deadline = time.monotonic() + SOCKETIO_START_SECONDS
    while time.monotonic() < deadline and child.poll() is None:
        try:
            socket.create_connection((host, settings.socketio_port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)


def endpoints(args: argparse.Namespace) -> tuple[str, str, str | None]:
    """The API's URL, the Socket.IO server's URL and the API key, from the arguments, else the settings."""
    settings = settings_or_exit(args.env_file)
    api_url = args.api_url or args.base_url or api_endpoint(settings)
    socketio_url = args.socketio_url or args.base_url or socketio_endpoint(settings)
    api_key = args.api_key or next(iter(reveal_all(settings.api_keys)), None)
    return api_url, socketio_url, api_key


def smoke(args: argparse.Namespace) -> int:
    from livelog.smoke import SmokeFailure, run_smoke

    api_url, socketio_url, api_key = endpoints(args)
    try:
        report = run_smoke(
            api_url, socketio_url, args.timeout, api_key, verify_tls=not args.no_verify_tls, ca_file=args.ca_file
        )
        print(asyncio.run(report))
    except SmokeFailure as failure:
        print(failure, file=sys.stderr)
        return failure.exit_code
    return 0


def tail(args: argparse.Namespace) -> int:
    import ssl

    from livelog.tail import TailFailure, tail

    if not re.fullmatch(RUN_ID_PATTERN, args.run_id):
        print(f"livelog tail: {args.run_id!r} is not a run id (letters, digits, _.:-)", file=sys.stderr)
        return 2
    api_url, socketio_url, api_key = endpoints(args)
    tls = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else not args.no_verify_tls
    following = tail(args.run_id, api_url, socketio_url, api_key, tls=tls, jsonl=args.jsonl, patience=args.timeout)
    try:
        asyncio.run(following)
    except TailFailure as failure:
        print(failure, file=sys.stderr)
        return failure.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


def token(args: argparse.Namespace) -> int:
    """A viewer token signed with this host's LIVELOG_VIEWER_TOKEN_SECRET, printed alone on stdout."""
    from livelog.auth import mint_viewer_token

    secret = reveal(settings_or_exit(args.env_file).viewer_token_secret)
    if secret is None:
        print("livelog: LIVELOG_VIEWER_TOKEN_SECRET is not set: there is nothing to sign tokens with", file=sys.stderr)
        return 2
    runs = [run.strip() for run in args.runs.split(",") if run.strip()]
    try:
        ViewerTokenRequest(runs=runs, ttl_s=args.ttl)
    except ValidationError as exc:
        print(f"livelog: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    print(mint_viewer_token(secret, runs, args.ttl)[0])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="livelog", description=__doc__)
    parser.add_argument("--version", action="version", version=f"livelog {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run a service in the foreground")
    serve_parser.add_argument("component", choices=["api", "socketio", "all"])
    smoke_parser = commands.add_parser(
        "smoke",
        help="send a test line through the API and wait for it on a Socket.IO client",
        description="Exit codes: 0 delivered; 2 health; 3 API; 4 Socket.IO connect; 5 delivery.",
    )
    add_endpoint_arguments(smoke_parser, seconds="seconds to wait at each hop", default_timeout=10.0)
    tail_parser = commands.add_parser(
        "tail",
        help="follow a run: its stored lines, then live ones, until it ends",
        description="Exit codes: 0 the run ended and every line is printed; 1 lines could not be read; "
        "2 no such run; 3 the API could not be reached or refused the credentials.",
    )
    tail_parser.add_argument("run_id", metavar="RUN_ID")
    tail_parser.add_argument("--jsonl", action="store_true", help="print each line as one JSON object")
    add_endpoint_arguments(tail_parser, seconds="seconds the API may stay unreachable", default_timeout=30.0)
    token_parser = commands.add_parser("token", help="print a viewer token for a browser (on the host)")
    token_parser.add_argument("--runs", default="*", help="comma-separated run ids the token may read; * for all")
    token_parser.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    token_parser.add_argument("--env-file", help="read the settings from this file, e.g. /etc/livelog/livelog.env")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.component)
    commands_run = {"token": token, "tail": tail, "smoke": smoke}
    return commands_run[args.command](args)


def add_endpoint_arguments(parser: argparse.ArgumentParser, seconds: str, default_timeout: float) -> None:
    """Where the services are and how to talk to them: `smoke` and `tail` take the same."""
    parser.add_argument("--base-url", help="nginx in front of both services, e.g. https://logs.example.com")
    parser.add_argument("--api-url", help="the REST API directly (default: from the environment)")
    parser.add_argument("--socketio-url", help="the Socket.IO server directly (default: from the environment)")
    parser.add_argument(
        "--timeout", type=float, default=default_timeout, help=f"{seconds} (default {default_timeout:g})"
    )
    parser.add_argument("--api-key", help="an API key (default: the first of LIVELOG_API_KEYS, if any)")
    parser.add_argument("--env-file", help="read the settings (and so the API key) from this file, not ./.env")
    parser.add_argument("--ca-file", help="check the certificate against this CA (or self-signed certificate)")
    parser.add_argument(
        "--no-verify-tls",
        action="store_true",
        help="do not check the certificate (for a proof on the host itself, through nginx on loopback)",
    )
