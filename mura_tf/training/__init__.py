"""How a Keras model is trained here: the shared `fit` with its callbacks (`train`,
`callbacks`), optimizers (`optimizers`: LARS), mixed precision (`precision`), tf.distribute
strategies (`distribute`) and the SimCLR kNN probe (`probe`)."""
