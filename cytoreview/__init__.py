"""CytoReview: segment, classify and review cervical cytology (Pap smear) images."""

__version__ = "0.1.0"
