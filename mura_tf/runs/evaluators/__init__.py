"""What a finished supervised run computes and writes, as a list of evaluators (big_vision's
way): the run kind declares the list (`runs.supervised.EVALUATORS`), and `evaluate_and_write`
calls each in turn on the trained run (`trained.TrainedRun`), merging what each returns into
`metrics.json`. Each evaluator is one module here, a small frozen dataclass whose call takes
the trained run and returns its entries of the metrics (writing its own files beside them);
adding one is a new module and one line in the list. The metric functions they call are
`mura_tf.evaluators`.
"""
