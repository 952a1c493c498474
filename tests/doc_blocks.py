"""Python code blocks of a Markdown document, for the tests that run documentation verbatim."""
from __future__ import annotations

import re


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number, code)`` of each fenced block opened by ```` ```python ````."""
    blocks, current = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if current is None:
            if re.fullmatch(r"```\s*python", stripped):
                current = (number + 1, [])
        elif stripped.startswith("```"):
            blocks.append((current[0], "\n".join(current[1])))
            current = None
        else:
            current[1].append(line)
    assert current is None, "unclosed code block"
    return blocks
