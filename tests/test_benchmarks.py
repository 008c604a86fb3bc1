"""Smoke runs of the benchmarks (Keras side only: PyTorch is not a test dependency)."""

import json
import statistics
from pathlib import Path

import pytest

from benchmarks import main_job, pipeline, scaling, train_step
from benchmarks.harness import Side, table, without_only
from benchmarks.records import cpu_model


def test_without_only_drops_the_flag_and_its_value():
    argv = ["--model", "resnet18", "--only", "keras", "--steps", "2", "--only=torch"]
    assert without_only(argv) == ["--model", "resnet18", "--steps", "2"]


def test_warm_up_runs_until_the_rate_settles():
    from benchmarks.harness import settle

    rates = iter([1.0, 5.0, 9.0, 10.0, 10.2, 10.1, 30.0])
    info = settle(lambda: next(rates), max_seconds=60)
    assert info["settled"] and info["warmup_repetitions"] == 6  # 10.0, 10.2, 10.1 agree
    assert settle(lambda: 1.0, max_seconds=0)["warmup_repetitions"] == 1


def test_alternation_goes_on_until_the_spread_is_small():
    from benchmarks.harness import alternate

    class Fake:
        def __init__(self, name, rates):
            self.name, self.rates, self.info = name, iter(rates), {}
            self.process = type("P", (), {"poll": lambda self: 0})()

        def run(self):
            return next(self.rates)

        def stop(self):
            return 1.0

    noisy = Fake("keras", [5, 9, 7, 7.1, 7.0, 7.05, 6.9, 7.0])
    calm = Fake("torch", [4.0] * 8)
    keras_side, torch_side = alternate([noisy, calm], repeats=3, max_repeats=20)
    # 5, 9, 7 disagree; the last three agree within 5% after the fifth repetition.
    assert keras_side.rates == [7, 7.1, 7.0] and keras_side.info["timed_rates"][0] == 5
    assert len(torch_side.info["timed_rates"]) == 5
    capped = alternate([Fake("a", [5, 9, 7, 8, 6]), Fake("b", [4.0] * 5)], 3, max_repeats=4)
    assert capped[0].rates == [9, 7, 8]


def test_table_reports_medians_and_ratios():
    sides = [Side("keras", [3.0, 5.0, 4.0], 100, {}), Side("torch", [2.0, 2.0, 1.0], 50, {})]
    text = table(sides)
    assert "| keras | 4.00 | 3.00, 5.00, 4.00 | 100 | 2.00 |" in text
    assert "| torch | 2.00 |" in text


# Keras' own Adam (`--fused-adam false`) is the same code path with another optimizer, which
# test_compat trains against the fused one.
@pytest.mark.parametrize("fused_adam", ["true"])
def test_train_step_benchmark_runs_the_project_model(capsys, fused_adam, tmp_path):
    argv = ["--model", "resnet18", "--size", "32", "--batch", "2", "--steps", "1"]
    argv += ["--warmup", "1", "--repeats", "2", "--max-repeats", "2", "--settle-seconds", "0"]
    argv += ["--only", "keras", "--fused-adam", fused_adam, "--record", str(tmp_path / "r.json")]
    assert train_step.main(argv) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| keras |"))
    median, reps = float(row.split("|")[2]), row.split("|")[3].split(",")
    assert median > 0 and len(reps) == 2
    # The record holds the printed table, the command without --record, and this CPU.
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["rows"] == [[c.strip() for c in row.strip("|").split("|")]]
    assert record["command"] == "python -m benchmarks.train_step " + " ".join(argv[:-2])
    assert record["source"] == "recorded" and record["comparison"]["keras"]["median"] > 0
    assert record["cpu"].startswith(cpu_model().split(" (")[0])
    from benchmarks.tables import record_table

    shown = record_table([], str(tmp_path / "r.json"))
    assert row.replace("| keras |", "").strip() in shown and record["command"] in shown
    assert "'params': 11186625" in out  # ResNet18 (11,186,112) + a one-output Dense head
    assert f"'fused_adam': '{fused_adam}'" in out


def test_pipeline_benchmark_reads_synthetic_pngs(capsys, tmp_path):
    argv = ["--images", "30", "--size", "32", "--batch", "4", "--batches", "2"]
    argv += ["--repeats", "1", "--max-repeats", "1", "--settle-seconds", "0"]
    argv += ["--only", "keras", "--root", str(tmp_path)]
    assert pipeline.main(argv) == 0
    out = capsys.readouterr().out
    assert float(next(x for x in out.splitlines() if x.startswith("| keras |")).split("|")[2]) > 0
    assert list(tmp_path.rglob("*.png"))


@pytest.mark.filterwarnings("ignore::mura_tf.errors.MuraDataWarning")
def test_pipeline_benchmark_reads_real_films_and_leaves_out_a_truncated_one(capsys):
    # The vendored sample's training split holds a film cut short (as FracAtlas's release
    # does); a recipe leaves it out with a warning, so must the benchmark: 12 batches of 4 go
    # through all 41 readable training films.
    sample = Path(__file__).resolve().parents[1] / "samples" / "fracatlas"
    argv = ["--data-dir", str(sample), "--size", "32", "--batch", "4", "--batches", "12"]
    argv += ["--repeats", "1", "--max-repeats", "1", "--settle-seconds", "0", "--only", "keras"]
    assert pipeline.main(argv) == 0
    assert "'images': 41," in capsys.readouterr().out


def test_scaling_benchmark_runs_a_recipe_and_reports_time_and_memory(capsys, tmp_path):
    argv = ["--scales", "1", "--patients", "3", "--root", str(tmp_path)]
    argv += ["--args", "--weights none --image-size 32 --epochs 1 --part elbow --batch-size 4"]
    assert scaling.main(argv) == 0
    row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| 1x |"))
    _, _, train, test, seconds, fit, rss, _ = row.split("|")
    assert int(train) > 0 and int(test) > 0 and float(seconds) > 0
    assert float(fit) == pytest.approx(float(seconds), abs=1)  # one point: the fit is exact
    assert float(rss) > 200  # MB: a TensorFlow process, measured in the child, not here
    assert list(tmp_path.glob("runs/resnet18_mlp/elbow/*/metrics.json"))


def test_main_job_seed_table_reads_each_runs_metrics(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MURA_TF_CACHE", str(tmp_path / "cache"))
    argv = ["--seeds", "3", "--recipes", "resnet18_mlp", "--out", str(tmp_path / "runs")]
    argv += ["--", "--epochs", "1", "--max-steps", "1", "--image-size", "32"]
    assert main_job.main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| `resnet18_mlp` |")]
    assert [row.split("|")[2].strip() for row in rows] == ["3"]
    (metrics,) = (tmp_path / "runs" / "resnet18_mlp-seed3").rglob("metrics.json")
    study = json.loads(metrics.read_text())["study"]
    low, high = study["kappa_ci"]
    assert rows[0].split("|")[5].strip() == f"{study['kappa']:.3f} ({low:.3f}-{high:.3f})"
    assert "CPU: " in out and "resnet18_mlp (1 seeds)" in out


def test_main_job_spread_sets_seed_variance_beside_one_runs_interval():
    def row(seed, auc, ci):
        study = {"auc": auc, "auc_ci": ci, "kappa": 0.5, "accuracy": 0.8}
        return {"recipe": "r", "seed": seed, "metrics": {"study": study}}

    rows = [row(0, 0.80, [0.70, 0.90]), row(1, 0.84, [0.72, 0.92]), row(2, 0.90, [0.80, 0.96])]
    mean, sd = statistics.mean([0.80, 0.84, 0.90]), statistics.stdev([0.80, 0.84, 0.90])
    line = main_job.spread(rows, "r")
    assert line.startswith("r (3 seeds): ")
    assert f"study AUROC {mean:.3f} ± {sd:.3f} over seeds, one run's interval 0.187 wide" in line
    assert "study kappa 0.500 ± 0.000 over seeds;" in line  # no interval recorded: none shown


def test_inference_benchmark_serves_encoded_films(capsys, tmp_path):
    from benchmarks import inference

    argv = ["--size", "32", "--batch", "4", "--batches", "1", "--films", "8", "--repeats", "1"]
    argv += ["--max-repeats", "1", "--settle-seconds", "0", "--only", "keras"]
    assert inference.main([*argv, "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert float(next(x for x in out.splitlines() if x.startswith("| keras |")).split("|")[2]) > 0


def test_simclr_benchmark_trains_on_two_views_of_synthetic_films(capsys, tmp_path):
    from benchmarks import simclr_step

    argv = ["--size", "32", "--batch", "4", "--steps", "1", "--warmup", "1", "--images", "30"]
    argv += ["--repeats", "1", "--max-repeats", "1", "--settle-seconds", "0", "--only", "keras"]
    assert simclr_step.main([*argv, "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert float(next(x for x in out.splitlines() if x.startswith("| keras |")).split("|")[2]) > 0
    # ResNet18 (11,186,112 with batch-norm statistics) + the 3-layer projection head
    assert "'params': 11780416" in out


@pytest.mark.parametrize(
    "name",
    ["train_step", "pipeline", "inference", "simclr_step", "main_job", "main_job_phases",
     "batch_norm_statistics", "lesion_learning", "scaling", "full_size", "profile_step",
     "onednn_kernels", "evaluation_choices", "time_to_quality", "keep_runs"],
)  # fmt: skip
def test_every_benchmark_prints_its_help(name):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-500:]


def test_the_pytorch_twins_process_never_loads_tensorflow():
    """torch and TensorFlow in one process crashed (benchmarks/torch_reference.py): what the
    twin imports from the project, the recipe's augmentation ranges among it, must not pull
    TensorFlow in. A fresh process, so that nothing this test process loaded counts."""
    import subprocess
    import sys

    probe = (
        "import sys, benchmarks.torch_reference, mura_tf.data.augment_settings, "
        "mura_tf.data.catalogue, mura_tf.data.masks; "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1000:]
    assert done.stdout.strip() == "[]"


def test_the_phases_of_a_run_add_up(synthetic_dir):
    import subprocess
    import sys

    flags = ["--data-dir", str(synthetic_dir), "--part", "elbow", "--image-size", "32",
             "--epochs", "2", "--max-steps", "2", "--weights", "none"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.main_job_phases", "--recipe", "resnet18_linear", "--",
         *flags],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout[done.stdout.rindex("phase") :].splitlines()[1:]
    epochs = [float(t) for t in table[-2].removeprefix("epochs (each)").split()]
    phases = {name.strip(): float(s) for name, s in (row.rsplit(None, 1) for row in table[:-2])}
    phases["total"] = float(table[-1].rsplit(None, 1)[1])
    assert len(epochs) == 2
    assert {"train", "export_savedmodel", "report", "resume points", "best.keras"} <= set(phases)
    assert sum(epochs) < phases["train"] < phases["total"]
    assert phases["resume points"] < sum(epochs)


def test_lesion_learning_counts_each_kind_and_scores_every_epoch(synthetic_dir, tmp_path, capsys):
    import ast

    import pandas as pd

    from benchmarks import lesion_learning

    predictions = tmp_path / "test.csv"
    argv = ["--recipe", "resnet18_linear", "--epochs", "2", "--image-size", "32",
            "--data-dir", str(synthetic_dir), "--predictions", str(predictions)]  # fmt: skip
    assert lesion_learning.main(argv) == 0
    out = capsys.readouterr().out
    counts = ast.literal_eval(out.splitlines()[0].split("films by kind: ")[1])
    # Independently: the generator's lesions.csv and the image lists, for the elbow.
    root = synthetic_dir / "MURA-v1.1"
    lesions = pd.read_csv(root / "lesions.csv")
    lesions = lesions[lesions["path"].str.contains("XR_ELBOW")]
    for split, names in (("train", ("train", "dev")), ("valid", ("test",))):
        images = pd.read_csv(root / f"{split}_image_paths.csv", header=None)[0]
        elbow = images[images.str.contains("XR_ELBOW")]
        mine = lesions[lesions["path"].str.contains(f"/{split}/")]["kind"].value_counts()
        for kind in ("hardware", "fracture"):
            assert sum(counts[n].get(kind, 0) for n in names) == mine.get(kind, 0), (split, kind)
        normal = int(elbow.str.contains("_negative/").sum())
        assert sum(counts[n].get("normal", 0) for n in names) == normal, split
    rows = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(row.split("|")[1]) for row in rows] == [1, 2]
    # Each epoch's test study AUROC, from its films' probabilities by hand: a study is the mean
    # of its views (the MURA paper's rule), scored with scikit-learn.
    from sklearn.metrics import roc_auc_score

    films = pd.read_csv(predictions)
    assert sorted(films["epoch"].unique()) == [1, 2]
    for row in rows:
        epoch = films[films["epoch"] == int(row.split("|")[1])]
        studies = epoch.groupby("study").agg(y=("label", "max"), p=("probability", "mean"))
        assert float(row.split("|")[-2]) == pytest.approx(
            roc_auc_score(studies["y"], studies["p"]), abs=5e-4
        )


def test_lesion_learning_needs_a_set_that_says_where_lesions_are(mura_copy, capsys):
    from benchmarks import lesion_learning

    (mura_copy / "lesions.csv").unlink()  # a MURA folder that does not say where lesions are
    tmp_path = mura_copy.parent
    with pytest.raises(SystemExit) as stop:
        lesion_learning.main(["--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"--data-dir {tmp_path} has no MURA-v1.1/lesions.csv" in err


def test_full_size_times_every_phase_on_a_tree_of_the_counts_it_reports(tmp_path, capsys):
    import pandas as pd

    from benchmarks import full_size

    argv = ["--scales", "1", "--train-patients", "2", "--valid-patients", "1",
            "--image-size", "32", "--root", str(tmp_path)]  # fmt: skip
    assert full_size.main(argv) == 0
    out = capsys.readouterr().out
    # The counts it prints are the tree's own, read here from its CSVs with pandas.
    root = next(tmp_path.glob("scale_1x*/MURA-v1.1"))
    train = len(pd.read_csv(root / "train_image_paths.csv", header=None))
    valid = len(pd.read_csv(root / "valid_image_paths.csv", header=None))
    assert f"| 1x | {train} | {valid} |" in out
    rows = {
        r.split("|")[1].strip(): r.split("|")[2:4] for r in out.splitlines() if r.count("|") > 3
    }
    for phase in full_size.PHASES:
        seconds, megabytes = (float(x) for x in rows[phase])
        assert seconds > 0 and megabytes > 50, phase  # a Python process holds more than 50 MB
    assert train > valid > 0  # MURA's shape: many more training than valid films


def test_profile_step_finds_the_convolutions_in_tensorflows_trace(capsys):
    from benchmarks import profile_step

    argv = ["--model", "resnet18", "--size", "32", "--batch", "2", "--steps", "1",
            "--warmup", "1", "--only", "keras"]  # fmt: skip
    assert profile_step.main(argv) == 0
    out = capsys.readouterr().out
    kinds = {
        r.split("|")[1].strip(): r.split("|")[2:4] for r in out.splitlines() if r.startswith("| ")
    }
    backward = float(kinds["convolution, backward"][0])
    forward = float(kinds["convolution, forward"][0])
    assert backward > 0 and forward > 0
    assert float(kinds["optimizer update"][0]) > 0  # the fused Adam's ResourceApplyAdam
    assert "Conv2DBackpropFilter" in out


def test_op_kinds_of_both_frameworks():
    from benchmarks.profile_step import kind_of

    pairs = {
        "Conv2DBackpropFilter": "convolution, backward",
        "_MklNativeConv2DBackpropInput": "convolution, backward",
        "aten::convolution_backward": "convolution, backward",
        "_MklNativeConv2D": "convolution, forward",
        "aten::mkldnn_convolution": "convolution, forward",
        "_MklNativeFusedBatchNormGradV3": "batch norm, backward",
        "aten::native_batch_norm": "batch norm, forward",
        "ConcatV2": "concatenation, slicing",
        "aten::cat": "concatenation, slicing",
        "Cast": "casts, copies",
        "aten::_to_copy": "casts, copies",
        "ResourceApplyAdam": "optimizer update",
        "aten::_foreach_addcdiv_": "optimizer update",
        "ReluGrad": "ReLU, both ways",
        "aten::threshold_backward": "ReLU, both ways",
    }
    assert {name: kind_of(name) for name in pairs} == pairs


def test_onednn_kernel_times_sum_the_steady_lines_per_kernel():
    from benchmarks.onednn_kernels import STEADY, kernel_table, kernel_times, library_info

    head = "onednn_verbose,v1,primitive,exec,cpu,"
    log = "\n".join([
        "onednn_verbose,v1,info,oneDNN v3.7.3 (commit N/A)",
        "onednn_verbose,v1,info,cpu,runtime:threadpool,nthr:2",
        head + "convolution,jit:avx2,forward_training,src:f32::blocked:acdb::f0,,alg,mb2,9.0",
        STEADY,
        head + "convolution,jit:avx2,forward_training,src:f32::blocked:acdb::f0,,alg,mb2,1.5",
        head + "convolution,jit:avx2,backward_weights,src:f32::blocked:acdb::f0,,alg,mb2,4.0",
        "some other line, with commas, that is not oneDNN's",
        head + "convolution,jit:avx2,forward_training,src:f32::blocked:acdb::f0,,alg,mb2,2.5",
        head + "reorder,jit:uni,undef,src:f32::blocked:abcd::f0,,,2x3,0.25",
    ])  # fmt: skip
    times = kernel_times(log, steps=2)
    # By hand: the line before the mark is the warm-up's; two forward calls of 1.5 + 2.5 ms.
    assert times == {
        ("convolution", "forward_training", "jit:avx2"): (1.0, 2.0),
        ("convolution", "backward_weights", "jit:avx2"): (0.5, 2.0),
        ("reorder", "undef", "jit:uni"): (0.5, 0.125),
    }
    assert library_info(log) == "oneDNN v3.7.3; runtime:threadpool, nthr:2"
    table = kernel_table({"keras": times}).splitlines()
    # Both convolution rows summed (calls 1.0 + 0.5, ms 2.0 + 2.0); one reorder needs no subtotal.
    assert "| **convolution, all** | | | 1.5 | 4.0 |" in table
    assert not any("reorder, all" in row for row in table)
    assert table[-1] == "| **all oneDNN primitives** | | | 2 | 4.1 |"


def test_onednn_kernels_sees_every_convolution_of_the_keras_step(capsys):
    import keras

    from benchmarks.onednn_kernels import main
    from mura_tf.models.backbones import build_backbone

    argv = ["--model", "resnet18", "--size", "32", "--batch", "2", "--steps", "2",
            "--warmup", "1", "--only", "keras", "--inter-op-threads", "1"]  # fmt: skip
    assert main(argv) == 0
    rows = [r.split("|")[1:-1] for r in capsys.readouterr().out.splitlines() if r.startswith("| ")]
    forward = sum(float(r[3]) for r in rows if r[0].strip() == "convolution" and "forward" in r[1])
    backbone = build_backbone("resnet18", 32, "none")
    convolutions = sum(isinstance(layer, keras.layers.Conv2D) for layer in backbone.layers)
    assert convolutions == 20  # ResNet18: the stem, 16 in the blocks, 3 projections
    assert forward == convolutions  # one oneDNN forward convolution per layer and step


def test_evaluation_choices_scores_the_seed_ensemble_only_on_dev_films_no_member_trained_on():
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from benchmarks.evaluation_choices import WAYS, choice_table

    rng = np.random.default_rng(0)

    def films(paths: list[str]) -> pd.DataFrame:
        labels = np.arange(len(paths)) % 2
        return pd.DataFrame({"path": paths, "study": paths, "label": labels})

    test = films([f"t{i}" for i in range(40)])
    dev_a, dev_b = films([f"a{i}" for i in range(30)]), films([f"b{i}" for i in range(30)])

    def scored(dev: pd.DataFrame) -> dict:
        return {split: {way: frame.assign(probability=rng.random(len(frame))) for way in WAYS}
                for split, frame in (("dev", dev), ("test", test))}  # fmt: skip

    same = [scored(dev_a), scored(dev_a), scored(dev_a)]
    _, rows = choice_table([Path("r")] * 3, same)
    one, ensemble = rows[0], rows[2]
    per_seed = [roc_auc_score(s["dev"][WAYS[0]]["label"], s["dev"][WAYS[0]]["probability"])
                for s in same]  # fmt: skip
    assert one[2] == ", ".join(f"{v:.3f}" for v in per_seed)
    assert one[3].startswith(f"{statistics.mean(per_seed):.3f} ± {statistics.stdev(per_seed):.3f}")
    mean = np.mean([s["dev"][WAYS[0]]["probability"] for s in same], axis=0)
    assert ensemble[3] == f"{roc_auc_score(dev_a['label'], mean):.3f}"
    mean = np.mean([s["test"][WAYS[0]]["probability"] for s in same], axis=0)
    assert ensemble[4] == f"{roc_auc_score(test['label'], mean):.3f}"
    # Dev drawn by seed: a member that trained on another's dev films leaves no dev score.
    _, rows = choice_table([Path("r")] * 2, [scored(dev_a), scored(dev_b)])
    assert rows[2][3] == "-" and "no dev split" in rows[2][2]


def test_keep_runs_copies_a_finished_runs_small_files_once(tmp_path, capsys):
    from benchmarks import keep_runs

    run_dir = tmp_path / "runs" / "seed0-0123abcd"
    run_dir.mkdir(parents=True)
    for name, text in (
        ("config.json", '{"experiment": {"seed": 0}}'),
        ("metrics.json", "{}"),
        ("history.csv", "epoch,auc\n0,0.5\n"),
        ("model.keras", "big"),
    ):
        (run_dir / name).write_text(text)  # fmt: skip
    to = tmp_path / "kept"
    assert keep_runs.main([str(run_dir), "--to", str(to)]) == 0
    kept = to / run_dir.name
    assert sorted(p.name for p in kept.iterdir()) == [
        "benchmark.json", "config.json", "history.csv", "metrics.json"
    ]  # fmt: skip
    for name in ("config.json", "metrics.json", "history.csv"):
        assert (kept / name).read_bytes() == (run_dir / name).read_bytes()
    timing = json.loads((kept / "benchmark.json").read_text())
    assert timing["cpu"] == cpu_model() and timing["seconds"] is None and timing["date"]
    # Kept once: again is refused in one line, and --overwrite replaces it.
    (run_dir / "history.csv").write_text("epoch,auc\n0,0.6\n")
    with pytest.raises(SystemExit, match="kept already"):
        keep_runs.main([str(run_dir), "--to", str(to)])
    assert "0.5" in (kept / "history.csv").read_text()
    assert keep_runs.main([str(run_dir), "--to", str(to), "--overwrite"]) == 0
    assert "0.6" in (kept / "history.csv").read_text()
    (run_dir / "metrics.json").unlink()  # a run still training
    with pytest.raises(SystemExit, match="not a finished run"):
        keep_runs.main([str(run_dir), "--to", str(tmp_path / "other")])
    assert not (tmp_path / "other").exists()
