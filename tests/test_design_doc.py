"""The project stands alone: comments cite docs/design.md sections that exist, and nothing
cites a document outside the repository."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
DESIGN = ROOT / "docs" / "design.md"
SOURCES = sorted(p for folder in ("pixellib", "tests", "benchmarks")
                 for p in (ROOT / folder).rglob("*.py"))


def _headings() -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^#+ (.+)$", DESIGN.read_text(), re.M)}


def test_design_sections_cited_in_the_code_exist():
    headings = _headings()
    cited = {}
    for path in (p for p in SOURCES if p.name != "test_design_doc.py"):
        # docs/design.md, "A", "B" and "C"  (possibly across a line break and a comment mark)
        text = re.sub(r"\n\s*(#:?|\*)?\s*", " ", path.read_text(encoding="utf-8"))
        for m in re.finditer(r'docs/design\.md[,;]? ((?:"[^"]+"(?:,? (?:and )?)?)+)', text):
            for name in re.findall(r'"([^"]+)"', m.group(1)):
                cited.setdefault(name, []).append(path.name)
    assert cited, "no citation found: the pattern is broken"
    missing = {name: files for name, files in cited.items() if name not in headings}
    assert not missing, missing


def test_no_comment_cites_a_document_outside_the_repository():
    pattern = re.compile(r"spec §|founding document|test-checkpoint\.md|\.\./shared|"
                         r"parent / \"shared\"", re.I)
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in SOURCES
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if pattern.search(line) and p.name != "test_design_doc.py"]
    assert not offenders, offenders
