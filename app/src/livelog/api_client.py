"""The REST API as its clients see it: a run, its stored lines and viewer tokens, with errors that say what failed."""

from __future__ import annotations

import ssl
from typing import Any, cast

import httpx

from livelog.models import LogLine, Run

# lines one GET /api/runs/{id}/logs returns at most (the API's own bound)
PAGE_LINES = 10_000


class ApiError(Exception):
    """The API could not be reached or refused a request; the message names the request."""


class RunNotFound(ApiError):
    pass


class ApiClient:
    def __init__(
        self,
        base_url: str,
        credential: str | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 10.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, verify=verify, timeout=timeout)

    async def health(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self._get("/api/health"))

    async def test_log(self, run_id: str, message: str) -> int:
        """Log one test line in `run_id` (POST /api/test-log); its seq."""
        response = await self._request("POST", "/api/test-log", json={"run_id": run_id, "message": message})
        body = self._json(response)
        if not isinstance(body, dict) or not isinstance(body.get("seq"), int):
            raise ApiError(f"POST {self.base_url}/api/test-log: no seq in {response.text[:200]!r}")
        return int(body["seq"])

    async def run(self, run_id: str) -> Run:
        return cast(Run, await self._get(f"/api/runs/{run_id}"))

    async def lines(self, run_id: str, after_seq: int, up_to: int) -> list[LogLine]:
        """The stored lines of the run with `after_seq < seq <= up_to`, in seq order."""
        lines: list[LogLine] = []
        while after_seq < up_to:
            limit = min(PAGE_LINES, up_to - after_seq)
            page = cast(list[LogLine], await self._get(f"/api/runs/{run_id}/logs?after_seq={after_seq}&limit={limit}"))
            lines.extend(line for line in page if line["seq"] <= up_to)
            if len(page) < limit:
                break
            after_seq = page[-1]["seq"]
        return lines

    async def viewer_token(self, runs: list[str], ttl_s: int) -> str | None:
        """A viewer token for `runs`; None when the API mints none (viewer tokens are off)."""
        response = await self._request("POST", "/api/viewer-tokens", json={"runs": runs, "ttl_s": ttl_s})
        if response.status_code == 503:
            return None
        body = self._json(response)
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            raise ApiError(f"POST {self.base_url}/api/viewer-tokens: no token in the answer")
        return str(body["token"])

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def _get(self, path: str) -> Any:
        return self._json(await self._request("GET", path))

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"{method} {self.base_url}{path}: {type(exc).__name__}: {exc}") from exc

    def _json(self, response: httpx.Response) -> Any:
        where = f"{response.request.method} {response.request.url.copy_with(query=None)}"
        if response.status_code == 404:
            raise RunNotFound(f"{where}: HTTP 404: {response.text[:200]}")
        if response.status_code != 200:
            raise ApiError(f"{where}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"{where}: not JSON: {response.text[:200]!r}") from None
