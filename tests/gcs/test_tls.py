"""TLS for the ground station: to the broker (``[bus.tls]``, the agent's own settings
and the bus's one TLS mechanism) and HTTPS for the page, against a real mosquitto TLS
listener that demands client certificates and a real agent behind it, with a CA and
certificates made in the test (tests/bus/bus_tls.py)."""

from __future__ import annotations

import ssl
import sys
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path

import pytest

from gcs_helpers import StationThread, http, wait_for
from swarm.bus.broker import LocalBroker, MosquittoTls
from swarm.bus.client import BrokerAddress, TlsConfig
from swarm.gcs import ConfigError, GcsConfig, load_config

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "bus"))
sys.path.insert(0, str(TESTS / "agent"))
from agent_cluster import AgentCluster, zone  # noqa: E402
from bus_tls import Pki, make_pki  # noqa: E402

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_station_reaches_a_real_agent_over_tls_and_serves_https(tmp_path: Path, pki: Pki) -> None:
    broker = LocalBroker("mosquitto", tls=MosquittoTls(pki.ca, pki.server_cert, pki.server_key,
                                                       require_client_cert=True))
    broker.start()
    tls_toml = (f'[bus.tls]\nca_file = "{pki.ca}"\ncert_file = "{pki.client_cert}"\n'
                f'key_file = "{pki.client_key}"\n')
    cluster = AgentCluster(tmp_path, broker, 1, swarm="tls", extra=tls_toml)
    stations: list[StationThread] = []
    try:
        cluster.start_all()
        config_file = tmp_path / "gcs.toml"
        config_file.write_text(
            f'[swarm]\nid = "tls"\n[bus]\nbrokers = ["mqtts://127.0.0.1:{broker.port}"]\n'
            f'{tls_toml}[gcs]\nport = 0\nhttps_cert = "{pki.server_cert}"\n'
            f'https_key = "{pki.server_key}"\n')
        config = load_config(config_file)
        assert config.tls == TlsConfig(pki.ca, pki.client_cert, pki.client_key)
        st = StationThread(config)
        stations.append(st)
        assert st.url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(pki.ca))
        wait_for(lambda: http("GET", st.url + "/api/status", context=trusted)[1]["leader"], 60,
                 "the agent's status through the TLS broker, on the HTTPS page")
        # An operator action goes through the TLS broker to the agent and is committed.
        code, reply, _ = http("POST", st.url + "/api/commands", zone("tls-zone"), context=trusted)
        assert code == 200 and reply["status"] == "committed", reply
        wait_for(lambda: any(f["properties"]["id"] == "tls-zone" for f in http(
            "GET", st.url + "/api/map", context=trusted)[1]["features"]), 30, "the zone committed")
        # The page is HTTPS only, with a certificate a browser can check.
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(st.url + "/api/status", timeout=10)
        with pytest.raises((OSError, HTTPException)):
            urllib.request.urlopen(st.url.replace("https://", "http://") + "api/status",
                                   timeout=10).read()
        # Without its client certificate the broker turns the station away: it says so.
        bare = StationThread(GcsConfig(swarm="tls", port=0, tls=TlsConfig(pki.ca),
                                       brokers=(BrokerAddress("127.0.0.1", broker.port),)))
        stations.append(bare)
        time.sleep(3.0)
        status = http("GET", bare.url + "/api/status")[1]
        assert status["broker_connected"] is False and status["leader"] is None
        assert any(a["kind"] == "broker" for a in status["alerts"])
    finally:
        for st in stations:
            st.close()
        cluster.close()
        broker.close()


def test_tls_settings_from_flags_and_their_errors(tmp_path: Path, pki: Pki) -> None:
    config = load_config(None, swarm="s", brokers=["127.0.0.1"], tls_ca=pki.ca,
                         tls_cert=pki.client_cert, tls_key=pki.client_key,
                         https_cert=pki.server_cert, https_key=pki.server_key)
    assert config.brokers == (BrokerAddress("127.0.0.1", 8883),)  # the TLS port by default
    assert config.tls == TlsConfig(pki.ca.resolve(), pki.client_cert.resolve(),
                                   pki.client_key.resolve())
    assert config.https and config.ssl_context() is not None
    loose = tmp_path / "loose.key"
    loose.write_bytes(pki.server_key.read_bytes())
    loose.chmod(0o644)
    for kwargs, needle in [
        ({"tls_cert": pki.client_cert}, r"\[bus.tls\] ca_file: is required"),
        ({"tls_ca": pki.ca, "tls_cert": pki.client_cert}, "cert_file and key_file go together"),
        ({"tls_ca": tmp_path / "nope.crt"}, "ca_file: .*nope.crt is not a file"),
        ({"brokers": ["mqtt://127.0.0.1"], "tls_ca": pki.ca}, "mqtts:// needs"),
        ({"https_cert": pki.server_cert}, "https_cert and https_key go together"),
        ({"https_cert": pki.ca, "https_key": pki.server_key}, "cannot load"),
        ({"https_cert": pki.server_cert, "https_key": loose}, "accessible by group or others"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            load_config(None, swarm="s", **kwargs)
