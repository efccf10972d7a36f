"""Content-addressed store of simulated points: an edit re-simulates only what it changed,
and an interrupted build (Ctrl-C, kill -9) resumes. SQLite commits are atomic, so a kill
loses at most the chunk in flight."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path


class PointCache:
    def __init__(self, path: Path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # survives kill -9; no fsync per chunk
        self.db.execute("CREATE TABLE IF NOT EXISTS points "
                        "(key TEXT PRIMARY KEY, status INTEGER, payload BLOB)")
        self.db.commit()

    def get_many(self, keys: list[str]) -> dict[str, tuple[int, dict]]:
        out = {}
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            rows = self.db.execute(
                f"SELECT key, status, payload FROM points WHERE key IN ({','.join('?' * len(part))})",
                part)
            out.update({k: (s, pickle.loads(p)) for k, s, p in rows})
        return out

    def put_many(self, rows: list[tuple[str, int, dict]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO points VALUES (?, ?, ?)",
                            [(k, s, pickle.dumps(p)) for k, s, p in rows])
        self.db.commit()

    def close(self) -> None:
        self.db.close()
