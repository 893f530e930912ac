"""The supervisor of the pipeline's services, with real child processes: restart with backoff,
give up (and say why) on a crash loop, finish on exit 0, stop on SIGTERM with its worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fresh.settings import load_settings
from fresh.wait import wait_until
from stack.supervisor import RestartPolicy, last_error_line, settings_env, supervise, supervised_services

FAST = RestartPolicy(max_fast_deaths=3, stable_after_s=60, first_backoff_s=0.05, max_backoff_s=0.2)


def _state(path: Path) -> dict[str, object]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def test_a_crash_loop_is_reported_not_restarted_forever(tmp_path: Path) -> None:
    log, state = tmp_path / "w.log", tmp_path / "w.state.json"
    runs = tmp_path / "runs"
    script = f"open({str(runs)!r}, 'a').write('x'); print('level=ERROR error: bad input at offset 7', flush=True); " \
             "raise SystemExit(3)"
    code = ("import sys; from pathlib import Path; from stack.supervisor import supervise, RestartPolicy; "
            f"sys.exit(supervise('w', [sys.executable, '-c', {script!r}], Path({str(state)!r}), Path({str(log)!r}), "
            "RestartPolicy(3, 60, 0.05, 0.2)))")
    with log.open("ab") as out:  # the worker writes to the log, as under the stack
        rc = subprocess.run([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT, timeout=60,
                            check=False).returncode
    assert rc == 1
    assert runs.read_text() == "xxx"  # started 3 times, then given up
    final = _state(state)
    assert final["state"] == "failed" and final["restarts"] == 2
    assert "bad input at offset 7" in str(final["last_error"])
    assert "not restarted" in str(final["last_error"])


def test_a_finished_worker_is_not_restarted(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    assert supervise("w", [sys.executable, "-c", "pass"], state, tmp_path / "log", FAST) == 0
    assert _state(state)["state"] == "finished"


def test_a_killed_worker_comes_back_and_sigterm_stops_both(tmp_path: Path) -> None:
    state, log = tmp_path / "s.json", tmp_path / "w.log"
    code = ("import sys; from pathlib import Path; from stack.supervisor import supervise, RestartPolicy; "
            f"sys.exit(supervise('w', [sys.executable, '-c', 'import time; time.sleep(600)'], Path({str(state)!r}), "
            f"Path({str(log)!r}), RestartPolicy(3, 60, 0.05, 0.2)))")
    sup = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        first = wait_until(lambda: _state(state).get("pid") if state.exists() else None, timeout_s=30,
                           what="the first worker")
        os.kill(int(str(first)), signal.SIGKILL)

        def restarted() -> bool:
            s = _state(state)
            return s["state"] == "running" and s["pid"] != first and s["restarts"] == 1

        wait_until(restarted, timeout_s=30, what="the supervisor to restart the killed worker")
        assert "killed by SIGKILL" in str(_state(state)["last_error"])
        second = int(str(_state(state)["pid"]))
        os.killpg(sup.pid, signal.SIGTERM)  # as `down` does: the whole process group
        assert sup.wait(30) == 0
        assert _state(state)["state"] == "stopped"
        assert not Path(f"/proc/{second}").exists() or "Z" in Path(f"/proc/{second}/stat").read_text().split()[2]
    finally:
        if sup.poll() is None:
            os.killpg(sup.pid, signal.SIGKILL)


def test_last_error_line_takes_errors_not_warnings(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("level=ERROR logger=a error: the keyring is gone\n"
                   "level=WARNING logger=b consume error topic=t error=Subscribed topic not available\n"
                   "level=INFO counters in=1\n", encoding="utf-8")
    assert last_error_line(log) == "level=ERROR logger=a error: the keyring is gone"
    assert last_error_line(tmp_path / "missing.log") == ""


@pytest.mark.parametrize("field", ["kafka_port", "chdb_path", "mongo_uri"])
def test_settings_env_round_trips(field: str, tmp_path: Path) -> None:
    settings = load_settings(stack_home=tmp_path, kafka_port=19092, mongo_port=29017)
    env = settings_env(settings)
    again = load_settings(**{k[len("FRESH_"):].lower(): v for k, v in env.items()})
    value = getattr(again, field)
    expected = getattr(settings, field)
    if hasattr(value, "get_secret_value"):
        value, expected = value.get_secret_value(), expected.get_secret_value()
    assert value == expected


def test_chdb_path_follows_the_stack_home(tmp_path: Path) -> None:
    assert load_settings(stack_home=tmp_path).chdb_path == tmp_path / "chdb"
    assert load_settings(stack_home=tmp_path, chdb_path=tmp_path / "x").chdb_path == tmp_path / "x"




def test_settings_travel_to_a_worker_unchanged(monkeypatch) -> None:
    """A worker loads exactly its starter's settings, unset optional paths included (None must not
    arrive as the path "None": the processor then looked for a KEK file of that name)."""
    from fresh.settings import Settings, load_settings
    from stack.supervisor import settings_env

    for key in [k for k in __import__("os").environ if k.startswith("FRESH_")]:
        monkeypatch.delenv(key)
    starter = Settings(kek_path=None, keyring_allow_unwrapped=True, kafka_port=19092)
    for key, value in settings_env(starter).items():
        monkeypatch.setenv(key, value)
    assert load_settings() == starter


def test_the_configured_processor_instances_are_supervised_and_leftovers_stay_visible(tmp_path: Path) -> None:
    """`up` starts scale.processor_instances processors; `down` and `status` also see an instance a
    run with a larger count left behind (its PID file)."""
    from stack.services import LocalStack

    text = (Path(__file__).resolve().parents[3] / "pipeline.yaml").read_text(encoding="utf-8")
    config = tmp_path / "pipeline.yaml"
    config.write_text(text.replace("processor_instances: 1", "processor_instances: 2"), encoding="utf-8")
    stack = LocalStack(load_settings(stack_home=tmp_path / "home", pipeline_config=config))
    assert list(stack.supervised) == ["ingest", "processor", "processor-2", "changes"]
    stack.run_dir.mkdir(parents=True)
    (stack.run_dir / "processor-3.pid").write_text("1", encoding="utf-8")
    again = LocalStack(load_settings(stack_home=tmp_path / "home", pipeline_config=config))
    assert list(again.supervised) == ["ingest", "processor", "processor-2", "processor-3", "changes"]
    command = again.supervised["processor-2"].command()
    assert command[command.index("stack.worker") + 1] == "processor-2"
    # one more on demand (start_supervised("processor-5", []) rebuilds the definitions with it)
    assert "processor-5" in supervised_services(again, {"processor-5": []})
