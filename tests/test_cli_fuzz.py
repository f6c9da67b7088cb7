"""Property test of the CLI contract: whatever bad input hypothesis makes up (an ArchConfig of wrong
types, out-of-range values, unknown keys, deep nesting or no JSON at all; a budget, a seed, a path
that cannot be used), every command answers with exit code 2 and exactly one stderr line, never a
traceback, and fails on validation before any training, search or measurement starts (each
command is given a missing --data/--table/--weights as well, so that getting past validation
would itself be the one-line error, never work)."""
from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.budget import parse_budget
from nas.errors import UserError

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

TINY = {"name": "tiny", "resolution": 64, "num_classes": 10, "stem": {"depth": 1, "channels": 16},
        "stages": [{"block": "mv2", "depth": 1, "width": 24, "expand": 2},
                   {"block": "repvit", "depth": 2, "width": 32, "se": "alternate"}],
        "head": {"channels": 0, "distill": False, "dropout": 0.0}}


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A folder of things that are not what a command wants (and one tiny valid arch)."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "tiny.json").write_text(json.dumps(TINY))
    (root / "file").write_text("a regular file")
    (root / "empty").write_bytes(b"")
    (root / "binary").write_bytes(bytes(range(256)) * 8)
    (root / "folder").mkdir()
    os.mkfifo(root / "fifo")
    (root / "devnull-link").symlink_to("/dev/null")  # refused as an output; a bug would replace the link only
    (root / "deep.json").write_text("[" * 50_000 + "]" * 50_000)
    with zipfile.ZipFile(root / "whole.zip", "w") as zf:
        zf.writestr("results.csv", "key,median_us\n" * 20)
    (root / "truncated.zip").write_bytes((root / "whole.zip").read_bytes()[:60])
    return root


def check_contract(run_cli, *args) -> str:
    code, out, err = run_cli(*args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, \
        (args, code, out[-500:], err[-2000:])
    return lines[0]


# --- bad ArchConfigs ---------------------------------------------------------------------------

INT_FIELDS = {("resolution",): (32, 1024), ("num_classes",): (2, 100_000), ("stem", "depth"): (1, 4),
              ("stem", "channels"): (8, 256), ("stages", 0, "depth"): (1, 24), ("stages", 0, "width"): (8, 2048),
              ("stages", 1, "depth"): (1, 24), ("head", "channels"): (0, 4096)}
CHOICE_FIELDS = {("stages", 0, "kernel"): (3, 5, 7), ("stages", 0, "stride"): (1, 2), ("stem", "kernel"): (3, 4),
                 ("stages", 1, "kernel"): (3, 5, 7)}
FLOAT_FIELDS = {("stages", 0, "expand"): (1.0, 8.0), ("stages", 1, "expand"): (1.0, 6.0),
                ("head", "dropout"): (0.0, 0.999)}
BOOL_FIELDS = (("head", "distill"), ("stem", "last_act"))
STR_FIELDS = (("stages", 0, "block"), ("stages", 0, "act"), ("stages", 1, "se"), ("stem", "act"), ("head", "norm"),
              ("name",), ("schema",))
KNOWN_KEYS = {"schema", "name", "resolution", "num_classes", "stem", "stages", "head", "meta", "depth", "channels",
              "strides", "kernel", "act", "last_act", "hidden", "norm", "distill", "dropout", "block", "width",
              "stride", "expand", "se"}

junk = st.one_of(st.none(), st.booleans(), st.text(max_size=6), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
not_int = st.one_of(st.none(), st.booleans(), st.text(max_size=6), st.floats(), st.lists(st.integers(), max_size=2))
not_float = st.one_of(st.none(), st.booleans(), st.text(max_size=6), st.lists(st.floats(), max_size=2))
not_bool = st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=6))
not_str = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.lists(st.text(max_size=2), max_size=2))
bad_name = st.one_of(st.just(""), st.text(min_size=129, max_size=140),
                     st.tuples(st.text(max_size=4), st.sampled_from(["/", "\\", "..", "\n", "\x00", "\x7f"]),
                               st.text(max_size=4)).map("".join))


def _set(doc: dict, path: tuple, value) -> dict:
    doc = json.loads(json.dumps(doc))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def _deep(depth: int, opener: str) -> str:
    return (opener * depth) + "1" + ("]" if opener == "[" else "}") * depth


@st.composite
def bad_arch_text(draw) -> str:
    """JSON text (or not) that is not a valid ArchConfig."""
    kind = draw(st.sampled_from(["type", "range", "unknown key", "missing", "deep", "not an object", "not json"]))
    if kind == "type":
        field_kind = draw(st.sampled_from(["int", "choice", "float", "bool", "str"]))
        if field_kind in ("int", "choice"):
            path, value = draw(st.sampled_from(sorted({**INT_FIELDS, **CHOICE_FIELDS}))), draw(not_int)
        elif field_kind == "float":
            path, value = draw(st.sampled_from(sorted(FLOAT_FIELDS))), draw(not_float)
        elif field_kind == "bool":
            path, value = draw(st.sampled_from(BOOL_FIELDS)), draw(not_bool)
        else:
            path, value = draw(st.sampled_from(STR_FIELDS)), draw(not_str)
        return json.dumps(_set(TINY, path, value))
    if kind == "range":
        which = draw(st.sampled_from(["int", "choice", "float", "name", "block", "stages"]))
        if which == "int":
            path = draw(st.sampled_from(sorted(INT_FIELDS)))
            lo, hi = INT_FIELDS[path]
            value = draw(st.one_of(st.integers(max_value=lo - 1), st.integers(min_value=hi + 1)))
        elif which == "choice":
            path = draw(st.sampled_from(sorted(CHOICE_FIELDS)))
            value = draw(st.integers(-10**6, 10**6).filter(lambda v: v not in CHOICE_FIELDS[path]))
        elif which == "float":
            path = draw(st.sampled_from(sorted(FLOAT_FIELDS)))
            lo, hi = FLOAT_FIELDS[path]
            value = draw(st.one_of(st.floats(max_value=lo, exclude_max=True), st.floats(min_value=hi + 1e-3),
                                   st.just(math.nan)))
        elif which == "name":
            path, value = ("name",), draw(bad_name)
        elif which == "block":
            path, value = ("stages", 0, "block"), draw(st.text(max_size=8).filter(
                lambda b: b not in ("mv2", "repvit", "mobilevit", "lgl", "levit", "former")))
        else:
            path, value = ("stages",), draw(st.sampled_from([[], [TINY["stages"][0]] * 13]))
        return json.dumps(_set(TINY, path, value))
    if kind == "unknown key":
        where = draw(st.sampled_from([(), ("stem",), ("head",), ("stages", 0), ("stages", 1)]))
        key = draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in KNOWN_KEYS))
        doc = json.loads(json.dumps(TINY))
        node = doc
        for part in where:
            node = node[part]
        node[key] = draw(junk)
        return json.dumps(doc)
    if kind == "missing":
        path = draw(st.sampled_from([("resolution",), ("stages",), ("stages", 0, "width"), ("stages", 0, "block")]))
        doc = json.loads(json.dumps(TINY))
        node = doc
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
        return json.dumps(doc)
    if kind == "deep":
        depth = draw(st.integers(65, 30_000))
        nest = _deep(depth, draw(st.sampled_from(["[", '{"k": '])))
        where = draw(st.sampled_from(["document", "meta", "name", "stage"]))
        if where == "document":
            return nest
        rest = json.dumps({k: v for k, v in TINY.items() if k not in ("name", "stages")})[:-1]
        name = nest if where == "name" else '"tiny"'
        stages = [json.dumps(s) for s in TINY["stages"]] + ([nest] if where == "stage" else [])
        meta = f', "meta": {{"m": {nest}}}' if where == "meta" else ""
        return f'{rest}, "name": {name}, "stages": [{", ".join(stages)}]{meta}}}'
    if kind == "not an object":
        return json.dumps(draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=5),
                                         st.none(), st.booleans())))
    text = draw(st.text(max_size=40))
    try:
        if isinstance(json.loads(text), dict):
            text = "{" + text
    except ValueError:
        pass
    return text


def _arch_commands(arch: Path, ws: Path) -> dict[str, list]:
    """Every command that reads an ARCH, each set up so that a valid arch would still fail fast."""
    return {
        "describe": ["describe", arch],
        "export": ["export", arch, "--onnx", ws / "out" / "m.onnx"],
        "train": ["train", arch, "--epochs", "1", "--data", ws / "no-data", "--out", ws / "out" / "run"],
        "evaluate": ["evaluate", arch, "--weights", ws / "no-weights.pt", "--no-latency"],
        "latency predict": ["latency", "predict", arch, "--table", ws / "no-table.json"],
        "supernet eval": ["supernet", "eval", arch, "--supernet", ws / "no-supernet.pt", "--data", ws / "no-data"],
    }


@FUZZ
@given(text=bad_arch_text(), command=st.sampled_from(list(_arch_commands(Path("a"), Path("w")))))
def test_any_bad_arch_config_given_to_any_command_is_one_line_naming_the_file(run_cli, ws, text, command):
    arch = ws / "bad.json"
    arch.write_text(text, encoding="utf-8", errors="surrogatepass")
    line = check_contract(run_cli, *_arch_commands(arch, ws)[command])
    assert "bad.json" in line
    assert not (ws / "out").exists()


# --- bad budgets -------------------------------------------------------------------------------

def _is_valid_budget(text: str) -> bool:
    try:
        parse_budget(text)
        return True
    except UserError:
        return False


number = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats().map(repr),
                   st.sampled_from(["nan", "inf", "-inf", "1e400", "-0", "0", "0.0", ".", "1e", "--1"]))
bad_budget = st.one_of(
    st.tuples(number, st.sampled_from(["", " ", "ms", " ms", "us", "s", "µs", "m", "h", "msec", "MS"])).map("".join),
    st.text(max_size=12).filter(lambda t: "\x00" not in t),
).filter(lambda t: not _is_valid_budget(t))


@FUZZ
@given(budget=bad_budget, spelling=st.sampled_from(["separate", "equals"]))
def test_any_bad_budget_is_one_line_before_the_search_starts(run_cli, ws, budget, spelling):
    flag = ["--budget", budget] if spelling == "separate" else [f"--budget={budget}"]
    line = check_contract(run_cli, "search", *flag, "--trials", "1", "--predictor", ws / "no-predictor.json",
                          "--out", ws / "search-runs", "--quiet")
    assert "--budget" in line or "argument" in line
    assert not (ws / "search-runs").exists()


# --- bad seeds ---------------------------------------------------------------------------------

def _is_valid_seed(text: str) -> bool:
    try:
        return 0 <= int(text, 10) < 2**32
    except ValueError:
        return False


bad_seed = st.one_of(st.integers(max_value=-1).map(str), st.integers(min_value=2**32).map(str),
                     st.floats().map(repr), st.text(max_size=8).filter(lambda t: "\x00" not in t)).filter(
    lambda t: not _is_valid_seed(t))


def _seeded_commands(ws: Path) -> dict[str, list]:
    arch = ws / "tiny.json"
    return {
        "export": ["export", arch, "--onnx", ws / "out" / "m.onnx", "--seed"],
        "train": ["train", arch, "--epochs", "1", "--data", ws / "no-data", "--out", ws / "out" / "r", "--seed"],
        "search": ["search", "--budget", "1ms", "--trials", "1", "--out", ws / "out", "--quiet", "--seed"],
        "supernet train": ["supernet", "train", "--epochs", "1", "--data", ws / "no-data", "--out", ws / "out",
                           "--seed"],
        "space": ["space", "--sample"],
    }


@FUZZ
@given(seed=bad_seed, command=st.sampled_from(list(_seeded_commands(Path("w")))))
def test_any_bad_seed_is_one_line_naming_the_flag(run_cli, ws, seed, command):
    line = check_contract(run_cli, *_seeded_commands(ws)[command], seed)
    assert "--seed" in line or "--sample" in line or "argument" in line
    assert not (ws / "out").exists()


# --- bad paths ---------------------------------------------------------------------------------

INPUT_KINDS = ("missing", "folder", "binary", "empty", "file-as-folder")
OUTPUT_FILE_KINDS = ("folder", "fifo", "devnull-link", "file-as-folder")
OUTPUT_DIR_KINDS = ("file", "file-as-folder", "/proc")


def _path(ws: Path, kind: str) -> Path:
    return {"missing": ws / "missing.json", "file-as-folder": ws / "file" / "x.json", "/proc": Path("/proc/nas-fuzz/x"),
            }.get(kind, ws / kind)


def _path_cases(ws: Path, p: Path) -> dict[str, list]:
    """(command, role) -> argv with the path `p` in that role; the other arguments are valid."""
    arch = ws / "tiny.json"
    return {
        "describe ARCH": ["describe", p],
        "export ARCH": ["export", p, "--onnx", ws / "out" / "m.onnx"],
        "export --weights": ["export", arch, "--onnx", ws / "out" / "m.onnx", "--weights", p],
        "export --onnx": ["export", arch, "--onnx", p],
        "evaluate --weights": ["evaluate", arch, "--weights", p, "--no-latency"],
        "evaluate MODEL": ["evaluate", p, "--no-latency"],
        "latency predict --table": ["latency", "predict", arch, "--table", p],
        "latency show --table": ["latency", "show", "--table", p],
        "latency import RESULTS": ["latency", "import", p, "--out", ws / "out" / "t.json"],
        "latency import --out": ["latency", "import", ws / "whole.zip", "--out", p],
        "latency build --out": ["latency", "build", "--out", p, "--limit", "1", "--quiet"],
        "latency pack --out": ["latency", "pack", "--out", p],
        "train --out": ["train", arch, "--epochs", "1", "--data", ws / "no-data", "--out", p],
        "search --out": ["search", "--budget", "1ms", "--trials", "1", "--out", p, "--quiet"],
        "supernet train --out": ["supernet", "train", "--epochs", "1", "--data", ws / "no-data", "--out", p],
        "supernet eval ARCH": ["supernet", "eval", p, "--supernet", ws / "no-supernet.pt"],
        "supernet eval --out": ["supernet", "eval", arch, "--supernet", ws / "no-supernet.pt", "--out", p],
    }


ROLE_KINDS = {"export --onnx": OUTPUT_FILE_KINDS, "latency import --out": OUTPUT_FILE_KINDS,
              "latency build --out": OUTPUT_FILE_KINDS, "latency pack --out": OUTPUT_FILE_KINDS,
              "supernet eval --out": OUTPUT_FILE_KINDS, "train --out": ("file", "file-as-folder"),
              "search --out": OUTPUT_DIR_KINDS, "supernet train --out": ("file", "file-as-folder"),
              "describe ARCH": (*INPUT_KINDS, "fifo", "deep.json"), "latency import RESULTS":
              (*INPUT_KINDS, "truncated.zip"), "latency predict --table": (*INPUT_KINDS, "deep.json")}


@st.composite
def bad_path_case(draw) -> tuple[str, str]:
    role = draw(st.sampled_from(sorted(_path_cases(Path("w"), Path("p")))))
    return role, draw(st.sampled_from(ROLE_KINDS.get(role, INPUT_KINDS)))


@FUZZ
@given(case=bad_path_case())
def test_any_unusable_path_is_one_line_naming_it_and_nothing_is_replaced(run_cli, ws, case):
    role, kind = case
    if kind == "/proc" and not Path("/proc/self").is_dir():
        return
    p = _path(ws, kind)
    line = check_contract(run_cli, *_path_cases(ws, p)[role])
    assert str(p) in line or p.name in line or "--" in line, line
    assert (ws / "fifo").is_fifo() and (ws / "devnull-link").is_symlink() and (ws / "folder").is_dir()
    assert (ws / "file").read_text() == "a regular file"
    assert not (ws / "out").exists()


# --- bad names ---------------------------------------------------------------------------------

bad_study = st.one_of(st.sampled_from(["", ".", "..", "../x", "/abs", "a\\b"]),
                      st.tuples(st.text(max_size=5), st.sampled_from(["/", "\\", "..", "\n", "\t", "\x00"]),
                                st.text(max_size=5)).map("".join))


@FUZZ
@given(study=bad_study)
def test_any_study_name_that_is_not_a_plain_file_name_is_refused_before_any_folder_is_made(run_cli, ws, study):
    line = check_contract(run_cli, "search", "--budget", "1ms", "--trials", "1", "--study", study,
                          "--out", ws / "out", "--quiet")
    assert "--study" in line or "argument" in line
    assert not (ws / "out").exists()
