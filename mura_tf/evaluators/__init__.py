"""Scores computed from a run's predictions (and, for localisation, its Grad-CAM maps and the
radiologists' outlines), each in a module of its own."""
