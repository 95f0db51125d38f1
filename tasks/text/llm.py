"""OpenAI-compatible chat client for the roll-up: JSON-schema output, retries with backoff, outages waited out, a
cache, usage."""

from __future__ import annotations

import asyncio
import copy
import email.utils
import hashlib
import json
import logging
import os
import random
import re
import time
import urllib.parse
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal, Optional, TypeVar

from pydantic import BaseModel, Field, SecretStr, ValidationError

from hivau.schemas import reasons
from hivau.workspace import atomic_write_json

log = logging.getLogger("hivau.llm")
Out = TypeVar("Out", bound=BaseModel)
RETRY_AFTER_CAP_S = 300.0
MIN_PROBE_WAIT_S = 0.1  # even with backoff_s=0, probes of a dead server must not spin
PROBE_TIMEOUT_S = 10.0  # a probe is one small GET: a server that cannot answer it this soon is not back yet


class LLMSettings(BaseModel):
    """Where the roll-up LLM is and how to talk to it; unset fields come from the environment."""

    base_url: Optional[str] = Field(None, description="OpenAI-compatible endpoint; default $OPENAI_BASE_URL")
    model: Optional[str] = Field(None, description="model name; default $HIVAU_LLM_MODEL")
    api_key_block: Optional[str] = Field(None, description="Prefect Secret block holding the API key; "
                                                           "default $OPENAI_API_KEY")
    structured_output: Literal["json_schema", "json_text"] = Field(
        "json_schema", description="json_schema: response_format with a schema; json_text: parse JSON from text")
    concurrency: int = Field(16, ge=1, description="requests in flight at once")
    max_attempts: int = Field(5, ge=1, description="tries per request on read timeouts, 429 and 5xx (a server "
                                                   "that cannot be reached at all is waited for: outage_s)")
    invalid_retries: int = Field(2, ge=0, description="extra tries when the answer is not valid JSON for the schema")
    timeout_s: float = Field(60.0, gt=0)
    backoff_s: float = Field(1.0, ge=0, description="first backoff; doubles per try unless Retry-After says")
    backoff_max_s: float = Field(30.0, ge=0)
    outage_s: float = Field(120.0, ge=0, description="how long a server that cannot be reached (connection refused "
                                                     "or reset, connect timeout, a proxy's 502/504) is waited for: "
                                                     "meanwhile one request "
                                                     "at a time probes it and the others wait; past this, the "
                                                     "requests waiting fail as llm_unreachable (a re-run sends them). "
                                                     "Raise it to ride out longer restarts")
    probe_max_s: float = Field(5.0, gt=0, description="longest wait between two probes of an unreachable server "
                                                       "(the first is backoff_s, doubling): at most this late back")
    temperature: float = 0.2
    max_tokens: int = Field(1024, ge=16)
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    concurrency_limit: Optional[str] = Field(None, description="Prefect global concurrency limit each request occupies")
    rate_limit: Optional[str] = Field(None, description="Prefect global concurrency limit used as a rate limit")
    usd_per_1m_input_tokens: float = Field(0.0, ge=0)
    usd_per_1m_output_tokens: float = Field(0.0, ge=0)


class LLMConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Endpoint:
    base_url: Optional[str]
    model: str
    api_key: SecretStr  # SecretStr: repr and str never show it


def _api_key(settings: LLMSettings) -> Optional[str]:
    if settings.api_key_block:
        from prefect.blocks.system import Secret

        return Secret.load(settings.api_key_block).get()
    return os.environ.get("OPENAI_API_KEY")


def resolve_endpoint(settings: LLMSettings) -> Optional[Endpoint]:
    """The configured endpoint, or None when nothing at all is configured (the offline backend then runs)."""
    base_url = settings.base_url or os.environ.get("OPENAI_BASE_URL")
    model = settings.model or os.environ.get("HIVAU_LLM_MODEL")
    key = _api_key(settings)
    if not (base_url or model or key):
        return None
    if not model:
        raise LLMConfigError("an LLM endpoint is configured (base URL or API key) but no model name: "
                             "set HIVAU_LLM_MODEL or the llm.model setting")
    # Local servers (vLLM, llama.cpp, Ollama) accept any key; the client insists on one.
    return Endpoint(base_url=base_url, model=model, api_key=SecretStr(key or "no-key"))


@dataclass
class Usage:
    """What a run asked of the LLM; `requests` counts HTTP requests actually sent."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    failed_items: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    unreachable_s: float = 0.0  # how long the server could not be reached, all outages together
    by_prompt: dict[str, int] = field(default_factory=dict)

    def cost_usd(self, settings: LLMSettings) -> float:
        return (self.prompt_tokens * settings.usd_per_1m_input_tokens
                + self.completion_tokens * settings.usd_per_1m_output_tokens) / 1e6

    def rows(self, settings: LLMSettings, model: Optional[str]) -> list[dict]:
        rows = [{"metric": "model", "value": model or "-"}]
        rows += [{"metric": k, "value": getattr(self, k)} for k in
                 ("requests", "cache_hits", "retries", "failed_items", "prompt_tokens", "completion_tokens")]
        rows.append({"metric": "unreachable_s", "value": round(self.unreachable_s, 1)})
        priced = settings.usd_per_1m_input_tokens or settings.usd_per_1m_output_tokens
        rows.append({"metric": "estimated_cost_usd",
                     "value": round(self.cost_usd(settings), 6) if priced else "no prices set (llm.usd_per_1m_*)"})
        rows += [{"metric": f"requests:{k}", "value": v} for k, v in sorted(self.by_prompt.items())]
        return rows


class ResponseCache:
    """Validated answers on disk, one JSON file per request key; None root disables caching."""

    def __init__(self, root: Optional[Path]):
        self.root = root

    @staticmethod
    def key(**parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Optional[dict]:
        if self.root is None or not self._path(key).is_file():
            return None
        try:
            return json.loads(self._path(key).read_text())
        except (OSError, json.JSONDecodeError):
            return None  # a damaged entry is just a miss

    def put(self, key: str, value: dict) -> None:
        if self.root is not None:
            atomic_write_json(self._path(key), value)


class LLMError(Exception):
    """A request that failed for good; `reason` is one of the llm_* reasons."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class InvalidOutput(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@lru_cache(maxsize=None)
def strict_schema(model: type[BaseModel]) -> dict:
    """The model's JSON schema in the form strict structured output wants: closed objects, all keys required.

    Built once per model (read-only afterwards): every request of a run sends the same one.
    """
    schema = copy.deepcopy(model.model_json_schema())

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
                node["required"] = list(node["properties"])
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


def extract_json(text: str) -> Any:
    """JSON from a plain-text answer: the whole text, else a fenced block, else the outermost {...}."""
    text = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    candidates = [text] + ([fenced.group(1)] if fenced else [])
    if "{" in text and "}" in text:
        candidates.append(text[text.index("{"): text.rindex("}") + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    raise InvalidOutput(reasons.LLM_INVALID_OUTPUT, f"answer is not JSON: {text[:120]!r}")


def retry_after_s(response) -> Optional[float]:
    """Seconds from a Retry-After (seconds or HTTP date) or retry-after-ms header, if any."""
    if response is None:
        return None
    headers = response.headers
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def public_url(url: Optional[str]) -> str:
    """The endpoint as it may be logged or recorded: no user:password part and no query (keys travel there too)."""
    parts = urllib.parse.urlsplit(url or "https://api.openai.com/v1")
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return urllib.parse.urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path, "", ""))


def is_unreachable(exc: BaseException) -> bool:
    """The server was not reached at all (refused, reset, gone mid-answer, connect timeout, or a gateway in front
    of it saying so), as opposed to one that answered, or took the request and then too long (a read timeout: a
    hung server, given counted tries)."""
    import openai

    if isinstance(exc, openai.APITimeoutError):  # by name: the cause is httpx's or httpx2's, by the client version
        return type(exc.__cause__).__name__ == "ConnectTimeout"
    if isinstance(exc, openai.APIStatusError):
        return is_gateway_error(exc.status_code, exc.response)
    return isinstance(exc, openai.APIConnectionError)


def is_gateway_error(status: int, response) -> bool:
    """A proxy or load balancer (nginx, LiteLLM, an ingress) answering for a server it cannot reach: 502 and 504,
    and 503 unless it says when to come back (Retry-After: a live server shedding load, given counted tries)."""
    if status == 503:
        return retry_after_s(response) is None
    return status in (502, 504)


def describe(exc: BaseException) -> str:
    """`Type: message`, with the transport error underneath the client's generic one ("Connection error.")."""
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    return f"{text} ({type(cause).__name__}: {cause})" if cause is not None and str(cause) else text


class Unreachable(Exception):
    """The server has been unreachable for longer than `outage_s`."""


class Outage:
    """Whether the server can be reached, shared by all requests of one client (a circuit breaker).

    The first request that cannot reach the server opens an outage: from then on requests wait, rather than each
    retrying a dead server on its own, and one probe (`probe`: a cheap GET) asks after it, backing off from
    `backoff_s` up to `probe_max_s`. The first answer, to the probe or to any request, lets them all go on. Once
    the outage has lasted `outage_s`, the waiting requests fail and new ones fail at once; the probe goes on, so
    that a long run picks up again when the server does.
    """

    def __init__(self, settings: LLMSettings, where: str, probe: Callable[[], Awaitable[Optional[str]]]):
        self.settings, self.where, self.probe = settings, where, probe
        self.since: Optional[float] = None  # monotonic time of the first failed request of the current outage
        self.answers = 0  # answers the server gave, for telling a request dropped by a live server from an outage
        self.total_s = 0.0
        self.last_error = ""
        self._up = asyncio.Event()
        self._up.set()
        self._prober: Optional[asyncio.Task] = None
        self._gave_up = False

    @property
    def down(self) -> bool:
        return self.since is not None

    def lasted_s(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def detail(self) -> str:
        return (f"the server at {self.where} could not be reached for {self.lasted_s():.0f} s "
                f"(llm.outage_s={self.settings.outage_s:g}); last error: {self.last_error}")[:500]

    async def admit(self) -> None:
        """Return at once, or when a down server answers again; raise `Unreachable` once the outage has lasted
        `outage_s`."""
        if self.since is None:
            return
        left = self.since + self.settings.outage_s - time.monotonic()
        try:
            await asyncio.wait_for(self._up.wait(), max(left, 0.0))
        except asyncio.TimeoutError:
            self._give_up()
            raise Unreachable from None

    def failed(self, error: str) -> None:
        """A request did not reach the server: unless one is open already, an outage starts, with its probe."""
        self.last_error = error
        if self.since is not None:
            return
        self.since, self._gave_up = time.monotonic(), False
        self._up.clear()
        log.warning("LLM server at %s unreachable (%s): requests wait for it for up to %.0f s (llm.outage_s)",
                    self.where, error, self.settings.outage_s)
        self._prober = asyncio.create_task(self._probe_until_up())

    def reached(self) -> None:
        """Any answer, even an error status, shows the server is there: the requests waiting go on."""
        self.answers += 1
        if self.since is None:
            return
        lasted = self.lasted_s()
        self.total_s += lasted
        self.since = None
        self._up.set()
        log.warning("LLM server at %s reachable again after %.0f s", self.where, lasted)

    async def close(self) -> float:
        """Stop probing; the seconds the server was unreachable in all, an outage still open included."""
        if self._prober is not None and not self._prober.done():
            self._prober.cancel()
            with suppress(asyncio.CancelledError):
                await self._prober
        return self.total_s + self.lasted_s()

    async def _probe_until_up(self) -> None:
        tries = 0
        while self.since is not None:
            tries += 1
            base = min(self.settings.backoff_s * 2 ** min(tries - 1, 30), self.settings.probe_max_s)
            await asyncio.sleep(max(base * random.uniform(0.5, 1.0), MIN_PROBE_WAIT_S))
            if self.since is None:
                return  # a request got through meanwhile
            error = await self.probe()
            if error is None:
                self.reached()
            else:
                self.last_error = error

    def _give_up(self) -> None:
        if not self._gave_up:
            self._gave_up = True
            log.error("LLM server at %s unreachable for %.0f s (llm.outage_s=%g): its requests fail as %s until it "
                      "answers again; a re-run sends them", self.where, self.lasted_s(), self.settings.outage_s,
                      reasons.LLM_UNREACHABLE)


class LLMClient:
    """Async JSON completions with a concurrency cap, retries, a response cache and usage accounting.

    The `openai` client's own retries are off: ours honour Retry-After, count retries and end in an
    `LLMError` with a reason instead of an exception the caller has to interpret. A server that cannot be reached
    is waited for together (`Outage`), up to `outage_s`, instead of costing each request its tries.
    """

    def __init__(self, endpoint: Endpoint, settings: LLMSettings, cache: ResponseCache,
                 usage: Optional[Usage] = None):
        self.endpoint, self.settings, self.cache = endpoint, settings, cache
        self.usage = usage or Usage()
        self._client = None
        self._semaphore: Optional[asyncio.Semaphore] = None
        self.outage: Optional[Outage] = None

    async def __aenter__(self) -> "LLMClient":
        import openai

        self._client = openai.AsyncOpenAI(base_url=self.endpoint.base_url,
                                          api_key=self.endpoint.api_key.get_secret_value(),
                                          max_retries=0, timeout=self.settings.timeout_s)
        self._semaphore = asyncio.Semaphore(self.settings.concurrency)
        self.outage = Outage(self.settings, public_url(self.endpoint.base_url), self._probe)
        return self

    async def __aexit__(self, *exc) -> None:
        self.usage.unreachable_s += await self.outage.close()
        await self._client.close()

    def _redact(self, text: str) -> str:
        key = self.endpoint.api_key.get_secret_value()
        return text.replace(key, "***") if len(key) >= 4 else text

    def _request(self, messages: list[dict], output: type[BaseModel]) -> dict:
        schema = strict_schema(output)
        request: dict[str, Any] = {"model": self.endpoint.model, "temperature": self.settings.temperature,
                                   self.settings.max_tokens_field: self.settings.max_tokens}
        if self.settings.structured_output == "json_schema":
            request["response_format"] = {"type": "json_schema",
                                          "json_schema": {"name": output.__name__, "schema": schema, "strict": True}}
        else:
            messages = [dict(m) for m in messages]
            messages[0]["content"] += ("\n\nReply with one JSON object and nothing else, matching this JSON schema:\n"
                                       + json.dumps(schema))
        request["messages"] = messages
        return request

    async def _probe(self) -> Optional[str]:
        """None when the server answers at all (any status: GET /models need not exist), else what went wrong."""
        try:
            await self._client.with_options(timeout=min(self.settings.timeout_s, PROBE_TIMEOUT_S)).models.list()
        except Exception as exc:
            if is_unreachable(exc):
                return self._redact(describe(exc))[:300]
        return None

    async def _send_watched(self, request: dict, prompt_tag: str):
        """`_send`, once the server is not known to be down; the outcome opens or closes an outage."""
        while True:
            await self.outage.admit()  # outside the semaphore: the requests waiting hold no slot
            try:
                async with self._semaphore:
                    if self.outage.down:
                        continue  # it went down while this request queued for a slot: wait with the others
                    response = await self._send(request, prompt_tag)
            except Exception as exc:
                if is_unreachable(exc):
                    self.outage.failed(self._redact(describe(exc))[:300])
                else:
                    self.outage.reached()
                raise
            self.outage.reached()
            return response

    async def _send(self, request: dict, prompt_tag: str):
        async with AsyncExitStack() as stack:
            if self.settings.rate_limit:
                from prefect.concurrency.asyncio import rate_limit

                await rate_limit(self.settings.rate_limit)
            if self.settings.concurrency_limit:
                from prefect.concurrency.asyncio import concurrency

                await stack.enter_async_context(concurrency(self.settings.concurrency_limit, occupy=1))
            self.usage.requests += 1
            self.usage.by_prompt[prompt_tag] = self.usage.by_prompt.get(prompt_tag, 0) + 1
            return await self._client.chat.completions.create(**request)

    def _parse(self, response, output: type[Out], check: Optional[Callable[[Out], Out]]) -> Out:
        if response.usage is not None:
            self.usage.prompt_tokens += response.usage.prompt_tokens or 0
            self.usage.completion_tokens += response.usage.completion_tokens or 0
        if not response.choices:
            raise InvalidOutput(reasons.LLM_INVALID_OUTPUT, "response has no choices")
        choice = response.choices[0]
        content = choice.message.content or ""
        if choice.finish_reason == "length":
            raise InvalidOutput(reasons.LLM_TRUNCATED_OUTPUT,
                                f"answer cut off at the token limit ({len(content)} characters)")
        if getattr(choice.message, "refusal", None):
            raise InvalidOutput(reasons.LLM_INVALID_OUTPUT, f"model refused: {choice.message.refusal[:120]}")
        try:
            parsed = output.model_validate(extract_json(content))
            return check(parsed) if check else parsed
        except (ValidationError, ValueError) as exc:  # the schema, or a content rule of `check`
            raise InvalidOutput(reasons.LLM_INVALID_OUTPUT, f"answer does not fit {output.__name__}: "
                                                            f"{str(exc).splitlines()[0][:200]}") from None

    def _backoff(self, attempt: int, exc: Exception) -> float:
        told = retry_after_s(getattr(exc, "response", None))
        if told is not None:
            return min(told, RETRY_AFTER_CAP_S)
        base = min(self.settings.backoff_s * 2 ** (attempt - 1), self.settings.backoff_max_s)
        return base * random.uniform(0.5, 1.0)  # jitter spreads out clients that failed together

    async def complete(self, messages: list[dict], output: type[Out], prompt_tag: str,
                       check: Optional[Callable[[Out], Out]] = None) -> Out:
        """One validated answer for `messages`, from the cache when it holds one; raises `LLMError`."""
        import openai

        key = ResponseCache.key(model=self.endpoint.model, prompt=prompt_tag, messages=messages,
                                output=output.__name__, mode=self.settings.structured_output)
        cached = self.cache.get(key)
        if cached is not None:
            try:
                parsed = output.model_validate(cached["output"])
                self.usage.cache_hits += 1
                return check(parsed) if check else parsed
            except (ValidationError, ValueError, KeyError):
                pass  # an entry from an older schema: ask again
        request = self._request(messages, output)
        transport_tries, dropped, invalid_left = 0, 0, self.settings.invalid_retries
        retryable = (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError,
                     openai.InternalServerError)
        while True:
            answers = self.outage.answers
            try:
                response = await self._send_watched(request, prompt_tag)
                parsed = self._parse(response, output, check)
            except Unreachable:
                raise LLMError(reasons.LLM_UNREACHABLE, self.outage.detail()) from None
            except retryable as exc:
                if is_unreachable(exc):
                    # the shared outage paces the next try; but a connection lost while the server answered others
                    # is this request's own trouble (a proxy or server dropping it): that gets counted tries
                    dropped += self.outage.answers > answers
                    if dropped >= self.settings.max_attempts:
                        raise LLMError(reasons.LLM_REQUEST_FAILED, self._redact(
                            f"{describe(exc)}: failed {dropped} times while the server answered others")[:300]
                        ) from None
                    self.usage.retries += 1
                    continue
                transport_tries += 1
                what = self._redact(f"{type(exc).__name__}: {exc}")[:300]
                if transport_tries >= self.settings.max_attempts:
                    raise LLMError(reasons.LLM_REQUEST_FAILED, f"{what} (after {transport_tries} tries)") from None
                delay = self._backoff(transport_tries, exc)
                log.warning("%s: %s; retry %d/%d in %.1f s", prompt_tag, what, transport_tries,
                            self.settings.max_attempts - 1, delay)
                self.usage.retries += 1
                await asyncio.sleep(delay)
                continue
            except openai.APIStatusError as exc:  # other 4xx: the request itself is wrong, retrying won't help
                raise LLMError(reasons.LLM_REQUEST_REJECTED,
                               self._redact(f"HTTP {exc.status_code}: {exc.message}")[:300]) from None
            except (openai.APIResponseValidationError, json.JSONDecodeError) as exc:
                parsed, bad = None, InvalidOutput(reasons.LLM_INVALID_OUTPUT, f"malformed response body: {exc}"[:200])
            except InvalidOutput as exc:
                parsed, bad = None, exc
            if parsed is not None:
                # in a thread: the write fsyncs, and the event loop must keep the other requests moving
                await asyncio.to_thread(self.cache.put, key, {"output": parsed.model_dump(mode="json"),
                                                              "model": self.endpoint.model, "prompt": prompt_tag})
                return parsed
            if invalid_left == 0:
                raise LLMError(bad.reason, bad.detail)
            invalid_left -= 1
            self.usage.retries += 1
            log.warning("%s: %s; asking again (%d left)", prompt_tag, bad.detail, invalid_left)
