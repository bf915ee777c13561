"""Stains and per-class cell morphology of the synthetic Pap-cell generator.

Colours are optical densities (Beer-Lambert) of the Papanicolaou stains; each Bethesda class is
a mixture of cell types whose size, N:C ratio, nuclear darkness, contour irregularity and
chromatin grain are drawn within ranges, so neighbouring classes overlap a little.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

_WHITE = 240.0  # the stain colours below are what a stain looks like on this bright background


def _od(rgb: tuple[float, float, float]) -> np.ndarray:
    """Optical density per unit stain that turns white light into ``rgb``."""
    return np.log(_WHITE / np.asarray(rgb, np.float64)).astype(np.float32)


_STAINS: dict[str, np.ndarray] = {
    "cyan": _od((148, 184, 176)),  # intermediate cells, light green (EA)
    "blue": _od((170, 176, 212)),  # intermediate cells, grey-blue / lavender variant
    "grey": _od((168, 180, 172)),  # intermediate cells, faded grey-green
    "pink": _od((224, 170, 190)),  # superficial cells, eosinophilic
    "orange": _od((234, 182, 122)),  # keratinised (Orange G)
    "dense": _od((128, 162, 182)),  # parabasal / metaplastic / dysplastic, thick cyanophilic
}
_NUC_OD = _od((124, 112, 170))  # haematoxylin on a pale normal nucleus
_DEBRIS_OD = _od((150, 140, 130))


class _Morph(NamedTuple):
    """Ranges of one cell type; each cell draws uniformly inside them (N:C log-uniformly)."""

    diam: tuple[float, float]  # um, diameter of the circle with the cytoplasm's area
    aspect: tuple[float, float]
    style: str  # "polygon" (squame), "round" (parabasal-like) or "spindle"
    stains: tuple[str, ...]
    density: tuple[float, float]
    nc: tuple[float, float]  # nucleus / cytoplasm area ratio
    nuc_aspect: tuple[float, float]
    irreg: tuple[float, float]  # nuclear contour irregularity
    dark: tuple[float, float]  # hyperchromasia: nuclear OD multiplier
    grain: tuple[float, float]  # chromatin granule size (um) and contrast
    halo: float = 0.0  # probability of a koilocytic perinuclear halo
    binucleate: float = 0.0


_THIN = ("cyan", "blue", "grey", "pink")
#: Cell types of each class with their probabilities. Low-grade cells are large squames with
#: small nuclei; high-grade cells are small, dense, with large dark irregular nuclei. Normal
#: parabasal cells (high N:C) make NILM overlap ASC-US a little, as in real smears.
_MORPHS: dict[str, tuple[tuple[float, _Morph], ...]] = {
    "NILM": (
        (0.53, _Morph((38, 58), (1, 1.5), "polygon", ("cyan", "blue", "grey"), (0.7, 1),
                      (0.015, 0.045), (1, 1.25), (0.02, 0.05), (0.75, 0.95), (0.3, 0.1))),
        (0.35, _Morph((38, 58), (1, 1.5), "polygon", ("pink", "orange"), (0.7, 1), (0.008, 0.02),
                      (1, 1.2), (0.02, 0.04), (0.95, 1.15), (0.3, 0.1))),
        (0.12, _Morph((18, 28), (1, 1.3), "round", ("dense",), (1, 1.2), (0.07, 0.18), (1, 1.2),
                      (0.02, 0.05), (0.9, 1.1), (0.35, 0.12))),
    ),
    "ASC-US": ((1, _Morph((34, 50), (1, 1.5), "polygon", _THIN, (0.75, 1.05), (0.045, 0.11),
                          (1, 1.35), (0.03, 0.07), (1, 1.2), (0.35, 0.15))),),
    "LSIL": ((1, _Morph((32, 50), (1, 1.5), "polygon", _THIN, (0.8, 1.1), (0.08, 0.25), (1, 1.4),
                        (0.05, 0.12), (1.15, 1.4), (0.45, 0.2), halo=0.45, binucleate=0.15)),),
    "ASC-H": ((1, _Morph((14, 24), (1, 1.35), "round", ("dense",), (1, 1.3), (0.22, 0.55),
                         (1, 1.35), (0.06, 0.13), (1.25, 1.5), (0.5, 0.25))),),
    "HSIL": ((1, _Morph((13, 26), (1, 1.4), "round", ("dense", "cyan", "blue"), (1.05, 1.35),
                        (0.35, 1.0), (1, 1.45), (0.08, 0.2), (1.35, 1.65), (0.6, 0.32))),),
    "SCC": (  # keratinising spindle / tadpole cells, and non-keratinising pleomorphic ones
        (0.6, _Morph((18, 34), (2.2, 4), "spindle", ("orange",), (1.1, 1.5), (0.2, 0.5),
                     (1.8, 3), (0.1, 0.2), (1.6, 2), (0.7, 0.35))),
        (0.4, _Morph((16, 30), (1, 1.6), "round", ("dense",), (1.1, 1.5), (0.3, 0.9), (1.3, 2.2),
                     (0.12, 0.22), (1.6, 2), (0.7, 0.35))),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class _Plan:
    """Morphology drawn for one cell."""

    label: str
    diam_um: float
    aspect: float
    style: str
    stain: np.ndarray
    density: float
    nc: float
    nuc_aspect: float
    nuc_irreg: float
    dark: float
    grain_um: float
    grain_amp: float
    halo: bool
    nuclei: int


def _plan(label: str, rng: np.random.Generator) -> _Plan:
    """Draw the morphology of one cell of class ``label``."""
    types = _MORPHS[label]
    m = types[rng.choice(len(types), p=[p for p, _ in types])][1]

    def u(r: tuple[float, float]) -> float:
        return float(rng.uniform(*r))

    nc = float(np.exp(rng.uniform(np.log(m.nc[0]), np.log(m.nc[1]))))
    stain = _STAINS[m.stains[int(rng.integers(len(m.stains)))]]
    return _Plan(label, u(m.diam), u(m.aspect), m.style, stain, u(m.density), nc,
                 u(m.nuc_aspect), u(m.irreg), u(m.dark), m.grain[0], m.grain[1],
                 bool(rng.random() < m.halo), 2 if rng.random() < m.binucleate else 1)  # fmt: skip
