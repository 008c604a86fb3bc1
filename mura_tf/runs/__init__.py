"""Run kinds and what every run shares: settings and the run folder's name (`config`), the
folder itself (`folder`: locks, atomic finish, set-aside on --overwrite), resuming (`resume`),
the synthetic preset (`presets`), and one module per kind: `supervised` (an experiment),
`pretrain` (SimCLR), `router` (the body-part router), `ensemble` and `cascade`.

`from mura_tf.runs import read_run` (and the other names of `mura_tf.runs.config`, where they
lived when `runs` was a module) still works, resolved on first use.
"""

import importlib


def __getattr__(name: str):
    # Lazily, so importing a kind's module does not import every setting first.
    config = importlib.import_module("mura_tf.runs.config")

    try:
        return getattr(config, name)
    except AttributeError:
        raise AttributeError(f"module 'mura_tf.runs' has no attribute {name!r}") from None
