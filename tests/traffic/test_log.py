"""The search log's segments: every record once, closed into Parquet on rotation, readable while
written, any number of writers in one directory, at most the last second lost to kill -9, and
a log that cannot be written dropping records (counted, said) instead of failing."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from smar.traffic.log import (
    FSYNC_SECONDS,
    RETRY_SECONDS,
    WAKE_SECONDS,
    SegmentWriter,
    close_into_parquet,
    hash_user,
    now,
    read_log,
)

CONTINUOUS_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from smar.traffic.log import SegmentWriter, now
    writer = SegmentWriter(Path(sys.argv[1]) / "events", "events", max_bytes=int(sys.argv[2])).start()
    count = int(sys.argv[3])
    for n in range(count if count else 10**9):
        writer.append({"time": now(), "search_id": f"{sys.argv[4]}-{n}", "item_id": "I1", "event": "click"})
        time.sleep(0.001)
    writer.close()
    """
)


def event(n: int, search: str = "S") -> dict:
    return {"time": now(), "search_id": f"{search}-{n}", "item_id": f"I{n}", "event": "click", "position": 1 + n % 10}


def wait_until(condition, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def test_records_come_back_once_typed_from_a_closed_segment(tmp_path):
    writer = SegmentWriter(tmp_path / "events", "events").start()
    for n in range(500):
        writer.append(event(n))
    writer.close()

    names = [p.name for p in (tmp_path / "events").iterdir()]
    assert len(names) == 1 and names[0].endswith(".parquet") and f"-{os.getpid()}-" in names[0]
    found = read_log(tmp_path, "events")
    assert (found.segments, found.open_segments, found.unreadable_lines) == (1, 0, 0)
    assert list(found.records["search_id"]) == [f"S-{n}" for n in range(500)]
    assert str(found.records["time"].dtype) == "datetime64[us, UTC]"
    assert found.records["position"].tolist()[:3] == [1, 2, 3]
    assert len(pd.read_parquet(tmp_path / "events")) == 500  # a data team's pandas reads the folder as is


def test_segments_rotate_by_size_and_age_and_each_record_is_read_once(tmp_path):
    writer = SegmentWriter(tmp_path / "events", "events", max_bytes=4_000).start()
    for wave in range(6):  # a segment closes after the batch that takes it past its size
        for n in range(100 * wave, 100 * (wave + 1)):
            writer.append(event(n))
        wait_until(lambda: writer.written == 100 * (wave + 1))  # noqa: B023 (read while this wave waits)
    writer.close()
    segments = sorted((tmp_path / "events").glob("*.parquet"))
    assert len(segments) >= 6 and not list((tmp_path / "events").glob("*.jsonl"))
    assert sorted(read_log(tmp_path, "events").records["search_id"]) == sorted(f"S-{n}" for n in range(600))

    aging = SegmentWriter(tmp_path / "aged", "events", max_seconds=0.5).start()
    aging.append(event(0))
    wait_until(lambda: list((tmp_path / "aged").glob("*.parquet")))  # closed by age with no new record
    aging.close()


def test_an_open_segment_is_readable_within_a_second_of_each_record(tmp_path):
    writer = SegmentWriter(tmp_path / "events", "events").start()
    for n in range(50):
        writer.append(event(n))
    found = wait_until(
        lambda: (read := read_log(tmp_path, "events")).records.shape[0] == 50 and read, FSYNC_SECONDS * 3
    )
    assert found.open_segments == 1
    writer.close()
    assert read_log(tmp_path, "events").records.shape[0] == 50


def test_two_processes_write_one_directory_and_every_record_is_read(tmp_path):
    writers = [
        subprocess.Popen([sys.executable, "-c", CONTINUOUS_WRITER, str(tmp_path), "3000", "400", name])
        for name in ("a", "b")
    ]
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0]
    ids = read_log(tmp_path, "events").records["search_id"]
    assert len(ids) == 800 and set(ids) == {f"{name}-{n}" for name in "ab" for n in range(400)}
    pids = {name.split("-")[-2] for name in os.listdir(tmp_path / "events")}
    assert pids == {str(writer.pid) for writer in writers}


def test_kill_9_loses_at_most_the_last_second(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", CONTINUOUS_WRITER, str(tmp_path), str(64 << 20), "0", "k"])
    wait_until(lambda: read_log(tmp_path, "events").records.shape[0] > 500, 60)
    time.sleep(1.0)
    writer.send_signal(signal.SIGKILL)
    killed = datetime.now(UTC)
    writer.wait()

    found = read_log(tmp_path, "events")
    assert found.open_segments == 1 and found.unreadable_lines <= 1  # a torn last line at most
    numbers = sorted(int(search.split("-")[1]) for search in found.records["search_id"])
    assert numbers == list(range(len(numbers)))  # nothing missing before the last record kept
    last_kept = found.records["time"].max().to_pydatetime()
    assert killed - last_kept <= timedelta(seconds=FSYNC_SECONDS + 0.5)


def test_foreign_files_and_torn_lines_are_skipped_and_counted(tmp_path):
    folder = tmp_path / "events"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a segment")
    (folder / "20260101T000000-host-1-0001.jsonl").write_bytes(b'{"search_id": "S-0", "event": "click"}\n{"sear')
    found = read_log(tmp_path, "events")
    assert found.foreign_files == ["notes.txt"] and found.unreadable_lines == 1
    assert found.records["search_id"].tolist() == ["S-0"]
    close_into_parquet(folder / "20260101T000000-host-1-0001.jsonl", "events")  # closing skips the torn line too
    assert pd.read_parquet(folder / "20260101T000000-host-1-0001.parquet")["search_id"].tolist() == ["S-0"]


def test_a_log_that_cannot_be_written_drops_counts_and_says_so_then_recovers(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the log directory should be")  # mkdir fails, even for root
    writer = SegmentWriter(blocked / "events", "events").start()
    writer.append(event(0))
    wait_until(lambda: writer.problem)
    assert "cannot write the events log" in writer.problem and writer.dropped == 1
    blocked.unlink()
    writer.append(event(1))  # within RETRY_SECONDS of the failure: dropped, the disk left alone
    time.sleep(RETRY_SECONDS + WAKE_SECONDS)
    writer.append(event(2))
    wait_until(lambda: writer.problem is None)
    writer.close()
    assert read_log(blocked, "events").records["search_id"].tolist()[-1:] == ["S-2"]
    assert writer.written + writer.dropped == 3 and not list(blocked.glob("events/*.jsonl"))  # no empty segments


@pytest.mark.parametrize("salt", ["", "shop-secret"])
def test_user_ids_are_kept_only_as_keyed_hashes(salt):
    hashed = hash_user("alice@example.com", salt)
    assert hashed == hash_user("alice@example.com", salt) and "alice" not in hashed and len(hashed) == 24
    assert hashed != hash_user("bob@example.com", salt) and hash_user(None, salt) is None
    assert hash_user("alice@example.com", "") != hash_user("alice@example.com", "other")
