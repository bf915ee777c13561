"""Castro Cortes et al.'s Pix2Pix colour-map segmenter as a CytoReview plugin."""

__version__ = "0.1.0"
