"""The answers both services give to requests that fail: 422 without the input echoed, 405 with every allowed
method, 503 when SQLite cannot do it now, 500 with no detail (the traceback goes to the log)."""

from __future__ import annotations

import json
import sqlite3

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.routing import Match

from livelog import sqlite
from livelog.logs import TaggedLogger
from livelog.store import StoreBehind


def answer_errors(app: FastAPI, log: TaggedLogger) -> None:
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        """A bug: logged here with its traceback, answered with no detail of it."""
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(status_code=500, content={"detail": "internal error"})

    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        """SQLite could not do it now (sqlite.unavailable), or the run store is behind with lines it could not write
        yet: the same request may work later. Any other error of SQLite's is a bug."""
        if not isinstance(exc, StoreBehind) and not sqlite.unavailable(exc):
            return await internal_error(request, exc)
        log.warning("%s %s: the database is unavailable: %s", request.method, request.url.path, exc)
        detail = f"the service's database is unavailable ({exc}); retry later"
        return JSONResponse(status_code=503, content={"detail": detail}, headers={"Retry-After": "5"})

    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(sqlite3.OperationalError, database_unavailable)
    app.add_exception_handler(StoreBehind, database_unavailable)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(405, method_not_allowed)


async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """405 with every method the path has: Starlette's own names only the first route's (GET /api/runs and POST
    /api/runs are two routes)."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, APIRoute) and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    return JSONResponse(
        {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": ", ".join(sorted(methods))}
    )


async def invalid_request(_request: Request, exc: Exception) -> Response:
    """422 naming each problem, without echoing the input back (it may be large, or not encodable)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in errors]
    return Response(json.dumps({"detail": detail}), status_code=422, media_type="application/json")
