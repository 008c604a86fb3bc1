"""Run kinds and what every run shares: settings and the run folder's name (`config`), the
folder itself (`folder`: locks, atomic finish, set-aside on --overwrite), resuming (`resume`),
the synthetic preset (`presets`), and one module per kind: `supervised` (an experiment),
`pretrain` (SimCLR), `router` (the body-part router), `ensemble` and `cascade`.

`from mura_tf.runs import read_run` (and the other names of `mura_tf.runs.config`, where they
lived when `runs` was a module) still works, resolved on first use.
"""

from mura_tf._moved import forwarding

# Lazily, so importing one module of the package does not import the old module's first.
__getattr__ = forwarding(__name__, "mura_tf.runs.config")
