"""The one HTTP client between the processes (and for tools and tests): sync and async.

Both clients send JSON (a :class:`~supervisor.protocol.WireModel` or plain data), present the
cluster token when they have one, bound every call by a timeout, and map failures onto the
project's exception tree:

* the peer cannot be reached, or the call timed out: :class:`~supervisor.errors.Unavailable`;
* the peer answered 4xx/5xx: :class:`~supervisor.errors.HttpStatusError` with its status and the
  ``error`` member of Druid's error body (or the start of the text);
* the answer does not follow the contract (``answer=`` model): :class:`~supervisor.errors.BadAnswer`.

``retries`` re-sends a call that failed with ``Unavailable`` or a retriable status (5xx, 429), with
exponential back-off (tenacity); give it only to idempotent calls.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from supervisor.errors import BadAnswer, HttpStatusError, IndexerError, Unavailable

M = TypeVar("M", bound=BaseModel)

JSON_TYPE = "application/json"
# the longest an error text is quoted in an exception
MAX_QUOTED = 300


def auth_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def encode(body: Any) -> bytes | None:
    """The JSON bytes of a request body (a pydantic model by its wire names)."""
    if body is None:
        return None
    if isinstance(body, BaseModel):
        return body.model_dump_json(by_alias=True).encode()
    return json.dumps(body).encode()


# bodies kept as bytes (a task's in-flight rows are an Arrow IPC stream)
BINARY_TYPES = frozenset({"application/vnd.apache.arrow.stream", "application/octet-stream"})


def decode(raw: bytes, content_type: str) -> Any:
    """A response body: JSON when it says so (or looks like it), else text; None when empty."""
    if not raw:
        return None
    if content_type in BINARY_TYPES:
        return raw
    text = raw.decode(errors="replace")
    if content_type == JSON_TYPE or content_type.endswith("+json"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def error_text(body: Any) -> str:
    """What an error answer says: Druid's ``{"error": ...}`` member, else the start of the body."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return str(body)[:MAX_QUOTED] if body is not None else ""


def _retriable(error: BaseException) -> bool:
    return isinstance(error, IndexerError) and error.retriable


def _retry_policy(retries: int) -> dict[str, Any]:
    """tenacity's arguments: ``retries`` more attempts after the first, exponential back-off."""
    return {
        "stop": stop_after_attempt(1 + max(0, retries)),
        "wait": wait_exponential(multiplier=0.2, max=5.0),
        "retry": retry_if_exception(_retriable),
        "reraise": True,
    }


class Answer:
    """A response: its status, decoded body (JSON or text; None when empty) and headers."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers: Mapping[str, str] = headers or {}

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.body!r})"


def _checked(method: str, url: str, answer: Answer) -> Any:
    if answer.status >= 400:
        raise HttpStatusError(
            answer.status, f"{method} {url}: HTTP {answer.status}: {error_text(answer.body)}"
        )
    return answer.body


def _parse(model: type[M], body: Any, what: str) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise BadAnswer(f"{what}: answer does not follow the contract: {e}") from e


def _url(base: str, path: str, params: Mapping[str, str] | None) -> str:
    url = path if path.startswith(("http://", "https://")) else f"{base}{path}"
    if params:
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
    return url


class _Client:
    def __init__(
        self, base_url: str = "", token: str = "", timeout_s: float = 30.0, retries: int = 0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self.retries = retries

    def _policy(self, retries: int | None) -> dict[str, Any]:
        return _retry_policy(self.retries if retries is None else retries)


class SyncClient(_Client):
    """Blocking client (scripts, tests, the task's read loop thread)."""

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Answer:
        """One request, whatever the status; raises ``Unavailable`` only when there is no answer."""
        url = _url(self.base_url, path, params)
        data = raw if raw is not None else encode(body)
        all_headers = {"Content-Type": JSON_TYPE, **auth_headers(self.token), **(headers or {})}
        req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s or self.timeout_s) as resp:
                body = decode(resp.read(), resp.headers.get_content_type())
                return Answer(resp.status, body, dict(resp.headers.items()))
        except urllib.error.HTTPError as e:
            kind = e.headers.get_content_type() if e.headers else ""
            return Answer(e.code, decode(e.read(), kind), dict(e.headers.items()) if e.headers else {})
        except (OSError, urllib.error.URLError) as e:
            raise Unavailable(f"{method} {url}: {type(e).__name__}: {e}") from e

    def call(self, method: str, path: str, body: Any = None, *, retries: int | None = None, **kw: Any) -> Any:
        """One call that must succeed: the decoded body (``kw``: ``params``, ``timeout_s``)."""
        for attempt in Retrying(**self._policy(retries)):
            with attempt:
                return _checked(method, path, self.send(method, path, body, **kw))
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def fetch(self, answer: type[M], method: str, path: str, body: Any = None, **kw: Any) -> M:
        """One call whose answer must be the ``answer`` model."""
        return _parse(answer, self.call(method, path, body, **kw), f"{method} {path}")


class AsyncClient(_Client):
    """Non-blocking client on one aiohttp session (the Overlord's task chat, the MiddleManager)."""

    _session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s), headers=auth_headers(self.token)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        url = _url(self.base_url, path, params)
        data = encode(body)
        # every call is bounded: the session's timeout unless the call names its own (aiohttp reads an
        # explicit ``timeout=None`` as "no timeout at all", so it is never passed)
        timeout = aiohttp.ClientTimeout(total=timeout_s if timeout_s is not None else self.timeout_s)
        headers = {**({"Content-Type": JSON_TYPE} if data is not None else {}), **(headers or {})} or None
        try:
            async with self._http().request(method, url, data=data, headers=headers, timeout=timeout) as resp:
                return Answer(resp.status, decode(await resp.read(), resp.content_type), dict(resp.headers))
        except (aiohttp.ClientError, TimeoutError) as e:
            raise Unavailable(f"{method} {url}: {type(e).__name__}: {e}") from e

    async def call(
        self, method: str, path: str, body: Any = None, *, retries: int | None = None, **kw: Any
    ) -> Any:
        async for attempt in AsyncRetrying(**self._policy(retries)):
            with attempt:
                return _checked(method, path, await self.send(method, path, body, **kw))
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def fetch(self, answer: type[M], method: str, path: str, body: Any = None, **kw: Any) -> M:
        return _parse(answer, await self.call(method, path, body, **kw), f"{method} {path}")


def probe_health(host: str, port: int, timeout_s: float = 3.0) -> int:
    """0 when ``/status/health`` on ``host:port`` answers 200, else 1 (a Docker HEALTHCHECK)."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    try:
        got = SyncClient(f"http://{host}:{port}", timeout_s=timeout_s).send("GET", "/status/health")
    except Unavailable:
        return 1
    return 0 if got.status == 200 else 1
