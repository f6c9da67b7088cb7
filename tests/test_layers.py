"""The import layer order the README states, checked on the source: every module imports only its
own layer or the ones below, and no two modules import each other, even through a function body;
and an import sits inside a function only with its reason written beside it."""
from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module belongs to the first layer one of whose prefixes it starts with.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("nas.errors", "nas.atomic", "nas.checkpoint", "nas.safezip", "nas.budget", "nas.arch")),
    ("blocks", ("nas.blocks",)),
    ("builder", ("nas.builder", "nas.export", "nas.profile", "nas.data")),
    ("space/zoo", ("search_spaces",)),
    ("predictors", ("predictors",)),
    ("supernet/train", ("nas.train", "nas.supernet")),
    ("search", ("nas.search",)),
    ("cli", ("nas.cli",)),
]
PACKAGES = ("nas", "predictors", "search_spaces")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _layer(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return -1  # the `nas` package itself (its version): below everything


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules `path` imports anywhere (module level or in a function), except under
    `if TYPE_CHECKING:` (annotations only, never executed)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for block in ast.walk(tree) if _type_checking(block) for n in ast.walk(block)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def test_every_import_goes_to_the_same_layer_or_below():
    modules = _modules()
    wrong = [f"{m} ({LAYERS[_layer(m)][0]}) imports {t} ({LAYERS[_layer(t)][0]})"
             for m, path in sorted(modules.items()) for t in sorted(_imports(path, modules))
             if _layer(t) > _layer(m)]
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_itself_back_through_others():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt in path and not nxt.startswith(node + ".") and not node.startswith(nxt + "."):
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif state.get(nxt) is None:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if state.get(module) is None:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def _unexplained_local_imports(text: str) -> list[int]:
    """First lines of the imports inside function bodies that no comment explains: one on the
    import's own lines, or a comment line right above it (which may head a run of such imports)."""
    lines = text.splitlines()
    comments = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                if tok.type == tokenize.COMMENT and not tok.string.lstrip("# ").startswith(("noqa", "type:"))}
    first_of: dict[int, int] = {}  # last line -> first line of each function-local import
    for func in ast.walk(ast.parse(text)):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    first_of[node.end_lineno or node.lineno] = node.lineno

    def commented(first: int, last: int) -> bool:
        return any(n in comments for n in range(first, last + 1))

    missing = []
    for last, first in sorted(first_of.items()):
        if commented(first, last):
            continue
        above = first - 1
        while above in first_of and not commented(first_of[above], above):  # a run under one comment
            above = first_of[above] - 1
        if not (above in comments and lines[above - 1].lstrip().startswith("#")):
            missing.append(first)
    return missing


def test_an_import_inside_a_function_says_why_it_is_not_at_the_top():
    """Imports go at the module top. One sits in a function only where start-up time (a heavy
    library on a rare path, e.g. `# matplotlib: ~0.5 s, only when a plot is drawn`) or an optional
    dependency needs it, and then says so in a comment on its line or the line above."""
    missing = [f"{path.relative_to(ROOT)}:{line}" for _, path in sorted(_modules().items())
               for line in _unexplained_local_imports(path.read_text(encoding="utf-8"))]
    assert not missing, "function-local imports without a reason comment (move them to the top, or say why):\n" \
        + "\n".join(missing)


def test_the_local_import_check_reads_comments_as_meant():
    source = """
def f():
    import a  # reason

    # reason for the two below
    import b
    from c import (
        d,
    )

    import e
    import g  # noqa: F401
    x = 1  # not a reason for the next line
    import h
"""
    assert _unexplained_local_imports(source) == [11, 12, 14]
