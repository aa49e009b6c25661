"""Degenerate search spaces: the hand-designed models of the papers, with nothing left to choose.

Each is trained by the ``fixed`` strategy through the same trainer, run folder, dashboard, retrain
and evaluate as the searched spaces.
"""
