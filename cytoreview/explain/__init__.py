"""Explanations of classifier decisions: Grad-CAM, Grad-CAM++ and heatmap quality figures.

Pure compute on torch modules and numpy arrays; no files, no Qt.
"""
