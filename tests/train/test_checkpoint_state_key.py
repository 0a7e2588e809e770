"""RunCheckpoint's state key: ModelCheckpoint's (checkpoints resume with either), kept between reads
and rebuilt when a setting it is made of changes."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint

from recsys_mtl.train.callbacks import RunCheckpoint


def test_state_key_is_model_checkpoints_and_follows_its_settings(tmp_path: Path) -> None:
    kwargs = {"dirpath": tmp_path, "filename": "best", "monitor": "val/loss", "mode": "min", "save_top_k": 1, "save_last": True}
    ours, theirs = RunCheckpoint(**kwargs), ModelCheckpoint(**kwargs)
    assert ours.state_key == theirs.state_key
    assert ours.state_key is ours.state_key  # kept, not rebuilt at every hook
    for name, value in (("monitor", "val/auc"), ("mode", "max"), ("_every_n_epochs", 2), ("_every_n_train_steps", 5)):
        setattr(ours, name, value)
        setattr(theirs, name, value)
        assert ours.state_key == theirs.state_key and name.strip("_").split("_")[0] in ours.state_key
