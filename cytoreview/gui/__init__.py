"""The napari workbench: open a project, paint masks, train the U-Net, auto-segment, review.

Only this package imports Qt and napari. Panels sit on top of :mod:`cytoreview.workflows`;
long jobs run through :mod:`cytoreview.gui.workers`. Start it with
:func:`cytoreview.gui.app.launch`; tests build the docks on their own viewer with
:func:`cytoreview.gui.app.build_workbench`.
"""

import sys

# torch imports triton (through torch._dynamo, which segmentation-models-pytorch pulls in) the
# first time a model is built. Once napari has an OpenGL context on Mesa (llvmpipe, and the
# radeonsi / iris drivers, which link their own LLVM), loading triton's LLVM segfaults the
# process (seen: a plain napari 0.9 viewer under Xvfb, then `import segmentation_models_pytorch`).
# As a napari plugin, CytoReview's code is imported after the window exists, so the crash took
# napari down with it. CytoReview never compiles models (no torch.compile): triton is blocked
# here, before anything imports torch, unless something already loaded it.
sys.modules.setdefault("triton", None)  # type: ignore[arg-type]
