"""Report 000 §3.2: frozen ResNet18 + Linear(512, 512) + Linear(512, 1), Adam 1e-3, 10 epochs."""

from dataclasses import replace

from recipes.common import REPORT_000, run

CONFIG = replace(
    REPORT_000, recipe="resnet18_mlp",
    head="mlp",
)  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(run(CONFIG))
