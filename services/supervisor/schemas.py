"""The supervisor API's request and response bodies (they make its OpenAPI document, which the fuzz test reads)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str = Field(description="'ok' when the service answers")


class ContextOut(BaseModel):
    context: str = Field(description="sha256 of the public CKKS context this supervisor decrypts for")


class CiphertextMessage(BaseModel):
    """CKKS vectors under one context: the body of /decrypt, /refresh and /score, and the answer of /refresh."""

    context: str = Field(description="hash of the context the vectors were made under")
    model: str = Field(default="", description="the model they belong to, for the log")
    vectors: list[str] = Field(description="serialized CKKS vectors, base64")
    bounds: list[tuple[float, float]] | None = Field(
        default=None,
        description="/refresh of model weights: one (norm, |bias|) bound per vector to project the values onto",
    )


class AggregateIn(BaseModel):
    """Several sites' ciphertexts of the same shape: the supervisor decrypts only their sum."""

    parts: list[CiphertextMessage] = Field(description="one message per site, each of the same vectors' shape")


class Measured(BaseModel):
    bounds: list[tuple[float, float]] = Field(description="each weight vector's (norm of its weights, |bias|)")


class Decrypted(BaseModel):
    values: list[list[float]] = Field(description="each vector's values, in order")


class ScoreOut(BaseModel):
    accuracy: float
    count: int = Field(description="how many margins were scored")


class LogEntryOut(BaseModel):
    at: float
    account: str
    action: str = Field(description="decrypt, refresh, score, measure or aggregate")
    model: str
    context: str
    values: int = Field(description="how many values the request decrypted")
