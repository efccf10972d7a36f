"""Content-addressed store of simulated points: an edit re-simulates only what it changed,
and an interrupted build (Ctrl-C, kill -9) resumes. SQLite commits are atomic, so a kill
loses at most the chunk in flight.

A row holds numbers only: JSON of {quantity: number | [numbers]}, read back as floats and
float arrays. Nothing in the file is ever executed or unpickled, so a cache handed over
with a checkout cannot run code; a row that is not numbers is treated as missing and
simulated again. A file that is not a SQLite database is moved aside and a new one started.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

TABLE = "points_v2"  # v1 held pickles: never read


def encode(payload: dict) -> str:
    out = {}
    for name, value in payload.items():
        if isinstance(value, np.ndarray):
            out[name] = [float(v) for v in value.reshape(-1)]
        elif isinstance(value, (int, float, np.floating, np.integer)):
            out[name] = float(value)
        else:
            raise TypeError(f"cache payload {name!r}: {type(value).__name__} is not a number")
    return json.dumps(out, allow_nan=True)


def decode(text) -> dict | None:
    """The payload of a row, or None when the row is not plain numbers."""
    if not isinstance(text, str):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    out = {}
    for name, value in data.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, list) and all(isinstance(v, (int, float)) and
                                             not isinstance(v, bool) for v in value):
            out[name] = np.asarray(value, dtype=float)
        else:
            return None
    return out


class PointCache:
    def __init__(self, path: Path, log=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.log = log or (lambda text: print(text, file=sys.stderr))
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            self.log(f"cimlut: point cache {path} is not a usable SQLite database ({exc}); "
                     f"moved it to {aside.name} and started a new one (points are simulated "
                     f"again)")
            path.rename(aside)
            for extra in ("-wal", "-shm"):
                Path(f"{path}{extra}").unlink(missing_ok=True)
            self._open()

    def _open(self) -> None:
        self.db = sqlite3.connect(self.path)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # survives kill -9; no fsync per chunk
            self.db.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} "
                            "(key TEXT PRIMARY KEY, status INTEGER, payload TEXT)")
            self.db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
            self.db.commit()
        except sqlite3.DatabaseError:
            self.db.close()
            raise

    def get_many(self, keys: list[str]) -> dict[str, tuple[int, dict]]:
        out = {}
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            rows = self.db.execute(
                f"SELECT key, status, payload FROM {TABLE} WHERE key IN "
                f"({','.join('?' * len(part))})", part)
            for k, s, p in rows:
                payload = decode(p)
                if payload is not None and isinstance(s, int):
                    out[k] = (s, payload)
        return out

    def put_many(self, rows: list[tuple[str, int, dict]]) -> None:
        self.db.executemany(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?)",
                            [(k, int(s), encode(p)) for k, s, p in rows])
        self.db.commit()

    def close(self) -> None:
        self.db.close()
