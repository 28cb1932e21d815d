"""Checkpoints: safetensors + JSON with a digest; atomic writes; pickles, tampering and truncation refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nngraph.compilers.state import checkpoint as ck

ROOT = Path(__file__).resolve().parents[3]


def payload(step: int = 3):
    tensors = {"model/w": torch.arange(6.0).reshape(2, 3), "optim/0/step": torch.tensor(4.0),
               "rng/torch": torch.get_rng_state(), "model/h": torch.ones(2, dtype=torch.bfloat16)}
    return tensors, {"run": {"step": step}, "config": {"lr": 0.1}}


def test_round_trip_keeps_every_tensor_bit_for_bit_and_the_state(tmp_path):
    tensors, state = payload()
    path = ck.save(tmp_path, ck.step_name(3), tensors, state)
    got = ck.read(path)
    assert got.state["run"] == {"step": 3} and got.state["format"] == ck.FORMAT
    for k, v in tensors.items():
        assert got.tensors[k].dtype == v.dtype and torch.equal(got.tensors[k], v)
    assert set(got.group("model")) == {"w", "h"}
    assert path.name == "step_000000003.safetensors" and not list(tmp_path.glob(".*.tmp"))


def test_a_modified_tensor_byte_is_refused_as_corrupt_or_tampered(tmp_path):
    path = ck.save(tmp_path, "c.safetensors", *payload())
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(ck.CheckpointError, match="is corrupt or was modified: its SHA-256 does not match"):
        ck.read(path)


def test_edited_metadata_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    path = ck.save(tmp_path, "c.safetensors", *payload())
    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata())
    state = json.loads(meta["state"])
    state["run"]["step"] = 999
    meta["state"] = json.dumps(state, sort_keys=True)
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(ck.CheckpointError, match="SHA-256 does not match"):
        ck.read(path)


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_device_or_fifo_named_like_a_step_file_is_refused_without_reading(tmp_path):
    zero = tmp_path / ck.step_name(5)
    zero.symlink_to("/dev/zero")  # would fill memory reading it whole
    with pytest.raises(ck.CheckpointError) as info:
        ck.read(zero)
    assert str(info.value) == (f"checkpoint '{zero}' is not a regular file (it is a character device); "
                               "only regular files are read")
    fifo = tmp_path / ck.step_name(6)
    os.mkfifo(fifo)  # would block reading it
    with pytest.raises(ck.CheckpointError, match=r"is not a regular file \(it is a FIFO \(named pipe\)\)"):
        ck.read(fifo)


def test_a_pickled_code_file_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / ck.step_name(9)
    torch.save({"model": _Evil(str(marker))}, path)
    with pytest.raises(ck.CheckpointError, match="is a pickle / torch.save file, not an nngraph checkpoint: "
                                                 "refusing to load it"):
        ck.read(path)
    import pickle
    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(ck.CheckpointError, match="pickle"):
        ck.read(raw)
    assert not marker.exists()


def test_truncated_and_foreign_files_are_refused(tmp_path):
    path = ck.save(tmp_path, "c.safetensors", *payload())
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ck.CheckpointError, match="bad or truncated header|SHA-256 does not match"):
        ck.read(path)
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "something-else"})
    with pytest.raises(ck.CheckpointError, match="is not an nngraph training checkpoint"):
        ck.read(path)
    path.write_bytes(b"hello")
    with pytest.raises(ck.CheckpointError, match="not a safetensors checkpoint"):
        ck.read(path)


def test_latest_skips_broken_files_and_prune_keeps_the_newest(tmp_path):
    for step in (1, 2, 3):
        ck.save(tmp_path, ck.step_name(step), *payload(step))
    (tmp_path / ck.step_name(4)).write_bytes(b"\x80\x04junk")  # a pickle where the newest should be
    (tmp_path / ".step_000000005.safetensors.x.tmp").write_bytes(b"partial")
    warnings = []
    got = ck.latest(tmp_path, warnings.append)
    assert got.state["run"]["step"] == 3
    assert len(warnings) == 1 and "pickle" in warnings[0]
    ck.prune(tmp_path, keep=2)
    # only checkpoints that verify count and are deleted: the broken step 4 stays (it is not ours to delete)
    # and does not push step 2 out of the newest two
    assert sorted(p.name for p in tmp_path.iterdir()) == [ck.step_name(2), ck.step_name(3), ck.step_name(4)]


def test_an_unreadable_high_step_file_never_makes_the_run_delete_its_own_checkpoints(tmp_path):
    junk = tmp_path / ck.step_name(99)
    junk.write_bytes(b"unreadable")
    for step in (1, 2, 3):
        ck.save_step(tmp_path, None, step, *payload(step), keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [ck.step_name(3), ck.step_name(99)]
    assert junk.read_bytes() == b"unreadable"
    assert ck.latest(tmp_path).state["run"]["step"] == 3


def test_checkpoints_of_an_earlier_longer_run_go_once_the_new_run_has_its_own(tmp_path):
    for step in (40, 50):  # an earlier run in this folder
        ck.save(tmp_path, ck.step_name(step), *payload(step))
    ck.save_step(tmp_path, None, 10, *payload(10), keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [ck.step_name(10)]


def test_a_fifo_named_like_a_checkpoint_is_never_opened(tmp_path):
    os.mkfifo(tmp_path / ck.step_name(7))
    ck.save(tmp_path, ck.step_name(3), *payload(3))
    signal.alarm(20)  # a regression blocks in open(): fail instead of hanging
    try:
        assert [step for step, _ in ck.step_files(tmp_path)] == [3]
        assert ck.latest(tmp_path).state["run"]["step"] == 3
        with pytest.raises(ck.CheckpointError) as info:
            ck.read(tmp_path / ck.step_name(7))
    finally:
        signal.alarm(0)
    assert str(info.value) == (f"checkpoint '{tmp_path / ck.step_name(7)}' is not a regular file "
                               "(it is a FIFO (named pipe)); only regular files are read")
    ck.prune(tmp_path, keep=1)
    assert (tmp_path / ck.step_name(7)).is_fifo()


def test_resume_with_no_checkpoint_that_verifies_says_so_instead_of_starting_at_0(tmp_path):
    (tmp_path / ck.step_name(5)).write_bytes(b"corrupt")
    said = []
    with pytest.raises(ck.CheckpointError) as info:
        ck.resume_latest(object(), tmp_path, said.append)
    assert str(info.value) == (f"--resume: nothing to resume in '{tmp_path}': none of its 1 step checkpoints verifies; "
                               "start again from step 0 with --resume --overwrite (the run's other files are "
                               "replaced), or give another --out")
    assert said == [f"skipping '{tmp_path / ck.step_name(5)}' is not a safetensors checkpoint (bad or truncated header)"]
    assert (tmp_path / ck.step_name(5)).read_bytes() == b"corrupt"


def test_optimizer_state_round_trips_through_flat_tensors(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = ck.flatten_optimizer(opt.state_dict())
    path = ck.save(tmp_path, "o.safetensors", tensors, {"optimizer": meta})
    got = ck.read(path)
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    opt2.load_state_dict(ck.unflatten_optimizer(got, got.state["optimizer"]))
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"][0]["lr"] == b["param_groups"][0]["lr"] == 0.1
    for i in a["state"]:
        for k in a["state"][i]:
            assert torch.equal(a["state"][i][k], b["state"][i][k])


WRITER = """
import sys, torch
from pathlib import Path
from nngraph.compilers.state import checkpoint as ck
folder = Path(sys.argv[1])
ck.save(folder, ck.step_name(1), {"model/w": torch.zeros(1000)}, {"run": {"step": 1}})
print("first", flush=True)
ck.save(folder, ck.step_name(2), {"model/w": torch.ones(3_000_000)}, {"run": {"step": 2}})
print("second", flush=True)
"""


def test_a_kill_while_writing_leaves_the_previous_checkpoint_and_no_loadable_partial_file(tmp_path):
    env = {**os.environ, "NNGRAPH_CHECKPOINT_WRITE_DELAY": "0.5"}  # 12 MB in 1 MB chunks: ~6 s to write
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "first"
    deadline = time.time() + 60
    while not list(tmp_path.glob(".step_000000002*.tmp")) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.6)  # part of the new file is on disk
    partial = list(tmp_path.glob(".step_000000002*.tmp"))
    assert partial and partial[0].stat().st_size > 0
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / ck.step_name(2)).exists()
    got = ck.latest(tmp_path)
    assert got is not None and got.state["run"]["step"] == 1
    with pytest.raises(ck.CheckpointError):
        ck.read(partial[0])
