"""The lean HTTP transport under the official Twilio client: form encoding exactly as urllib writes it, and
answers the way real servers send them (chunked, delimited by closing, interim 100, a kept-alive connection
the server has dropped)."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from engine.channels.twilio_common import AnswerLost, KeepAliveHttpClient, form_encode

ANSWERS = {
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "/continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    "/busy": b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 2\r\n\r\n{}",
    "/plain": b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"a": "b"}\n',
    "/bye": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye",
}


class ScriptedServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.connections = 0
        self.requests: list[tuple[str, bytes]] = []
        self.drop_after_answer = False  # close the connection after the next answer, without saying so
        self.swallow_next_get = False  # take the next GET and close the connection without answering
        self.closed = threading.Semaphore(0)  # released each time the server has closed a connection

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.closed.release()


class ScriptedHandler(socketserver.StreamRequestHandler):
    server: ScriptedServer

    def handle(self) -> None:
        self.server.connections += 1
        while True:
            line = self.rfile.readline()
            if not line:
                return
            _method, path, _version = line.decode().split(" ", 2)
            length = 0
            while (header := self.rfile.readline()) not in (b"\r\n", b""):
                name, _, value = header.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            body = self.rfile.read(length) if length else b""
            self.server.requests.append((path, body))
            if path == "/swallow":  # took the request, then went away without answering
                return
            if _method == "GET" and self.server.swallow_next_get:
                self.server.swallow_next_get = False
                return
            if path == "/until-close":
                self.wfile.write(b"HTTP/1.0 200 OK\r\n\r\nevery byte until the end")
                return
            self.wfile.write(ANSWERS[path])
            if path == "/bye" or self.server.drop_after_answer:
                self.server.drop_after_answer = False
                return


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def client(server: ScriptedServer) -> Iterator[KeepAliveHttpClient]:
    host, port = server.server_address[:2]
    http = KeepAliveHttpClient(f"http://{host}:{port}", timeout=5.0)
    yield http
    http.close()


def _url(server: ScriptedServer, path: str) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}{path}"


@pytest.mark.parametrize(
    "data",
    [
        {"To": "+27821234567", "From": "+27870000001", "Body": "Pump 7 offline: reply 1 to acknowledge"},
        {"Body": "Ünïcödé ✓ & = + % ~ _ . - 😀", "StatusCallback": "https://a.example/twilio/status?x=1&y=2"},
        {"MediaUrl": ["https://a.example/1.png", "https://a.example/2 b.png"], "Count": 3, "Flag": True},
        {"Empty": "", "Bytes": b"raw \xff bytes", "Tuple": ("a", "b c")},
    ],
)
def test_form_encoding_is_exactly_what_urllib_writes(data: dict[str, object]) -> None:
    assert form_encode(data) == urlencode(data, doseq=True)


def test_a_form_post_reuses_one_connection(server: ScriptedServer, client: KeepAliveHttpClient) -> None:
    for n in range(3):
        answer = client.request("POST", _url(server, "/plain"), data={"Body": f"message {n}"})
        assert (answer.status_code, answer.text) == (200, '{"a": "b"}\n')
    assert server.connections == 1
    assert [body for _path, body in server.requests] == [
        b"Body=message+0",
        b"Body=message+1",
        b"Body=message+2",
    ]


def test_chunked_and_close_delimited_answers_are_read_whole(
    server: ScriptedServer, client: KeepAliveHttpClient
) -> None:
    assert client.request("GET", _url(server, "/chunked")).text == "hello world"
    assert client.request("GET", _url(server, "/until-close")).text == "every byte until the end"
    assert client.request("GET", _url(server, "/plain")).status_code == 200
    assert server.connections == 2, "a close-delimited answer ends its connection; a new one follows"


def test_an_interim_100_continue_is_skipped(server: ScriptedServer, client: KeepAliveHttpClient) -> None:
    answer = client.request("POST", _url(server, "/continue"), data={"a": "1"})
    assert (answer.status_code, answer.text) == (201, "ok")


def test_retry_after_is_kept_for_the_error_classifier(
    server: ScriptedServer, client: KeepAliveHttpClient
) -> None:
    answer = client.request("POST", _url(server, "/busy"), data={"a": "1"})
    assert answer.status_code == 429
    assert client.last_retry_after == 7.0
    client.request("GET", _url(server, "/plain"))
    assert client.last_retry_after is None


def test_connection_close_and_a_silently_dropped_connection_both_lead_to_a_fresh_one(
    server: ScriptedServer, client: KeepAliveHttpClient
) -> None:
    assert client.request("GET", _url(server, "/bye")).text == "bye"
    assert client.request("GET", _url(server, "/plain")).status_code == 200
    assert server.connections == 2
    assert server.closed.acquire(timeout=5)  # "/bye" closed the first connection
    server.drop_after_answer = True  # the server closes this kept-alive connection after answering
    assert client.request("GET", _url(server, "/plain")).status_code == 200
    # Wait until it has: a loaded machine can otherwise send the next request before the close happens.
    assert server.closed.acquire(timeout=5)
    # The next request finds the connection dead before any answer: sent again once on a new connection.
    assert client.request("POST", _url(server, "/plain"), data={"n": "1"}).status_code == 200
    assert server.connections == 3
    assert [p for p, b in server.requests if b == b"n=1"] == ["/plain"], "the request arrived exactly once"


def test_a_post_whose_answer_is_lost_is_not_written_again(
    server: ScriptedServer, client: KeepAliveHttpClient
) -> None:
    """The provider may have acted on it (created the message): the caller asks it before sending again."""
    assert client.request("GET", _url(server, "/plain")).status_code == 200  # a kept-alive connection
    with pytest.raises(AnswerLost) as lost:
        client.request("POST", _url(server, "/swallow"), data={"Body": "page"})
    assert not lost.value.timed_out
    assert [p for p, _b in server.requests].count("/swallow") == 1, (
        "written once, not again on a new connection"
    )
    assert client.request("POST", _url(server, "/plain"), data={"n": "2"}).status_code == 200


def test_a_read_whose_answer_is_lost_on_a_reused_connection_is_asked_again(
    server: ScriptedServer, client: KeepAliveHttpClient
) -> None:
    assert client.request("GET", _url(server, "/plain")).status_code == 200
    server.swallow_next_get = True
    assert client.request("GET", _url(server, "/plain")).status_code == 200
    assert server.connections == 2
