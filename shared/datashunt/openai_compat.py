"""A minimal client for any OpenAI-compatible chat-completions endpoint, stdlib only.

It is the core's own "ask the LLM" callable (``LLMRequest -> LLMReply``) for jobs that need no
framework: calibrating δ with the LLM in the loop, benchmarks, distillation data. Framework
users reach models through their own clients (``ChatOpenAI``, LlamaIndex ``OpenAILike``).
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from typing import Any

from .errors import ConfigError, LLMError
from .retry import retry_after_of
from .types import LLMReply, LLMRequest

__all__ = ["OpenAICompatLLM"]


class OpenAICompatLLM:
    """Calls ``{base_url}/chat/completions`` with the request's prompt as one user message.

    Args:
        base_url: e.g. ``http://127.0.0.1:8080/v1``.
        model: the model name sent in the request.
        api_key: bearer token; default ``$OPENAI_API_KEY`` or none.
        max_tokens: answer length cap (labels are short).
        top_logprobs: alternatives per token (0 disables logprobs).
        timeout: seconds per request.

    Example:
        >>> llm = OpenAICompatLLM("http://127.0.0.1:8080/v1", "smollm2")  # doctest: +SKIP
        >>> Shunt(gate, policy, llm=llm).run("...")  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_tokens: int = 8,
        temperature: float = 0.0,
        top_logprobs: int = 5,
        timeout: float = 60.0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_logprobs = top_logprobs
        self.timeout = timeout

    def payload(self, prompt: str) -> dict[str, Any]:
        """The JSON body for one prompt."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if self.top_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = self.top_logprobs
        return body

    @staticmethod
    def parse(data: Any) -> LLMReply:
        """An :class:`LLMReply` from a chat-completions response body.

        Raises:
            LLMError: if the body is not a chat-completions response.
        """
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMError(
                f"not a chat-completions response: {str(data)[:200]}", retryable=True
            ) from exc
        lp = (choice.get("logprobs") or {}).get("content") if isinstance(choice, dict) else None
        usage = data.get("usage") or {}
        return LLMReply(
            text=text,
            logprobs=lp or None,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            model=data.get("model"),
        )

    def __call__(self, request: LLMRequest) -> LLMReply:
        body = json.dumps(self.payload(request.prompt)).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        http_req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310 - scheme checked in __init__
        try:
            with urllib.request.urlopen(http_req, timeout=self.timeout) as resp:  # noqa: S310
                data = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:200]
            raise LLMError(
                f"HTTP {exc.code} from {self.url}: {detail}",
                status=exc.code,
                retry_after=retry_after_of(exc),
            ) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            # refused, reset, dropped mid-answer or timed out: all worth another try
            raise LLMError(f"cannot reach {self.url}: {exc}", retryable=True) from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LLMError(f"{self.url} answered with invalid JSON: {exc}", retryable=True) from exc
        return self.parse(data)
