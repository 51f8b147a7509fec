"""What one refused row costs an adoption batch: seconds and INSERT batches to adopt N rows on
PostgreSQL when k of them are refused by the database (a real CHECK constraint), isolated by
`isolate_refused_rows` (halving). Prints figures; asserts nothing.

    .venv/bin/python benchmarks/refused_rows_benchmark.py [--rows 10000] [--refused 0 1 10 100]
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Sequence

import psycopg
from psycopg import sql

from photo_pipeline.photos.database import migrate
from photo_pipeline.photos.repository import (
    NewPhoto,
    PhotoRepository,
    isolate_refused_rows,
)
from photo_pipeline.storage import keys

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def measure(rows: int, refused: int) -> tuple[float, int, int, int]:
    name = f"photo_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        migrate(url)
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}", autocommit=True) as conn:
            conn.execute("ALTER TABLE photos ADD CONSTRAINT ck_bench CHECK (original_key NOT LIKE '%refused%')")
        repository = PhotoRepository.from_url(url)
        album = uuid.uuid4()
        photos = [NewPhoto(id=uuid.uuid4(), album_id=album, original_key=keys.raw_key(album, uuid.uuid4(), "jpg")) for _ in range(rows)]
        for i in random.Random(1).sample(range(rows), refused):
            photos[i] = NewPhoto(id=photos[i].id, album_id=album, original_key=f"raw/{album}/refused-{i}.jpg")
        batches = 0
        lost: list[NewPhoto] = []

        def write(batch: Sequence[NewPhoto]) -> list[uuid.UUID]:
            nonlocal batches
            batches += 1
            return repository.adopt(batch)

        started = time.perf_counter()
        created = isolate_refused_rows(photos, write, lambda photo, _exc: lost.append(photo))
        seconds = time.perf_counter() - started
        repository.engine.dispose()
        return seconds, batches, len(created), len(lost)
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--refused", type=int, nargs="+", default=[0, 1, 10, 100])
    args = parser.parse_args()
    print(f"{'rows':>7} {'refused':>7} {'seconds':>8} {'batches':>8} {'created':>8} {'isolated':>8}")
    for refused in args.refused:
        seconds, batches, created, lost = measure(args.rows, refused)
        print(f"{args.rows:>7} {refused:>7} {seconds:>8.2f} {batches:>8} {created:>8} {lost:>8}")


if __name__ == "__main__":
    main()
