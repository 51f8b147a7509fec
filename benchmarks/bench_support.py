"""What the benchmarks share: throw-away PostgreSQL databases on the local server."""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def create_database(prefix: str = "photo_bench") -> tuple[str, str]:
    """A fresh, empty database: its name and its SQLAlchemy URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
