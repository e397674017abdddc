"""The README's front page: under 4 KB, its links resolve, and its commands run as written (the quick
ones here; the set-up scripts are what CI runs, so here they only have to parse)."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def blocks(text, lang):
    return re.findall(r"```" + lang + r"\n(.*?)```", text, re.S)


def test_front_page_is_short():
    assert len(read("README.md").encode()) < 4096


def test_links_resolve():
    for page in ["README.md"] + [os.path.join("docs", p) for p in os.listdir(os.path.join(ROOT, "docs"))]:
        base = os.path.dirname(os.path.join(ROOT, page))
        for target in re.findall(r"\]\(([^)#]+)\)", read(page)):
            if "://" not in target:
                assert os.path.exists(os.path.join(base, target)), f"{page} links to {target}"


def test_python_blocks_run():
    for code in blocks(read("README.md"), "python"):
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)


@pytest.mark.parametrize("page", ["README.md", "docs/training.md", "docs/performance.md", "docs/production.md"])
def test_shell_commands_are_real(page):
    """Every command line of the page's bash blocks names a script that bash can parse, or a
    python -m module; the quick ones (--list, --help) run."""
    for block in blocks(read(page), "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            cmd = line.split("#")[0].strip().rstrip("&").strip()
            if not cmd:
                continue
            for part in (p.strip() for p in cmd.split("&&")):
                words = part.split()
                if words[0] == "bash":
                    subprocess.run(["bash", "-n", os.path.join(ROOT, words[1])], check=True)
                elif words[:2] == ["python", "-m"] or (words[0] == "torchrun" and "-m" in words):
                    # torchrun ... -m MODULE ...: the module's --help (a distributed run is test_production's)
                    at = words.index("-m")
                    module = words[at + 1]
                    quick = [w for w in words[at + 2:] if w in ("--list", "--help")]
                    args = quick or ["--help"]
                    r = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                                       cwd=ROOT, timeout=300)
                    assert r.returncode == 0, f"{part}: {r.stderr}"
                elif words[0] == "python" and len(words) > 1 and words[1].endswith(".py"):
                    r = subprocess.run([sys.executable, os.path.join(ROOT, words[1]), "--help"], capture_output=True,
                                       text=True, cwd=ROOT, timeout=300)
                    assert r.returncode == 0, f"{part}: {r.stderr}"
                else:
                    pytest.fail(f"{page}: a command this test does not know how to check: {part}")
