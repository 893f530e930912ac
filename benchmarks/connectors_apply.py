"""Benchmark: apply 20 connectors the careful way vs a naive loop of POSTs, in the same run.

Careful = render (once, all 20) + per connector: Connect validate, diff against live, idempotent PUT,
wait for RUNNING. Naive = one `POST /connectors` per connector, no validation, no wait (and it
fails on a second run). MirrorMaker's heartbeat connector stands in for a connector that runs on
the local worker. Every connector created here carries a per-run prefix and is deleted at the end.

    .venv/bin/python benchmarks/connectors_apply.py [--count 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from connectors.apply import apply_connector, delete_connector
from connectors.connect_api import ConnectApi
from connectors.diff import diff_config
from connectors.render import render
from connectors.validate import raise_on_errors, validate_config
from fresh.pipeline import load_pipeline_config
from fresh.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()

    settings = load_settings()
    pipeline = load_pipeline_config(settings.pipeline_config)
    api = ConnectApi.from_settings(settings)
    prefix = f"fresh-bench-{uuid.uuid4().hex[:8]}-"
    entries = {
        f"hb_{i:02d}": {"template": "mirror-heartbeat.json.j2", "name": f"{prefix}careful-{i:02d}", "state": "RUNNING",
                        "topic": f"{prefix}careful-{i:02d}.heartbeat", "interval_seconds": 5, "replication_factor": 1}
        for i in range(args.count)
    }
    values = {"managed_prefix": prefix,
              "connectors": {"mongodb_source": {"enabled": False}, "heartbeat_canary": {"enabled": False}, **entries}}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.yaml"
            path.write_text(yaml.safe_dump(values))
            t0 = time.perf_counter()
            rendered = render(pipeline, settings, "local", extra_values=[path])
            render_s = time.perf_counter() - t0

        careful: list[float] = []
        t_all = time.perf_counter()
        for connector in rendered.connectors:
            t = time.perf_counter()
            raise_on_errors(validate_config(api, connector.name, connector.config))
            diff_config(connector.name, connector.config, api.get_config(connector.name))
            apply_connector(api, connector, settings, dry_run=False, wait=True, timeout_s=120)
            careful.append(time.perf_counter() - t)
        careful_total = render_s + time.perf_counter() - t_all

        t_noop = time.perf_counter()
        for connector in rendered.connectors:
            apply_connector(api, connector, settings, dry_run=False, wait=True, timeout_s=120)
        noop_total = time.perf_counter() - t_noop

        naive: list[float] = []
        t_all = time.perf_counter()
        for connector in rendered.connectors:
            name = connector.name.replace("careful-", "naive-")
            t = time.perf_counter()
            api.create(name, {**connector.config, "name": name,
                              "transforms.route.replacement": f"{name}.heartbeat"})
            naive.append(time.perf_counter() - t)
        naive_total = time.perf_counter() - t_all
    finally:
        t_clean = time.perf_counter()
        mine = [n for n in api.list_connectors() if n.startswith(prefix)]
        for name in mine:
            delete_connector(api, name, 60)
        clean_s = time.perf_counter() - t_clean

    n = len(careful)
    print(f"connectors: {n} (MirrorHeartbeatConnector on {settings.connect_url})")
    print(f"careful (render+validate+diff+PUT+wait RUNNING): total {careful_total:.2f}s, "
          f"median {statistics.median(careful):.3f}s/connector (render {render_s:.3f}s for all)")
    print(f"second apply, no change (GET+diff+state check+wait): total {noop_total:.2f}s")
    print(f"naive POST loop (no validate, no wait): total {naive_total:.2f}s, "
          f"median {statistics.median(naive):.3f}s/connector")
    print(f"ratio careful/naive total: {careful_total / naive_total:.1f}x")
    print(f"cleanup: deleted {len(mine)} connectors in {clean_s:.2f}s")


if __name__ == "__main__":
    main()
