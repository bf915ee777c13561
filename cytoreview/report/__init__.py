"""The review report: plots (matplotlib) and a self-contained HTML page, rendered to bytes.

Pure rendering; storage writes the files. :mod:`~cytoreview.report.model` holds the data a report
shows (plain dataclasses the workflow layer fills), :mod:`~cytoreview.report.plots` draws figures
and gallery thumbnails, :mod:`~cytoreview.report.html` assembles the page with
:func:`~cytoreview.report.html.render_report`. Nothing is imported here, so building a
:class:`~cytoreview.report.model.ReportData` does not load matplotlib.
"""
