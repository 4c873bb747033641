"""The code of README.md and docs/*.md, checked against the code it documents.

**Shell blocks** (```bash, ```sh, ```shell, ```console; in a console block only the ``$ `` lines): every
``uniformerv2 ...`` command line (also ``.venv/bin/uniformerv2``, ``python -m uniformerv2``, ``torchrun ... -m
uniformerv2``, after ``VAR=value`` prefixes, in pipes and ``&&`` chains, over ``\\`` continuations) is parsed by
the real CLI parser, ``python -m uniformerv2.<module> ...`` and ``python benchmarks/<script>.py ...`` by that
module's or script's own parser, and ``make TARGET`` must name a target of the Makefile: a renamed or removed
option fails here, with the file, line and command. Placeholders (``VIDEO``, ``<dir>``) are just strings.
Synopsis notation is expanded: ``[...]`` is optional (the line is parsed without it and with each alternative in
it), ``a|b`` are alternatives, ``...`` ("more of the same") is dropped.

**Python blocks** (```python) run, each in its own namespace and its own temporary working directory, which holds
the files the docs name (``FILES`` below: short generated videos, a list file, a tiny model directory, a tiny
official checkpoint, a tiny CLIP file). An HTML comment on the line just before a block changes how it runs;
its options are separated by ``;``::

    <!-- test: tiny -->                     apply TINY (big presets and pretrained names -> tiny ones, fewer workers)
    <!-- test: given clf, paths -->         names the block takes from the text before it (GIVEN)
    <!-- test: run uniformerv2 export onnx runs/k400_b16 k400_b16.onnx -->   a command run first, in its folder
    <!-- test: skip needs the network (downloads the 458 MB checkpoint) -->    not run; skipped with this reason

A block without a marker runs as written.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import runpy
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console"}
MARKER = re.compile(r"^\s*<!--\s*test:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")


# ----------------------------------------------------------------------------------------------- blocks
def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


@dataclass
class Block:
    path: Path
    line: int            # 1-based line of the opening fence
    lang: str
    lines: list[str]     # the block's lines, dedented to its fence
    options: dict = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{rel(self.path)}:{self.line}"

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def parse_marker(text: str) -> dict:
    """``tiny; given clf, paths; run CMD; skip REASON`` -> {"tiny": "", "given": "clf, paths", ...}."""
    options = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, _, value = part.partition(" ")
        if key not in ("tiny", "given", "run", "skip"):
            raise ValueError(f"unknown test marker option {key!r} in {text!r}")
        options[key] = value.strip() if key != "run" else options.get("run", []) + [value.strip()]
    return options


def read_blocks(path: Path) -> list[Block]:
    lines, blocks, i = path.read_text().splitlines(), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, j = len(m.group(1)), m.group(2), i + 1
        while j < len(lines) and not lines[j].strip().startswith("```"):
            j += 1
        prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = MARKER.match(prev)
        body = [ln[indent:] if not indent or ln[:indent].isspace() else ln.lstrip() for ln in lines[i + 1:j]]
        blocks.append(Block(path, i + 1, lang, body, parse_marker(marker.group(1)) if marker else {}))
        i = j + 1
    return blocks


# ----------------------------------------------------------------------------------------------- shell lines
@dataclass
class Command:
    where: str
    text: str            # the logical line as written (continuations joined)
    kind: str            # "cli", "module", "script" or "make"
    target: str          # the module, script or nothing
    argv: list[str]


OPEN, CLOSE = object(), object()     # brackets of the synopsis notation
SEPARATORS = {"|", "||", "&&", ";", "&"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def logical_lines(block: Block):
    """(line number, text) of each command: continuations joined, console output and blank lines left out."""
    start, parts = None, []
    for k, raw in enumerate(block.lines):
        line = raw
        if block.lang == "console":                  # "$ " starts a command, "> " continues it
            if not parts and not line.lstrip().startswith("$"):
                continue
            line = line.lstrip()[1:]
        if start is None:
            start = block.line + 1 + k
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        parts.append(line)
        text = " ".join(p.strip() for p in parts).strip()
        if text and not text.startswith("#"):
            yield start, text
        start, parts = None, []


def tokens(text: str) -> list:
    """Shell words, with the synopsis brackets as OPEN / CLOSE and ``...`` dropped."""
    out = []
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&")
    lexer.whitespace_split = True
    for word in lexer:
        opens = len(word) - len(word.lstrip("["))
        word = word.lstrip("[")
        closes = len(word) - len(word.rstrip("]"))
        word = word.rstrip("]")
        out += [OPEN] * opens + ([word] if word and word != "..." else []) + [CLOSE] * closes
    return out


def variants(words: list, cap: int = 64) -> list[list[str]]:
    """Every reading of a synopsis: ``[x]`` absent or present (each alternative of ``[a | b]``), ``a|b`` each."""
    def group(i):            # -> (alternatives as lists of readings, index after the group)
        alts, current = [], [[]]
        while i < len(words):
            w = words[i]
            if w is CLOSE:
                return alts + [current], i + 1
            if w is OPEN:
                inner, i = group(i + 1)
                options = [[]] + [r for alt in inner for r in alt]
                current = [c + o for c in current for o in options][:cap]
                continue
            if w == "|":
                alts.append(current)
                current = [[]]
            elif "|" in w and not w.startswith("-"):
                current = [c + [a] for c in current for a in w.split("|")][:cap]
            else:
                current = [c + [w] for c in current]
            i += 1
        return alts + [current], i
    alts, _ = group(0)
    return [r for alt in alts for r in alt][:cap]


def split_commands(words: list) -> list[list]:
    """Split at ``|``, ``&&``, ``;`` outside the synopsis brackets."""
    commands, current, depth = [], [], 0
    for w in words:
        depth += (w is OPEN) - (w is CLOSE)
        if depth == 0 and isinstance(w, str) and w in SEPARATORS:
            commands.append(current)
            current = []
        else:
            current.append(w)
    return [c for c in commands + [current] if c]


def classify(words: list) -> tuple[str, str, list] | None:
    """(kind, target, rest) of one simple command, or None when it is none of ours."""
    while words and isinstance(words[0], str) and ASSIGNMENT.match(words[0]):
        words = words[1:]                              # CUDA_VISIBLE_DEVICES=0 uniformerv2 ...
    if not words or not isinstance(words[0], str):
        return None
    prog, rest = Path(words[0]).name, words[1:]
    if prog == "uniformerv2":
        return "cli", "", rest
    if prog == "make":
        return "make", "", rest
    if prog == "torchrun" or re.fullmatch(r"python[0-9.]*", prog):
        if "-m" in rest:
            k = rest.index("-m")
            module, rest = rest[k + 1], rest[k + 2:]
            if module == "uniformerv2":
                return "cli", "", rest
            if module.startswith("uniformerv2."):
                return "module", module, rest
            return None
        if prog != "torchrun" and rest and isinstance(rest[0], str) and rest[0].startswith("benchmarks/"):
            return "script", rest[0], rest[1:]
    return None


def shell_commands(block: Block) -> list[Command]:
    found = []
    for line, text in logical_lines(block):
        for words in split_commands(tokens(text)):
            got = classify(words)
            if got:
                kind, target, rest = got
                for argv in variants(rest):
                    found.append(Command(f"{rel(block.path)}:{line}", text, kind, target, argv))
    return found


def doc_commands(path: Path) -> list[Command]:
    return [c for b in read_blocks(path) if b.lang in SHELL for c in shell_commands(b)]


# ----------------------------------------------------------------------------------------------- parsers
class _Parsed(Exception):
    pass


def _run_parser_only(run) -> str | None:
    """Run a module or script as ``__main__`` until its argument parser has parsed: None if the arguments parse,
    else the parser's message. Whatever it would do next does not run."""
    real_parse_args, real_known = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    depth = [0]

    def parse_args(self, args=None, namespace=None):
        depth[0] += 1
        try:
            ns = real_parse_args(self, args, namespace)
        finally:
            depth[0] -= 1
        raise _Parsed(ns)

    def parse_known_args(self, args=None, namespace=None):
        depth[0] += 1
        try:
            ns = real_known(self, args, namespace)
        finally:
            depth[0] -= 1
        if depth[0] == 0:                               # called by the script itself
            raise _Parsed(ns)
        return ns

    path, modules, err = list(sys.path), set(sys.modules), io.StringIO()
    try:
        with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_args), \
                mock.patch.object(argparse.ArgumentParser, "parse_known_args", parse_known_args), \
                contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            run()
    except _Parsed:
        return None
    except SystemExit as e:
        return f"exit {e.code}: {' '.join(err.getvalue().split())}"
    finally:
        sys.path[:] = path
        for name in set(sys.modules) - modules:        # the scripts' sibling imports (official, suite)
            if not name.startswith(("uniformerv2", "torch", "numpy")):
                sys.modules.pop(name, None)
    return "it ran without parsing any arguments"


def make_targets() -> set[str]:
    return {m.group(1) for m in re.finditer(r"^([A-Za-z0-9_.-]+):", (ROOT / "Makefile").read_text(), re.M)}


PLACEHOLDER = re.compile(r"^([A-Z][A-Z0-9_]*|<[^<>]+>)$")
INVALID = re.compile(r"invalid \w+ value: '([^']*)'")


def check(cmd: Command) -> str | None:
    """None if ``cmd`` parses, else why not. A placeholder (``N``, ``<n>``) given to an option of a type (int,
    float, a choice) stands for a valid value: it is read as one of the choices, else as 1."""
    argv = list(cmd.argv)
    for _ in range(len(argv) + 1):
        why = _check(cmd, argv)
        bad = INVALID.search(why or "") or re.search(r"invalid choice: '([^']*)' \(choose from '?([^',)]*)", why or "")
        if not bad or not PLACEHOLDER.match(bad.group(1)) or bad.group(1) not in argv:
            return why
        argv[argv.index(bad.group(1))] = bad.group(2) if bad.re is not INVALID else "1"
    return why


def _check(cmd: Command, argv: list[str]) -> str | None:
    if cmd.kind == "cli":
        from uniformerv2.cli import build_parser

        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                build_parser().parse_args(argv)
        except SystemExit as e:
            return f"exit {e.code}: {' '.join(err.getvalue().split())}"
        return None
    if cmd.kind == "make":
        missing = [t for t in argv if not ASSIGNMENT.match(t) and not t.startswith("-") and t not in make_targets()]
        return f"no Makefile target {missing}" if missing else None
    if cmd.kind == "script":
        script = ROOT / cmd.target
        if not script.is_file():
            return f"{cmd.target} does not exist"
        with mock.patch.object(sys, "argv", [str(script), *argv]):
            return _run_parser_only(lambda: runpy.run_path(str(script), run_name="__main__"))
    with mock.patch.object(sys, "argv", [cmd.target, *argv]):
        return _run_parser_only(lambda: runpy.run_module(cmd.target, run_name="__main__", alter_sys=True))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_command_line_parses(doc):
    failures = []
    for cmd in doc_commands(doc):
        why = check(cmd)
        if why:
            failures.append(f"{cmd.where}: {cmd.text}\n    as parsed: {cmd.kind} {cmd.target} {shlex.join(cmd.argv)}"
                            f"\n    {why}")
    assert not failures, "documented command lines the parsers refuse:\n" + "\n".join(failures)


def test_the_docs_hold_the_commands_this_test_checks():
    """The extraction finds what is there (a broken extractor would pass every file)."""
    found = [c for d in DOCS for c in doc_commands(d)]
    kinds = {k: sum(c.kind == k for c in found) for k in ("cli", "script", "make")}
    assert kinds["cli"] >= 60 and kinds["script"] >= 5 and kinds["make"] >= 2, kinds
    assert any(c.where.startswith("docs/training.md") and c.argv[:1] == ["train"] and "--nnodes" not in c.argv
               and "model.pretrained=/weights/ViT-L-14.pt" in c.argv for c in found)   # torchrun, 3 continuations


def test_shell_lines_are_read_as_a_shell_reads_them(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("\n".join([
        "```console", "$ CUDA_VISIBLE_DEVICES=0 .venv/bin/uniformerv2 predict a.mp4 \\", ">   --top-k 3",
        "uniformerv2 output line, not a command", "$ uniformerv2 models | head -3 && make demo  # comment", "```",
        "```bash", "torchrun --nproc_per_node 2 -m uniformerv2 train --config C --output 'R D'   # why",
        "python -m uniformerv2.demo --seed 1; python benchmarks/suite.py --out t.md",
        "uniformerv2 ablate --study local|fusion [--seeds N] [--compile | --mode m] [k=v ...]", "```",
        "```python", "uniformerv2 not a shell line", "```"]))
    commands = doc_commands(doc)
    assert [c.where for c in commands[:3]] == [f"{doc}:2"] + [f"{doc}:5"] * 2
    assert [(c.kind, c.target, c.argv) for c in commands] == [
        ("cli", "", ["predict", "a.mp4", "--top-k", "3"]),
        ("cli", "", ["models"]), ("make", "", ["demo"]),
        ("cli", "", ["train", "--config", "C", "--output", "R D"]),
        ("module", "uniformerv2.demo", ["--seed", "1"]), ("script", "benchmarks/suite.py", ["--out", "t.md"]),
        *[("cli", "", ["ablate", "--study", study, *seeds, *opt, *kv])
          for study in ("local", "fusion") for seeds in ([], ["--seeds", "N"])
          for opt in ([], ["--compile"], ["--mode", "m"]) for kv in ([], ["k=v"])]]


def test_a_removed_option_fails(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("```bash\nuniformerv2 predict v.mp4 --model m --top-k 3 --no-such-option\n"
                   "python benchmarks/cpu_vs_official.py --official x.py --no-such-option\n"
                   "python -m uniformerv2.demo --no-such-option\nmake no-such-target\n"
                   "uniformerv2 predict v.mp4 --model M --top-k N\n```\n")
    why = [check(c) for c in doc_commands(doc)]
    assert [w is not None and "--no-such-option" in w for w in why[:3]] == [True] * 3, why
    assert why[3] == "no Makefile target ['no-such-target']"
    assert why[4] is None                                         # placeholders stand for valid values


# ----------------------------------------------------------------------------------------------- python blocks
# What a ``tiny`` block runs instead: (pattern, replacement), applied in order to the block's source.
TINY = [
    (r'"k400_b16_8x224\.k710_ft"|"k400_l14_16x224\.k710_ft"|"mit_b16_8x224"', '"tiny_model"'),  # names: a local dir
    (r'"k400_b16_8x224"', '"tiny_k400_8x64"'),
    (r'"ssv2_b16_16x224"', '"tiny_ssv2_8x64"'),
    (r'"uniformerv2_b16"', '"uniformerv2_tiny"'),
    (r'pretrained="clip"', 'pretrained="ViT-B-16.pt"'),               # OpenAI's CLIP file: the tiny one in FILES
    (r'(\d), 224, 224\)', r'\1, 64, 64)'),
    (r'crop_size=224', 'crop_size=64'),
    (r'workers=\d+', 'workers=0'),
    (r'device="cuda"', 'device="cpu"'),
    (r'range\(10\)', 'range(2)'),
    (r'"train\.epochs=2"', '"train.epochs=1", "train.batch_size=4", "data.num_workers=0", "eval.num_workers=0"'),
]
# The working directory of every block holds these (built once per module, linked into each block's folder).
FILES = {
    "video.mp4, clip.mp4, v.mp4, a.mp4, b.mp4": "6 s, 8 fps, 64x48 (tests/videogen.py)",
    "match.mp4": "the same video (long enough for 4 s windows every 2 s)",
    "train.csv": "a.mp4,0 / b.mp4,1 / v.mp4,2 / clip.mp4,3",
    "tiny_model/, runs/exp1/final/": "a tiny_k400_8x64 model directory (random weights)",
    "runs/k400_b16/": "a smaller one (uniformerv2_nano at 8x64, 5 classes): quicker to export",
    "k400_b16_8x224.pyth, k400+k710_uniformerv2_b16_8x224.pyth": "that model in the official layout",
    "ViT-B-16.pt": "an OpenAI CLIP file with uniformerv2_tiny's shapes",
}
# What ``given`` names stand for.
GIVEN = {
    "model": lambda: __import__("uniformerv2").load_model("tiny_model"),
    "clf": lambda: __import__("uniformerv2").VideoClassifier.from_pretrained("tiny_model"),
    "paths": lambda: ["a.mp4", "b.mp4"],
    "epoch": lambda: 0,
    "u": lambda: __import__("uniformerv2"),
}


@pytest.fixture(scope="module")
def doc_files(tmp_path_factory):
    import torch

    import uniformerv2 as u
    from videogen import write_video
    from weightfiles import tiny_clip_visual, write_openai_clip

    root = tmp_path_factory.mktemp("docfiles")
    write_video(root / "video.mp4", num_frames=48, width=64, height=48, fps=8)
    for name in ("clip.mp4", "v.mp4", "a.mp4", "b.mp4", "match.mp4"):
        (root / name).symlink_to(root / "video.mp4")
    (root / "train.csv").write_text("a.mp4,0\nb.mp4,1\nv.mp4,2\nclip.mp4,3\n")
    torch.manual_seed(0)
    model = u.create_model("tiny_k400_8x64").eval()
    model.save_pretrained(root / "tiny_model")
    model.save_pretrained(root / "runs/exp1/final")
    u.create_model("uniformerv2_nano", num_frames=8, img_size=64, num_classes=5,
                   labels=["a", "b", "c", "d", "e"]).save_pretrained(root / "runs/k400_b16")
    official = u.export_official_state_dict(model)
    for name in ("k400_b16_8x224.pyth", "k400+k710_uniformerv2_b16_8x224.pyth"):
        torch.save(official, root / name)
    write_openai_clip(root / "ViT-B-16.pt", tiny_clip_visual())
    return root


def python_blocks() -> list:
    return [pytest.param(b, id=b.where) for d in DOCS for b in read_blocks(d) if b.lang == "python"]


def tiny_source(text: str) -> str:
    for pattern, replacement in TINY:
        text = re.sub(pattern, replacement, text)
    return text


@pytest.mark.parametrize("block", python_blocks())
def test_documented_python_runs(block, doc_files, tmp_path, monkeypatch):
    import shutil

    if "skip" in block.options:
        pytest.skip(block.options["skip"] or "marked skip")
    shutil.copytree(doc_files, tmp_path / "cwd", symlinks=True, copy_function=os.symlink)
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("UNIFORMERV2_OFFLINE", "1")        # a name that would download fails here, not hangs
    monkeypatch.setenv("UNIFORMERV2_HOME", str(tmp_path / "home"))
    for command in block.options.get("run", []):
        from uniformerv2.cli import main

        words = shlex.split(command)
        assert words[0] == "uniformerv2", f"{block.where}: run only takes uniformerv2 commands"
        assert main(words[1:]) == 0, f"{block.where}: {command}"
    names = [n.strip() for n in block.options.get("given", "").split(",") if n.strip()]
    unknown = set(names) - set(GIVEN)
    assert not unknown, f"{block.where}: no GIVEN for {sorted(unknown)}"
    namespace = {"__name__": "__doc_block__", **{n: GIVEN[n]() for n in names}}
    source = tiny_source(block.text) if "tiny" in block.options else block.text
    code = compile("\n" * block.line + source, f"{block.where}", "exec")   # tracebacks point at the doc's lines
    with contextlib.redirect_stdout(io.StringIO()):
        exec(code, namespace)
