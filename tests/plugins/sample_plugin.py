"""The smallest complete CytoReview plugin: a mask generator that thresholds the grey level.

Dark pixels are cell: below ``cell_below`` cytoplasm, below ``nucleus_below`` nucleus (stained
nuclei are the darkest part of a Pap smear cell). Crude, but a real method: it makes 3-class
masks with no painting, which the workbench and ``cytoreview generate-masks`` store as ``auto``
masks whose source is ``generator:dark-threshold``.

A plugin has three parts, all here because this one is tiny and needs only numpy:

1. its **settings**, a frozen dataclass of :func:`~cytoreview.plugin_api.option` fields (the
   command-line flags ``--dark-threshold-cell-below`` ... and the workbench's form are built
   from it);
2. the **method**, an object with the kind's protocol (here
   :class:`~cytoreview.plugin_api.protocols.MaskGeneratorMethod`: ``generate(rgb, settings)``);
3. the **manifest**, a :class:`~cytoreview.plugin_api.Plugin` that an entry point of the
   ``cytoreview.plugins`` group names, in the package's ``pyproject.toml``::

       [project.entry-points."cytoreview.plugins"]
       cytoreview-sample = "sample_plugin:PLUGIN"

A plugin whose method needs torch keeps the settings and the manifest in small torch-free
modules and the method in another one: CytoReview reads manifests to build its command line
and lists, and imports ``target`` only when the method is used.

The tests make it visible without installing it, through
``reset_catalog(discover([EntryPoint(...)]))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cytoreview.plugin_api import Contribution, Plugin, option

__all__ = ["PLUGIN", "DarkThreshold", "DarkThresholdSettings"]


@dataclass(frozen=True)
class DarkThresholdSettings:
    """Settings of the dark-threshold mask generator."""

    cell_below: int = option(128, "grey level (0-255) below which a pixel is cell", low=0, high=255)
    nucleus_below: int = option(
        64, "grey level (0-255) below which a cell pixel is nucleus", low=0, high=255
    )


class DarkThreshold:
    """The method: grey level thresholds (implements ``MaskGeneratorMethod``)."""

    def generate(self, rgb: np.ndarray, settings: DarkThresholdSettings) -> np.ndarray:
        """``(H, W)`` uint8 labels (0 background, 1 cytoplasm, 2 nucleus) of an RGB image.

        Examples
        --------
        >>> rgb = np.array([[[200] * 3, [100] * 3, [20] * 3]], dtype=np.uint8)
        >>> DarkThreshold().generate(rgb, DarkThresholdSettings()).tolist()
        [[0, 1, 2]]
        """
        grey = rgb.astype(np.float32).mean(axis=2)
        labels = np.zeros(grey.shape, np.uint8)
        labels[grey < settings.cell_below] = 1
        labels[grey < min(settings.nucleus_below, settings.cell_below)] = 2
        return labels


#: What ``target`` names: the object the core calls.
GENERATOR = DarkThreshold()

PLUGIN = Plugin(
    name="cytoreview-sample",
    contributions=(
        Contribution(
            kind="mask-generator",
            name="dark-threshold",
            description="dark pixels are cell, the darkest nucleus (two grey-level thresholds)",
            target="tests.plugins.sample_plugin:GENERATOR",
            settings=DarkThresholdSettings,
        ),
    ),
)
