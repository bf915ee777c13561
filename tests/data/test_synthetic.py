"""Tests of the synthetic Pap-cell generator: exact masks, determinism, class statistics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cytoreview.data.synthetic import (
    SUPPORTED_CLASSES,
    CellRecord,
    SyntheticSample,
    resolve_class,
    synth_cell,
    synth_dataset,
    synth_field,
)
from cytoreview.errors import UnknownClassError
from cytoreview.types import BACKGROUND, CYTOPLASM, NUCLEUS

BETHESDA = ("NILM", "ASC-US", "LSIL", "HSIL")


def nucleus_touches_background(mask: np.ndarray) -> bool:
    """True if a nucleus pixel has a background pixel among its 8 neighbours.

    The image border counts as cytoplasm: a nucleus may touch the border of a crop.
    """
    padded = np.pad(mask, 1, constant_values=CYTOPLASM)
    h, w = mask.shape
    nucleus = mask == NUCLEUS
    for dy, dx in itertools.product((-1, 0, 1), repeat=2):
        neighbour = padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        if np.any(nucleus & (neighbour == BACKGROUND)):
            return True
    return False


def nucleus_darkness(sample: SyntheticSample) -> float:
    """Mean grey level of the nucleus pixels (lower is darker)."""
    return float(sample.image.mean(axis=2)[sample.mask == NUCLEUS].mean())


def nc_ratio(sample: SyntheticSample) -> float:
    cell = sample.cells[0]
    return cell.nucleus_area / cell.cytoplasm_area


# --- Shapes, types, invariants ----------------------------------------------------------------
@pytest.mark.parametrize("size", [(31, 47), (30, 30), (800, 600), (47, 31), 64, (256, 96)])
@pytest.mark.parametrize("label", ["NILM", "HSIL", "SCC"])
def test_cell_shapes_dtypes_and_values(size: int | tuple[int, int], label: str) -> None:
    sample = synth_cell(label, 3, size)
    h, w = (size, size) if isinstance(size, int) else size
    assert sample.image.shape == (h, w, 3) and sample.image.dtype == np.uint8
    assert sample.mask.shape == (h, w) and sample.mask.dtype == np.uint8
    assert set(np.unique(sample.mask)) == {BACKGROUND, CYTOPLASM, NUCLEUS}
    assert sample.kind == "cell" and sample.label == label and len(sample.cells) == 1
    assert sample.image.std() > 5  # not a blank image


def test_random_size_is_square_within_default_range() -> None:
    sides = [synth_cell("LSIL", seed).image.shape[:2] for seed in range(8)]
    assert all(h == w and 64 <= h <= 192 for h, w in sides)
    assert len(set(sides)) > 1


def test_too_small_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="16"):
        synth_cell("NILM", 0, (10, 40))


def test_invariant_checker_detects_a_bare_nucleus() -> None:
    mask = np.ones((8, 8), np.uint8)
    mask[3:5, 3:5] = NUCLEUS
    assert not nucleus_touches_background(mask)
    mask[2, 2] = BACKGROUND  # diagonal contact counts
    assert nucleus_touches_background(mask)
    edge = np.zeros((6, 6), np.uint8)
    edge[0:3, 0:3], edge[0:2, 0:2] = CYTOPLASM, NUCLEUS  # nucleus at the border is fine
    assert not nucleus_touches_background(edge)


@pytest.mark.parametrize("label", SUPPORTED_CLASSES)
def test_nucleus_inside_cytoplasm_in_cells(label: str) -> None:
    for seed in range(6):
        size = [(30, 30), (31, 47), 96, (160, 120), None, 200][seed]
        sample = synth_cell(label, seed, size)
        assert not nucleus_touches_background(sample.mask), (label, seed)


def test_nucleus_inside_cytoplasm_in_fields() -> None:
    for seed in range(3):
        sample = synth_field(["NILM", "HSIL", "LSIL", "NILM", "SCC", "ASC-H"], seed)
        assert not nucleus_touches_background(sample.mask)


def test_cell_record_matches_mask() -> None:
    for seed, label in enumerate(SUPPORTED_CLASSES):
        sample = synth_cell(label, seed, 120)
        (cell,) = sample.cells
        assert isinstance(cell, CellRecord) and cell.label == label
        assert cell.nucleus_area == int((sample.mask == NUCLEUS).sum()) > 0
        assert cell.cytoplasm_area == int((sample.mask == CYTOPLASM).sum()) > 0
        row, col = cell.center
        assert 0 <= row < 120 and 0 <= col < 120
        assert sample.mask[int(row), int(col)] != BACKGROUND  # the centre lies in the cell


def test_field_records_partition_the_mask() -> None:
    labels = ["NILM", "NILM", "ASC-US", "HSIL", "NILM"]
    sample = synth_field(labels, 11, (384, 320))
    assert sample.image.shape == (384, 320, 3) and sample.mask.shape == (384, 320)
    assert [c.label for c in sample.cells] == labels
    assert sum(c.nucleus_area for c in sample.cells) == int((sample.mask == NUCLEUS).sum())
    assert sum(c.cytoplasm_area for c in sample.cells) == int((sample.mask == CYTOPLASM).sum())


# --- Determinism -------------------------------------------------------------------------------
@pytest.mark.parametrize("label", SUPPORTED_CLASSES)
def test_same_seed_gives_identical_cells(label: str) -> None:
    a, b = synth_cell(label, 42, 100), synth_cell(label, 42, 100)
    assert a.image.tobytes() == b.image.tobytes() and a.mask.tobytes() == b.mask.tobytes()
    assert a.cells == b.cells
    c = synth_cell(label, 43, 100)
    assert c.image.tobytes() != a.image.tobytes()


def test_same_seed_gives_identical_fields_and_generators_work() -> None:
    a = synth_field(["NILM", "LSIL", "NILM"], 5)
    b = synth_field(["NILM", "LSIL", "NILM"], np.random.default_rng(5))
    assert a.image.tobytes() == b.image.tobytes() and a.mask.tobytes() == b.mask.tobytes()
    assert synth_field(["NILM", "LSIL", "NILM"], 6).mask.tobytes() != a.mask.tobytes()


def test_class_names_are_matched_loosely() -> None:
    assert resolve_class("asc_us") == "ASC-US" and resolve_class(" hsil ") == "HSIL"
    a, b = synth_cell("asc_us", 9, 64), synth_cell("ASC-US", 9, 64)
    assert a.label == "ASC-US" and a.image.tobytes() == b.image.tobytes()


# --- Class statistics ------------------------------------------------------------------------
def test_class_means_are_ordered_with_clear_margins() -> None:
    nc, dark = {}, {}
    for label in BETHESDA:
        samples = [synth_cell(label, 1000 + k, 72) for k in range(40)]
        nc[label] = np.mean([nc_ratio(s) for s in samples])
        dark[label] = np.mean([nucleus_darkness(s) for s in samples])
    # Measured (40 cells of 72 px, three seed ranges): N:C 0.033 / 0.08 / 0.16 / 0.63,
    # nucleus grey 117 / 107 / 97 / 80. The margins below leave room for seed noise.
    assert nc["NILM"] * 1.8 < nc["ASC-US"]
    assert nc["ASC-US"] * 1.5 < nc["LSIL"]
    assert nc["LSIL"] * 3 < nc["HSIL"]
    assert nc["HSIL"] > 10 * nc["NILM"]
    assert dark["HSIL"] < dark["NILM"] - 25
    assert dark["HSIL"] < dark["LSIL"] < dark["ASC-US"] < dark["NILM"]


def test_classes_overlap_a_little() -> None:
    nilm = [nc_ratio(synth_cell("NILM", k, 64)) for k in range(60)]
    ascus = [nc_ratio(synth_cell("ASC-US", k, 64)) for k in range(60)]
    assert max(nilm) > min(ascus)  # normal parabasal cells look like ASC-US by N:C alone


# --- Fields ------------------------------------------------------------------------------------
def test_fields_hold_several_cells_some_overlapping() -> None:
    hidden = 0
    for seed in range(4):
        sample = synth_field(["NILM", "NILM", "LSIL", "NILM", "HSIL", "NILM"], seed)
        assert sample.kind == "field" and sample.label == "HSIL"
        visible = [c for c in sample.cells if c.nucleus_area > 0 and c.cytoplasm_area > 0]
        assert len(visible) > 1
        hidden += sum(c.hidden_area for c in sample.cells)
    assert hidden > 0


def test_field_label_is_most_severe_class() -> None:
    assert synth_field(["LSIL", "NILM", "ASC-H"], 0, (200, 200)).label == "ASC-H"
    assert synth_field(["NILM", "NILM"], 0, (200, 200)).label == "NILM"
    with pytest.raises(ValueError):
        synth_field([], 0)


# --- Datasets ----------------------------------------------------------------------------------
def test_dataset_is_balanced_named_and_prefix_stable() -> None:
    items = list(synth_dataset(12, seed=3, size_range=(40, 64)))
    names = [name for name, _ in items]
    assert len(set(names)) == 12 and names == sorted(names)
    assert names[:4] == ["syn_0001_nilm", "syn_0002_asc_us", "syn_0003_lsil", "syn_0004_hsil"]
    labels = [s.label for _, s in items]
    assert {lab: labels.count(lab) for lab in BETHESDA} == dict.fromkeys(BETHESDA, 3)
    assert all(s.kind == "cell" and 40 <= s.image.shape[0] <= 64 for _, s in items)
    short = list(synth_dataset(5, seed=3, size_range=(40, 64)))
    for (n1, s1), (n2, s2) in zip(short, items[:5], strict=True):
        assert n1 == n2 and s1.image.tobytes() == s2.image.tobytes()
    other = next(iter(synth_dataset(1, seed=4, size_range=(40, 64))))[1]
    assert other.image.tobytes() != items[0][1].image.tobytes()


def test_dataset_fields_carry_their_class() -> None:
    items = list(synth_dataset(4, seed=1, classes=("nilm", "hsil"), field_fraction=1.0))
    assert [s.label for _, s in items] == ["NILM", "HSIL", "NILM", "HSIL"]
    assert all(s.kind == "field" and len(s.cells) > 1 for _, s in items)


# --- Errors ------------------------------------------------------------------------------------
def test_unknown_class_raises_with_valid_names() -> None:
    with pytest.raises(UnknownClassError, match=r"NILM.*HSIL"):
        synth_cell("CIN9", 0)
    with pytest.raises(UnknownClassError):
        synth_field(["NILM", "melanoma"], 0)
    with pytest.raises(UnknownClassError):
        synth_dataset(3, classes=("NILM", "nope"))  # raised at call time, not lazily
