"""Losses against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cytoreview.errors import ConfigError
from cytoreview.training.losses import (
    SegmentationLoss,
    class_weights_from_masks,
    focal_loss,
    soft_dice_loss,
    soft_jaccard_loss,
)


def _onehot(target: torch.Tensor, c: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(target, c).permute(0, 3, 1, 2).float()


def test_dice_and_jaccard_perfect_and_disjoint() -> None:
    target = torch.tensor([[[0, 1], [2, 2]]])
    onehot = _onehot(target)
    w = torch.ones(3)
    assert soft_dice_loss(onehot, onehot, w).item() == pytest.approx(0.0, abs=1e-5)
    assert soft_jaccard_loss(onehot, onehot, w).item() == pytest.approx(0.0, abs=1e-5)
    wrong = _onehot(torch.tensor([[[1, 2], [0, 0]]]))
    assert soft_dice_loss(wrong, onehot, w).item() == pytest.approx(1.0, abs=1e-5)


def test_dice_hand_value_and_weights() -> None:
    # Two pixels are uncertain: the class-1 pixel (0, 0.5, 0.5) and a class-0 pixel (0.5, 0.5, 0).
    target = torch.tensor([[[1, 0], [2, 2]]])
    onehot = _onehot(target)
    probs = onehot.clone()
    probs[0, :, 0, 0] = torch.tensor([0.0, 0.5, 0.5])  # true class 1 pixel
    probs[0, :, 0, 1] = torch.tensor([0.5, 0.5, 0.0])  # true class 0 pixel
    # Dice_0 = 2*0.5/(0.5+1) = 2/3 ; Dice_1 = 2*0.5/(1+1) = 0.5 ; Dice_2 = 2*2/(2.5+2) = 0.8889
    expected = 1 - (2 / 3 + 0.5 + 4 / 4.5) / 3
    assert soft_dice_loss(probs, onehot, torch.ones(3)).item() == pytest.approx(expected, 1e-4)
    only_nucleus = torch.tensor([0.0, 0.0, 1.0])
    assert soft_dice_loss(probs, onehot, only_nucleus).item() == pytest.approx(1 - 4 / 4.5, 1e-4)


def test_focal_hand_value() -> None:
    logits = torch.tensor([[[[0.0]], [[math.log(3.0)]], [[0.0]]]])  # p = (0.2, 0.6, 0.2)
    target = torch.tensor([[[1]]])
    expected = -0.25 * (1 - 0.6) ** 2 * math.log(0.6)
    assert focal_loss(logits, target).item() == pytest.approx(expected, 1e-5)


def test_combined_loss_and_unknown_name() -> None:
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8))
    loss = SegmentationLoss("dice_focal")(logits, target)
    loss.backward()
    assert loss.item() > 0 and logits.grad is not None
    with pytest.raises(ConfigError, match="valid: dice_ce, dice_focal, jaccard, dice"):
        SegmentationLoss("hinge")


def test_dice_ce_is_the_weighted_dice_plus_the_plain_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    weights = [0.5, 1.0, 1.5]
    onehot = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float()
    dice = soft_dice_loss(logits.softmax(1), onehot, torch.tensor(weights))
    expected = dice + torch.nn.functional.cross_entropy(logits, target)
    assert float(SegmentationLoss("dice_ce", weights)(logits, target)) == pytest.approx(
        float(expected), rel=1e-5
    )
    # The default: a perfect prediction costs (almost) nothing, a confident wrong one a lot.
    assert SegmentationLoss().name == "dice_ce"
    perfect = onehot * 40.0
    assert float(SegmentationLoss()(perfect, target)) < 1e-3
    assert float(SegmentationLoss()(perfect.roll(1, dims=1), target)) > 10.0


def test_median_frequency_weights() -> None:
    mask = np.array([[0] * 6 + [1] * 3 + [2] * 1])  # freq 0.6, 0.3, 0.1; median 0.3
    w = class_weights_from_masks([mask])
    raw = np.array([0.5, 1.0, 3.0])
    assert np.allclose(w, raw / raw.mean())
    # Only background: the absent classes get 0, the present one the mean, 1.
    assert class_weights_from_masks([np.zeros((2, 2), np.uint8)]) == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("name", ["dice_ce", "dice_focal"])
def test_a_class_no_mask_contains_is_left_out_of_the_loss(name: str) -> None:
    import torch

    from cytoreview.training.losses import SegmentationLoss, classes_present

    masks = [np.array([[0, 2], [2, 0]], np.uint8)]  # nucleus-only painting
    present = classes_present(masks)
    assert present == [True, False, True]
    weights = class_weights_from_masks(masks)
    assert weights[1] == 0.0 and np.mean([weights[0], weights[2]]) == pytest.approx(1.0)
    loss = SegmentationLoss(name, weights, present=present)
    target = torch.from_numpy(masks[0].astype(np.int64))[None]
    logits = torch.randn(1, 3, 2, 2)
    louder = logits.clone()
    louder[:, 1] += 50.0  # whatever the model says about cytoplasm...
    assert float(loss(logits, target)) == pytest.approx(float(loss(louder, target)), abs=1e-5)
    everything = SegmentationLoss(name, [1.0, 1.0, 1.0])
    assert float(everything(louder, target)) > float(everything(logits, target)) + 1.0
