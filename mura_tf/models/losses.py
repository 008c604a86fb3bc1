"""NT-Xent, the SimCLR contrastive loss, as in the paper and google-research/simclr (tf2)."""

from __future__ import annotations

import tensorflow as tf

# Subtracted from an anchor's similarity with itself so that softmax gives it zero weight.
LARGE_NUM = 1e9


def nt_xent(z1: tf.Tensor, z2: tf.Tensor, temperature: float = 0.1) -> tf.Tensor:
    """NT-Xent (normalised temperature-scaled cross-entropy) loss.

    Each of the 2N views is an anchor; its positive is the other view of the same image, its
    2N - 2 negatives are every other view in the batch (both views; never itself). Similarity is
    the cosine (L2-normalised dot product) divided by `temperature`. Computed in float32 so that
    small temperatures and mixed precision stay stable.

    Under `tf.distribute`, each replica's anchors are contrasted with the views of the *global*
    batch (gathered across replicas, as the official code's `cross_replica_concat`). The value
    returned is the mean over this replica's 2n anchors; averaging it over replicas gives the
    global-batch loss. (Keras divides per-replica losses by the replica count before taking
    gradients; a custom train step must do the same.)

    Args:
        z1: `[N, D]` projections of the first views of N images.
        z2: `[N, D]` projections of the second views of the same N images.
        temperature: softmax temperature (SimCLR default 0.1).
    Returns:
        Scalar: mean over the 2N anchors of -log softmax of the positive pair. Equals half of
        `keras_cv.losses.SimCLRLoss` (which sums the two views' losses) and of the official
        code's `add_contrastive_loss`.
    """
    z1 = tf.math.l2_normalize(tf.cast(z1, tf.float32), axis=1)
    z2 = tf.math.l2_normalize(tf.cast(z2, tf.float32), axis=1)
    n = tf.shape(z1)[0]
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        z1_all = context.all_gather(z1, axis=0)
        z2_all = context.all_gather(z2, axis=0)
        offset = tf.cast(context.replica_id_in_sync_group, tf.int32) * n
    else:
        z1_all, z2_all, offset = z1, z2, 0
    index = tf.range(n) + offset  # where this replica's images sit in the global batch
    self_mask = tf.one_hot(index, tf.shape(z1_all)[0]) * LARGE_NUM
    t = tf.cast(temperature, tf.float32)
    logits_11 = tf.matmul(z1, z1_all, transpose_b=True) / t - self_mask
    logits_22 = tf.matmul(z2, z2_all, transpose_b=True) / t - self_mask
    logits_12 = tf.matmul(z1, z2_all, transpose_b=True) / t
    logits_21 = tf.matmul(z2, z1_all, transpose_b=True) / t
    # The positive of view-1 anchor i is column `index[i]` of [logits_12 | logits_11].
    loss_1 = tf.nn.sparse_softmax_cross_entropy_with_logits(
        index, tf.concat([logits_12, logits_11], 1)
    )
    loss_2 = tf.nn.sparse_softmax_cross_entropy_with_logits(
        index, tf.concat([logits_21, logits_22], 1)
    )
    return (tf.reduce_mean(loss_1) + tf.reduce_mean(loss_2)) / 2.0


def contrastive_accuracy(z1: tf.Tensor, z2: tf.Tensor) -> tf.Tensor:
    """Share of the 2N anchors whose positive is the most similar other view (local batch).

    Args:
        z1: `[N, D]` projections of the first views.
        z2: `[N, D]` projections of the second views.
    Returns:
        Scalar in [0, 1].
    """
    z1 = tf.math.l2_normalize(tf.cast(z1, tf.float32), axis=1)
    z2 = tf.math.l2_normalize(tf.cast(z2, tf.float32), axis=1)
    z = tf.concat([z1, z2], 0)
    n = tf.shape(z1)[0]
    similarity = tf.matmul(z, z, transpose_b=True) - tf.eye(2 * n) * LARGE_NUM
    positive = tf.concat([tf.range(n) + n, tf.range(n)], 0)
    hits = tf.equal(tf.argmax(similarity, axis=1, output_type=tf.int32), positive)
    return tf.reduce_mean(tf.cast(hits, tf.float32))
