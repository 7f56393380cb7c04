"""The repository is self-contained: the contract users rely on lives in it (docs/), and
nothing points at files outside the checkout."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared|DESIGN\.md")


def tracked_texts() -> dict[str, str]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    texts = {}
    for name in names:
        path = ROOT / name
        text_file = path.suffix in {".py", ".md", ".html", ".js", ".css", ".toml", ".txt", ""}
        if text_file and path.is_file():
            texts[name] = path.read_text(errors="replace")
    return texts


def test_repository__every_tracked_file__points_at_nothing_outside_it():
    # Given every tracked text file of the checkout
    texts = tracked_texts()
    assert "docs/CONTRACT.md" in texts and "README.md" in texts
    # Then none cites a file outside the repository (the contract is docs/CONTRACT.md)
    offenders = {name for name, text in texts.items() if OUTSIDE.search(text)}
    assert offenders == set(), offenders


def test_readme__links__resolve_inside_the_repository():
    # Given the README's relative links
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?!https?:|#|mailto:)[^)\s]+)\)", readme)
    # Then each names a file of the checkout
    assert links, "the README links its contract"
    missing = [link for link in links if not (ROOT / link.split("#")[0]).exists()]
    assert missing == [], missing
