"""Semi-supervised training: the teacher, the pseudo-label loss, and a run that uses both."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cytoreview.data.datasets import UnlabelledViews
from cytoreview.errors import ConfigError
from cytoreview.models.segmenters import build_segmenter
from cytoreview.training.segmentation import SegTrainConfig, train_segmenter
from cytoreview.training.semi import SemiConfig, ema_update, make_teacher, pseudo_label_loss
from tests.conftest import cell_image, run_job


def test_the_weight_ramps_up_and_never_exceeds_the_masks() -> None:
    semi = SemiConfig(weight=0.5, rampup_epochs=4)
    assert [semi.weight_at(e) for e in (1, 3, 5, 50)] == [0.0, 0.25, 0.5, 0.5]
    with pytest.raises(ConfigError):
        SemiConfig(weight=1.5)


def test_only_confident_pixels_teach_and_absent_classes_stay_out() -> None:
    teacher = torch.zeros(1, 3, 1, 2)
    teacher[0, 2, 0, 0] = 10.0  # sure: nucleus
    teacher[0, :, 0, 1] = torch.tensor([0.1, 0.0, 0.0])  # unsure
    student = torch.zeros(1, 3, 1, 2, requires_grad=True)
    loss, share = pseudo_label_loss(student, teacher, 0.9)
    assert share == 0.5
    assert float(loss.detach()) == pytest.approx(np.log(3) / 2, rel=1e-4)  # one pixel of two counts
    loss.backward()
    assert student.grad[0, :, 0, 1].abs().sum() == 0  # the unsure pixel teaches nothing
    absent = torch.tensor([False, False, True])  # nucleus never painted: no nucleus labels
    masked, masked_share = pseudo_label_loss(student.detach(), teacher, 0.4, absent)
    assert masked_share == 1.0 and float(masked) == pytest.approx(np.log(2), rel=1e-4)


def test_the_teacher_follows_the_student_slowly() -> None:
    student = torch.nn.Linear(2, 2)
    teacher = make_teacher(student)
    assert not any(p.requires_grad for p in teacher.parameters())
    before = teacher.weight.detach().clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    ema_update(teacher, student, 0.9)
    assert torch.allclose(teacher.weight, before + 0.1)


def test_batch_norm_statistics_are_copied_or_averaged() -> None:
    student, teacher = torch.nn.BatchNorm2d(2), torch.nn.BatchNorm2d(2)
    student.running_mean.fill_(1.0)
    student.num_batches_tracked.fill_(7)
    ema_update(teacher, student, 0.75)
    assert torch.allclose(teacher.running_mean, torch.ones(2))  # copied (mean teacher)
    teacher.running_mean.zero_()
    ema_update(teacher, student, 0.75, average_buffers=True)
    assert torch.allclose(teacher.running_mean, torch.full((2,), 0.25))  # averaged
    assert int(teacher.num_batches_tracked) == 7  # counters are copied


def test_views_share_their_geometry_and_differ_in_colour() -> None:
    images = [cell_image(40, 48, seed=s)[0] for s in range(3)]
    views = UnlabelledViews(images, 64, seed=2)
    weak, strong = views[(1, 0)]
    assert weak.shape == strong.shape == (3, 64, 64)
    assert not torch.equal(weak, strong)
    again = views[(1, 0)]
    assert torch.equal(again[0], weak) and torch.equal(again[1], strong)  # reproducible
    # Same geometry: the cell (darker than the background) sits at the same pixels.
    dark_weak = weak.mean(0) < weak.mean()
    dark_strong = strong.mean(0) < strong.mean()
    assert (dark_weak == dark_strong).float().mean() > 0.85


def test_a_semi_supervised_run_trains_and_reports_the_pseudo_label_share() -> None:
    pairs = [cell_image(40, 48, seed=s) for s in range(6)]
    unlabelled = [cell_image(44, 44, seed=100 + s)[0] for s in range(5)]
    config = SegTrainConfig(input_size=64, epochs=3, batch_size=4, lr=1e-3, patience=5,
                            semi=SemiConfig(rampup_epochs=1, threshold=0.5))  # fmt: skip
    model = build_segmenter({"arch": "unet", "encoder": "resnet18"})
    events, result = run_job(
        train_segmenter(
            model,
            ([p[0] for p in pairs[:4]], [p[1] for p in pairs[:4]]),
            ([p[0] for p in pairs[4:]], [p[1] for p in pairs[4:]]),
            config,
            unlabelled=unlabelled,
        )
    )
    assert len(result.history) == 3
    shares = [e.metrics["pseudo_label_share"] for e in events if e.stage == "train" and e.metrics]
    assert shares and all(0.0 <= s <= 1.0 for s in shares)
    assert config.to_dict()["semi"]["threshold"] == 0.5
