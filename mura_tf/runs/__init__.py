"""Run kinds and what every run shares: settings and the run folder's name (`config`), the
folder itself (`folder`: locks, atomic finish, set-aside on --overwrite), resuming (`resume`),
the synthetic preset (`presets`), and one module per kind: `supervised` (an experiment),
`pretrain` (SimCLR), `router` (the body-part router), `ensemble` and `cascade`.
"""
