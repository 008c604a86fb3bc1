"""Does evaluation see the network that training trained? Batch norm's moving statistics against
the population statistics of the same weights, epoch by epoch, on the synthetic main job.

    python -m benchmarks.batch_norm_statistics                      # as the recipes train
    python -m benchmarks.batch_norm_statistics --keras-momentum     # Keras's fixed momentum

Trains `baseline_densenet --part elbow --synthetic` (or `--recipe`) as the recipe does and, after
each epoch, evaluates the dev split three ways: with the moving statistics (what `fit` reports
and what the exported model uses), with each dev batch's own statistics, and with population
statistics recomputed from up to 40 training batches at the current weights ("precise" batch
norm). It also prints the median and the largest per-layer gap between the moving and the
population variance, as |log(moving / population)|. Where the moving statistics are sound, the
first and third columns agree. It changes nothing it measures: every statistic is restored
after each probe.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.batch_norm_statistics",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--recipe", default="baseline_densenet")
    parser.add_argument("--part", default="elbow")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--keras-momentum",
        action="store_true",
        help="leave the moving statistics on Keras's fixed momentum (the behaviour before the "
        "fix) instead of following the training steps",
    )
    args = parser.parse_args(argv)

    from mura_tf.cli import start_tensorflow

    start_tensorflow()
    import keras
    import tensorflow as tf

    from mura_tf.data.pipeline import make_dataset
    from mura_tf.runs.batches import pipeline_config
    from mura_tf.runs.prepared import prepare_data
    from mura_tf.runs.presets import synthetic_preset
    from mura_tf.runs.supervised import build_model

    base = importlib.import_module(f"recipes.{args.recipe}").CONFIG
    exp = synthetic_preset(
        dataclasses.replace(base, synthetic=True, seed=args.seed, part=args.part)
    )
    # The recipe's own seams, so that the run (its split and its random draws) is the recipe's.
    prepared = prepare_data(exp)
    built = build_model(exp, prepared, tf.distribute.get_strategy())
    model, data = built.model, built.data
    # Training batches of the probe's own: iterating the run's would move its shuffle on.
    probe_batches = make_dataset(
        prepared.splits.train, pipeline_config(exp, built.normalization, training=True),
        batch_size=exp.batch_size, training=True, seed=exp.seed + 1,
    )  # fmt: skip
    norms = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if args.keras_momentum:  # undo what the recipe's model does (follow_training_steps)
        for layer in norms:
            layer.__dict__.pop("_mura_tf_steps", None)
    loss_fn = keras.losses.BinaryCrossentropy()

    def dev_loss(training: bool) -> float:
        total, n = 0.0, 0
        for x, y in data.dev:
            total += float(loss_fn(y, model(x, training=training))) * len(y)
            n += len(y)
        return total / n

    def statistics():
        return [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in norms]

    def restore(saved):
        for layer, (mean, variance) in zip(norms, saved, strict=True):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            moving = statistics()
            batch_stats = dev_loss(training=True)
            restore(moving)
            # Population statistics: a running mean of the batch moments at these weights.
            kept = [(layer.momentum, layer.__dict__.pop("_mura_tf_steps", None)) for layer in norms]
            for k, (x, _) in enumerate(probe_batches.take(40)):
                for layer in norms:
                    layer.momentum = k / (k + 1)
                model(x, training=True)
            population = statistics()
            for layer, (momentum, steps) in zip(norms, kept, strict=True):
                layer.momentum = momentum
                if steps is not None:
                    object.__setattr__(layer, "_mura_tf_steps", steps)
            precise = dev_loss(training=False)
            restore(moving)
            gaps = [
                float(np.median(np.abs(np.log((mv + 1e-3) / (pv + 1e-3)))))
                for (_, mv), (_, pv) in zip(moving, population, strict=True)
            ]
            print(
                f"| {epoch + 1} | {logs['loss']:.3f} | {logs['val_loss']:.3f} | {batch_stats:.3f} "
                f"| {precise:.3f} | {math.exp(np.median(gaps)):.2f} | {math.exp(max(gaps)):.2f} |",
                flush=True,
            )

    mode = "Keras's fixed momentum" if args.keras_momentum else "following the training steps"
    print(f"{args.recipe} --part {args.part} --synthetic --seed {args.seed}, moving statistics "
          f"{mode}\n")  # fmt: skip
    print("| epoch | train loss | dev loss, moving stats | dev loss, batch stats "
          "| dev loss, population stats | variance gap, median layer | largest |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    model.fit(data.train, validation_data=data.dev, epochs=exp.epochs, callbacks=[Probe()],
              shuffle=False, verbose=0)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
