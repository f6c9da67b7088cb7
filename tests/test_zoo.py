"""The reference zoo: every published model within 5% params and 15% FLOPs of its paper, and
its ONNX export equal to torch within 1e-4."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from nas.builder import build_model
from nas.export import onnx_bytes
from search_spaces.reference import fidelity, load_zoo, zoo_names

FAMILIES = {"mv2", "repvit", "mobilevit", "lgl", "levit", "former"}


def test_zoo_covers_the_five_families():
    families = {s.block for n in zoo_names() for s in load_zoo(n).stages}
    assert families == FAMILIES


@pytest.mark.parametrize("name", zoo_names())
def test_published_figures_are_recorded(name):
    pub = load_zoo(name).meta["published"]
    assert {"paper", "params_m", "flops_m", "top1", "resolution", "source"} <= set(pub)
    assert pub["resolution"] == load_zoo(name).resolution


@pytest.mark.parametrize("name", zoo_names())
def test_params_and_flops_match_the_paper(name):
    row = fidelity(name)
    assert abs(row["params_err"]) <= 0.05, f"params {row['params'] / 1e6:.2f}M vs {row['params_published'] / 1e6}M"
    assert abs(row["flops_err"]) <= 0.15, f"FLOPs {row['flops'] / 1e6:.0f}M vs {row['flops_published'] / 1e6}M"


@pytest.mark.parametrize("name", zoo_names())
def test_onnx_runtime_matches_torch(name):
    arch = load_zoo(name)
    model = build_model(arch, seed=0).eval()
    x = torch.randn(2, 3, arch.resolution, arch.resolution, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x).numpy()
    sess = ort.InferenceSession(onnx_bytes(model, x[:1]), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]  # batch 2 through a batch-1 export: dynamic axis
    assert np.abs(got - expected).max() <= 1e-4
