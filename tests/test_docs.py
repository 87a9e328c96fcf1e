"""The docs as a user meets them: a README short enough to read, links that lead somewhere, every guide reachable
from the README or the docs index, and no work-item numbers or process words in what the repository ships.

Fast and torch-free: it reads Markdown and `git ls-files`, nothing else.
"""

import re
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS_DIR = ROOT / "docs"
DOCS_INDEX = DOCS_DIR / "README.md"
MAX_README_LINES = 320  # the README is the user's manual; narratives belong in docs/

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...

# Work-item numbers and process words: the code and docs name a result by what it is (the uniform cut, v0.4, the
# date, the commit), never by the ticket or the run of work it came from.
WORK_ITEM = re.compile(r"\b(issue|stop)\s*#?\d+", re.I)
PROCESS_WORDS = re.compile(r"\b(this|previous)\s+" + "sess" + r"ion\b", re.I)
BINARY_SUFFIXES = {".pt", ".pth", ".png", ".jpg", ".jpeg", ".npy", ".npz", ".onnx", ".plan", ".engine", ".gz", ".whl"}


def docs() -> List[Path]:
    return sorted(DOCS_DIR.glob("*.md"))


def prose(text: str) -> str:
    """Markdown without its code: fenced blocks and inline code spans hold commands and paths, not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lowercased, punctuation dropped (except - and _), spaces
    to hyphens."""
    text = re.sub(r"!?\[((?:[^\]\[]|\[[^\]]*\])*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 ... for repeated headings."""
    seen: Dict[str, int] = {}
    found = set()
    for _, title in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> Iterator[Tuple[int, str]]:
    """(line number, target) of every link and image in a Markdown file's prose."""
    text = path.read_text(encoding="utf-8")
    blanked = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # keep line numbers
    for number, line in enumerate(blanked.splitlines(), 1):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            yield number, target


def relative_links(path: Path) -> Iterator[Tuple[int, str, Path, str]]:
    """(line, target, resolved file, anchor) of every link that is not to another site."""
    for number, target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path.resolve()
        yield number, target, resolved, anchor


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, (
        f"README.md has {lines} lines (at most {MAX_README_LINES}): move the detail into a guide in docs/")


@pytest.mark.parametrize("path", [README, *docs()], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = []
    for number, target, resolved, anchor in relative_links(path):
        if not resolved.exists():
            broken.append(f"{path.name}:{number}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{path.name}:{number}: {target} (no heading #{anchor} in {resolved.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_guide_is_linked():
    linked = {resolved for index in (README, DOCS_INDEX) if index.exists()
              for _, _, resolved, _ in relative_links(index)}
    orphans = [str(p.relative_to(ROOT)) for p in docs() if p.resolve() not in linked]
    assert not orphans, f"guides linked from neither README.md nor docs/README.md: {orphans}"


def test_slug_follows_github():
    assert slug("Measuring it: `rrl-edge register-eval`") == "measuring-it-rrl-edge-register-eval"
    assert slug("Cameras the model has not seen (leave-one-dataset-out)") == \
        "cameras-the-model-has-not-seen-leave-one-dataset-out"
    assert slug("RoadScene's ground truth") == "roadscenes-ground-truth"
    assert slug("Accuracy: FPR95 (%) of the shipped models") == "accuracy-fpr95--of-the-shipped-models"


def tracked_files() -> List[Path]:
    """The files git tracks, plus new ones it does not ignore; skips the test where there is no git checkout."""
    try:
        result = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], capture_output=True, check=False)
    except OSError as exc:
        pytest.skip(f"git is not available ({exc}), so the tracked files cannot be listed")
    if result.returncode != 0:
        pytest.skip(f"{ROOT} is not a git checkout (an unpacked sdist or wheel?), so there are no tracked files "
                    f"to read: {result.stderr.decode(errors='replace').strip()}")
    names = sorted({name for name in result.stdout.decode().split("\0") if name})
    return [ROOT / name for name in names]


def test_no_work_item_numbers_or_process_words():
    hits = []
    for path in tracked_files():
        if path.suffix.lower() in BINARY_SUFFIXES or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        text = data.decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            match = WORK_ITEM.search(line) or PROCESS_WORDS.search(line)
            if match:
                hits.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)!r}")
    assert not hits, ("name the result (the uniform cut, the version, the date, the commit), not the work item:\n"
                      + "\n".join(hits))
