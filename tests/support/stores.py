"""Helpers for the store's schema tests: a store as the previous release wrote it, and real
processes opening stores at the same moment (SQLite and PostgreSQL tests share them)."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import sqlalchemy as sa

from datashunt import CallRecord, CallStore

OLD_ID = "old-1"


def create_old_store(url: str) -> str:
    """A store as the release before ``messages`` wrote it (no meta table), with one row;
    returns that row's id."""
    old = sa.MetaData()
    table = sa.Table(  # the previous release's definition, verbatim
        "datashunt_calls",
        old,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("run_id", sa.String(64), index=True),
        sa.Column("route", sa.String(8), nullable=False),
        sa.Column("source", sa.String(16)),
        sa.Column("model", sa.String(200)),
        sa.Column("input_text", sa.Text),
        sa.Column("input_hash", sa.String(64), index=True),
        sa.Column("gate_label", sa.String(200)),
        sa.Column("gate_confidence", sa.Float),
        sa.Column("gate_probs", sa.JSON),
        sa.Column("candidates", sa.JSON),
        sa.Column("prompt", sa.Text),
        sa.Column("response", sa.Text),
        sa.Column("parsed_label", sa.String(200)),
        sa.Column("parse_ok", sa.Boolean),
        sa.Column("parse_reason", sa.Text),
        sa.Column("llm_confidence", sa.Float),
        sa.Column("llm_probs", sa.JSON),
        sa.Column("prompt_tokens", sa.Integer),
        sa.Column("completion_tokens", sa.Integer),
        sa.Column("latency_s", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("extra", sa.JSON),
    )
    engine = sa.create_engine(url)
    old.create_all(engine)
    row = {"id": OLD_ID, "created_at": CallRecord(route="llm").created_at, "route": "llm"}
    row |= {"input_text": "an old input", "prompt": "an old prompt", "response": "positive"}
    with engine.begin() as conn:
        conn.execute(table.insert(), [row])
    engine.dispose()
    return OLD_ID


def columns(url: str) -> set[str]:
    """The columns of the store's calls table."""
    engine = sa.create_engine(url)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns("datashunt_calls")}
    finally:
        engine.dispose()


def schema_version(url: str) -> str | None:
    """The version in ``datashunt_meta``, or ``None`` without one."""
    engine = sa.create_engine(url)
    try:
        if "datashunt_meta" not in sa.inspect(engine).get_table_names():
            return None
        with engine.connect() as conn:
            query = "SELECT value FROM datashunt_meta WHERE key = 'schema_version'"
            return conn.exec_driver_sql(query).scalar()
    finally:
        engine.dispose()


def _open_and_write(targets: list[str], barrier: Any, out: Any) -> None:
    """A worker process: for each store, wait for the others, then open it and write."""
    errors = []
    for target in targets:
        barrier.wait(timeout=60)
        try:
            store = CallStore(target)
            store.add(CallRecord(route="llm", input_text=mp.current_process().name))
            store.close()
        except Exception as exc:  # reported to the parent, which fails the test
            errors.append(f"{target}: {type(exc).__name__}: {exc}")
    out.put(errors)


def open_concurrently(targets: list[str], processes: int) -> list[str]:
    """``processes`` fresh processes open each store (path or URL) at the same moment and
    write one record; returns the errors they met."""
    ctx = mp.get_context("spawn")  # real, fresh processes, as app workers starting together
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [
        ctx.Process(target=_open_and_write, args=(targets, barrier, out)) for _ in range(processes)
    ]
    for p in procs:
        p.start()
    errors = [e for _ in procs for e in out.get(timeout=180)]
    for p in procs:
        p.join(timeout=30)
        if p.exitcode != 0:
            errors.append(f"worker exited with {p.exitcode}")
    return errors
