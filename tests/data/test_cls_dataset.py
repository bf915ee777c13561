"""Classifier inputs: the 6-channel layout, reproducible augmentation, class balancing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from cytoreview.data.cls_dataset import (
    ClassificationDataset,
    balanced_order,
    make_input,
    make_inputs,
    one_hot_mask,
)
from cytoreview.data.synthetic import synth_dataset
from cytoreview.data.transforms import AugmentConfig, letterbox_image, letterbox_mask
from cytoreview.data.transforms import to_tensor_layout as normalise

SIZE = 48
AUG = AugmentConfig(rotation_deg=10, zoom=0.15, shift=0.20, shear=0.15)


@pytest.fixture(scope="module")
def cells():
    samples = [
        s for _, s in synth_dataset(6, seed=5, classes=("NILM", "HSIL"), size_range=(30, 70))
    ]
    # non-square crops too: letterboxing must pad them
    samples[0] = type(samples[0])(
        samples[0].image[:, :20].copy(), samples[0].mask[:, :20].copy(), "NILM", "cell", ()
    )
    return samples


def test_make_input_layout(cells) -> None:
    s = cells[0]
    x = make_input(s.image, s.mask, SIZE)
    assert x.shape == (6, SIZE, SIZE) and x.dtype == np.float32
    boxed, box = letterbox_image(s.image, SIZE)
    np.testing.assert_array_equal(x[:3], normalise(boxed))
    labels = letterbox_mask(s.mask, box)
    np.testing.assert_array_equal(x[3:].sum(axis=0), 1.0)  # one-hot: exactly one channel is 1
    np.testing.assert_array_equal(x[3:].argmax(axis=0), labels)
    assert set(np.unique(x[3:])) == {0.0, 1.0}
    # the letterbox pads the 20 px wide crop with background on both sides
    assert x[3, :, 0].all() and x[3, :, -1].all() and x[5].sum() == (labels == 2).sum() > 0


def test_make_inputs_is_the_stacked_single_version(cells) -> None:
    batch = make_inputs([c.image for c in cells], [c.mask for c in cells], SIZE)
    assert batch.shape == (len(cells), 6, SIZE, SIZE)
    for i, c in enumerate(cells):
        np.testing.assert_array_equal(batch[i], make_input(c.image, c.mask, SIZE))
    no_masks = make_inputs([c.image for c in cells], None, SIZE)
    np.testing.assert_array_equal(no_masks[:, :3], batch[:, :3])
    assert no_masks[:, 3].min() == 1 and no_masks[:, 4:].max() == 0  # all background


def test_bad_inputs_are_refused(cells) -> None:
    s = cells[1]
    with pytest.raises(ValueError, match="0, 1 or 2"):
        one_hot_mask(np.full((4, 4), 3, np.uint8))
    with pytest.raises(ValueError, match="does not match"):
        make_input(s.image, s.mask[1:], SIZE)
    with pytest.raises(ValueError, match="uint8"):
        make_input(s.image.astype(np.float32), s.mask, SIZE)
    with pytest.raises(ValueError, match="labels"):
        ClassificationDataset([s.image], [s.mask], [0, 1], SIZE)


def test_dataset_without_augmentation_equals_inference_layout(cells) -> None:
    ds = ClassificationDataset(
        [c.image for c in cells], [c.mask for c in cells], [0, 1, 0, 1, 0, 1], SIZE
    )
    assert len(ds) == len(cells)
    for i, c in enumerate(cells):
        x, y = ds[i]
        assert x.dtype == torch.float32 and x.shape == (6, SIZE, SIZE)
        assert y.dtype == torch.int64 and y.ndim == 0 and int(y) == i % 2
        np.testing.assert_array_equal(x.numpy(), make_input(c.image, c.mask, SIZE))


def test_augmentation_is_reproducible_per_seed_and_epoch(cells) -> None:
    args = ([c.image for c in cells], [c.mask for c in cells], [0, 1] * 3, SIZE, AUG)

    def sample(seed: int, epoch: int, index: int = 2) -> np.ndarray:
        ds = ClassificationDataset(*args, seed=seed)
        ds.set_epoch(epoch)
        return ds[index][0].numpy()

    a = sample(1, 3)
    np.testing.assert_array_equal(a, sample(1, 3))
    assert not np.array_equal(a, sample(1, 4))
    assert not np.array_equal(a, sample(2, 3))
    assert not np.array_equal(a, make_input(cells[2].image, cells[2].mask, SIZE))
    # the geometry is shared: the mask channels stay one-hot after the warp
    np.testing.assert_array_equal(a[3:].sum(axis=0), 1.0)
    # and image and mask move together: the nucleus is the darkest region of the image
    nucleus = a[5] == 1
    assert a[:3].mean(axis=0)[nucleus].mean() < a[:3].mean(axis=0)[~nucleus].mean() - 0.5


def test_balanced_order_equalises_classes() -> None:
    labels = [0] * 10 + [1] * 3 + [2] * 1
    order = balanced_order(labels, np.random.default_rng(0))
    counts = Counter(labels[i] for i in order)
    assert counts == {0: 10, 1: 10, 2: 10}
    assert set(order) == set(range(len(labels)))  # nobody dropped
    assert Counter(order)[13] == 10  # the single minority sample is repeated
    per_member = Counter(i for i in order if labels[i] == 1)
    assert sorted(per_member.values()) == [3, 3, 4]  # copies spread evenly over members
    assert order == balanced_order(labels, np.random.default_rng(0))
    assert order != balanced_order(labels, np.random.default_rng(1))
    assert balanced_order([], np.random.default_rng(0)) == []


def test_balanced_order_of_a_given_length_gives_each_class_an_equal_share() -> None:
    labels = [0] * 10 + [1] * 3 + [2] * 1
    order = balanced_order(labels, np.random.default_rng(0), length=len(labels))
    assert len(order) == 14
    counts = Counter(labels[i] for i in order)
    assert sorted(counts.values()) == [4, 5, 5] and sum(counts.values()) == 14
    assert len({i for i in order if labels[i] == 0}) == counts[0]  # a subset, no repeats
    assert Counter(i for i in order if labels[i] == 1).most_common(1)[0][1] == 2  # 5 of 3
    other = balanced_order(labels, np.random.default_rng(1), length=len(labels))
    assert {i for i in order if labels[i] == 0} != {i for i in other if labels[i] == 0}


def test_oversampled_dataset_gives_equal_counts_and_distinct_copies(cells) -> None:
    images = [c.image for c in cells[:4]]
    masks = [c.mask for c in cells[:4]]
    labels = [0, 0, 0, 1]
    ds = ClassificationDataset(images, masks, labels, SIZE, AUG, seed=3, balance="majority")
    ds.set_epoch(1)
    assert len(ds) == 6
    assert Counter(ds.label_at(i) for i in range(len(ds))) == {0: 3, 1: 3}
    assert Counter(int(ds[i][1]) for i in range(len(ds))) == {0: 3, 1: 3}
    copies = [i for i in range(len(ds)) if ds.order[i] == 3]
    assert len(copies) == 3
    x = [ds[i][0].numpy() for i in copies]
    assert not np.array_equal(x[0], x[1]) and not np.array_equal(x[1], x[2])
    first = list(ds.order)
    ds.set_epoch(2)
    assert ds.order != first  # a new draw each epoch
    ds.set_epoch(1)
    assert ds.order == first  # reproducible
    plain = ClassificationDataset(images, masks, labels, SIZE, AUG, seed=3)
    assert len(plain) == 4 and plain.order == [0, 1, 2, 3]
