"""`livelog serve api|socketio|all` and `livelog smoke`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import subprocess
import sys
import time

from pydantic import ValidationError

from livelog import __version__
from livelog.config import Settings, api_endpoint, socketio_endpoint


def load_settings() -> Settings:
    """Settings from the environment and .env; a bad value ends the process with its name, not a traceback."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"livelog: bad configuration: {problems}") from None


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout)
    # one line per request would drown the workflow lines; failures are logged by the broadcaster
    logging.getLogger("httpx").setLevel(logging.WARNING)


def serve(component: str) -> int:
    if component == "all":
        return serve_all()
    settings = load_settings()
    configure_logging(settings.livelog_log_level)
    import uvicorn

    if component == "socketio":
        from livelog.socketio_server import create_socketio_app

        app, host, port = create_socketio_app(settings), settings.socketio_host, settings.socketio_port
    else:
        from livelog.api import create_api

        app, host, port = create_api(settings), settings.rest_api_host, settings.rest_api_port
    # log_config=None: uvicorn's records go through the root logger configured above
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    return 0


def serve_all() -> int:
    """Both services for a developer's terminal: two processes, as under systemd; Ctrl-C stops both."""
    command = [sys.executable, "-m", "livelog", "serve"]
    children = {"socketio": subprocess.Popen([*command, "socketio"])}
    time.sleep(1)  # the API dials the Socket.IO server at startup; give it a head start
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
        time.sleep(0.2)
    if not asked_to_stop:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"livelog: the {name} service exited ({child.returncode}); stopping the other", file=sys.stderr)
        stop()
        asked_to_stop = False
    for child in children.values():
        child.wait()
    return 0 if asked_to_stop else 1


def smoke(args: argparse.Namespace) -> int:
    from livelog.smoke import SmokeFailure, run_smoke

    settings = load_settings()
    api_url = args.api_url or args.base_url or api_endpoint(settings)
    socketio_url = args.socketio_url or args.base_url or socketio_endpoint(settings)
    try:
        print(asyncio.run(run_smoke(api_url, socketio_url, args.timeout)))
    except SmokeFailure as failure:
        print(failure, file=sys.stderr)
        return failure.exit_code
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
    smoke_parser.add_argument("--base-url", help="nginx in front of both services, e.g. http://127.0.0.1")
    smoke_parser.add_argument("--api-url", help="the REST API directly (default: from the environment)")
    smoke_parser.add_argument("--socketio-url", help="the Socket.IO server directly (default: from the environment)")
    smoke_parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait at each hop")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.component)
    return smoke(args)
