"""The training loop itself: deterministic, cancellable, time-bounded, keeps the best weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cytoreview.data.synthetic import synth_dataset
from cytoreview.data.transforms import NO_AUGMENT
from cytoreview.errors import ConfigError
from cytoreview.models.segmenters import build_unet
from cytoreview.training import segmentation
from cytoreview.training.segmentation import (
    SegTrainConfig,
    improves,
    train_segmenter,
    validation_criterion,
)
from cytoreview.training.semi import warmed_up_decay
from cytoreview.types import CancelToken


@pytest.fixture(scope="module")
def data():
    samples = [s for _, s in synth_dataset(12, seed=9, size_range=(40, 72))]
    images = [s.image for s in samples]
    masks = [s.mask for s in samples]
    return (images[:8], masks[:8]), (images[8:], masks[8:])


def _run(data, config, cancel=None, on_best=None):
    torch.manual_seed(config.seed)
    model = build_unet("resnet18")
    events = []
    job = train_segmenter(model, *data, config, cancel=cancel, on_best=on_best)
    try:
        while True:
            event = next(job)
            events.append(event)
            if cancel is not None and event.stage == "epoch" and event.step == 1:
                cancel.cancel()
    except StopIteration as stop:
        return model, events, stop.value


CONFIG = SegTrainConfig(input_size=64, epochs=2, batch_size=4, lr=1e-3, seed=4)


def test_same_seed_same_run(data) -> None:
    one_epoch = SegTrainConfig(input_size=64, epochs=1, batch_size=4, lr=1e-3, seed=4)
    _, _, a = _run(data, one_epoch)
    _, _, b = _run(data, one_epoch)
    assert [h.train_loss for h in a.history] == [h.train_loss for h in b.history]
    assert [h.val_loss for h in a.history] == [h.val_loss for h in b.history]
    for key in a.state_dict:
        assert torch.equal(a.state_dict[key], b.state_dict[key])


def test_events_and_best_checkpoints(data) -> None:
    saved = []
    model, events, result = _run(
        data, CONFIG, on_best=lambda state, stats: saved.append(stats.epoch)
    )
    train_steps = [e for e in events if e.stage == "train" and e.step > 0]
    assert len(train_steps) == 4 and train_steps[-1].total == 4  # 2 epochs x 2 batches
    assert [e.step for e in events if e.stage == "epoch"] == [1, 2]
    assert saved and saved[-1] == result.best.epoch and result.stop_reason == "max_epochs"
    # The model ends with the best weights, on the CPU, in eval mode.
    for key, value in model.state_dict().items():
        assert torch.equal(value, result.state_dict[key])
    assert not model.training


def test_cancel_restores_best_weights(data) -> None:
    token = CancelToken()
    config = SegTrainConfig(input_size=64, epochs=10, batch_size=4, seed=4, augment=NO_AUGMENT)
    model, _events, result = _run(data, config, cancel=token)
    assert result.stop_reason == "cancelled" and len(result.history) == 1
    assert result.best is not None and result.best.epoch == 1
    for key, value in model.state_dict().items():
        assert torch.equal(value, result.state_dict[key])


def test_time_budget_and_early_stopping(data) -> None:
    _, _, budget = _run(data, SegTrainConfig(input_size=64, epochs=5, time_budget_s=0.0))
    assert budget.stop_reason == "time_budget" and budget.history == [] and budget.best is None
    # With a learning rate of zero only batch-norm statistics move: improvements soon stop.
    _, _, early = _run(data, SegTrainConfig(input_size=64, epochs=30, lr=0.0, patience=1,
                                            augment=NO_AUGMENT, batch_size=4))  # fmt: skip
    assert early.stop_reason == "early_stopping" and len(early.history) < 30
    # Stopped exactly `patience` epochs after the best one, and the best weights were kept.
    assert early.history[-1].epoch - early.best.epoch == 1
    assert all(np.isfinite(h.val_loss) for h in early.history)


def test_learning_rate_drops_on_plateaus_and_stays_above_its_floor(data) -> None:
    # min_delta this large: only the first epoch counts as an improvement, every later one is
    # stale, so the rate is halved after every 2 stale epochs, down to the floor.
    config = SegTrainConfig(
        input_size=64, epochs=7, batch_size=4, lr=1e-3, seed=4, min_delta=1e9, patience=100,
        lr_patience=2, lr_factor=0.5, min_lr=3e-4,
    )  # fmt: skip
    _, events, result = _run(data, config)
    rates = [e.metrics["lr"] for e in events if e.stage == "epoch"]
    assert rates == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 3e-4, 3e-4])  # used in each
    assert result.stop_reason == "max_epochs"


def test_constant_learning_rate_without_a_schedule(data) -> None:
    config = SegTrainConfig(
        input_size=64, epochs=3, batch_size=4, lr=1e-3, seed=4, min_delta=1e9, lr_patience=0
    )
    _, events, _ = _run(data, config)
    assert [e.metrics["lr"] for e in events if e.stage == "epoch"] == [1e-3] * 3


def test_the_moving_average_of_the_weights_is_what_is_validated_and_kept(
    data, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the average never updated it stays at the initial weights: if those are what
    # comes back, the average (not the trained weights) was validated and kept.
    monkeypatch.setattr(segmentation, "ema_update", lambda *args, **kwargs: None)
    torch.manual_seed(4)
    initial = {k: v.clone() for k, v in build_unet("resnet18").named_parameters()}
    config = SegTrainConfig(input_size=64, epochs=1, batch_size=4, lr=1e-3, seed=4)
    _, _, plain = _run(data, SegTrainConfig(**{**config.__dict__, "ema_decay": 0.0}))
    _, _, kept = _run(data, SegTrainConfig(**{**config.__dict__, "ema_decay": 0.99}))
    moved = [k for k in initial if not torch.allclose(plain.state_dict[k], initial[k])]
    assert moved  # training changed the weights ...
    for key in moved:  # ... and the (frozen) average is what came back
        assert torch.equal(kept.state_dict[key], initial[key]), key


def test_the_average_follows_the_weights_early_on() -> None:
    assert warmed_up_decay(0.99, 0) == pytest.approx(0.1)
    assert warmed_up_decay(0.99, 100) == pytest.approx(101 / 110)
    assert warmed_up_decay(0.99, 10_000) == 0.99


def test_validation_never_predicts_a_class_that_no_mask_contains() -> None:
    # Nucleus-only masks: the cytoplasm logit is never trained and may be the largest; the
    # validation scores must read the model as inference does (without that class).
    from cytoreview.training.losses import SegmentationLoss
    from cytoreview.training.segmentation import _validate

    truth = torch.zeros(1, 8, 8, dtype=torch.long)
    truth[:, 2:5, 2:5] = 2
    logits = torch.zeros(1, 3, 8, 8)
    logits[:, 1] = 5.0  # untrained cytoplasm logit, above the others everywhere
    logits[:, 2] = (truth[0] == 2).float() * 2 - 1  # nucleus where the truth has it
    loss_fn = SegmentationLoss("dice_focal", [1.0, 0.0, 1.0], present=[True, False, True])
    model = torch.nn.Module()
    model.forward = lambda x: logits  # type: ignore[method-assign]
    batches = [(torch.zeros(1, 3, 8, 8), truth)]
    _, scores = _validate(model, loss_fn, batches, torch.device("cpu"), amp=False)
    assert scores["iou_nucleus"] == pytest.approx(1.0)


def test_per_image_iou_counts_each_validation_image_once() -> None:
    # A large cell segmented perfectly and a small one half missed: pooled over pixels the
    # large one hides the miss; averaged over images each cell counts once.
    from cytoreview.training.losses import SegmentationLoss
    from cytoreview.training.segmentation import _validate

    truth = torch.zeros(2, 16, 16, dtype=torch.long)
    truth[0, 1:15, 1:15] = 1  # large cytoplasm, 196 px
    truth[1, 6:10, 6:10] = 1  # small cytoplasm, 16 px
    pred = truth.clone()
    pred[1, 6:8, 6:10] = 0  # half of the small one missed
    logits = torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).float() * 10
    loss_fn = SegmentationLoss("dice_focal", [1.0, 1.0, 1.0], present=[True, True, True])
    model = torch.nn.Module()
    model.forward = lambda x: logits  # type: ignore[method-assign]
    batches = [(torch.zeros(2, 3, 16, 16), truth)]
    _, scores = _validate(model, loss_fn, batches, torch.device("cpu"), amp=False)
    assert scores["iou_cytoplasm"] == pytest.approx(204 / 212)
    assert scores["image_iou_cytoplasm"] == pytest.approx((1.0 + 0.5) / 2)
    # No image has a nucleus in its mask or its prediction: undefined, left to the loss.
    assert math.isnan(scores["image_iou_nucleus"])


def test_the_criterion_is_the_loss_or_minus_the_mean_iou_of_the_painted_classes() -> None:
    scores = {"iou_cytoplasm": 0.5, "iou_nucleus": 0.9}
    both, nuclei = [True, True, True], [True, False, True]
    assert validation_criterion("loss", 0.3, scores, both) == (0.3, 0.0)
    assert validation_criterion("iou", 0.3, scores, both) == pytest.approx((-0.7, 0.3))
    # A nucleus-only project is judged on nuclei alone (its cytoplasm IoU means nothing).
    assert validation_criterion("iou", 0.3, scores, nuclei) == pytest.approx((-0.9, 0.3))
    # No validation image (IoU undefined): the loss, as the loss monitor would.
    undefined = {"iou_cytoplasm": float("nan"), "iou_nucleus": float("nan")}
    assert validation_criterion("iou", 0.0, undefined, both) == (0.0, 0.0)
    half = {"iou_cytoplasm": float("nan"), "iou_nucleus": 0.8}  # no cytoplasm to validate on
    assert validation_criterion("iou", 0.3, half, both) == pytest.approx((-0.8, 0.3))
    per_image = {**scores, "image_iou_cytoplasm": 0.7, "image_iou_nucleus": 0.5}
    assert validation_criterion("image_iou", 0.3, per_image, both) == pytest.approx((-0.6, 0.3))
    assert validation_criterion("image_iou", 0.3, per_image, nuclei) == pytest.approx((-0.5, 0.3))
    with pytest.raises(ConfigError, match="monitor must be one of image_iou, iou, loss"):
        SegTrainConfig(monitor="dice")


def test_the_second_number_breaks_ties_only() -> None:
    assert improves((-0.5, 9.0), (-0.4, 1.0), 1e-4)  # better IoU, whatever the loss
    assert not improves((-0.4, 0.1), (-0.5, 1.0), 1e-4)  # worse IoU, whatever the loss
    assert improves((0.0, 0.8), (0.0, 1.0), 1e-4)  # IoU level (0 early on): the loss decides
    assert not improves((0.0, 1.0), (0.0, 1.0), 1e-4)


#: Scripted validations: (loss, cytoplasm IoU, nucleus IoU) per epoch. The loss is best at
#: epoch 2, the IoU at epoch 3: the two monitors must keep different epochs.
SCRIPT = [(1.0, 0.2, 0.2), (0.5, 0.1, 0.1), (0.8, 0.6, 0.6), (0.9, 0.3, 0.3), (0.9, 0.3, 0.3)]
#: An IoU stuck at 0 (a tiny run that predicts background only): the falling loss decides.
STUCK = [(1.0, 0.0, 0.0), (0.9, 0.0, 0.0), (0.7, 0.0, 0.0), (0.8, 0.0, 0.0), (0.9, 0.0, 0.0)]


@pytest.mark.parametrize(
    ("monitor", "script", "best", "stopped"),
    [
        ("iou", SCRIPT, 3, 5),
        ("image_iou", SCRIPT, 3, 5),
        ("loss", SCRIPT, 2, 4),
        ("iou", STUCK, 3, 5),
        ("image_iou", STUCK, 3, 5),
    ],
)
def test_early_stopping_and_the_kept_model_follow_the_monitor(
    data, monkeypatch, monitor, script, best, stopped
) -> None:
    script = iter(script)

    def scripted(*_args, **_kwargs):
        loss, cyto, nuc = next(script)
        return loss, {"iou_cytoplasm": cyto, "iou_nucleus": nuc, "dice_cytoplasm": cyto,
                      "dice_nucleus": nuc, "image_iou_cytoplasm": cyto,
                      "image_iou_nucleus": nuc}  # fmt: skip

    monkeypatch.setattr(segmentation, "_validate", scripted)
    config = SegTrainConfig(
        input_size=64, epochs=6, batch_size=4, seed=4, patience=2, monitor=monitor,
        augment=NO_AUGMENT,
    )  # fmt: skip
    _, _, result = _run(data, config)
    assert result.best.epoch == best
    assert result.stop_reason == "early_stopping" and len(result.history) == stopped
