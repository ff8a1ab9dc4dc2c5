"""The search log: what `smar serve` answered and what shoppers did, in append-only segments.

    LOG_DIR/searches/<opened>-<host>-<pid>-<n>.jsonl     the segment being written: a JSON object a line
    LOG_DIR/searches/<opened>-<host>-<pid>-<n>.parquet   a closed segment (rotated, or the server stopped)
    LOG_DIR/events/...                                   the same for shopper events
    LOG_DIR/shadow/...                                   the challenger's rankings of searches it did not answer

Each server process writes segments of its own (host and pid in the name), so any number of
`smar serve` hosts share one directory without a lock. A record is queued without waiting
(an append to a deque: no lock, no thread woken) and a background thread writes what queued
every `WAKE_SECONDS`, flushing and fsyncing at least every `FSYNC_SECONDS`: a killed server
loses at most its last second. Waking by the clock rather than by the record keeps the cost
of logging flat under load: one write call per batch, never a thread switch per search.
A segment is closed into Parquet when it reaches its size (after the batch that crosses it)
or its age, and the JSON Lines file is removed once the Parquet file is whole, so readers
see each record once (where both exist they take the Parquet one).
pandas and DuckDB read both: `pd.read_parquet(LOG_DIR / "searches")`,
`SELECT * FROM 'LOG_DIR/searches/*.parquet'`; `read_log` reads both, and the segments still
open, and says what it skipped.

A log that cannot be written (a full disk, a directory that went read-only) never stops a
search: the records are counted as dropped, `problem` says why (and /readyz with it), and the
writer tries a new segment `RETRY_SECONDS` later.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

log = logging.getLogger(__name__)
FSYNC_SECONDS = 1.0
WAKE_SECONDS = 0.1  # how often the writer takes what queued
RETRY_SECONDS = 1.0  # after a failed write, records are dropped (counted) this long before a new segment is tried
_SEGMENT_NUMBERS = itertools.count(1)  # unique in the process, whatever the number of writers
QUEUE_RECORDS = 100_000  # records waiting for the writer; beyond this they are dropped, never waited for
KINDS = ("searches", "events", "shadow")

# Each kind's fields, in order, with their Parquet types (pyarrow type names).
FIELDS = {
    "searches": {
        "time": "timestamp",  # when the server answered, UTC
        "search_id": "string",
        "session_id": "string",
        "user_hash": "string",  # the request's user_id, hashed (smar.traffic.log.hash_user)
        "query": "string",
        "k": "int32",
        "model_name": "string",
        "model_version": "string",
        "index": "string",  # the index view that answered
        "explored": "bool",  # shown in random order from a deeper list, for position-bias estimation
        "item_ids": "list<string>",  # as shown: position 1 first
        "scores": "list<float>",
        "sides": "list<string>",  # interleaved: the side that picked each result (champion, challenger); else null
        "challenger_version": "string",  # interleaved: the challenger's version
        "host": "string",
    },
    "shadow": {  # the challenger's ranking of a search it did not answer (serve.shadow_share)
        "time": "timestamp",
        "search_id": "string",
        "model_name": "string",
        "champion_version": "string",
        "challenger_version": "string",
        "item_ids": "list<string>",  # the challenger's top k
        "scores": "list<float>",
        "overlap": "float",  # the share of the champion's top k that the challenger's top k holds too
        "host": "string",
    },
    "events": {
        "time": "timestamp",  # when the server received it, UTC
        "search_id": "string",
        "item_id": "string",
        "event": "string",  # click, add_to_cart or purchase
        "position": "int32",  # 1-based, as the shopper's client reports it (may be null)
        "session_id": "string",
        "host": "string",
    },
}


def now() -> str:
    """The log's time format: ISO 8601 in UTC, to the microsecond."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def hash_user(user_id: str | None, salt: str = "") -> str | None:
    """A user id as the log keeps it: a keyed BLAKE2b digest, never the id itself."""
    if user_id is None:
        return None
    import hashlib

    return hashlib.blake2b(user_id.encode(), key=salt.encode()[:64], digest_size=12).hexdigest()


def arrow_schema(kind: str):
    import pyarrow as pa

    types = {
        "timestamp": pa.timestamp("us", tz="UTC"),
        "string": pa.string(),
        "int32": pa.int32(),
        "bool": pa.bool_(),
        "float": pa.float32(),
        "list<string>": pa.list_(pa.string()),
        "list<float>": pa.list_(pa.float32()),
    }
    return pa.schema([(name, types[kind_of]) for name, kind_of in FIELDS[kind].items()])


@dataclass
class SegmentWriter:
    """Appends one kind of record to this process's segments in `directory`, from a background thread."""

    directory: Path
    kind: str
    max_bytes: int = 64 << 20
    max_seconds: float = 3600.0
    written: int = 0
    dropped: int = 0
    problem: str | None = None
    _queued: collections.deque = field(default_factory=collections.deque)
    _closing: threading.Event = field(default_factory=threading.Event)
    _file: object = None
    _path: Path | None = None
    _opened: float = 0.0
    _thread: threading.Thread | None = None
    _error: str | None = None
    _retry_at: float = 0.0

    def start(self) -> SegmentWriter:
        self._thread = threading.Thread(target=self._run, name=f"log-{self.kind}", daemon=True)
        self._thread.start()
        return self

    def append(self, record: dict) -> None:
        """Queue one record; never waits (a full queue drops it and counts it)."""
        if len(self._queued) >= QUEUE_RECORDS:
            self.dropped += 1
            self.problem = f"{self.kind} log: the writer is behind ({QUEUE_RECORDS} records waiting)"
            return
        self._queued.append(record)

    def close(self) -> None:
        """Write what is queued, and close the open segment into Parquet (once; later calls do nothing)."""
        if self._thread is None or not self._thread.is_alive():
            return
        self._closing.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        synced = time.monotonic()
        while True:
            closing = self._closing.wait(WAKE_SECONDS)
            batch = [self._queued.popleft() for _ in range(len(self._queued))]  # the one taker: never short
            if batch:
                self._write(batch)
            if closing:
                self._close_segment()
                return
            if self._file is not None and time.monotonic() - synced >= FSYNC_SECONDS:
                self._sync()
                synced = time.monotonic()
            if self._file is not None and (
                self._file.tell() >= self.max_bytes or time.monotonic() - self._opened >= self.max_seconds
            ):
                self._close_segment()

    def _write(self, records: list[dict]) -> None:
        if self._file is None and time.monotonic() < self._retry_at:  # failed a moment ago: not yet again
            self._drop(records)
            return
        try:
            if self._file is None:
                self._open_segment()
            self._file.write(b"".join(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE) for record in records))
            self.written += len(records)
            self.problem = self._error = None
        except OSError as error:
            self._error = f"cannot write the {self.kind} log in {self.directory}: {error}"
            self._drop(records)
            log.warning("%s", self.problem)
            self._abandon_segment()
            self._retry_at = time.monotonic() + RETRY_SECONDS

    def _drop(self, records: list[dict]) -> None:
        self.dropped += len(records)
        self.problem = f"{self._error} ({self.dropped} dropped)"

    def _open_segment(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        opened = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        host = socket.gethostname().replace("-", "_")
        self._path = self.directory / f"{opened}-{host}-{os.getpid()}-{next(_SEGMENT_NUMBERS):04d}.jsonl"
        self._file = self._path.open("ab")
        self._opened = time.monotonic()

    def _sync(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as error:
            self.problem = f"cannot write the {self.kind} log in {self.directory}: {error}"
            log.warning("%s", self.problem)
            self._abandon_segment()

    def _abandon_segment(self) -> None:
        """Leave a segment that failed as it is (readers skip a torn last line), or remove it if it holds
        nothing; the next batch opens another."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            with contextlib.suppress(OSError):
                if self._path.stat().st_size == 0:
                    self._path.unlink()
        self._file = None

    def _close_segment(self) -> None:
        if self._file is None:
            return
        self._sync()
        path = self._path
        self._abandon_segment()
        try:
            close_into_parquet(path, self.kind)
        except OSError as error:  # the JSON Lines file stays, and stays readable
            self.problem = f"cannot close {path} into Parquet: {error}"
            log.warning("%s", self.problem)


def close_into_parquet(path: Path, kind: str) -> Path:
    """A finished JSON Lines segment as a Parquet file beside it (written whole, then renamed), the
    JSON Lines file removed."""
    import pyarrow as pa
    import pyarrow.json
    import pyarrow.parquet as pq

    schema = arrow_schema(kind)
    try:  # Arrow's reader, off the GIL: a busy server keeps answering while its hour of log is converted
        options = pyarrow.json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        table = pyarrow.json.read_json(path, parse_options=options)
    except pa.ArrowInvalid:  # a torn line (a write that failed half-way): record by record, skipping it
        records, _ = read_lines(path)
        table = pa.Table.from_pylist([_typed(record, kind) for record in records], schema=schema)
    target = path.with_suffix(".parquet")
    scratch = path.with_name(f".{target.name}.tmp")
    pq.write_table(table, scratch)
    os.replace(scratch, target)
    path.unlink()
    return target


def _typed(record: dict, kind: str) -> dict:
    """A record with its fields only, its time parsed (Parquet holds timestamps, JSON strings)."""
    typed = {name: record.get(name) for name in FIELDS[kind]}
    if isinstance(typed["time"], str):
        typed["time"] = datetime.fromisoformat(typed["time"])
    return typed


def read_lines(path: Path) -> tuple[list[dict], int]:
    """The records of a JSON Lines segment, and how many lines were unreadable (a torn last line after a crash)."""
    records, bad = [], 0
    for line in path.read_bytes().splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return records, bad


@dataclass
class LogRead:
    """What `read_log` found: the records as a table, and what it skipped."""

    records: object  # pandas DataFrame, one row per record, FIELDS[kind] columns
    segments: int = 0
    open_segments: int = 0
    unreadable_lines: int = 0
    foreign_files: list[str] = field(default_factory=list)


def read_log(directory: Path, kind: str) -> LogRead:
    """Every record of one kind under `directory` (closed and open segments), each once."""
    import pandas as pd
    import pyarrow.parquet as pq

    folder = Path(directory) / kind
    found = LogRead(pd.DataFrame(columns=list(FIELDS[kind])))
    if not folder.is_dir():
        return found
    names = sorted(p.name for p in folder.iterdir())
    closed = {name.removesuffix(".parquet") for name in names if name.endswith(".parquet")}
    frames = []
    for name in names:
        path = folder / name
        if name.startswith("."):  # a Parquet file being written
            continue
        if name.endswith(".parquet"):
            try:
                frames.append(pq.read_table(path).to_pandas())
            except (OSError, ValueError):
                found.foreign_files.append(name)
                continue
        elif name.endswith(".jsonl"):
            if name.removesuffix(".jsonl") in closed:
                continue  # closed meanwhile: the Parquet file holds it
            try:
                records, bad = read_lines(path)
            except FileNotFoundError:  # closed into Parquet since the listing
                frames.append(pq.read_table(path.with_suffix(".parquet")).to_pandas())
                found.segments += 1
                continue
            found.unreadable_lines += bad
            found.open_segments += 1
            if records:
                frame = pd.DataFrame([_typed(record, kind) for record in records], columns=list(FIELDS[kind]))
                frames.append(frame)
        else:
            found.foreign_files.append(name)
            continue
        found.segments += 1
    if frames:
        table = pd.concat(frames, ignore_index=True)
        table["time"] = pd.to_datetime(table["time"], utc=True, format="ISO8601")
        found.records = table
    return found


@dataclass
class SearchLog:
    """The two writers of one server process, and what /readyz says about them."""

    directory: Path
    max_bytes: int
    max_seconds: float
    writers: dict[str, SegmentWriter] = field(default_factory=dict)

    def start(self) -> SearchLog:
        for kind in KINDS:
            self.writers[kind] = SegmentWriter(self.directory / kind, kind, self.max_bytes, self.max_seconds).start()
        return self

    def search(self, record: dict) -> None:
        self.writers["searches"].append(record)

    def event(self, record: dict) -> None:
        self.writers["events"].append(record)

    def shadow(self, record: dict) -> None:
        self.writers["shadow"].append(record)

    @property
    def problem(self) -> str | None:
        problems = [writer.problem for writer in self.writers.values() if writer.problem]
        return "; ".join(problems) or None

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
