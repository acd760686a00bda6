"""What leaves the store: its summary figures (``datashunt store stats``) and JSONL exports."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..errors import StoreError
from .records import CallRecord
from .schema import calls

__all__ = ["summarise", "write_jsonl"]

_COUNTS = ("records", "llm_calls", "llm_errors", "unparsed", "prompt_tokens", "completion_tokens")


def summarise(conn: sa.Connection) -> dict[str, Any]:
    """Records, LLM calls and errors, parse failures, tokens, latency, records per model.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: as the database raised it (the store wraps it).
    """
    c = calls.c
    llm = c.route == "llm"
    query = sa.select(
        sa.func.count().label("records"),
        sa.func.sum(sa.case((llm, 1), else_=0)).label("llm_calls"),
        sa.func.sum(sa.case((llm & c.error.is_not(None), 1), else_=0)).label("llm_errors"),
        sa.func.sum(sa.case((llm & c.parse_ok.is_(False), 1), else_=0)).label("unparsed"),
        sa.func.sum(c.prompt_tokens).label("prompt_tokens"),
        sa.func.sum(c.completion_tokens).label("completion_tokens"),
        sa.func.avg(sa.case((llm, c.latency_s))).label("mean_latency_s"),
        sa.func.avg(c.llm_confidence).label("mean_llm_confidence"),
        sa.func.min(c.created_at).label("first"),
        sa.func.max(c.created_at).label("last"),
    )
    models = sa.select(c.model, sa.func.count()).where(llm).group_by(c.model)
    row = dict(conn.execute(query).mappings().one())
    by_model = {str(m): int(n) for m, n in conn.execute(models)}
    out: dict[str, Any] = {
        k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()
    }
    for k in _COUNTS:
        out[k] = int(out[k] or 0)
    out["llm_rate"] = out["llm_calls"] / out["records"] if out["records"] else None
    out["by_model"] = by_model
    return out


def write_jsonl(records: Iterable[CallRecord], path: str | Path) -> int:
    """Write each record as one JSON line (UTF-8, not escaped); returns the number written.

    Raises:
        StoreError: the file cannot be created (a missing or read-only folder).
    """
    n = 0
    try:
        fh = Path(path).open("w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise StoreError(
            f"cannot write {path}: {exc.strerror or exc}; choose a file in a folder that "
            "exists and that you can write to"
        ) from exc
    with fh:
        for rec in records:
            fh.write(json.dumps(rec.to_json(), ensure_ascii=False) + "\n")
            n += 1
    return n
