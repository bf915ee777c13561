"""Checkpoints: round trip, atomic, safe loading (no code from a file ever runs)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from cytoreview.errors import CheckpointError
from cytoreview.storage.checkpoints import load_checkpoint, load_state_dict_file, save_checkpoint


class _Evil:
    def __reduce__(self):
        return (Path.write_text, (Path("/tmp/cytoreview-pwned"), "owned"))


def test_round_trip_and_sidecar_config(tmp_path: Path) -> None:
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2)}
    config = {"arch": "unet", "encoder": "resnet18", "input_size": 64}
    path = save_checkpoint(tmp_path / "m" / "model.pt", state, config)
    loaded_config, loaded = load_checkpoint(path)
    assert loaded_config == config and torch.equal(loaded["w"], state["w"])
    assert json.loads((tmp_path / "m" / "config.json").read_text()) == config
    assert not list((tmp_path / "m").glob("*.partial"))


def test_code_in_a_checkpoint_never_runs(tmp_path: Path) -> None:
    target = Path("/tmp/cytoreview-pwned")
    target.unlink(missing_ok=True)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump(  # protocol 2, as torch.save writes
            {"format": "cytoreview-checkpoint/1", "config": "{}", "state_dict": _Evil()},
            handle,
            protocol=2,
        )
    with pytest.raises(CheckpointError, match=r"evil\.pt: not a loadable checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_state_dict_file(path)
    assert not target.exists()


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        load_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"conv.weight": torch.ones(1)}, plain)
    with pytest.raises(CheckpointError, match="not a CytoReview checkpoint"):
        load_checkpoint(plain)
    assert set(load_state_dict_file(plain)) == {"conv.weight"}
