"""Run kinds and what every run shares: its settings (`settings`), its folder's name
(`identity`), its record (`record`: config.json and metrics.json), the folder itself
(`folder`: the door a run opens, locks, atomic finish, set-aside on --overwrite), its page
(`page`), the synthetic preset (`presets`), and one module per kind: `supervised` (an
experiment, with its `evaluators`), `pretrain` (SimCLR), `router` (the body-part router),
`ensemble` and `cascade`.
"""
