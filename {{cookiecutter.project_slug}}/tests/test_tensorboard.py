"""TensorBoard shows what the README says: one chart per metric with a train and a val curve (the same tag
in the run's train/ and val/ event folders), the learning rate, and the run's config and settings."""

from pathlib import Path

import pytest

import train
from tests.hostile import EXTRA, Killed, atomic_renames, only_run, run_train, small_config, write_config
from utils.checkpoint import load_checkpoint, save_checkpoint

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def events(folder: Path) -> event_accumulator.EventAccumulator:
    accumulator = event_accumulator.EventAccumulator(str(folder))
    accumulator.Reload()
    return accumulator


def steps(accumulator: event_accumulator.EventAccumulator, tag: str) -> list[int]:
    return [event.step for event in accumulator.Scalars(tag)]


def train_with_tensorboard(folder: Path, epochs: int = 3) -> tuple[Path, Path]:
    config = small_config(folder / "saved", epochs=epochs, loggers=["csv", "tensorboard"])
    config["optimizer"]["args"]["lr"] = 0.01
    config_path = write_config(folder / "config.json", config)
    assert train.main(["-c", str(config_path)], modules=EXTRA) == 0
    return only_run(folder / "saved"), config_path


def test_each_metric_has_one_tag_with_a_train_and_a_val_curve(tmp_path: Path) -> None:
    run_dir, _ = train_with_tensorboard(tmp_path)
    trained, validated = events(run_dir / "train"), events(run_dir / "val")
    assert set(trained.Tags()["scalars"]) == {"loss", "accuracy", "lr"}
    assert set(validated.Tags()["scalars"]) == {"loss", "accuracy"}, "the same tags: one chart each"
    assert steps(trained, "loss") == steps(validated, "loss") == [1, 2, 3], "x-axis: the epoch"
    assert [event.value for event in trained.Scalars("lr")] == pytest.approx([0.01] * 3)


def test_the_run_folder_holds_the_config_and_its_settings(tmp_path: Path) -> None:
    run_dir, _ = train_with_tensorboard(tmp_path, epochs=1)
    run = events(run_dir)
    assert "config/text_summary" in run.Tags()["tensors"], "the config, in the Text tab"
    [config_text] = run.Tensors("config/text_summary")
    assert b'"lr": 0.01' in config_text.tensor_proto.string_val[0]
    hparams = run.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in hparams, "the run's settings, in the HParams tab"
    from tensorboard.plugins.hparams import plugin_data_pb2

    session = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
    settings = session.session_start_info.hparams
    assert settings["optimizer.args.lr"].number_value == 0.01
    assert settings["optimizer.type"].string_value == "Adam"
    assert settings["lr_scheduler"].string_value == "null"


def test_epochs_replayed_after_a_kill_are_not_drawn_twice(tmp_path: Path) -> None:
    """Killed between epoch 2's events and its last.pth, the resumed run replays epoch 2: the events it
    wrote before the kill are purged, so each curve has one point per epoch."""
    config = small_config(tmp_path / "saved", epochs=3, loggers=["csv", "tensorboard"])
    config_path = write_config(tmp_path / "config.json", config)
    with atomic_renames() as renames:
        assert train.main(["-c", str(config_path)], modules=EXTRA) == 0
    kill_at = [index for index, path in enumerate(renames, start=1) if path.name == "last.pth"][1]
    folder = tmp_path / "killed"
    killed_config = write_config(
        folder / "config.json", small_config(folder / "saved", epochs=3, loggers=["csv", "tensorboard"])
    )
    with pytest.raises(Killed), atomic_renames(kill_at=kill_at):
        train.main(["-c", str(killed_config)], modules=EXTRA)
    run_dir = only_run(folder / "saved")
    assert steps(events(run_dir / "val"), "loss") == [1, 2], "epoch 2 was written before the kill"
    assert train.main(["-r", str(run_dir)], modules=EXTRA) == 0
    for part in ("train", "val"):
        assert steps(events(run_dir / part), "loss") == [1, 2, 3], part


# trainer.tensorboard, the switch before trainer.loggers, is read as "tensorboard" in trainer.loggers.
RETIRED_SWITCH = "trainer.tensorboard (an earlier version's switch) is read as trainer.loggers"


@pytest.mark.parametrize(("switched_on", "drawn"), [(True, True), (False, False)], ids=["true", "false"])
def test_a_config_with_the_retired_tensorboard_switch_still_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], switched_on: bool, drawn: bool
) -> None:
    config = small_config(tmp_path / "saved", epochs=2, loggers=["csv"], tensorboard=switched_on)
    result = run_train(capsys, "-c", write_config(tmp_path / "config.json", config), modules=EXTRA)
    assert result.code == 0, result.err
    loggers = '["csv", "tensorboard"]' if switched_on else '["csv"]'
    assert f"{RETIRED_SWITCH} {loggers}; write that instead" in result.err, "the user is told what to write"
    run_dir = only_run(tmp_path / "saved")
    assert (run_dir / "val").is_dir() is drawn
    if drawn:
        assert steps(events(run_dir / "val"), "loss") == [1, 2]


def test_a_run_recorded_with_the_retired_switch_resumes_drawing_its_curves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint written before trainer.loggers holds trainer.tensorboard: true in its config."""
    run_dir, _ = train_with_tensorboard(tmp_path, epochs=1)
    last = run_dir / "last.pth"
    state = load_checkpoint(last, resume=True)
    state["config"]["trainer"]["tensorboard"] = True
    state["config"]["trainer"]["loggers"] = ["csv"]
    save_checkpoint(state, last)
    result = run_train(capsys, "-r", run_dir, "--set", "trainer.epochs=2", modules=EXTRA)
    assert result.code == 0, result.err
    assert result.err.count(RETIRED_SWITCH) == 1, "read once, and not blamed on the user's file"
    assert "write that instead" not in result.err
    assert steps(events(run_dir / "val"), "loss") == [1, 2], "the resumed epoch is drawn"
