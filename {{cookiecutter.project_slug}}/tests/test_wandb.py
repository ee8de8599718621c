"""trainer.loggers with "wandb" (the wandb answer): offline, the W&B run gets one row per epoch in the run
folder, and a resume keeps its id."""

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hostile import EXTRA, run_train, stopped_then_resumed, tracked_config


def wandb_records(path: Path) -> Iterator[Any]:
    """The protobuf records of a W&B ``.wandb`` file (a LevelDB-style log: 32 KiB blocks of chunks with
    a 7-byte header: checksum, length, type; types 1 and 4 end a record), after the file's 7-byte header."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, position, pending, block = path.read_bytes(), 7, b"", 32768
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_history(run_dir: Path) -> list[dict[str, Any]]:
    """Every logged row of every W&B run folder under ``run_dir/wandb``, by step."""
    rows = []
    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            if record.WhichOneof("record_type") == "history":
                items = record.history.item
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items})
    return sorted(rows, key=lambda row: row["_step"])


def test_wandb_offline_writes_the_metrics_in_the_run_folder_and_a_resume_keeps_the_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = stopped_then_resumed(capsys, tracked_config(tmp_path, ["wandb"]), tmp_path / "saved")
    run_id = json.loads((run_dir / "wandb.json").read_text())["run_id"]
    folders = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and all(folder.name.split("-")[-1] in (run_id, "1") for folder in folders)
    assert all((folder / f"run-{run_id}.wandb").is_file() for folder in folders), "one W&B run id throughout"
    deadline = time.monotonic() + 20  # W&B's own process may still be writing the last records
    while len(history := wandb_history(run_dir)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert all(row["lr"] == 0.02 and row["val_loss"] > 0 for row in history)

    # Each close keeps copies of the run's files, a resume's record of changed settings included.
    longer = ["--set", "trainer.epochs=4", "--set", "trainer.log_step=1"]
    assert run_train(capsys, "-r", run_dir, *longer, modules=EXTRA).code == 0
    kept = {path.name for path in (run_dir / "wandb").glob(f"offline-run-*/files/{run_dir.name}/*")}
    assert kept == {"best.pth", "config.json", "config-resume-3.json"}
