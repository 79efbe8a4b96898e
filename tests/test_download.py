"""`lirdrec download`: checksums, resume and conversion, against a local HTTP server (offline)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from lirdrec.cli.main import main
from lirdrec.data import registry
from lirdrec.data.download import fetch
from lirdrec.errors import DataError


def _tiny_ml100k() -> bytes:
    rng = np.random.default_rng(0)
    rows = [f"{u}\t{i}\t{int(rng.integers(1, 6))}\t{880000000 + 7 * u + i}"
            for u in range(1, 13) for i in rng.choice(np.arange(1, 9), size=5, replace=False)]
    genres = ["0"] * 19
    items = []
    for i in range(1, 9):
        g = list(genres)
        g[1 + i % 5] = "1"
        items.append(f"{i}|Movie {i} (199{i})|01-Jan-199{i}||http://x/{i}|" + "|".join(g))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "\n".join(rows) + "\n")
        zf.writestr("ml-100k/u.item", ("\n".join(items) + "\n").encode("latin-1"))
    return buf.getvalue()


class _Server:
    """Serves one payload with Range support; ``cut_after`` bytes then drops the connection."""

    def __init__(self, payload: bytes):
        self.payload, self.cut_after, self.requests = payload, None, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = server.payload[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body)))
                if rng:
                    n = len(server.payload)
                    self.send_header("Content-Range", f"bytes {start}-{n - 1}/{n}")
                self.end_headers()
                if server.cut_after is not None:
                    self.wfile.write(body[:server.cut_after])
                    server.cut_after = None
                    self.wfile.flush()
                    self.connection.close()  # the client sees fewer bytes than announced
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/ml-100k.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def server():
    s = _Server(_tiny_ml100k())
    yield s
    s.close()


def test_fetch_verifies_and_resumes_an_interrupted_download(server, tmp_path):
    md5 = hashlib.md5(server.payload).hexdigest()
    server.cut_after = 100
    with pytest.raises(DataError, match=r"interrupted after 100 of \d+ bytes; run the same "
                       "command again to resume"):
        fetch(server.url, tmp_path / "a.zip", md5=md5)
    assert (tmp_path / "a.zip.part").stat().st_size == 100 and not (tmp_path / "a.zip").exists()
    path = fetch(server.url, tmp_path / "a.zip", md5=md5)
    assert server.requests == [None, "bytes=100-"]  # the second request resumed
    assert path.read_bytes() == server.payload and not (tmp_path / "a.zip.part").exists()
    fetch(server.url, tmp_path / "a.zip", md5=md5)  # already there: no new request
    assert len(server.requests) == 2


def test_checksum_mismatch_deletes_the_file_and_names_both_digests(server, tmp_path):
    found = hashlib.md5(server.payload).hexdigest()
    with pytest.raises(DataError, match=rf"expected md5 {'0' * 32}, found md5 {found}"):
        fetch(server.url, tmp_path / "a.zip", md5="0" * 32)
    assert not list(tmp_path.iterdir())


def test_download_builds_an_mmrec_dataset_with_text_features_and_a_card(server, tmp_path,
                                                                        monkeypatch, capsys):
    entry = dataclasses.replace(registry.DATASETS["ml-100k"],
                                md5=hashlib.md5(server.payload).hexdigest())
    monkeypatch.setitem(registry.DATASETS, "ml-100k", entry)
    out = tmp_path / "ml"
    assert main(["-q", "download", "ml-100k", "--url", server.url, "--out", str(out)]) == 0
    import lirdrec

    ds = lirdrec.load_dataset(out)
    assert (ds.num_users, ds.num_items) == (12, 8) and ds.features["text"].shape == (8, 384)
    assert len(ds.train) + len(ds.valid) + len(ds.test) == 60
    card = (out / "README.md").read_text()
    assert "MovieLens 100K" in card and entry.md5 in card and "Harper" in card
    items = (out / "raw" / "items.csv").read_text().splitlines()
    assert items[1].startswith("1,Movie 1 (1991),") and "Adventure" in items[1]  # flag 1 + 1 % 5


def test_unknown_and_manual_datasets_fail_in_one_line(capsys, tmp_path):
    assert main(["download", "ml-2k", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown dataset 'ml-2k'; known: ml-100k" in err
    assert main(["download", "amazon-baby", "--out", str(tmp_path / "y")]) == 1
    assert "Google Drive" in capsys.readouterr().err
    assert main(["datasets"]) == 0
    assert "ml-1m" in capsys.readouterr().out


def test_zip_members_outside_the_folder_are_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(DataError, match="member path '../evil.txt'"):
        registry._safe_extract(bad, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_missing_shared_data_skips_here_and_fails_under_ci(monkeypatch):
    import conftest

    monkeypatch.setattr(conftest, "REQUIRE_SHARED", False)
    with pytest.raises(pytest.skip.Exception, match="needs .*no-such-folder"):
        conftest.shared_path("no-such-folder")
    monkeypatch.setattr(conftest, "REQUIRE_SHARED", True)
    with pytest.raises(pytest.fail.Exception, match="LIRDREC_REQUIRE_SHARED is set"):
        conftest.shared_path("no-such-folder")
