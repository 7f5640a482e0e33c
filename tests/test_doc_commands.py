"""Every shell block of README.md and docs/*.md runs as written, from a fresh clone's layout.

A ```bash block runs, line by line as bash runs it (`set -e`), in a copy of the repository's
tracked files (with `saved_models/` and the installed `.venv` linked in, as after `make setup`),
and each file a command names with --out or --npy must exist afterwards. A block that trains or
serves a port opens with the line

    # not run in tests: WHY (e.g. "trains for 15 minutes", "serves ports 8501 and 8500")

and is not run; a block without it that trains, serves or installs fails
`test_blocks_that_train_or_serve_say_so`, and one that fails or takes over BLOCK_TIMEOUT seconds
fails `test_doc_block_runs`. The curl requests of the marked blocks are checked apart, against
the export TF Serving would load (`test_defect_2_...`). Test names `test_defect_N_...` are the
defects of the project's issue 28.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import REPO, SHIPPED

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^ {0,3}```(\w*)\s*$")
SHELL = {"bash", "sh", "shell", "console"}
MARKER = re.compile(r"^# not run in tests: \S")
# What a block may only show under the marker: training, evaluating or benchmarking for minutes,
# a server on a port (or a request to one), an install.
LONG = re.compile(r"\bmake (train|test|demo|setup data)\b|pipelines\.(train|train_classifier|"
                  r"evaluate|benchmark|demo|client)\b|\b(docker|curl|tensorboard|nohup)\b|"
                  r"\bpip install\b")
BLOCK_TIMEOUT = 120  # seconds: each command of a run block loads TensorFlow once, 5 to 10 s
OUTPUT_FLAGS = ("--out", "--npy")
INPUT_FLAGS = ("--restyle", "--inpaint", "--denoise", "--upscale", "--mask", "--classify")


class Block(NamedTuple):
    page: Path
    line: int  # of the opening fence
    text: str
    marked: bool

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def shell_blocks(page: Path) -> list[Block]:
    """The fenced shell blocks of a page, in order."""
    blocks, lines, start, language = [], [], None, None
    for number, line in enumerate(page.read_text().splitlines(), 1):
        match = FENCE.match(line)
        if start is None and match:
            start, language, lines = number, match.group(1), []
        elif start is not None and line.strip().startswith("```"):
            if language in SHELL:
                blocks.append(Block(page, start, "\n".join(lines) + "\n",
                                    bool(lines) and bool(MARKER.match(lines[0]))))
            start = None
        elif start is not None:
            lines.append(line)
    return blocks


def commands(text: str) -> list[list[str]]:
    """The block's command lines (continuations joined, comments dropped) as words."""
    joined = re.sub(r"\\\n", " ", text)
    out, pending = [], ""
    for line in joined.splitlines():
        pending += line + "\n"
        try:  # a quoted argument may go on over lines (curl's -d '...')
            words = shlex.split(pending, comments=True)
        except ValueError:
            continue
        if words:
            out.append(words)
        pending = ""
    return out


def _values(words: list[str], flags) -> list[str]:
    found = []
    for i, word in enumerate(words[:-1]):
        if word in flags:
            found.append(words[i + 1])
    return found


def python_blocks(page: Path) -> list[str]:
    text, out = page.read_text(), []
    for match in re.finditer(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        out.append(match.group(1))
    return out


BLOCKS = [block for page in PAGES for block in shell_blocks(page)]
RUN = [block for block in BLOCKS if not block.marked]


def _env(layout: Path) -> dict:
    """A new user's environment in the layout: the venv's python first, none of the test
    suite's settings (TF_CPP_MIN_LOG_LEVEL, CVAE_VERBOSE, PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "CVAE_VERBOSE", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{layout / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    """A fresh clone's files after `make setup`: the tracked ones (as they are in the working
    tree), `saved_models/` linked to the checkout's, and a `.venv/` whose contents link to the
    checkout's environment with a fresh `.installed` stamp, so that `make setup` has nothing
    to do (that the environment is up to date is `make test`'s own first step)."""
    root = tmp_path_factory.mktemp("clone")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in tracked:
        if not name or name.startswith("saved_models/") or not (REPO / name).is_file():
            continue
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    (root / "saved_models").symlink_to(REPO / "saved_models")
    (root / ".venv").mkdir()
    for entry in (REPO / ".venv").iterdir():
        if entry.name != ".installed":
            (root / ".venv" / entry.name).symlink_to(entry)
    (root / ".venv" / ".installed").touch()
    assert subprocess.run(["make", "-q", "setup"], cwd=root).returncode == 0
    return root


# ------------------------------------------------------------------------------ every block


def test_blocks_are_found():
    names = {block.name for block in BLOCKS}
    assert "README.md:8" in names and len(RUN) >= 3
    assert all(block.text.strip() for block in BLOCKS)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_blocks_that_train_or_serve_say_so(page):
    unmarked = [f"{block.name}: {LONG.search(block.text).group()}"
                for block in shell_blocks(page) if not block.marked and LONG.search(block.text)]
    assert unmarked == [], "give these blocks '# not run in tests: WHY' as their first line"


@pytest.mark.parametrize("block", [b for b in RUN if not LONG.search(b.text)],
                         ids=lambda b: b.name)
def test_doc_block_runs(layout, block):
    """The block as bash runs it, from the fresh layout: exit 0, and every --out and --npy
    file its commands name is there afterwards."""
    outputs = [layout / path for words in commands(block.text)
               for path in _values(words, OUTPUT_FLAGS)]
    for path in outputs:
        path.unlink(missing_ok=True)
    start = time.monotonic()
    try:
        result = subprocess.run(["bash", "-e", "-c", block.text], cwd=layout, env=_env(layout),
                                capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.name} ran over {BLOCK_TIMEOUT} s: give it '# not run in tests: "
                    f"WHY' as its first line")
    assert result.returncode == 0, (f"{block.name} exited {result.returncode} after "
                                    f"{time.monotonic() - start:.0f} s:\n{result.stdout[-2000:]}"
                                    f"\n{result.stderr[-3000:]}")
    assert [str(p.relative_to(layout)) for p in outputs if not p.is_file()] == []


# ------------------------------------------------------------------------------ the defects


def test_defect_1_every_version_a_doc_command_names_is_there():
    """`--version` values in the docs' commands (as bash expands them) name versions present."""
    from cvae import options

    checked = 0
    for block in BLOCKS:
        for words in commands(block.text):
            for version in _values(words, ("--version",)):
                model = (_values(words, ("--model",)) or ["saved_models/cvae"])[0]
                if version == "N":
                    continue  # a placeholder in prose-like examples
                expanded = subprocess.run(["bash", "-c", f"echo {version}"], cwd=REPO,
                                          capture_output=True, text=True).stdout.strip()
                options.resolve_version(REPO / model, int(expanded))
                checked += 1
    assert checked >= 1


def _curl_calls(layout: Path) -> list[list[str]]:
    """The arguments of every curl call in the docs' shell blocks, as bash passes them
    (docker and curl replaced by functions that record their arguments)."""
    log = layout / "curl.log"
    log.unlink(missing_ok=True)
    record = (f'curl() {{ "{sys.executable}" -c "import json, sys; print(json.dumps(sys.argv[1:]))"'
              f' "$@" >> {shlex.quote(str(log))}; }}\ndocker() {{ :; }}\n')
    for block in BLOCKS:
        if re.search(r"\bcurl\b", block.text):
            subprocess.run(["bash", "-e", "-c", record + block.text], cwd=layout, check=True,
                           env=_env(layout), timeout=60)
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_defect_2_curl_requests_fit_the_served_model(layout):
    """Each curl request of the docs, turned into tensors by TF Serving's REST rules, runs on
    the version its URL names (the newest without one): the right latent size, a version that
    is there."""
    import tensorflow as tf

    from cvae import options
    from cvae.serving import rest_json

    calls = _curl_calls(layout)
    assert len(calls) >= 3
    for args in calls:
        url = next(a for a in args if a.startswith("http"))
        body = args[args.index("-d") + 1]
        match = re.fullmatch(r"http://localhost:8501/v1/models/([^/:]+)(?:/versions/(\d+))?"
                             r":predict", url)
        assert match, url
        path = options.resolve_version(layout / "saved_models" / match.group(1),
                                       int(match.group(2)) if match.group(2) else None)
        signatures = tf.saved_model.load(str(path)).signatures
        name, signature = rest_json.select_signature(body, signatures)
        tensors = rest_json.request_to_tensors(body, signature)
        out = signature(**{k: tf.constant(v) for k, v in tensors.items()})
        assert out, (url, name)


def test_defect_3_every_input_a_doc_command_reads_ships():
    """Every file a doc command reads (--restyle, --inpaint, --denoise, --mask PNGs, images to
    classify) is tracked in the repository, so the commands run on a fresh clone."""
    from cvae import options

    tracked = set(subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                                 check=True).stdout.split())
    read = []
    for block in BLOCKS:
        for words in commands(block.text):
            read += [v for v in _values(words, INPUT_FLAGS) if v not in options.MASK_NAMES]
            if "--classify" in words:
                i = words.index("--classify") + 1
                while i < len(words) and not words[i].startswith("-"):
                    read.append(words[i])
                    i += 1
            if "pipelines.classify" in words:
                i = words.index("pipelines.classify") + 1
                while i < len(words) and not words[i].startswith("-"):
                    read.append(words[i])
                    i += 1
    assert len(read) >= 8
    assert sorted(set(read) - tracked) == []


def test_the_examples_are_what_the_script_makes():
    """docs/examples/ holds what `scripts/make_examples.py` makes from the test set."""
    import numpy as np
    import tensorflow as tf

    from cvae.data import read_idx_split, resolve_source

    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import make_examples
    finally:
        sys.path.remove(str(REPO / "scripts"))
    source = resolve_source(None, "auto")
    if source.kind != "idx":
        pytest.skip("the Fashion-MNIST IDX files are not installed (make data)")
    made = make_examples.examples(*read_idx_split(source.path, "test"))
    shipped = sorted(p.name for p in (REPO / "docs" / "examples").glob("*.png"))
    assert shipped == sorted(made)
    for name, image in made.items():
        png = tf.io.decode_png((REPO / "docs" / "examples" / name).read_bytes()).numpy()
        np.testing.assert_array_equal(png, image)


def test_defect_8_the_demo_page_quotes_the_shipped_temperature():
    text = (REPO / "docs" / "demo.md").read_text()
    quoted = re.search(r"([0-9.]+) for the shipped model", text)
    config = json.loads((SHIPPED / "assets.extra" / "config.json").read_text())
    assert quoted and float(quoted.group(1)) == config["model"]["temperature"]
    assert "version 7" not in text


def test_defect_9_readme_python_example_prints_only_its_result(layout):
    """The README's Python example, run as a new user would (python, no settings), exits 0
    and writes nothing on stderr: no absl, oneDNN or cuInit lines."""
    (example,) = python_blocks(REPO / "README.md")
    script = example + "print(images.shape)\n"
    result = subprocess.run(["python", "-c", script], cwd=layout, env=_env(layout),
                            capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "(2, 28, 28, 1)\n" and result.stderr == ""
