"""OpenAI-compatible chat client for the roll-up: JSON-schema output, retries with backoff, a cache, usage."""

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
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Literal, Optional, TypeVar

from pydantic import BaseModel, Field, SecretStr, ValidationError

from hivau.schemas import reasons
from hivau.workspace import atomic_write_json

log = logging.getLogger("hivau.llm")
Out = TypeVar("Out", bound=BaseModel)
RETRY_AFTER_CAP_S = 300.0


class LLMSettings(BaseModel):
    """Where the roll-up LLM is and how to talk to it; unset fields come from the environment."""

    base_url: Optional[str] = Field(None, description="OpenAI-compatible endpoint; default $OPENAI_BASE_URL")
    model: Optional[str] = Field(None, description="model name; default $HIVAU_LLM_MODEL")
    api_key_block: Optional[str] = Field(None, description="Prefect Secret block holding the API key; "
                                                           "default $OPENAI_API_KEY")
    structured_output: Literal["json_schema", "json_text"] = Field(
        "json_schema", description="json_schema: response_format with a schema; json_text: parse JSON from text")
    concurrency: int = Field(16, ge=1, description="requests in flight at once")
    max_attempts: int = Field(5, ge=1, description="tries per request on timeouts, 429 and 5xx")
    invalid_retries: int = Field(2, ge=0, description="extra tries when the answer is not valid JSON for the schema")
    timeout_s: float = Field(60.0, gt=0)
    backoff_s: float = Field(1.0, ge=0, description="first backoff; doubles per try unless Retry-After says")
    backoff_max_s: float = Field(30.0, ge=0)
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
    by_prompt: dict[str, int] = field(default_factory=dict)

    def cost_usd(self, settings: LLMSettings) -> float:
        return (self.prompt_tokens * settings.usd_per_1m_input_tokens
                + self.completion_tokens * settings.usd_per_1m_output_tokens) / 1e6

    def rows(self, settings: LLMSettings, model: Optional[str]) -> list[dict]:
        rows = [{"metric": "model", "value": model or "-"}]
        rows += [{"metric": k, "value": getattr(self, k)} for k in
                 ("requests", "cache_hits", "retries", "failed_items", "prompt_tokens", "completion_tokens")]
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


class LLMClient:
    """Async JSON completions with a concurrency cap, retries, a response cache and usage accounting.

    The `openai` client's own retries are off: ours honour Retry-After, count retries and end in an
    `LLMError` with a reason instead of an exception the caller has to interpret.
    """

    def __init__(self, endpoint: Endpoint, settings: LLMSettings, cache: ResponseCache,
                 usage: Optional[Usage] = None):
        self.endpoint, self.settings, self.cache = endpoint, settings, cache
        self.usage = usage or Usage()
        self._client = None
        self._semaphore: Optional[asyncio.Semaphore] = None

    async def __aenter__(self) -> "LLMClient":
        import openai

        self._client = openai.AsyncOpenAI(base_url=self.endpoint.base_url,
                                          api_key=self.endpoint.api_key.get_secret_value(),
                                          max_retries=0, timeout=self.settings.timeout_s)
        self._semaphore = asyncio.Semaphore(self.settings.concurrency)
        return self

    async def __aexit__(self, *exc) -> None:
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

    async def _send(self, request: dict):
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self._semaphore)
            if self.settings.rate_limit:
                from prefect.concurrency.asyncio import rate_limit

                await rate_limit(self.settings.rate_limit)
            if self.settings.concurrency_limit:
                from prefect.concurrency.asyncio import concurrency

                await stack.enter_async_context(concurrency(self.settings.concurrency_limit, occupy=1))
            self.usage.requests += 1
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
        transport_tries, invalid_left = 0, self.settings.invalid_retries
        retryable = (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError,
                     openai.InternalServerError)
        while True:
            self.usage.by_prompt[prompt_tag] = self.usage.by_prompt.get(prompt_tag, 0) + 1
            try:
                response = await self._send(request)
                parsed = self._parse(response, output, check)
            except retryable as exc:
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
