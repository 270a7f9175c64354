import json
import subprocess
import sys

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.classifier import configs, run
from jaxlab.core import config as config_lib
from jaxlab.core import workdir as workdir_lib


def _files(root):
    return sorted((p.relative_to(root).as_posix(), p.read_bytes()) for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    code = cli.main(["classifier", "train", "--config", "smoke", "--workdir", str(workdir),
                     "--config.loop.num_steps=40", "--config.loop.num_devices=8"])
    assert code == 0
    return workdir


def test_cli_smoke_run_writes_the_workdir(smoke_run):
    for name in ("config.json", "metrics.jsonl", "summary.json", "figures/training.png"):
        assert (smoke_run / name).exists(), name
    summary = json.loads((smoke_run / "summary.json").read_text())
    env = summary["environment"]
    assert env["num_devices"] == 8 and env["jax_version"] and summary["seed"] == 0
    assert summary["results"]["steps"] == 40
    # 40 smoke steps on digits already beat chance (10%) clearly.
    assert summary["results"]["test_accuracy"] > 0.25
    cfg = json.loads((smoke_run / "config.json").read_text())
    assert cfg["loop"]["num_steps"] == 40 and cfg["model"]["stages"] == [16, 32]


def test_evaluate_and_load_agree_with_training(smoke_run):
    summary = json.loads((smoke_run / "summary.json").read_text())
    result = run.evaluate(None, smoke_run)
    assert result["step"] == 40
    np.testing.assert_allclose(result["test_accuracy"], summary["results"]["test_accuracy"])
    loaded = run.load(smoke_run)
    assert loaded.step == 40 and loaded.config.loop.num_steps == 40
    assert cli.main(["classifier", "evaluate", "--workdir", str(smoke_run)]) == 0


def test_different_config_in_workdir_is_refused_then_forced(smoke_run, tmp_path, capsys):
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(smoke_run, workdir)
    before = _files(workdir)
    code = cli.main(["classifier", "train", "--config", "smoke", "--workdir", str(workdir),
                     "--config.loop.num_steps=41", "--config.loop.num_devices=8"])
    assert code == 2
    assert "num_steps" in capsys.readouterr().err
    assert _files(workdir) == before
    code = cli.main(["classifier", "train", "--config", "smoke", "--workdir", str(workdir),
                     "--config.loop.num_steps=10", "--force"])
    assert code == 0
    old = [p for p in workdir.iterdir() if p.name.startswith("old-")]
    assert len(old) == 1 and (old[0] / "summary.json").exists()
    assert json.loads((workdir / "config.json").read_text())["loop"]["num_steps"] == 10


def test_override_typo_and_wrong_type_write_nothing(tmp_path, capsys):
    workdir = tmp_path / "w"
    assert cli.main(["classifier", "train", "--config", "smoke", "--workdir", str(workdir),
                     "--config.opt.lrr=0.1"]) == 2
    err = capsys.readouterr().err
    assert "opt.lrr" in err and "opt.lr" in err
    assert cli.main(["classifier", "train", "--config", "smoke", "--workdir", str(workdir),
                     "--config.batch_size=big"]) == 2
    assert "batch_size" in capsys.readouterr().err
    assert not workdir.exists()


def test_corrupt_config_json_is_named(tmp_path):
    (tmp_path / "config.json").write_text('{"seed": 0,\n "num_steps": }')
    with pytest.raises(workdir_lib.WorkdirError, match="config.json:2"):
        run.load(tmp_path)


def test_variants_and_user_config_file(tmp_path):
    for v in ("smoke", "default", "paper"):
        assert isinstance(configs.get_config(v), configs.ClassifierConfig)
    f = tmp_path / "my_config.py"
    f.write_text("from jaxlab.classifier.configs import get_config as base\n"
                 "def get_config(variant='smoke'):\n    c = base(variant)\n    c.seed = 7\n    return c\n")
    cfg = config_lib.resolve(f"{f}:default", configs.get_config)
    assert cfg.seed == 7 and cfg.loop.num_steps == configs.get_config("default").loop.num_steps


def test_console_entry_points():
    out = subprocess.run([sys.executable, "-m", "jaxlab", "list"], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert len(lines) == 12  # header, the reference classifier and the ten methods
    for name in ("dmf", "scalenet", "vitas", "vectornet", "meguide", "coral", "mhui", "coditt5",
                 "video2stylegan", "lidarfirst"):
        assert any(line.startswith(name + " ") for line in lines), name
    assert cli.main(["--help"]) == 0
    with pytest.raises(SystemExit):
        cli.main(["classifier", "bogus-action"])


def test_evaluate_without_checkpoint_is_a_clear_cli_error(tmp_path, capsys):
    cfg = configs.get_config("smoke")
    workdir_lib.prepare(tmp_path, cfg)
    assert cli.main(["classifier", "evaluate", "--workdir", str(tmp_path)]) == 2
    assert "no finished checkpoint" in capsys.readouterr().err


def test_diverging_run_stops_through_the_cli(tmp_path, capsys):
    code = cli.main(["classifier", "train", "--config", "smoke", "--workdir", str(tmp_path),
                     "--config.opt.lr=1e30", "--config.opt.clip_norm=1e30", "--config.opt.warmup_steps=0",
                     "--config.loop.num_steps=20", "--config.loop.log_every=5"])
    assert code == 1
    assert "non-finite" in capsys.readouterr().err
