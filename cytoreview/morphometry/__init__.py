"""Cell measurements from label masks: areas, N:C ratio, nucleus shape and intensity.

Pure compute on numpy arrays; no files, no Qt. See :mod:`cytoreview.morphometry.measure`.
"""

from cytoreview.morphometry.measure import (
    CellMeasurements,
    ImageMeasurements,
    label_cells,
    measure_image,
    morphometry_columns,
)

__all__ = [
    "CellMeasurements",
    "ImageMeasurements",
    "label_cells",
    "measure_image",
    "morphometry_columns",
]
