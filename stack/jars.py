"""Fetch the stack's jars from Maven Central with Maven, into an ignored cache folder.

Each bundle (kafka, debezium plugin, mongo server) is resolved by `mvn dependency:copy-dependencies`
from a small pom under `stack/maven/`, into a temporary folder that is renamed into place only when
complete, and reused afterwards as long as its stamp matches the pinned versions.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fresh.errors import DownloadError, ToolMissingError
from fresh.progress import waiting
from stack.versions import require

log = logging.getLogger(__name__)

MAVEN_DIR = Path(__file__).parent / "maven"


@dataclass(frozen=True)
class Bundle:
    name: str
    pom: str
    # versions.env key -> Maven property used in the pom
    properties: dict[str, str]
    # jars that must not be in the folder (the Connect worker provides them to plugins)
    exclude_group_ids: tuple[str, ...] = ()


BUNDLES = (
    Bundle("kafka", "kafka.pom.xml", {"KAFKA_VERSION": "kafka.version", "LOG4J_VERSION": "log4j.version"}),
    Bundle(
        "debezium",
        "debezium.pom.xml",
        {"DEBEZIUM_VERSION": "debezium.version"},
        exclude_group_ids=("org.apache.kafka", "org.slf4j"),
    ),
    Bundle(
        "mongo",
        "mongo.pom.xml",
        {"MONGO_JAVA_SERVER_VERSION": "mongo_java_server.version", "SLF4J_VERSION": "slf4j.version"},
    ),
)


def require_tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ToolMissingError(f"{name} not found on PATH: {install_hint}")
    return path


def bundle_dir(jars_root: Path, bundle: Bundle) -> Path:
    return jars_root / bundle.name


def _stamp(bundle: Bundle, versions: dict[str, str]) -> str:
    return " ".join(f"{key}={require(versions, key)}" for key in sorted(bundle.properties))


def is_fetched(jars_root: Path, bundle: Bundle, versions: dict[str, str]) -> bool:
    stamp = bundle_dir(jars_root, bundle) / ".stamp"
    return stamp.is_file() and stamp.read_text(encoding="utf-8") == _stamp(bundle, versions)


def fetch_bundle(jars_root: Path, bundle: Bundle, versions: dict[str, str], log_dir: Path) -> Path:
    """Make sure the bundle's jars are in place; download them with Maven when missing."""
    target = bundle_dir(jars_root, bundle)
    if is_fetched(jars_root, bundle, versions):
        return target
    mvn = require_tool("mvn", "install Maven (for example `apt-get install maven`) and retry")
    staging = jars_root / f".{bundle.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"maven-{bundle.name}.log"
    cmd = [
        mvn, "-B", "-f", str(MAVEN_DIR / bundle.pom), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]
    cmd += [f"-D{prop}={require(versions, key)}" for key, prop in bundle.properties.items()]
    if bundle.exclude_group_ids:
        cmd.append("-DexcludeGroupIds=" + ",".join(bundle.exclude_group_ids))
    print(f"fetching {bundle.name} jars with Maven (log: {log_file}) ...", file=sys.stderr, flush=True)
    with log_file.open("w", encoding="utf-8") as out, waiting(f"Maven to fetch the {bundle.name} jars") as wait:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        while True:  # a progress line on a terminal while Maven works (fresh/progress.py)
            try:
                proc.wait(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                wait.tick()
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise DownloadError(
            f"Maven could not fetch the {bundle.name} jars (exit {proc.returncode}); "
            f"see {log_file}: check access to Maven Central and the versions in versions.env"
        )
    (staging / ".stamp").write_text(_stamp(bundle, versions), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def fetch_all(jars_root: Path, versions: dict[str, str], log_dir: Path) -> dict[str, Path]:
    return {b.name: fetch_bundle(jars_root, b, versions, log_dir) for b in BUNDLES}
