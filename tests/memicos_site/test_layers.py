"""The layering rules (pyproject.toml's import-linter contracts), run here as `make lint` runs them so that CI,
which runs the test suite, checks them too; and each contract shown to break on the import it forbids."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_every_import_layering_contract_is_kept():
    run = _lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"Contracts: {len(CONFIG['contracts'])} kept, 0 broken." in run.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory):
    """The packages and the config, copied, so a test can add a forbidden import without touching the checkout."""
    root = tmp_path_factory.mktemp("layers")
    shutil.copy(ROOT / "pyproject.toml", root)
    for package in CONFIG["root_packages"]:
        shutil.copytree(
            ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "templates", "static")
        )
    return root


# A lazy import inside a function counts as much as one at the top of a module.
VIOLATIONS = {
    "torch-only-in-runtime": ("retrieval/selectors.py", "def _cache():\n    import torch  # noqa\n"),
    "runtime-imports-no-django": (
        "inference/runtime/corpus.py",
        "def _rows():\n    from features.models import Feature  # noqa\n",
    ),
    "features-imports-no-other-app": (
        "features/selectors.py",
        "def _explain():\n    from autointerp import tasks  # noqa\n",
    ),
    "runtime-layers": (
        "inference/runtime/models.py",
        "def _toy():\n    from inference.runtime import toy_cyclic  # noqa\n",
    ),
    "runtime-acyclic": (
        "inference/runtime/saes.py",
        "def _cache():\n    from inference.runtime import worker  # noqa\n",
    ),
}


@pytest.mark.parametrize("contract", list(VIOLATIONS))
def test_each_contract_breaks_on_the_import_it_forbids(tree_copy, contract):
    assert contract in {c["id"] for c in CONFIG["contracts"]}
    path, code = VIOLATIONS[contract]
    target = tree_copy / path
    original = target.read_text()
    assert _lint_imports(tree_copy, "--contract", contract).returncode == 0
    try:
        target.write_text(original + "\n\n" + code)
        run = _lint_imports(tree_copy, "--contract", contract)
    finally:
        target.write_text(original)
    assert run.returncode == 1, run.stdout + run.stderr
    assert Path(path).stem in run.stdout  # the report names the importing module
