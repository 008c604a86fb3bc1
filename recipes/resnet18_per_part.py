"""Report 000 §3.4: ResNet18 + Linear + Linear on one part (humerus), Adam at 0.01 for 1000
steps, then 0.001. MURA's humerus has ~1,150 training images after the dev split, ~36 steps an
epoch at batch 32, so 40 epochs reach the drop (epoch ~28) and train on after it."""

from dataclasses import replace

from recipes.common import REPORT_000, run

CONFIG = replace(
    REPORT_000, recipe="resnet18_per_part",
    head="mlp", part="humerus",
    learning_rate=0.01, lr_boundaries=(1000,), lr_values=(0.01, 0.001), epochs=40,
)  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(run(CONFIG))
