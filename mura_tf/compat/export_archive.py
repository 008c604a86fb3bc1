"""Writing a Keras `ExportArchive` with each endpoint traced once.

Keras 3.15's `ExportArchive.write_out` first traces every endpoint outside a save context, to
list the variables the endpoints use, and walks the tracked models' object graphs for lookup
tables (`_filter_and_track_resources`); `tf.saved_model.save` then traces every endpoint again,
because a save context is part of a trace's cache key
(`tensorflow/python/eager/polymorphic_function/function_context.py`). For DenseNet169's three
signatures the first pass was half the export (benchmarks/README.md, "Time to first result").
The archives written here track their whole serving model (`ExportArchive.track`), whose
variables are the ones the endpoints use (or, for an ensemble's outline map, loaded
SavedModels, attached to the saved object as children), and hold no lookup tables, so the first
pass finds nothing `track` has not already put on the archive: `write_savedmodel` goes straight to
`tf.saved_model.save` with the same signatures, the `serving_default` alias included. No
upstream issue was found for the double trace. Tested with Keras 3.15.1 and TensorFlow 2.21.0;
the fresh-process tests of the exports (`tests/test_serving.py`, `tests/test_cascade.py`)
check the result.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from mura_tf.compat import incompatible

WHAT = "mura_tf's single-trace SavedModel export"
ISSUE = "Keras's ExportArchive.write_out traces each endpoint twice"


def write_savedmodel(archive: keras.export.ExportArchive, path: str | os.PathLike[str]) -> None:
    """What `archive.write_out(path, verbose=False)` writes, each endpoint traced once.

    Raises:
        KerasCompatError: the installed Keras keeps its archive's parts elsewhere.
    """
    trackable = getattr(archive, "_tf_trackable", None)
    names = getattr(archive, "_endpoint_names", None)
    if trackable is None or not isinstance(names, list) or not hasattr(trackable, "variables"):
        raise incompatible(WHAT, ISSUE, "ExportArchive has no _tf_trackable or _endpoint_names")
    if not names:
        raise ValueError("No endpoints have been set yet. Call add_endpoint().")
    signatures = {}
    for name in names:
        endpoint = getattr(trackable, name, None)
        if not isinstance(endpoint, tf.types.experimental.GenericFunction):
            raise incompatible(WHAT, ISSUE, f"endpoint {name!r} is not a tf.function")
        signatures[name] = endpoint
    signatures.setdefault("serving_default", signatures[names[0]])
    # What `_filter_and_track_resources` would set: the endpoints' variables (all the tracked
    # ones here) and no lookup tables.
    trackable._all_variables = list(trackable.variables)
    trackable._misc_assets = []
    # Trackables that are not Keras layers (the members' loaded exports behind an ensemble's
    # outline map, `serving.export.add_mean_outline_map`) own variables the endpoints use;
    # Keras lists those from the endpoints' traces, here they reach the SavedModel as children.
    loaded = [t for t in getattr(archive, "_tracked", []) if not isinstance(t, keras.layers.Layer)]
    if loaded:
        trackable._loaded_exports = loaded
    tf.saved_model.save(trackable, str(path), signatures=signatures)
