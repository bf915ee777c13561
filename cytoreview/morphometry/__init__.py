"""Cell measurements from label masks: areas, N:C ratio, nucleus shape and intensity.

Pure compute on numpy arrays; no files, no Qt. See :mod:`cytoreview.morphometry.measure`, and
:mod:`cytoreview.morphometry.features` for the vector the classifier's measurement model reads.
"""

from cytoreview.morphometry.features import FEATURE_NAMES, cell_features, feature_matrix
from cytoreview.morphometry.measure import (
    CellMeasurements,
    ImageMeasurements,
    label_cells,
    measure_image,
    morphometry_columns,
)

__all__ = [
    "FEATURE_NAMES",
    "CellMeasurements",
    "ImageMeasurements",
    "cell_features",
    "feature_matrix",
    "label_cells",
    "measure_image",
    "morphometry_columns",
]
