"""Every trap citation in the repository resolves to a heading of docs/MXNET_TRAPS.md.

Comments cite the trap list as ``MXNET_TRAPS 13``, ``(MXNET_TRAPS 36)``, ``TRAPS 42``,
``MXNET_TRAPS 38-39`` or ``MXNET_TRAPS 32, 35``, sometimes with the number on the next
comment line. The tree is scanned at test time (tracked and untracked-but-not-ignored files
from ``git ls-files``, or a walk of the folder without git), so citations added later are
checked too. The page must number its traps ``## N. title``, 1..max, once each.
"""
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "MXNET_TRAPS.md"
THIS = Path(__file__).resolve()

SCANNED_SUFFIXES = {".py", ".ini", ".cfg", ".toml", ".md", ".txt", ".sh", ".yml", ".yaml"}
SCANNED_NAMES = {"run"}  # .ci/run
SKIPPED_DIRS = {".git", ".venv", "venv", "runs", "data", "phantom", "__pycache__",
                ".pytest_cache"}

# "MXNET_TRAPS" or a bare "TRAPS" (upper case, a whole word: not "MXNET_TRAPS.md"), then
# blanks / comment marks / a colon, possibly across a line break, then numbers joined by
# commas, "and", "&" or a range dash.
_NUMBERS = r"\d+(?:\s*(?:,|&|and|-|–|—)\s*\d+)*"
CITATION = re.compile(r"\b(?:MXNET_)?TRAPS(?![\w.])[\s#:*]*(" + _NUMBERS + r")(?![\d.]\d)")
HEADING = re.compile(r"^## (\d+)\. \S", re.M)


def cited_numbers(text):
    """``[(number, offset of the citation), ...]`` for every trap citation in ``text``;
    ranges ``a-b`` expand to ``a..b``."""
    out = []
    for m in CITATION.finditer(text):
        nums = m.group(1)
        for part in re.split(r"\s*(?:,|&|and)\s*", nums):
            bounds = [int(v) for v in re.split(r"\s*[-–—]\s*", part)]
            if len(bounds) == 2 and bounds[0] <= bounds[1]:
                out += [(n, m.start()) for n in range(bounds[0], bounds[1] + 1)]
            else:
                out += [(n, m.start()) for n in bounds]
    return out


def _wanted(rel):
    parts = Path(rel).parts
    if any(p in SKIPPED_DIRS for p in parts[:-1]):
        return False
    return Path(rel).suffix in SCANNED_SUFFIXES or Path(rel).name in SCANNED_NAMES


def repo_files():
    """Files to scan, relative to the repository root."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=ROOT, capture_output=True,
                             check=True, timeout=60).stdout.decode("utf-8")
        rels = [r for r in out.split("\0") if r]
    except (OSError, subprocess.SubprocessError):  # no git (an exported tree)
        rels = []
        for folder, dirs, names in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
            rels += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names]
    files = [ROOT / r for r in sorted(set(rels)) if _wanted(r)]
    return [f for f in files if f.is_file() and f.resolve() != THIS]


def citations():
    """``[(relative path, line, number), ...]`` over the whole tree."""
    found = []
    for path in repo_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, offset in cited_numbers(text):
            found.append((str(path.relative_to(ROOT)), text.count("\n", 0, offset) + 1, number))
    return found


def headings():
    return [int(n) for n in HEADING.findall(DOC.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("text,numbers", [
    ("see MXNET_TRAPS 13", [13]),
    ("augmentations (MXNET_TRAPS 36).", [36]),
    ("before amp.init (TRAPS 42).", [42]),
    ("    # import mxnet / gluoncv emit these with numpy 1.23.5 (MXNET_TRAPS 24)", [24]),
    ("0/1 never learns: MXNET_TRAPS 38-39).", [38, 39]),
    ("MXNET_TRAPS 32, 35 and more", [32, 35]),
    ("MXNET_TRAPS 4, 7 and 9", [4, 7, 9]),
    ("features``: MXNET_TRAPS\n        40). Needs", [40]),
    ("# the race (MXNET_TRAPS\n        # 35). Not", [35]),
    ("MXNET_TRAPS: 12", [12]),
    ("malformed lines (MXNET_TRAPS 4) and an image without objects (7).", [4]),
    ("docs/MXNET_TRAPS.md has 43 traps", []),
    ("traps 13 in lower case is prose", []),
    ("MXNET_TRAPSX 13", []),
    ("MXNET_TRAPS 1.9.1", []),
])
def test_citation_forms(text, numbers):
    assert [n for n, _ in cited_numbers(text)] == numbers


def test_the_scan_covers_code_config_and_docs():
    rels = {str(p.relative_to(ROOT)) for p in repo_files()}
    assert "pytest.ini" in rels and "docs/MXNET_TRAPS.md" in rels
    assert any(r.startswith("models/") and r.endswith(".py") for r in rels)
    assert not any(Path(r).parts[0] in SKIPPED_DIRS for r in rels)


def test_headings_are_numbered_1_to_max_once_each():
    nums = headings()
    assert nums, f"{DOC} has no '## N. title' headings"
    dupes = sorted({n for n in nums if nums.count(n) > 1})
    assert not dupes, f"trap numbers with more than one heading: {dupes}"
    missing = sorted(set(range(1, max(nums) + 1)) - set(nums))
    assert not missing, f"gaps in the trap numbering: {missing}"
    assert nums == sorted(nums), "trap headings are out of order"


def test_every_level_two_heading_is_a_trap():
    # Sections are bold lines, so a citation "N" can only mean the heading "## N.".
    lines = [ln for ln in DOC.read_text(encoding="utf-8").splitlines() if ln.startswith("## ")]
    bad = [ln for ln in lines if not HEADING.match(ln)]
    assert not bad, f"'##' headings that are not '## N. title': {bad}"


def test_every_citation_has_a_heading():
    found = citations()
    assert found, "no MXNET_TRAPS citation found anywhere: the scan is broken"
    have = set(headings())
    unresolved = [f"{path}:{line}: TRAPS {n}" for path, line, n in found if n not in have]
    assert not unresolved, ("citations without a '## N.' heading in docs/MXNET_TRAPS.md:\n"
                            + "\n".join(unresolved))
