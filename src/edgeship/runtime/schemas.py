"""Request and response bodies at the runtime's HTTP boundary (OpenAI's shapes where it has one)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgeship.runtime.llama import GenerationParams


class _Request(BaseModel):
    # OpenAI clients send fields this runtime does not implement (user, n=1, logprobs=None...):
    # ignoring them keeps unchanged clients working.
    model_config = ConfigDict(extra="ignore")


class _Sampling(_Request):
    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    n: Literal[1] = 1  # one choice per request: llama.cpp decodes one sequence per context

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    def params(self, default_max_tokens: int | None) -> GenerationParams:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        return GenerationParams(max_tokens=self.max_completion_tokens or self.max_tokens or default_max_tokens,
                                temperature=self.temperature, top_p=self.top_p, stop=stop, seed=self.seed)


class CompletionRequest(_Sampling):
    prompt: str


class ChatMessage(_Request):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict[str, Any]]

    def plain(self) -> dict[str, str]:
        """llama.cpp's chat templates take text: content parts of type text are joined."""
        if isinstance(self.content, str):
            return {"role": "system" if self.role == "developer" else self.role, "content": self.content}
        texts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError("only text content parts are supported")
            texts.append(part["text"])
        return {"role": "system" if self.role == "developer" else self.role, "content": "".join(texts)}


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)

    @field_validator("messages")
    @classmethod
    def _text_only(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        for m in v:
            m.plain()
        return v


class PredictRequest(_Request):
    model: str | None = None
    inputs: dict[str, Any] = Field(min_length=1, description="input name -> nested lists")


class SwapRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    release_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$",
                                   description="None: the release `current` points at")
    cpu: dict[Annotated[str, Field(max_length=200)], Annotated[str, Field(max_length=4000)]] | None = Field(
        default=None, max_length=64,
        description="models to run on the CPU -> why; {}: every model as planned; None: as last asked")


class AdaptersRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: str = Field(description='adapters a request naming none runs with: "NAME[*SCALE]+..."; "" detaches all',
                         max_length=1000)
