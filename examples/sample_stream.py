"""Generates a Wikipedia-edits-shaped sample stream (no download needed)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

CHANNELS = ["#en.wikipedia", "#de.wikipedia", "#fr.wikipedia", "#ja.wikipedia", "#test"]
PAGES = [
    "Apache Druid",
    "Apache Kafka",
    "Exactly-once semantics",
    "Stream processing",
    "Columnar database",
    "PostgreSQL",
    "SQLite",
    "Parquet",
    "Python (programming language)",
    "Time series",
]
USERS = [f"user{i}" for i in range(40)] + ["BotA", "BotB"]
COUNTRIES = ["United States", "Germany", "France", "Japan", "Brazil", "India", None]


def edits(count: int, seed: int = 7, start: datetime | None = None) -> Iterator[bytes]:
    """``count`` JSON events, spread over the last hour, with a few bad records mixed in."""
    rng = random.Random(seed)
    begin = start or datetime.now(UTC) - timedelta(hours=1)
    for i in range(count):
        if i % 997 == 996:
            yield b"{this is not json"
            continue
        user = rng.choice(USERS)
        ts = begin + timedelta(milliseconds=int(i * 3_600_000 / count))
        event = {
            "time": ts.isoformat().replace("+00:00", "Z"),
            "channel": rng.choice(CHANNELS),
            "page": rng.choices(PAGES, weights=range(len(PAGES), 0, -1))[0],
            "user": user,
            "namespace": rng.choice(["Main", "Talk", "User"]),
            "countryName": rng.choice(COUNTRIES),
            "isRobot": str(user.startswith("Bot")).lower(),
            "added": rng.randint(0, 500),
            "deleted": rng.randint(0, 100),
        }
        yield json.dumps(event).encode()
