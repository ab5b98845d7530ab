"""`tgdmat data fetch` against a local HTTP server on 127.0.0.1: verified downloads, a dropped
connection resumed with a Range request, a corrupted file refused, a missing file one line."""
import gzip
import http.server
import threading
from pathlib import Path


from conftest import needs_data
from tgdmat.cli import main
from tgdmat.data import fetch as F

TINY = Path(__file__).parent / "data" / "tiny_perov"


class Server:
    """Serves ``files`` (URL path -> bytes) with Range support; ``drop_first`` cuts the first
    response of each file halfway, ``corrupt`` flips a byte of every response."""

    def __init__(self, files: dict[str, bytes], drop_first: bool = False, corrupt: bool = False):
        self.files, self.drop_first, self.corrupt = files, drop_first, corrupt
        self.dropped: set[str] = set()
        self.ranges: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                if server.corrupt:
                    data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
                start = 0
                if "Range" in self.headers:
                    server.ranges.append(self.headers["Range"])
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drop_first and self.path not in server.dropped:
                    server.dropped.add(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection drops mid-file
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def tiny_manifest(monkeypatch) -> dict[str, bytes]:
    """A manifest entry 'tiny' whose splits are the shipped fixture; returns the files to serve."""
    files, entry = {}, {}
    for split in ("train", "val", "test"):
        data = gzip.decompress((TINY / f"{split}.csv.gz").read_bytes())
        source = F.Source("owner/repo/0123abcd", f"data/tiny/{split}.csv", F.git_blob_id(data))
        entry[split] = source
        files[f"/{source.repo}/{source.path}"] = data
    monkeypatch.setitem(F.MANIFEST, "tiny", entry)
    return files


def test_git_blob_id_is_what_git_prints():
    assert F.git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object of "hello\n"


def test_fetch_resumes_a_dropped_connection_and_verifies(tmp_path, monkeypatch, capsys):
    files = tiny_manifest(monkeypatch)
    server = Server(files, drop_first=True)
    try:
        assert main(["data", "fetch", "tiny", "--data-root", str(tmp_path), "--base-url", server.url, "--quiet"]) == 0
        assert len(server.ranges) == 3 and all(r.startswith("bytes=") and r != "bytes=0-" for r in server.ranges)  # each file resumed
        for split in ("train", "val", "test"):
            assert gzip.decompress((tmp_path / "tiny" / f"{split}.csv.gz").read_bytes()) == files[f"/owner/repo/0123abcd/data/tiny/{split}.csv"]
        assert not list((tmp_path / "tiny").glob(".*part"))
        assert "downloaded and verified" in capsys.readouterr().out
        assert main(["data", "fetch", "tiny", "--data-root", str(tmp_path), "--base-url", server.url, "--quiet"]) == 0
        assert capsys.readouterr().out.count("already present") == 3
        from tgdmat.data import load_split
        from tgdmat.data.protocol import protocol_name

        assert len(load_split(str(tmp_path / "tiny"), "train", progress=False)) == 48 and protocol_name("tiny", tmp_path) == "standard"
    finally:
        server.close()


def test_a_corrupted_download_is_refused_and_not_stored(tmp_path, monkeypatch, capsys):
    server = Server(tiny_manifest(monkeypatch), corrupt=True)
    try:
        assert main(["data", "fetch", "tiny", "--splits", "val", "--data-root", str(tmp_path), "--base-url", server.url, "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "differs from the published" in err[0] and "nothing stored" in err[0]
        assert not (tmp_path / "tiny" / "val.csv.gz").exists() and not list((tmp_path / "tiny").glob(".*part"))
    finally:
        server.close()


def test_missing_file_and_unreachable_server_are_one_line(tmp_path, monkeypatch, capsys):
    tiny_manifest(monkeypatch)
    server = Server({})
    try:
        assert main(["data", "fetch", "tiny", "--splits", "test", "--data-root", str(tmp_path), "--base-url", server.url, "--quiet"]) == 2
        assert "HTTP 404" in capsys.readouterr().err
    finally:
        server.close()
    assert main(["data", "fetch", "tiny", "--splits", "test", "--data-root", str(tmp_path), "--base-url", server.url, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "download failed" in err[0] and "resume" in err[0]
    assert main(["data", "fetch", "mp_21", "--data-root", str(tmp_path)]) == 2
    assert "unknown dataset" in capsys.readouterr().err


@needs_data
def test_fetch_verifies_the_published_perov_5_files(tmp_path, capsys):
    """The real manifest: the shared copies of Perov-5 val/test, served locally, pass the published blob ids."""
    from tgdmat.data.protocol import default_data_root

    files = {}
    for split in ("val", "test"):
        source = F.MANIFEST["perov_5"][split]
        files[f"/{source.repo}/{source.path}"] = gzip.decompress((default_data_root() / "perov_5" / f"{split}.csv.gz").read_bytes())
    server = Server(files, drop_first=True)
    try:
        assert main(["data", "fetch", "perov_5", "--splits", "val", "test", "--data-root", str(tmp_path), "--base-url", server.url, "--quiet"]) == 0
    finally:
        server.close()
    assert capsys.readouterr().out.count("downloaded and verified") == 2
