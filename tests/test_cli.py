"""The command line's contract: ordinary mistakes are one line on stderr with exit status
2 (a traceback only with --debug), results alone go to stdout as strict JSON."""

import json
import os
import subprocess
import sys

import pytest

from jaxlab import cli


def _strict(text):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _one_line_error(capsys, *args):
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith(("WARNING", "I0000", "W0000"))]
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cli") / "run"
    assert cli.main(["classifier", "train", "--config", "smoke", "--workdir", str(workdir),
                     "--config.loop.num_steps=10", "--config.loop.eval_every=5"]) == 0
    return workdir


def test_every_method_lists_its_actions_with_a_description(capsys):
    for method in sorted(cli.discover_methods()):
        with pytest.raises(SystemExit) as e:
            cli.main([method, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        actions = __import__(f"jaxlab.{method}.run", fromlist=["ACTIONS"]).ACTIONS
        assert actions, method
        for name, fn in actions.items():
            line = next((x for x in out.splitlines() if x.strip().startswith(name + " ")), None)
            first = " ".join(fn.__doc__.strip().splitlines()[0].split())
            assert line is not None and first in " ".join(line.split()), (method, name, out)


def test_unknown_variant_is_one_line_for_every_method(capsys, tmp_path):
    for method in sorted(cli.discover_methods()):
        action = next(iter(__import__(f"jaxlab.{method}.run", fromlist=["ACTIONS"]).ACTIONS))
        fn = __import__(f"jaxlab.{method}.run", fromlist=["ACTIONS"]).ACTIONS[action]
        if getattr(fn, "read_only", False):
            continue
        line = _one_line_error(capsys, method, action, "--config", "nonexistent",
                               "--workdir", str(tmp_path / method))
        assert "nonexistent" in line and "smoke" in line, line
        assert not (tmp_path / method).exists()


@pytest.mark.parametrize("override, words", [
    ("--config.model.norm=banana", ["model.norm", "banana", "group"]),
    ("--config.batch_size=0", ["batch_size", ">= 1"]),
    ("--config.loop.num_steps=-5", ["loop.num_steps", ">= 0"]),
    ("--config.opt.lr=-1", ["opt.lr", "> 0"]),
])
def test_bad_values_are_refused_when_the_config_is_resolved(capsys, tmp_path, override, words):
    line = _one_line_error(capsys, "classifier", "train", "--config", "smoke", "--workdir", str(tmp_path / "w"),
                           override)
    for w in words:
        assert w in line, line
    assert not (tmp_path / "w").exists()


def test_workdir_problems_are_one_line(capsys, tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    line = _one_line_error(capsys, "classifier", "train", "--config", "smoke", "--workdir", str(f))
    assert str(f) in line and "not a directory" in line
    line = _one_line_error(capsys, "classifier", "train", "--config", "smoke", "--workdir", str(f / "sub"))
    assert str(f / "sub") in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_workdir_is_one_line(capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    line = _one_line_error(capsys, "classifier", "train", "--config", "smoke", "--workdir", str(ro / "run"))
    assert "ermission" in line


def test_config_files_of_the_wrong_kind_are_one_line(capsys, tmp_path):
    needs_variant = tmp_path / "needs_variant.py"
    needs_variant.write_text("from jaxlab.classifier.configs import get_config as base\n"
                             "def get_config(variant):\n    return base(variant)\n")
    line = _one_line_error(capsys, "classifier", "train", "--config", str(needs_variant),
                           "--workdir", str(tmp_path / "a"))
    assert "needs a variant" in line and f"{needs_variant}:VARIANT" in line
    assert cli.main(["classifier", "train", "--config", f"{needs_variant}:smoke", "--print-config"]) == 0
    capsys.readouterr()
    as_dict = tmp_path / "as_dict.py"
    as_dict.write_text("def get_config():\n    return {'seed': 1}\n")
    line = _one_line_error(capsys, "classifier", "train", "--config", str(as_dict), "--workdir", str(tmp_path / "b"))
    assert "dict" in line and "ClassifierConfig" in line
    other = tmp_path / "other_method.py"
    other.write_text("from jaxlab.meguide.configs import get_config\n")
    line = _one_line_error(capsys, "classifier", "train", "--config", f"{other}:smoke",
                           "--workdir", str(tmp_path / "c"))
    assert "MeGuideConfig" in line and "ClassifierConfig" in line
    broken = tmp_path / "broken.py"
    broken.write_text("def get_config():\n    return 1 / 0\n")
    line = _one_line_error(capsys, "classifier", "train", "--config", str(broken), "--workdir", str(tmp_path / "d"))
    assert "ZeroDivisionError" in line and str(broken) in line


def test_debug_shows_the_traceback(capsys, tmp_path):
    assert cli.main(["classifier", "train", "--config", "nonexistent", "--workdir", str(tmp_path), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_evaluate_refuses_config_arguments(capsys, smoke_run):
    line = _one_line_error(capsys, "classifier", "evaluate", "--workdir", str(smoke_run), "--config.seed=3")
    assert "config.json" in line and "not accepted" in line
    line = _one_line_error(capsys, "classifier", "evaluate", "--workdir", str(smoke_run), "--config", "smoke")
    assert "not accepted" in line


def test_results_alone_on_stdout_and_force_message_on_stderr(capsys, smoke_run, tmp_path):
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(smoke_run, workdir)
    assert cli.main(["classifier", "train", "--config", "smoke", "--workdir", str(workdir),
                     "--config.loop.num_steps=5", "--force"]) == 0
    out, err = capsys.readouterr()
    assert _strict(out)["steps"] == 5
    assert "moved the previous run" in err


def test_every_json_file_of_a_run_is_strict(smoke_run):
    files = [p for p in smoke_run.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl")]
    assert {p.name for p in files} >= {"config.json", "summary.json", "metrics.jsonl", "segments.jsonl"}
    for p in files:
        text = p.read_text()
        if p.suffix == ".jsonl":
            for line in text.splitlines():
                _strict(line)
        else:
            _strict(text)


def test_rerunning_a_finished_run_leaves_its_results(capsys, smoke_run):
    before = _strict((smoke_run / "summary.json").read_text())["results"]
    assert cli.main(["classifier", "train", "--config", "smoke", "--workdir", str(smoke_run),
                     "--config.loop.num_steps=10", "--config.loop.eval_every=5"]) == 0
    capsys.readouterr()
    after = _strict((smoke_run / "summary.json").read_text())["results"]
    assert after == before


def test_methods_are_attributes_of_the_package():
    code = ("import jaxlab, sys; assert 'jaxlab.meguide' not in sys.modules; "
            "print(jaxlab.classifier.load.__module__, jaxlab.meguide.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["jaxlab.classifier.run", "jaxlab.meguide"]
    import pathlib

    import jaxlab

    planned = [m for m in jaxlab.METHODS if not (pathlib.Path(jaxlab.__file__).parent / m).is_dir()]
    if planned:
        out = subprocess.run([sys.executable, "-c", f"import jaxlab; jaxlab.{planned[0]}"],
                             capture_output=True, text=True)
        assert out.returncode != 0 and "planned" in out.stderr
