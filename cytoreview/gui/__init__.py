"""The napari workbench: open a project, paint masks, train the U-Net, auto-segment, review.

Only this package imports Qt and napari. Panels sit on top of :mod:`cytoreview.workflows`;
long jobs run through :mod:`cytoreview.gui.workers`. Start it with
:func:`cytoreview.gui.app.launch`; tests build the docks on their own viewer with
:func:`cytoreview.gui.app.build_workbench`.
"""
