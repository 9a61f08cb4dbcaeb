"""The `ratethrottle` command installed by pip: the Rust CLI, with the documented spellings."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "ratethrottle"


def run(*args, config=None, timeout=60):
    command = [str(SCRIPT), *(["--config", str(config)] if config else []), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_pip_installs_the_command_and_python_m_runs_it():
    assert SCRIPT.exists(), f"no console script at {SCRIPT}"
    shown = run("--help")
    assert shown.returncode == 0 and "manage" in shown.stdout
    assert "--whitelist-add" not in shown.stdout  # the aliases stay out of the help
    module = subprocess.run([sys.executable, "-m", "ratethrottle", "--version"],
                            capture_output=True, text=True, timeout=60)
    assert module.returncode == 0 and module.stdout.startswith("ratethrottle ")
    from ratethrottle.cli import main

    assert callable(main)
    denied = run("test", "--rule", "api", "--requests", "12")
    assert denied.returncode == 1, denied.stderr  # the built-in api rule admits 10
    assert run("test", "--rule", "nope").returncode == 2


@pytest.fixture
def fleet_config(tmp_path, redis_url, redis_prefix):
    path = tmp_path / "ratethrottle.yaml"
    path.write_text(
        f"storage:\n  type: redis\n  url: {redis_url}\n  key_prefix: '{redis_prefix}'\n"
        "rules:\n  - {name: api_limit, limit: 1000, window: 60}\n"
    )
    return path


def test_every_documented_spelling_runs(fleet_config, tmp_path):
    # advanced/cli.rst, in order.
    assert run("test", "--rule", "api_limit", "--requests", "100", config=fleet_config).returncode == 0
    assert run("test", "--rule", "api_limit", "--identifier", "user123", "--requests", "50",
               config=fleet_config).returncode == 0
    assert run("metrics", config=fleet_config).returncode == 0
    assert run("metrics", "--rule", "api_limit", config=fleet_config).returncode == 0
    assert run("--whitelist-add", "10.0.0.1", config=fleet_config).returncode == 0
    assert run("--whitelist-remove", "10.0.0.1", config=fleet_config).returncode == 0
    assert run("--blacklist-add", "192.168.1.100", config=fleet_config).returncode == 0
    listed = run("--format", "json", "--list-all", config=fleet_config)
    assert listed.returncode == 0
    assert json.loads(listed.stdout)["blacklist"][0]["identifier"] == "192.168.1.100"
    report = tmp_path / "report.json"
    assert run("stats", "--export", str(report), config=fleet_config).returncode == 0
    assert isinstance(json.loads(report.read_text()), dict)
    assert run("stats", "--raw-data", config=fleet_config).returncode == 0
    assert run("config", "--validate", str(fleet_config)).returncode == 0
    assert run("config", "--show", config=fleet_config).returncode == 0
    # And 1.4.0's own parser's spellings.
    assert run("manage", "--list-all", config=fleet_config).returncode == 0
    assert run("config", "--validate", config=fleet_config).returncode == 0
    assert run("-v", "monitor", "--interval", "1", "--once", "--settle", "0.2",
               config=fleet_config).returncode == 0


def test_ctrl_c_ends_the_command_with_130_and_no_traceback():
    proc = subprocess.Popen(
        [str(SCRIPT), "test", "--rule", "api", "--requests", "1000", "--delay", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
