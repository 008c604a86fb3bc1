"""Report 000 §3.1: frozen ImageNet ResNet18 + Linear(512, 1), 10 epochs."""

from dataclasses import replace

from recipes.common import REPORT_000, run

CONFIG = replace(
    REPORT_000, recipe="resnet18_linear",
    head="linear",
)  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(run(CONFIG))
