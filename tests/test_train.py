"""Training engine and `nas train`: schedule, losses, exact resume after kill -9, DDP, the CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from test_data import small  # noqa: F401 (a fixture: 270 train, 30 val, 100 test of the proxy data)

from nas.arch import parse_arch, save_arch
from nas.checkpoint import load_checkpoint
from nas.train.losses import classification_loss, distillation_loss
from nas.train.optim import lr_factor

TINY = {"name": "tiny", "resolution": 32, "num_classes": 10, "stem": {"depth": 1, "channels": 16},
        "stages": [{"block": "mv2", "depth": 1, "width": 24, "expand": 2},
                   {"block": "repvit", "depth": 1, "width": 32}],
        "head": {"dropout": 0.2}}  # dropout: resume must restore the global RNG too

FAST = ("--batch-size", "32", "--log-every", "1", "--quiet")


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    return save_arch(parse_arch(TINY), tmp_path_factory.mktemp("arch") / "tiny.json")


@pytest.fixture(scope="module")
def trained(small, tiny_path, tmp_path_factory) -> Path:
    """One finished `nas train` run (1 epoch, 8 steps) shared by the CLI tests."""
    from nas.cli.main import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", str(tiny_path), "--data", str(small), "--epochs", "1", "--out", str(out), *FAST]) == 0
    return out


def test_lr_warms_up_linearly_then_follows_a_cosine():
    factors = [lr_factor(s, total_steps=100, warmup_steps=10, final_ratio=0.01) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[55] == pytest.approx(0.505)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:])) and factors[-1] > 0.01


def test_distillation_is_zero_for_identical_logits_and_mixes_with_cross_entropy():
    logits, labels = torch.randn(8, 10), torch.randint(0, 10, (8,))
    assert distillation_loss(logits, logits, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(8, 10)
    ce = classification_loss(logits, labels, 0.0)
    mixed = classification_loss(logits, labels, 0.0, other, alpha=0.5, temperature=2.0)
    assert mixed.item() == pytest.approx(0.5 * ce.item() + 0.5 * distillation_loss(logits, other, 2.0).item())


# The training a killed-and-resumed run and an uninterrupted one both execute. A Trainer subclass
# (the supernet's plug-in point) SIGKILLs its own process when `kill_at` steps are done.
SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    from nas.arch import parse_arch
    from nas.builder import build_model
    from nas.data import load_dataset
    from nas.train import Recipe, Trainer

    def train(data, out, kill_at, arch):
        torch.set_num_threads(1)  # bit-for-bit needs one reduction order: the same thread count in every run
        class KillAt(Trainer):
            def training_step(self, images, labels):
                if self.step == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return super().training_step(images, labels)

        recipe = Recipe(epochs=2, resolution=32, batch_size=32, warmup_epochs=0.5, seed=5)
        KillAt(build_model(parse_arch(arch), seed=5), load_dataset(data), recipe, out,
               log_every=1, checkpoint_every=3, verbose=False).fit()

    if __name__ == "__main__":
        train(sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]))
""")


def _records(run: Path) -> list[dict]:
    volatile = ("images_per_s", "train_time_s")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in volatile} for line in lines]


def test_resume_after_kill_9_continues_bit_for_bit(small, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)

    def start(run: str, kill_at: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), str(small), str(tmp_path / run), str(kill_at),
                                 json.dumps(TINY)], stderr=subprocess.PIPE, text=True)

    killed = start("killed", 11)  # 8 steps per epoch, 16 in all; checkpoints at steps 3, 6, 8 (epoch end), 9
    reference = start("reference", -1)  # meanwhile, uninterrupted
    assert killed.wait(timeout=120) == -signal.SIGKILL, killed.stderr.read()
    assert reference.wait(timeout=120) == 0, reference.stderr.read()
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["step"] == 9  # mid-epoch 2
    assert _records(tmp_path / "killed")[-1]["step"] == 11  # logged past the checkpoint, then killed
    resumed = start("killed", -1)
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read()

    assert _records(tmp_path / "killed") == _records(tmp_path / "reference")  # losses, lr, grad norms, val
    final = [load_checkpoint(tmp_path / run / "checkpoint.pt")["model"] for run in ("killed", "reference")]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])


def test_nas_train_writes_model_onnx_and_metrics(trained, small):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["steps"] == 8 and metrics["world_size"] == 1
    assert 0 <= metrics["test_acc"] <= 1 and metrics["data"]["test"] == 100 and metrics["images_per_s"] > 0
    assert metrics["arch_hash"] == parse_arch(TINY).arch_hash() and metrics["versions"]["torch"]
    lines = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["kind"] == "step"] == list(range(1, 9))
    assert lines[-1]["kind"] == "epoch" and "val_acc" in lines[-1]
    assert (trained / "curves.png").read_bytes()[:4] == b"\x89PNG"

    state = torch.load(trained / "model.pt", weights_only=True)
    from nas.builder import build_model

    model = build_model(parse_arch(json.loads((trained / "arch.json").read_text()))).eval()
    model.load_state_dict(state)
    x = torch.randn(2, 3, 32, 32)
    session = ort.InferenceSession(str(trained / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(onnx_out, model(x).detach().numpy(), rtol=1e-3, atol=1e-4)


def test_rerun_resumes_a_finished_run_and_a_different_arch_is_refused(run_cli, trained, small, tmp_path):
    before = (trained / "checkpoint.pt").read_bytes()
    code, out, err = run_cli("train", trained / "arch.json", "--data", small, "--epochs", "1", "--out", trained, *FAST)
    assert code == 0, err
    assert (trained / "checkpoint.pt").read_bytes() == before  # nothing left to train

    wider = {**TINY, "stages": [TINY["stages"][0], {**TINY["stages"][1], "width": 48}]}
    other = save_arch(parse_arch(wider), tmp_path / "wider.json")
    code, out, err = run_cli("train", other, "--data", small, "--epochs", "1", "--out", trained, *FAST)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "holds a different run (arch_hash" in err
    code, out, err = run_cli("train", trained / "arch.json", "--data", small, "--epochs", "1", "--lr", "0.01",
                             "--out", trained, *FAST)
    assert code == 2 and "recipe.lr: 0.002 in the folder, 0.01 now" in err
    assert (trained / "checkpoint.pt").read_bytes() == before


def test_init_from_and_distill_from_a_trained_run(run_cli, trained, small, tmp_path):
    code, out, err = run_cli("train", trained / "arch.json", "--data", small, "--epochs", "1", "--out",
                             tmp_path / "student", "--init-from", trained / "model.pt",
                             "--distill", trained, *FAST)
    assert code == 0, err
    metrics = json.loads((tmp_path / "student" / "metrics.json").read_text())
    assert metrics["teacher"] == {"arch_hash": parse_arch(TINY).arch_hash(), "weights": str(trained / "model.pt")}
    assert metrics["init_from"] == str(trained / "model.pt")


def test_bad_init_from_is_one_clear_line(run_cli, small, tiny_path, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint")
    wrong = tmp_path / "wrong.pt"
    torch.save({"stem.0.conv.weight": torch.zeros(3, 3)}, wrong)
    for ckpt, expected in ((garbage, "not a readable weights-only checkpoint"), (wrong, "wrong.pt: ")):
        code, out, err = run_cli("train", tiny_path, "--data", small, "--epochs", "1", "--out", tmp_path / "x",
                                 "--init-from", ckpt, *FAST)
        assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "x").exists()


def test_evaluate_reproduces_the_runs_test_accuracy_and_times_the_model(run_cli, trained, small, tmp_path):
    from fakes import fake_host

    from predictors.latency.predict import predict
    from predictors.latency.table import save_table

    arch = parse_arch(json.loads((trained / "arch.json").read_text()))
    table = save_table(fake_host([arch]), tmp_path / "host.json")
    code, out, err = run_cli("evaluate", trained, "--data", small, "--table", table, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["acc"] == json.loads((trained / "metrics.json").read_text())["test_acc"]
    assert result["split"] == "test" and result["images"] == 100
    latency = result["latency"]
    assert latency["measured_ms"] > 0 and latency["p10_ms"] <= latency["measured_ms"] <= latency["p90_ms"]
    assert latency["host_predicted_ms"] == round(predict(arch, fake_host([arch])).ms, 4)

    code, out, err = run_cli("evaluate", trained / "arch.json", "--weights", trained / "model.pt", "--data", small,
                             "--split", "val", "--no-latency")
    assert code == 0 and "val top-1" in out and "latency" not in out, err


def test_evaluate_bad_model_is_one_clear_line(run_cli, trained, small, tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "arch.json").write_text((trained / "arch.json").read_text())
    (corrupt / "model.pt").write_bytes((trained / "model.pt").read_bytes()[:200])  # truncated
    cases = [((corrupt,), "model.pt: not a readable weights-only checkpoint"),
             ((tmp_path,), "not a `nas train` run folder"),
             ((trained / "arch.json",), "needs --weights"),
             ((trained, "--threads", "0"), "--threads: expected a positive integer")]
    for args, expected in cases:
        code, out, err = run_cli("evaluate", *args, "--data", small, "--no-latency")
        assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, (args, err)


def test_bad_training_options_are_one_line(run_cli, small, tiny_path, tmp_path):
    for args, expected in ((("--epochs", "0"), "recipe: epochs"), (("--epochs", "1", "--batch-size", "512"),
                                                                    "fewer than one batch"),
                           (("--epochs", "1", "--num-classes", "5"), "--num-classes 5 is fewer than")):
        code, out, err = run_cli("train", tiny_path, "--data", small, *args, "--out", tmp_path / "y", "--quiet")
        assert code == 2 and expected in err, err


def test_two_process_ddp_run_under_torchrun(small, tiny_path, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "nas.cli.main", "train", str(tiny_path), "--data", str(small), "--epochs", "1", "--out", str(out),
           "--checkpoint-every", "3", *FAST]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 8 and metrics["data"]["test"] == 100
    assert (out / "model.onnx").exists() and len(load_checkpoint(out / "checkpoint.pt")["rng"]) == 2


def test_a_run_killed_while_writing_its_first_run_json_starts_over_but_other_files_are_refused(run_cli, small,
                                                                                               tmp_path):
    arch = save_arch(parse_arch(TINY), tmp_path / "tiny.json")
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / ".run.json.k2j4x.tmp").write_text('{"arch_')  # SIGKILL before the rename: no cleanup ran
    code, _, err = run_cli("train", arch, "--data", small, "--epochs", "1", "--out", killed, *FAST)
    assert code == 0, err
    assert (killed / "run.json").exists() and not list(killed.glob(".*.tmp"))

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("someone's")
    code, _, err = run_cli("train", arch, "--data", small, "--epochs", "1", "--out", foreign, *FAST)
    assert code == 2 and "folder is not empty and holds no run.json" in err
    assert (foreign / "notes.txt").read_text() == "someone's"
