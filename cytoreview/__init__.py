"""CytoReview: segment, classify and review cervical cytology (Pap smear) images."""

import os

__version__ = "0.1.0"

# Set before anything below imports onnxruntime or OpenCV: both read these variables once, when
# they load, and every entry point (the CLI, the window, a plugin, a test) imports this package
# first. Child processes inherit them.
#
# ONNX Runtime's official builds send usage telemetry (device id, OS, CPU, interpreter path) to
# the vendor and queue it under ~/.cache/Microsoft. A clinical tool sends nothing. Measured with
# onnxruntime 1.31: importing it is enough to create the device id and the event queue, and a DNS
# lookup of the telemetry host follows about 10 s later; with this variable set before the import
# neither happens. The API switch (``disable_telemetry_events``) comes after the import, too late.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
# OpenCV prints "[ WARN:0@...]" lines for files that the readers already report in one clear
# line (e.g. a truncated PNG); a person can still ask for them with OPENCV_LOG_LEVEL=INFO.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
