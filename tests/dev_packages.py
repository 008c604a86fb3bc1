"""Packages the `dev` extra declares: a test that needs one skips without it on a user's
machine, and fails under CI (`CI` set, as `.ci/run` sets it), where a missing one means the
declaration or the install is broken and a skip would hide it."""

from __future__ import annotations

import importlib
import os
import types

import pytest


def need(module: str, reason: str | None = None) -> types.ModuleType:
    """`module` imported; skipped without it, failed without it under CI."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        why = reason or f"{module} is not installed ({e})"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: it is declared in the dev extra, so CI must have it")
        pytest.skip(why, allow_module_level=True)
