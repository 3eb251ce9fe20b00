"""bench/api_load.py without a server: the wrk output parser, the question files wrk reads,
and the target checks."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.api_load import QuestionSource, checks, parse_wrk, wrk_command

# Captured from `wrk -t 2 -c 4 -d 3s --latency --timeout 1s -s bench/wrk_search.lua URL -- FILE 2`
# against a server that answers some requests with 503 and stalls others past the timeout
# (the read error was added by hand, so every socket-error field is checked).
WITH_ERRORS = """\
Running 3s test @ http://127.0.0.1:18777/v1/search
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    43.47ms    5.66ms  48.06ms   97.63%
    Req/Sec    31.30     13.10    60.00     83.33%
  Latency Distribution
     50%   43.99ms
     75%   44.05ms
     90%   44.42ms
     99%   48.03ms
  171 requests in 3.10s, 31.00KB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 18
Requests/sec:     55.16
Transfer/sec:     10.00KB
mlrag-wrk p50_us=43985 p90_us=44418 p95_us=47974 p99_us=48030 max_us=48058 requests=171 wraps=118
"""

# Plain `wrk --latency` (no Lua script), mixed units, no error lines.
CLEAN = """\
Running 10s test @ http://127.0.0.1:8000/v1/search
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    52.11ms   10.02ms    1.20s    70.00%
    Req/Sec    76.50     12.34   100.00     65.00%
  Latency Distribution
     50%  850.00us
     75%    5.50ms
     90%   60.00ms
     99%    1.20s
  1530 requests in 10.01s, 4.10MB read
Requests/sec:    152.85
Transfer/sec:    419.43KB
"""


def test_parses_errors_and_lua_percentiles() -> None:
    stats = parse_wrk(WITH_ERRORS)
    assert stats["requests"] == 171
    assert stats["duration_s"] == pytest.approx(3.10)
    assert stats["rps"] == pytest.approx(55.16)
    assert stats["non_2xx_3xx"] == 18
    assert stats["socket_errors"] == {"connect": 0, "read": 1, "write": 0, "timeout": 2}
    assert stats["errors"] == 21
    # The Lua line's exact microseconds win over wrk's rounded ones, and add p95.
    assert stats["p50_ms"] == pytest.approx(43.985)
    assert stats["p95_ms"] == pytest.approx(47.974)
    assert stats["p99_ms"] == pytest.approx(48.030)
    assert stats["p75_ms"] == pytest.approx(44.05)
    assert stats["question_list_wraps"] == 118


def test_parses_plain_output_and_units() -> None:
    stats = parse_wrk(CLEAN)
    assert stats["requests"] == 1530
    assert stats["rps"] == pytest.approx(152.85)
    assert stats["p50_ms"] == pytest.approx(0.85)
    assert stats["p75_ms"] == pytest.approx(5.5)
    assert stats["p90_ms"] == pytest.approx(60.0)
    assert stats["p99_ms"] == pytest.approx(1200.0)
    assert "p95_ms" not in stats
    assert stats["read_bytes"] == int(4.10 * 1024**2)
    assert stats["errors"] == 0
    assert stats["socket_errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}


def test_output_without_summary_is_an_error() -> None:
    with pytest.raises(ValueError, match="no wrk summary"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_question_files_never_repeat(tmp_path: Path) -> None:
    source = QuestionSource(tmp_path)
    first, n1 = source.bodies_file(300)
    second, n2 = source.bodies_file(300)
    bodies = first.read_text().splitlines() + second.read_text().splitlines()
    assert n1 == n2 == 300
    assert len(bodies) == 600 == len(set(bodies))
    assert all(set(json.loads(b)) == {"query"} for b in bodies)
    command = wrk_command("http://127.0.0.1:1/v1/search", 1, 3, first)
    # wrk refuses fewer connections than threads; the Lua script needs the thread count.
    assert command[command.index("-t") + 1] == "1"
    assert command[-2:] == [str(first), "1"]


def test_checks_use_the_embedded_one_worker_rows() -> None:
    row = {"rps": 160.0, "p50_ms": 14.0, "p99_ms": 151.0}
    results = {
        "embedded-1w": [{"concurrency": 1, **row}, {"concurrency": 8, **row}],
        "server-2w": [{"concurrency": 8, "rps": 10.0, "p50_ms": 1.0, "p99_ms": 1.0}],
    }
    got = checks(results)
    assert got["rps_c8"]["met"] is True
    assert got["p99_ms_c8"]["met"] is False
    assert got["p50_ms_c1"]["met"] is True


class _Recorder(BaseHTTPRequestHandler):
    """Answers every POST with 200 and records (Content-Type, body)."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.seen.append((self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.server
def test_lua_script_sends_each_question_once(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        bodies, n = QuestionSource(tmp_path).bodies_file(5000)
        url = f"http://127.0.0.1:{server.server_port}/v1/search"
        command = wrk_command(url, 2, 1, bodies)
        output = subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
    finally:
        server.shutdown()
        server.server_close()
    stats = parse_wrk(output)
    assert stats["requests"] > 0 and stats["errors"] == 0
    assert stats["question_list_wraps"] == 0 and "p95_ms" in stats
    sent = [body for _, body in _Recorder.seen]
    assert {kind for kind, _ in _Recorder.seen} == {"application/json"}
    # Two threads, two connections: no question twice, all from the file.
    assert len(sent) == len(set(sent))
    assert set(sent) <= set(bodies.read_text().splitlines())
