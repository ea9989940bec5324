"""Downloader (resume, checksum, atomic) against a local HTTP server, the registry and resolve_weights."""
from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from sg3stream.errors import UserError
from sg3stream.models import download as dl
from sg3stream.models.registry import REGISTRY, get_entry

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB + 4 bytes, not a multiple of the chunk size


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /file.bin with Range support; /norange.bin ignores Range; /cut.bin drops the connection."""

    requests: list = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        RangeHandler.requests.append((self.path, self.headers.get("Range")))
        if self.path not in ("/file.bin", "/norange.bin", "/cut.bin"):
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and self.path != "/norange.bin":
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/cut.bin":
            self.wfile.write(body[:1000])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SG3STREAM_CACHE", str(tmp_path / "cache"))
    RangeHandler.requests.clear()
    return tmp_path / "cache"


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_models_dir_env(monkeypatch, tmp_path):
    monkeypatch.delenv("SG3STREAM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert dl.models_dir() == tmp_path / "x" / "sg3stream" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert dl.models_dir() == Path.home() / ".cache" / "sg3stream" / "models"


def test_download_with_progress_and_checksum(server, tmp_path):
    seen = []
    out = dl.download(f"{server}/file.bin", tmp_path / "d" / "f.bin", sha256=SHA, size=len(PAYLOAD),
                      progress=lambda done, total: seen.append((done, total)))
    assert out.read_bytes() == PAYLOAD
    assert seen[0] == (0, len(PAYLOAD)) and seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    assert not list((tmp_path / "d").glob("*.part"))
    assert (tmp_path / "d" / "f.bin.sha256").read_text().split()[0] == SHA


def test_resume_after_partial_file(server, tmp_path):
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:300_000])
    seen = []
    dl.download(f"{server}/file.bin", dest, sha256=SHA, progress=lambda d, t: seen.append(d))
    assert dest.read_bytes() == PAYLOAD
    assert RangeHandler.requests[-1] == ("/file.bin", "bytes=300000-")
    assert seen[0] == 300_000


def test_server_without_range_restarts(server, tmp_path):
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(b"garbage-that-must-not-stay")
    dl.download(f"{server}/norange.bin", dest, sha256=SHA)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    dl.download(f"{server}/file.bin", tmp_path / "f.bin", sha256=SHA)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_bad_checksum_leaves_nothing(server, tmp_path):
    with pytest.raises(UserError, match="checksum mismatch"):
        dl.download(f"{server}/file.bin", tmp_path / "f.bin", sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_bad_checksum_after_resume_leaves_nothing(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(b"X" * 1000)  # corrupt prefix: resumed file is wrong
    with pytest.raises(UserError, match="checksum mismatch"):
        dl.download(f"{server}/file.bin", tmp_path / "f.bin", sha256=SHA)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_keeps_part_for_resume(server, tmp_path):
    with pytest.raises(UserError, match="resume"):
        dl.download(f"{server}/cut.bin", tmp_path / "f.bin", retries=1, timeout=5)
    part = tmp_path / "f.bin.part"
    assert part.is_file() and 0 < part.stat().st_size < len(PAYLOAD) and not (tmp_path / "f.bin").exists()
    dl.download(f"{server}/file.bin", tmp_path / "f.bin", sha256=SHA)  # resume from the same .part
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_http_error(server, tmp_path):
    with pytest.raises(UserError, match="HTTP 404"):
        dl.download(f"{server}/missing.bin", tmp_path / "f.bin")
    assert list(tmp_path.iterdir()) == []


def test_download_model_uses_registry(server, cache, monkeypatch):
    from dataclasses import replace

    entry = replace(REGISTRY["restyle_e4e_ffhq"], url=f"{server}/file.bin", sha256=SHA)
    monkeypatch.setitem(REGISTRY, "restyle_e4e_ffhq", entry)
    with pytest.raises(UserError, match="sg3stream models download restyle_e4e_ffhq"):
        dl.resolve_weights("restyle_e4e_ffhq")
    path = dl.download_model("restyle_e4e_ffhq")
    assert path == cache / "models" / "restyle_e4e_ffhq.pt" and path.read_bytes() == PAYLOAD
    assert dl.resolve_weights("restyle_e4e_ffhq") == path


def test_resolve_weights(tmp_path):
    f = tmp_path / "w.pt"
    f.write_bytes(b"x")
    assert dl.resolve_weights(f) == f and dl.resolve_weights(str(f)) == f
    with pytest.raises(UserError, match="not found"):
        dl.resolve_weights(tmp_path / "nope.pt")
    with pytest.raises(UserError, match="sg3stream models download NAME"):
        dl.resolve_weights("no_such_model")
    with pytest.raises(UserError, match="by hand"):
        dl.resolve_weights("interfacegan_aligned_ffhq")
    with pytest.raises(UserError, match="folder"):
        dl.download_model("interfacegan_aligned_ffhq")


def test_registry_entries_are_well_formed():
    for name, e in REGISTRY.items():
        assert e.name == name and e.kind in ("encoder", "generator", "boundaries")
        assert e.url is None or e.url.startswith("https://")
        assert e.sha256 is None or len(e.sha256) == 64
    assert {"restyle_e4e_ffhq", "restyle_psp_ffhq"} <= set(REGISTRY)
    with pytest.raises(UserError, match="known"):
        get_entry("nope")
