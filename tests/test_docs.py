"""Every file the docs, docstrings and examples cite exists in the repository, with its anchors; nothing cites
the developers' private notes."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "lindiff").rglob("*.py")),
           *sorted((ROOT / "examples").glob("*.py")), *sorted((ROOT / "derivations").glob("*.py")),
           *sorted((ROOT / "benchmarks").glob("*.py"))]
CITED = re.compile(r"(?<![\w/.-])((?:docs|derivations|examples|benchmarks|tests|lindiff)/(?![A-Z]+\.)[\w./-]+\.(?:md|py))(#[\w-]+)?")
PRIVATE = re.compile(r"THEORY(?:\.md| §)|\bnotes/[\w_]+\.md|\.\./shared|\bAPI\.md\b")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return out


def test_every_cited_path_and_anchor_exists():
    checked = 0
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        for path, anchor in CITED.findall(text):
            target = ROOT / path
            assert target.exists(), f"{source.relative_to(ROOT)} cites {path}, which does not exist"
            if anchor:
                assert anchor[1:] in _anchors(target.read_text(encoding="utf-8")), \
                    f"{source.relative_to(ROOT)} cites {path}{anchor}: no such heading"
            checked += 1
    assert checked >= 15


def test_nothing_cites_the_private_notes():
    for source in SOURCES:
        for k, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            assert not PRIVATE.search(line), f"{source.relative_to(ROOT)}:{k} cites private notes: {line.strip()}"


def test_readme_names_every_sampler_and_the_count_is_right():
    import lindiff

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in lindiff.SAMPLERS if f"`{name}`" not in text]
    assert not missing, f"README does not list the samplers {missing}"
    assert f"{len(lindiff.SAMPLERS)} samplers" in text


def test_sampling_law_help_lists_every_sampler():
    import lindiff

    doc = lindiff.sampling_law.__doc__ + (lindiff.samplers.__doc__ or "")
    assert all(f"``{name!r}``" in doc or f"``\"{name}\"``" in doc or f"'{name}'" in doc for name in lindiff.SAMPLERS)
