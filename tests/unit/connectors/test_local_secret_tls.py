"""The local worker's Debezium secret file comes from the one Mongo URI builder: FRESH_MONGO_URI plus
the FRESH_MONGO_TLS* options, written mode 0600 under the stack home."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from connectors.apply import ensure_local_secret
from connectors.render import render
from fresh.pipeline import load_pipeline_config
from fresh.settings import Settings

URI = "mongodb://seed:pw@127.0.0.1:27517/?directConnection=true"


def written_uri(settings: Settings) -> str:
    rendered = render(load_pipeline_config(settings.pipeline_config), settings, "local").by_name()
    source = next(c for c in rendered.values() if c.key == "mongodb_source")
    assert source.local_secret_file is not None
    ensure_local_secret(source, settings)
    path = Path(source.local_secret_file["path"])
    assert path.stat().st_mode & 0o777 == 0o600
    line = next(x for x in path.read_text(encoding="utf-8").splitlines() if x.startswith("mongodb.connection.string="))
    return line.split("=", 1)[1]


def test_without_tls_the_uri_is_written_as_given(tmp_path: Path) -> None:
    assert written_uri(Settings(stack_home=tmp_path, mongo_uri=URI)) == URI  # type: ignore[arg-type]


def test_with_tls_the_options_reach_debezium(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("pem", encoding="utf-8")
    uri = written_uri(Settings(stack_home=tmp_path, mongo_uri=URI, mongo_tls=True,  # type: ignore[arg-type]
                               mongo_tls_ca_file=str(ca)))  # type: ignore[arg-type]
    options = parse_qs(urlsplit(uri).query)
    assert options["tls"] == ["true"] and options["tlsCAFile"] == [str(ca)]
    assert urlsplit(uri).password == "pw"
