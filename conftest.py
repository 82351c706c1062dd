"""Repository-level pytest configuration: optional modules' doctests skip, with the reason, when their
extra is not installed (collecting them would otherwise fail at import)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# module (relative to the repository) -> (modules it needs, the extra that installs them)
OPTIONAL_MODULES = {
    "lindiff/adapters/diffusers.py": (("torch", "diffusers"), "diffusers"),
    "lindiff/adapters/kdiffusion.py": (("torch", "k_diffusion"), "kdiffusion"),
}
ROOT = Path(__file__).resolve().parent


def missing_modules(names) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def pytest_collection_modifyitems(config, items):
    # doctests of optional modules belong to the "extras" selection that .ci/run repeats with extras installed
    for item in items:
        try:
            key = Path(str(item.path)).resolve().relative_to(ROOT).as_posix()
        except ValueError:
            continue
        if key in OPTIONAL_MODULES:
            item.add_marker(pytest.mark.extras)


class _SkippedDoctests(pytest.Item):
    def __init__(self, *, reason: str, **kwargs):
        super().__init__(**kwargs)
        self.reason = reason

    def runtest(self):
        pytest.skip(self.reason)

    def reportinfo(self):
        return self.path, None, f"[doctest] {self.path.name}"


class _OptionalModule(pytest.File):
    reason = ""

    def collect(self):
        yield _SkippedDoctests.from_parent(self, name="doctests", reason=self.reason)


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent):
    collected = yield
    try:
        key = file_path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return collected
    if key not in OPTIONAL_MODULES:
        return collected
    needs, extra = OPTIONAL_MODULES[key]
    missing = missing_modules(needs)
    if not missing:
        return collected
    item = _OptionalModule.from_parent(parent, path=file_path)
    item.reason = f"{', '.join(missing)} not installed: the optional extra lindiff[{extra}] is needed for {key}"
    return [item]
