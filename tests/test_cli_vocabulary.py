"""One CLI vocabulary: every command parsed by the real parser, the shared options spelt and meant the same way,
old spellings accepted but not listed, results on stdout and messages on stderr, and the exit codes."""
import argparse
import json
import subprocess
import sys

import pytest
import torch

import uniformerv2
from uniformerv2.cli import COMMANDS, build_parser, main
from uniformerv2.cli.common import settle_output
from uniformerv2.engine.config import load_config
from videogen import write_video

# what each command writes, as it is spelt now, and the minimal other arguments it needs
WRITERS = {
    "predict": ["v.mp4", "--model", "m"],
    "features": ["v.mp4", "--model", "m"],
    "eval": ["--config", "c.yaml", "--model", "m"],
    "train": ["--config", "c.yaml"],
    "finetune": ["data/"],
    "scan": ["list.csv"],
    "lists": ["kinetics400", "train.csv", "--videos", "v"],
    "prepare": ["list.csv"],
    "synth": [],
    "convert": ["model.pyth"],
    "export": ["onnx", "model"],
    "ablate": [],
    "demo": [],
}
# the old spellings, still accepted: (command, argv with the old spelling of the output "X")
OLD_SPELLINGS = [
    ("predict", ["v.mp4", "--model", "m", "--out", "X"]),
    ("features", ["v.mp4", "--model", "m", "--out", "X"]),
    ("eval", ["--config", "c.yaml", "--model", "m", "--out", "X"]),
    ("scan", ["list.csv", "--report", "X"]),
    ("prepare", ["list.csv", "--out", "X"]),
    ("synth", ["X"]),
    ("convert", ["model.pyth", "X"]),
    ("export", ["onnx", "model", "X"]),
]
DEVICE_COMMANDS = {
    "predict": ["v.mp4", "--model", "m"],
    "features": ["v.mp4", "--model", "m", "-o", "f"],
    "eval": ["--config", "c.yaml", "--model", "m"],
    "train": ["--config", "c.yaml", "-o", "run"],
    "finetune": ["data/", "-o", "run"],
}
HIDDEN = ("--out ", "--out,", "--report", "OUT_DIR")


def parse(*argv):
    args = build_parser().parse_args([str(a) for a in argv])
    settle_output(args)
    return args


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "uniformerv2", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kw)


def test_every_command_has_help_without_old_spellings(capsys):
    assert sorted(subparsers()) == sorted(COMMANDS)
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args([name, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: uniformerv2 {name}"), name
        assert not [h for h in HIDDEN if h in text], (name, text)
        if name in WRITERS:
            assert "--output" in text and "-o " in text, name
    assert "--x264-preset" in subparsers()["prepare"].format_help()


def test_every_command_that_writes_takes_output_and_o():
    for name, rest in WRITERS.items():
        assert parse(name, *rest, "--output", "X").output == "X", name
        assert parse(name, *rest, "-o", "Y").output == "Y", name


@pytest.mark.parametrize("name,argv", OLD_SPELLINGS)
def test_old_spellings_still_parse(name, argv):
    assert parse(name, *argv).output == "X"


def test_one_output_given_twice_or_not_at_all_is_bad_usage(capsys):
    assert main(["convert", "model.pyth", "A", "-o", "B"]) == 2
    assert capsys.readouterr().err.strip() == "uniformerv2: error: two outputs given: A and --output B"
    assert main(["synth"]) == 2
    assert "required: --output/-o" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["scan", "list.csv"])
    assert e.value.code == 2 and "--output" in capsys.readouterr().err


def test_device_takes_cuda_n_everywhere(capsys):
    for name, rest in DEVICE_COMMANDS.items():
        assert parse(name, *rest, "--device", "cuda:1").device == "cuda:1", name
        assert parse(name, *rest, "--device", "cpu").device == "cpu", name
        with pytest.raises(SystemExit) as e:
            parse(name, *rest, "--device", "gpu")
        assert e.value.code == 2 and "'gpu' is not a device" in capsys.readouterr().err


def test_dtype_is_one_choice_list_and_preset_is_a_model_preset():
    parsers = subparsers()
    for name, p in parsers.items():
        for a in p._actions:
            if "--dtype" in a.option_strings:
                assert tuple(a.choices) == ("fp32", "bf16", "fp16"), name
            shown = set(a.option_strings) - getattr(a, "hidden_aliases", set())
            if "--preset" in shown:
                assert a.dest == "preset" and "preset" in a.help and "x264" not in a.help, name
    x264 = next(a for a in parsers["prepare"]._actions if "--x264-preset" in a.option_strings)
    assert x264.dest == "x264_preset" and parse("prepare", "l.csv", "-o", "o", "--preset", "fast").x264_preset == "fast"


def test_workers_quiet_and_eval_options_are_shared():
    parsers = subparsers()
    with_workers = []
    for name, p in parsers.items():
        for a in p._actions:
            if "--workers" in a.option_strings:
                with_workers.append(name)
                assert a.default is None and "chosen from the work" in a.help, name
    assert sorted(with_workers) == ["eval", "features", "finetune", "lists", "predict", "prepare", "scan",
                                    "serve", "synth"]
    for name in ("download", "scan", "prepare", "synth", "train", "finetune", "eval", "predict", "features", "ablate",
                 "demo"):
        assert any("--quiet" in a.option_strings for a in parsers[name]._actions), name
    args = parse("eval", "--config", "c.yaml", "--model", "m", "--views", "2x3", "--device", "cuda:1", "--dtype",
                 "bf16", "--quiet", "--workers", "0")
    assert (args.views, args.device, args.dtype, args.quiet, args.workers) == ("2x3", "cuda:1", "bf16", True, 0)
    with pytest.raises(SystemExit) as e:
        parse("predict", "v.mp4", "--model", "m", "--workers", "-1")
    assert e.value.code == 2


def test_train_options_become_config_keys():
    from uniformerv2.cli.train import option_overrides

    args = parse("train", "--config", "demo_synth", "-o", "run", "--epochs", "3", "--device", "cuda:1", "--seed",
                 "7", "--quiet", "data.num_workers=0")
    cfg = load_config(args.config, [*args.overrides, *option_overrides(args)])
    assert (cfg["train"]["epochs"], cfg["train"]["device"], cfg["seed"], cfg["train"]["progress"]) == (
        3, "cuda:1", 7, False)
    assert cfg["data"]["num_workers"] == 0
    plain = parse("train", "--config", "demo_synth", "-o", "run")
    assert option_overrides(plain) == []


def test_finetune_device_index_reaches_the_training_config():
    from uniformerv2.cli.finetune import device_override

    assert parse("finetune", "data/", "-o", "run", "--device", "cuda:1").device == "cuda:1"
    assert device_override("cuda:1") == ["train.device=cuda:1"] and device_override("cuda") == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_a_cuda_device_without_cuda_is_one_line(tmp_path, capsys):
    assert main(["train", "--config", "demo_synth", "-o", str(tmp_path / "run"), "--device", "cuda:1"]) == 2
    assert capsys.readouterr().err == "uniformerv2: error: device 'cuda:1' asked for but CUDA is not available\n"


def test_demo_subcommand_parses_as_the_module_does():
    from uniformerv2 import demo

    module = argparse.ArgumentParser()
    demo.add_arguments(module)
    for argv in ([], ["-o", "d", "--epochs", "3", "--seed", "2", "--quiet"], ["--videos-per-class", "5",
                                                                          "--one-after-the-other"]):
        sub = vars(parse("demo", *argv))
        assert sub.pop("func").__module__ == "uniformerv2.cli.demo" and sub.pop("command") == "demo"
        assert sub == vars(module.parse_args(argv)), argv


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"uniformerv2 {uniformerv2.__version__}\n"


def test_models_pattern_matching_nothing_is_an_error_with_or_without_pretrained(capsys):
    for argv in (["models", "zzz"], ["models", "--pretrained", "zzz"]):
        assert main(argv) == 2
        out = capsys.readouterr()
        assert out.out == "" and out.err.startswith("uniformerv2: error: no ") and out.err.count("\n") == 1
    assert main(["models", "k400_b16"]) == 0   # no glob characters: the names that start with it
    listed = capsys.readouterr().out
    assert "k400_b16_8x224" in listed and "ssv2_" not in listed


def test_a_bug_keeps_its_traceback_while_a_user_error_is_one_line(tmp_path, capsys):
    bug = ("import sys, uniformerv2.cli.models as m\n"
           "m.run = lambda args: int('not a number')  # a programming error: a bare ValueError\n"
           "from uniformerv2.cli import main\n"
           "sys.exit(main(['models']))\n")
    r = subprocess.run([sys.executable, "-c", bug], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr
    assert "ValueError: invalid literal for int()" in r.stderr and "uniformerv2: error" not in r.stderr
    assert main(["models", "zzz"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and "Traceback" not in out.err
    assert main(["eval", "--config", str(tmp_path / "missing.yaml"), "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.yaml" in err


def test_results_on_stdout_messages_on_stderr_and_exit_1_for_failed_inputs(tmp_path, capsys):
    data = tmp_path / "syn"
    rc = main(["synth", "-o", str(data), "--classes", "moving left,moving right", "--videos-per-class", "2",
               "--frames", "4", "--size", "16", "--workers", "0", "--quiet"])
    out = capsys.readouterr()
    assert rc == 0 and out.out == "", out.err
    assert "wrote 4 videos" in out.err and (data / "labels.txt").read_text() == "moving left\nmoving right\n"

    rc = main(["scan", str(data / "videos"), "-o", str(tmp_path / "scan.json"), "--workers", "0", "--quiet"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert out.out == "4/4 videos readable (class folders (2 classes))\n"
    assert out.err == f"wrote {tmp_path / 'scan.json'}\n"
    assert json.loads((tmp_path / "scan.json").read_text())["ok"] == 4

    (data / "videos" / "moving_left" / "broken.mp4").write_bytes(b"not a video" * 50)
    write_video(data / "videos" / "moving_left" / "extra.mp4", 6, width=32, height=32)
    rc = main(["scan", str(data / "videos"), "--report", str(tmp_path / "old.json"), "--workers", "0",
               "--quiet"])  # the old spelling
    out = capsys.readouterr()
    assert rc == 1 and out.out.startswith("5/6 videos readable") and "broken.mp4" in out.out
    assert json.loads((tmp_path / "old.json").read_text())["failed"] == 1
