"""LARS and the SimCLR learning-rate rules (Keras has no LARS)."""

from __future__ import annotations

import math

import keras
from keras import ops

from mura_tf.errors import ConfigError


@keras.saving.register_keras_serializable(package="mura_tf")
class LARS(keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017), as in google-research/simclr.

    For each variable w with gradient g (weight decay lambda, trust coefficient eta):

        g' = g + lambda * w                         (weight decay, coupled as in SimCLR)
        trust = eta * ||w|| / ||g'||   (1 if either norm is 0)
        v = momentum * v + lr * trust * g'
        w = w - v                                   (Nesterov: w - (momentum * v + lr * trust * g'))

    Biases and batch-norm parameters get neither weight decay nor trust scaling (trust = 1).
    They are recognised as variables of rank <= 1, which is what the official code's name
    patterns ("bias", "batch_normalization") pick out in a ResNet.

    Args:
        learning_rate: float or a `LearningRateSchedule`.
        momentum: heavy-ball momentum (0.9).
        weight_decay: lambda above (SimCLR: 1e-6 pre-training, 0 fine-tuning).
        trust_coefficient: eta (0.001).
        nesterov: Nesterov momentum.
    """

    def __init__(
        self,
        learning_rate=0.3,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coefficient: float = 0.001,
        nesterov: bool = False,
        name: str = "lars",
        **kwargs,
    ):
        # The base class's `weight_decay` is decoupled (AdamW-style); LARS adds it to the
        # gradient before the trust ratio, so it is kept here under another name.
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = momentum
        self.lars_weight_decay = weight_decay
        self.trust_coefficient = trust_coefficient
        self.nesterov = nesterov

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")

    @staticmethod
    def is_excluded(variable) -> bool:
        """Biases and batch-norm scales/offsets: no weight decay, no trust scaling."""
        return len(variable.shape) <= 1

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        v = self.momentums[self._get_variable_index(variable)]
        if not self.is_excluded(variable):
            if self.lars_weight_decay:
                g = g + ops.cast(self.lars_weight_decay, variable.dtype) * variable
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            g_norm = ops.sqrt(ops.sum(ops.square(g)))
            ratio = (
                ops.cast(self.trust_coefficient, variable.dtype)
                * w_norm
                / ops.maximum(g_norm, 1e-12)
            )
            trust = ops.where((w_norm > 0) & (g_norm > 0), ratio, ops.ones_like(ratio))
            lr = lr * trust
        momentum = ops.cast(self.momentum, variable.dtype)
        self.assign(v, momentum * v + lr * g)
        step = momentum * v + lr * g if self.nesterov else v
        self.assign_sub(variable, step)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            momentum=self.momentum,
            weight_decay=self.lars_weight_decay,
            trust_coefficient=self.trust_coefficient,
            nesterov=self.nesterov,
        )
        return config


def scaled_learning_rate(base: float, batch_size: int, scaling: str = "linear") -> float:
    """SimCLR's rule: `base * B / 256` (linear) or `base * sqrt(B)` (sqrt); `none` keeps `base`."""
    if scaling == "none":
        return base
    if scaling == "linear":
        return base * batch_size / 256.0
    if scaling == "sqrt":
        return base * math.sqrt(batch_size)
    raise ConfigError(f"unknown learning-rate scaling {scaling!r}: use linear, sqrt or none")


def warmup_cosine(
    peak: float, total_steps: int, warmup_steps: int
) -> keras.optimizers.schedules.CosineDecay:
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then cosine decay to 0."""
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ConfigError(f"need 0 <= warmup steps ({warmup_steps}) <= total steps ({total_steps})")
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(total_steps - warmup_steps, 1),
        warmup_target=peak,
        warmup_steps=warmup_steps,
    )
