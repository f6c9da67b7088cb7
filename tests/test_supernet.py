"""The weight-sharing supernet: coverage of the space, members as slices of the largest weights,
extract == active, sandwich training with exact resume after kill -9, DDP, evaluation, the CLI."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_data import small  # noqa: F401 (a fixture: 270 train, 30 val, 100 test of the proxy data)

from nas.arch import parse_arch, save_arch
from nas.builder import HybridNet
from nas.checkpoint import load_checkpoint
from nas.supernet import Supernet, space_from_dict, space_to_dict
from nas.supernet.evaluate import epoch_snapshot, fit_resolution, load_supernet, recalibrate_bn
from search_spaces.hybrid import HybridSpace
from search_spaces.presets import PRESETS

TINY = PRESETS["tiny"](10)
FAMILIES_AT = {i: set(st.families) for i, st in enumerate(TINY.stages)}
TRAIN_SPACE = {**space_to_dict(TINY), "resolutions": [32], "name": "tiny32"}  # training tests: one resolution


@pytest.fixture(scope="module")
def fast(tmp_path_factory) -> tuple[str, ...]:
    """CLI options of the training tests (a space file: the --space FILE path is exercised too)."""
    path = tmp_path_factory.mktemp("space") / "tiny32.json"
    path.write_text(json.dumps(TRAIN_SPACE))
    return ("--batch-size", "32", "--log-every", "1", "--quiet", "--space", str(path))


@pytest.fixture(scope="module")
def tiny_supernet() -> Supernet:
    return Supernet(TINY, seed=3)


def _members_covering_every_family(space: HybridSpace, extra: int = 0) -> list:
    """largest, smallest, then samples until every choice of every dimension has been taken with
    every family at every stage (stage i, family f, option, value), plus `extra` more samples."""
    def choices(arch) -> set:
        params = space.encode(arch)
        out = {(k, v) for k, v in params.items() if not k.startswith("s")}
        for i, st in enumerate(space.stages):
            fam = params[f"s{i}.family"]
            out |= {(i, fam, key, params[f"s{i}.{key}"]) for key in ("depth", "width", *st.options(fam))}
        return out

    members, seen, seed = [space.largest(), space.smallest()], set(), 0
    misses = 0
    while misses < 300 or extra > 0:  # 300 samples in a row that add nothing: all covered
        arch = space.sample(seed)
        seed += 1
        new = choices(arch) - seen
        if new or misses >= 300:
            members.append(arch)
            seen |= new
            extra -= misses >= 300
            misses = 0 if new else misses
        else:
            misses += 1
    assert {(i, f) for i, st in enumerate(space.stages) for f in st.families} <= {x[:2] for x in seen if len(x) == 4}
    return members


def _assert_extract_equals_active(net: Supernet, arch, batch: int = 2) -> None:
    net.eval()
    member = net.set_active(arch)
    x = torch.randn(batch, 3, member.resolution, member.resolution, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        active = net(x)
        model = net.extract(arch).eval()
        extracted = model(x)
    assert type(model) is HybridNet
    torch.testing.assert_close(extracted, active, atol=1e-5, rtol=0)


def test_extract_equals_active_for_members_of_every_family_at_every_stage(tiny_supernet):
    members = _members_covering_every_family(TINY, extra=2)
    for arch in members:
        _assert_extract_equals_active(tiny_supernet, arch)
    assert {s.sample_rate for a in members for s in a.stages if s.block == "lgl"} == {1, 2, 4}


def test_a_few_shot_sub_supernet_warm_starts_from_the_one_shot_weights_of_its_families(tiny_supernet):
    """A sub-space keeping two of stage 2's families starts with the one-shot supernet's weights:
    its members compute exactly what they computed in the one-shot supernet."""
    import dataclasses

    from nas.supernet.evaluate import warm_start

    stages = list(TINY.stages)
    stages[2] = dataclasses.replace(stages[2], families=("repvit", "former"))
    sub_space = dataclasses.replace(TINY, stages=tuple(stages), name="tiny-s2")
    sub = Supernet(sub_space, seed=1)
    assert warm_start(sub, tiny_supernet) == []  # every tensor it has, the one-shot has too
    assert not any(k.startswith("stages.2.lgl") for k in sub.state_dict())
    arch = next(a for a in (sub_space.sample(i) for i in range(50)) if a.stages[2].block == "former")
    x = torch.randn(2, 3, arch.resolution, arch.resolution)
    with torch.no_grad():
        assert torch.allclose(sub.extract(arch).eval()(x), tiny_supernet.extract(arch).eval()(x))
    with pytest.raises(Exception, match="share no tensor"):
        warm_start(Supernet(sub_space), torch.nn.Linear(2, 2))


def test_per_depth_stems_give_each_stem_depth_its_own_weights_and_extract_equals_active(tmp_path):
    from nas.errors import UserError
    from nas.supernet.evaluate import supernet_file

    net = Supernet(TINY, seed=3, stem_sharing="per-depth")
    assert sorted(net.stem.keys()) == [f"depth{d}" for d in sorted(TINY.stem_depths)]
    members = [TINY.sample(i) for i in range(40)]
    assert {a.stem.depth for a in members} == set(TINY.stem_depths)
    for arch in members[:12]:
        _assert_extract_equals_active(net, arch)
    net.train()
    arch = net.set_active(next(a for a in members if a.stem.depth == min(TINY.stem_depths)))
    net(torch.randn(2, 3, arch.resolution, arch.resolution)).logsumexp(1).mean().backward()
    for depth in TINY.stem_depths:  # only the member's own stem learns from it
        grads = [p.grad for p in net.stem[f"depth{depth}"].parameters()]
        assert all(g is None for g in grads) != (depth == arch.stem.depth)
    torch.save(supernet_file(net), tmp_path / "supernet.pt")
    loaded = load_supernet(tmp_path / "supernet.pt")
    assert loaded.stem_sharing == "per-depth" and loaded.describe() == net.describe()
    assert Supernet(TINY).describe() == {"space": space_to_dict(TINY)}  # the default: identity as before
    torch.save({**supernet_file(net), "stem_sharing": "per-layer"}, tmp_path / "odd.pt")
    with pytest.raises(UserError, match=r"odd.pt: stem_sharing 'per-layer', expected one of shared, per-depth"):
        load_supernet(tmp_path / "odd.pt")


def test_the_full_hybrid_space_is_covered_largest_smallest_and_every_family():
    space = HybridSpace(num_classes=10)
    net = Supernet(space)
    members = _members_covering_every_family(space)
    for arch in members[:2] + members[2:5]:  # every family at every stage: the slow test below
        _assert_extract_equals_active(net, arch, batch=1)


@pytest.mark.slow
def test_every_choice_of_the_full_hybrid_space_is_found_in_the_supernet():
    net = Supernet(HybridSpace(num_classes=10))
    for arch in _members_covering_every_family(net.space):
        _assert_extract_equals_active(net, arch, batch=1)


def test_a_member_outside_the_space_is_refused_in_one_line(tiny_supernet):
    from nas.errors import UserError

    wide = parse_arch({**TINY.largest().to_dict(), "resolution": 64})
    with pytest.raises(UserError, match=r"not a member of the supernet's space 'tiny' \(resolution: 64"):
        tiny_supernet.set_active(wide)


def test_member_weights_are_prefixes_and_centre_crops_of_the_largest(tiny_supernet):
    net = tiny_supernet
    big = net.stages[0]["mv2"][0]  # the largest stage 0 block: kernel 5, widest hidden
    arch = TINY.smallest()  # stage 0: mv2 with kernel 3 and the fewest channels
    state = net.member_state(arch)
    hidden = state["stages.0.0.dw.0.0.weight"].shape[0]
    assert state["stages.0.0.dw.0.0.weight"].shape == (hidden, 1, 3, 3) and hidden < big.dw[0][0].weight.shape[0]
    assert torch.equal(state["stages.0.0.dw.0.0.weight"], big.dw[0][0].weight[:hidden, :, 1:4, 1:4])  # centre
    assert torch.equal(state["stages.0.0.dw.0.1.running_var"], big.dw[0][1].running_var[:hidden])  # prefix
    assert len([k for k in state if k.startswith("stages.2.")]) < \
        len([k for k in net.state_dict() if k.startswith("stages.2.repvit.")])  # first blocks only


def test_fused_qkv_takes_a_prefix_of_each_of_q_k_and_v():
    from nas.supernet.slicing import chunked

    big = torch.arange(12.0).reshape(12, 1)  # rows: q0..q3 | k0..k3 | v0..v3
    cut = chunked(0, 3)(big, torch.Size((6, 1)), None)
    assert cut(big).flatten().tolist() == [0, 1, 4, 5, 8, 9]


def test_levit_bias_of_a_smaller_grid_reads_the_same_offsets_of_the_largest_table():
    space = TINY
    net = Supernet(space)
    params = {"resolution": 32, "stem.depth": 2, "stem.channels": 8, "se": "none", "head.channels": 0}
    for i, fam in enumerate(("mv2", "mv2", "levit", "levit")):
        params.update({f"s{i}.family": fam, f"s{i}.depth": 1, f"s{i}.width": space.stages[i].widths[0]})
        params.update({f"s{i}.{k}": v[0] for k, v in space.stages[i].options(fam).items()})
    arch = space.decode(params)
    big = net.stages[3]["levit"].blocks[2].branch  # a stride-1 attention, built for the 48 px grid
    sub = net.extract(arch).stages[3].blocks[2].branch
    (h, w), (_, big_w) = sub.grid, big.grid
    assert (h, w) < big.grid
    for dy in range(h):
        for dx in range(w):
            assert torch.equal(sub.attention_biases[:, dy * w + dx], big.attention_biases[:sub.heads, dy * big_w + dx])


def test_training_mode_forward_writes_bn_statistics_and_gradients_into_the_shared_weights(tiny_supernet):
    net = Supernet(TINY, seed=1)
    arch = net.set_active(TINY.sample(5))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    net(torch.randn(4, 3, arch.resolution, arch.resolution)).logsumexp(1).mean().backward()
    stem_bn = net.stem[0][0][1]
    c = net.extract(arch).stem[0][0][1].num_features
    assert not torch.equal(stem_bn.running_mean[:c], before["stem.0.0.1.running_mean"][:c])
    assert torch.equal(stem_bn.running_mean[c:], before["stem.0.0.1.running_mean"][c:])  # outside: untouched
    grad = net.stem[0][0][0].weight.grad
    assert grad[:c].abs().sum() > 0 and grad[c:].abs().sum() == 0
    unused = next(f for f in TINY.stages[3].families if f != arch.stages[3].block)
    assert all(p.grad is None for p in net.stages[3][unused].parameters())


def test_bn_recalibration_replaces_the_running_statistics(tiny_supernet):
    arch = TINY.smallest()
    model = tiny_supernet.extract(arch)
    batches = [torch.randn(8, 3, 48, 48) * 3 + 1 for _ in range(2)]
    recalibrate_bn(model, batches, arch.resolution)
    bn = model.stem[0][0][1]
    assert not model.training and bn.momentum == 0.1 and int(bn.num_batches_tracked) == 2
    with torch.no_grad():  # the statistics are now those of these inputs (equal batches: mean of means)
        conv_out = model.stem[0][0][0](fit_resolution(torch.cat(batches), arch.resolution))
    torch.testing.assert_close(bn.running_mean, conv_out.mean((0, 2, 3)), atol=1e-4, rtol=1e-4)


def test_space_round_trips_through_plain_data():
    assert space_from_dict(json.loads(json.dumps(space_to_dict(TINY)))) == TINY
    from nas.errors import UserError

    with pytest.raises(UserError, match="unknown field 'colour'"):
        space_from_dict({**space_to_dict(TINY), "colour": 1})


# --- training -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(small, fast, tmp_path_factory) -> Path:
    """One finished `nas supernet train` run (tiny space, 1 epoch = 8 steps)."""
    from nas.cli.main import main

    out = tmp_path_factory.mktemp("runs") / "supernet"
    assert main(["supernet", "train", "--data", str(small), "--epochs", "1", "--out", str(out),
                 "--num-random", "1", "--keep-epochs", *fast]) == 0
    return out


SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    from nas.data import load_dataset
    from nas.supernet import Supernet
    from search_spaces.presets import space_from_dict
    from nas.supernet.trainer import Sandwich, SupernetTrainer
    from nas.train import Recipe

    def train(data, out, kill_at, space):
        torch.set_num_threads(1)  # the same losses need one reduction order: the same thread count in every run
        class KillAt(SupernetTrainer):
            def training_step(self, images, labels):
                if self.step == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return super().training_step(images, labels)

        space = space_from_dict(space)
        recipe = Recipe(epochs=1, resolution=32, batch_size=32, warmup_epochs=0.5, seed=7)
        KillAt(Supernet(space, seed=7), load_dataset(data), recipe, out, sandwich=Sandwich(num_random=1),
               log_every=1, checkpoint_every=3, verbose=False).fit()

    if __name__ == "__main__":
        train(sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]))
""")


def _records(run: Path) -> list[dict]:
    volatile = ("images_per_s", "train_time_s")
    return [{k: v for k, v in json.loads(line).items() if k not in volatile}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_sandwich_training_resumes_after_kill_9_with_the_same_losses(small, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    def start(run: str, kill_at: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), str(small), str(tmp_path / run), str(kill_at),
                                 json.dumps(TRAIN_SPACE)], stderr=subprocess.PIPE, text=True)

    killed = start("killed", 5)  # 8 steps; checkpoint at step 3, killed at the start of step 6
    assert killed.wait(timeout=300) == -signal.SIGKILL, killed.stderr.read()
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["step"] == 3
    assert _records(tmp_path / "killed")[-1]["step"] == 5
    resumed = start("killed", -1)
    reference = start("reference", -1)  # meanwhile, uninterrupted
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    assert _records(tmp_path / "killed") == _records(tmp_path / "reference")
    final = [load_checkpoint(tmp_path / run / "checkpoint.pt")["model"] for run in ("killed", "reference")]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])


def test_supernet_train_writes_weights_metrics_curves_and_weights_only_checkpoints(trained):
    for name in ("checkpoint.pt", "supernet.pt"):
        state = torch.load(trained / name, weights_only=True)  # no pickled code in either
        assert isinstance(state["model"], dict)
    assert torch.load(trained / "supernet.pt", weights_only=True)["space"] == TRAIN_SPACE
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["steps"] == 8 and metrics["space"] == "tiny32" and metrics["images_per_s"] > 0
    assert 0 <= metrics["largest_val_acc"] <= 1 and 0 <= metrics["smallest_val_acc"] <= 1
    lines = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["kind"] == "step"] == list(range(1, 9))
    assert lines[-1]["kind"] == "epoch" and "val_acc" in lines[-1]
    assert (trained / "curves.png").read_bytes()[:4] == b"\x89PNG"
    run = json.loads((trained / "run.json").read_text())
    assert run["sandwich"]["num_random"] == 1 and run["supernet"]["space"]["name"] == "tiny32"
    assert "keep_epochs" not in json.dumps(run)  # what is kept is not what is trained: resuming ignores it


def test_keep_epochs_leaves_each_epochs_weights_as_a_loadable_supernet_file(trained):
    snapshot = epoch_snapshot(trained, 1)
    assert sorted(p.name for p in (trained / "epochs").iterdir()) == [snapshot.name]
    kept, final = load_supernet(snapshot).state_dict(), load_supernet(trained / "supernet.pt").state_dict()
    assert kept.keys() == final.keys() and all(torch.equal(kept[k], final[k]) for k in kept)  # 1 epoch: same


def test_supernet_eval_rates_members_from_the_final_file_or_the_checkpoint(run_cli, trained, small, tmp_path):
    space = space_from_dict(TRAIN_SPACE)
    paths = [save_arch(space.sample(i), tmp_path / f"a{i}.json") for i in range(2)]
    code, out, err = run_cli("supernet", "eval", "--supernet", trained / "supernet.pt", *paths, "--data", small,
                             "--out", tmp_path / "evals.json")
    assert code == 0, err
    results = json.loads((tmp_path / "evals.json").read_text())["results"]
    assert [r["arch_hash"] for r in results] == [parse_arch(json.loads(p.read_text())).arch_hash() for p in paths]
    assert all(0 <= r["acc"] <= 1 and r["images"] == 30 for r in results)
    code, out2, err = run_cli("supernet", "eval", "--supernet", trained / "checkpoint.pt", paths[0], "--data", small)
    assert code == 0, err
    assert out2.splitlines()[0].split("(")[0] == out.splitlines()[0].split("(")[0]  # same weights, same result


def test_bad_input_is_one_line_naming_the_file_or_field(run_cli, trained, small, fast, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint")
    pickled = tmp_path / "pickled.pt"
    pickled.write_bytes(pickle.dumps({"model": {"x": object()}}))
    outsider = save_arch(parse_arch({**TINY.largest().to_dict(), "resolution": 96}), tmp_path / "outsider.json")
    member = save_arch(TINY.smallest(), tmp_path / "member.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (("supernet", "train", "--data", tmp_path / "nowhere", "--epochs", "1", "--out", tmp_path / "r", *fast),
         "nowhere: data folder not found"),
        (("supernet", "train", "--data", empty, "--epochs", "1", "--out", tmp_path / "r", *fast),
         "no class sub-folders"),
        (("supernet", "train", "--data", small, "--epochs", "1", "--out", tmp_path / "r", *fast[:-2],
          "--space", "galaxy"), "--space galaxy: neither a preset"),
        (("supernet", "train", "--data", small, "--epochs", "1", "--out", tmp_path / "r", "--num-random", "-1",
          *fast), "--num-random -1"),
        (("supernet", "train", "--data", small, "--epochs", "1", "--out", tmp_path / "r", "--kd-weight", "1.5",
          *fast), "--kd-weight 1.5: expected 0..1"),
        (("supernet", "train", "--data", small, "--epochs", "1", "--out", tmp_path / "r", "--teacher", "oracle",
          *fast), "--teacher 'oracle': expected one of layout, fixed"),
        (("supernet", "train", "--data", small, "--epochs", "1", "--out", tmp_path / "r", "--corners", "deep",
          *fast), "--corners 'deep': expected one of none, shallow"),
        (("supernet", "eval", "--supernet", garbage, member, "--data", small), "not a readable weights-only"),
        (("supernet", "eval", "--supernet", pickled, member, "--data", small), "not a readable weights-only"),
        (("supernet", "eval", "--supernet", trained / "supernet.pt", outsider, "--data", small),
         "not a member of the supernet's space 'tiny32' (resolution: 96"),
        (("supernet", "eval", "--supernet", trained / "supernet.pt", tmp_path / "missing.json"), "missing.json: file"),
    ]
    for args, expected in cases:
        code, out, err = run_cli(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, (args, err)
    assert not (tmp_path / "r").exists()


def test_two_process_ddp_supernet_training_under_torchrun(small, fast, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "nas.cli.main", "supernet", "train", "--data", str(small), "--epochs", "1", "--out", str(out),
           "--checkpoint-every", "3", "--num-random", "1", *fast]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 8
    assert len(load_checkpoint(out / "checkpoint.pt")["rng"]) == 2 and (out / "supernet.pt").exists()


def _step_rule(**sandwich):
    """A SupernetTrainer holding only what step_members needs (the tiny space's supernet, the
    sandwich settings, a recipe with seed 0): the per-step rule without data or training."""
    from nas.supernet.trainer import Sandwich, SupernetTrainer, complexity_bands
    from nas.train import make_recipe

    trainer = SupernetTrainer.__new__(SupernetTrainer)
    trainer.supernet, trainer.sandwich = Supernet(TINY), Sandwich(**sandwich)
    trainer.recipe = make_recipe(epochs=1, resolution=48, batch_size=8, seed=0)
    trainer._bands = complexity_bands(TINY, trainer.sandwich.levels, 0, pool=64) \
        if trainer.sandwich.sampling == "complexity" else None
    return trainer


def test_every_family_gets_its_own_sandwich_extremes():
    """The per-step largest/smallest follow a drawn family layout, so attention families are not
    trained only when a random member happens to pick them."""
    trainer = _step_rule(num_random=1)
    seen = set()
    for step in range(60):
        largest, smallest, *_ = trainer.step_members(step)
        assert [s.block for s in largest.stages] == [s.block for s in smallest.stages]
        assert largest == TINY.largest([s.block for s in largest.stages])
        seen.update(s.block for s in largest.stages[2:])
    assert seen == set(TINY.stages[2].families)
    assert trainer.step_members(7) == trainer.step_members(7)  # a pure function of (seed, step)


def test_the_shallow_corner_adds_the_layouts_widest_member_at_the_smallest_depths():
    plain, cornered = _step_rule(num_random=2, corners="none"), _step_rule(num_random=2, corners="shallow")
    for step in range(20):
        largest, smallest, shallow, *drawn = cornered.step_members(step)
        assert [largest, smallest, *drawn] == plain.step_members(step)  # the other draws are unchanged
        assert shallow.stem.depth == min(TINY.stem_depths)
        assert [s.depth for s in shallow.stages] == [min(st.depths) for st in TINY.stages]
        assert [s.width for s in shallow.stages] == [s.width for s in largest.stages]
        assert [s.block for s in shallow.stages] == [s.block for s in largest.stages]
        assert shallow == TINY.widest_shallow([s.block for s in largest.stages])


def test_a_fixed_teacher_leads_every_step_and_the_drawn_layouts_are_unchanged():
    """--teacher fixed: the space's largest member (one layout for the whole run) comes first, so
    it alone learns from the labels and teaches; the rest of the step is the default rule's."""
    trainers = {teacher: _step_rule(num_random=1, teacher=teacher) for teacher in ("layout", "fixed")}
    for step in range(10):
        fixed, *rest = trainers["fixed"].step_members(step)
        assert fixed == TINY.largest() and rest == trainers["layout"].step_members(step)


def test_complexity_aware_sampling_keeps_consecutive_steps_within_one_macs_level():
    """--sampling complexity (ElasticViT): students of a step share a MACs band, and the band moves
    one level per step, so no step jumps from the space's smallest networks to its largest."""
    trainer = _step_rule(num_random=2, sampling="complexity", levels=3)
    bands, levels = trainer._bands, []
    for step in range(12):
        teacher, *students = trainer.step_members(step)
        assert teacher == TINY.largest([s.block for s in teacher.stages]) and len(students) == 3
        low, high = bands.band(step)
        levels.append(bands.edges.index(low))
        assert sum(low <= bands.counts.arch(a)[1] <= high for a in students) >= 2  # rejection sampling found them
    assert levels[:6] == [0, 1, 2, 1, 0, 1]
    assert trainer.step_members(5) == trainer.step_members(5)


def test_standalone_training_can_start_from_a_members_inherited_weights(run_cli, trained, small, tmp_path):
    from nas.builder import build_model
    from nas.supernet.evaluate import load_initial_weights

    member = space_from_dict(TRAIN_SPACE).sample(5)
    inherited = load_supernet(trained).member_state(member)
    for source in (trained, trained / "supernet.pt", trained / "checkpoint.pt"):
        model = build_model(member)
        assert load_initial_weights(model, member, source) == "supernet"
        assert all(torch.equal(v, inherited[k]) for k, v in model.state_dict().items())

    path = save_arch(member, tmp_path / "member.json")
    code, out, err = run_cli("train", path, "--data", small, "--epochs", "1", "--batch-size", "32", "--quiet",
                             "--init-from", trained / "supernet.pt", "--out", tmp_path / "run")
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["init_from"] == str(trained / "supernet.pt")

    outsider = save_arch(parse_arch({**TINY.largest().to_dict(), "resolution": 96}), tmp_path / "outsider.json")
    code, out, err = run_cli("train", outsider, "--data", small, "--epochs", "1", "--batch-size", "32", "--quiet",
                             "--init-from", trained, "--out", tmp_path / "refused")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a member of the supernet's space" in err, err
