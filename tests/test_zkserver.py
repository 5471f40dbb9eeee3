from kazoo.client import KazooClient

from zkqueue import zkserver


def test_started_server_answers_and_stops(tmp_path):
    port = zkserver.free_port()
    server = zkserver.start(tmp_path, port=port)
    try:
        assert zkserver.four_letter("127.0.0.1", port) == "imok"
        again = zkserver.start(tmp_path, port=port)
        assert again.pid == server.pid, "a second start must reuse the running server"
        client = KazooClient(hosts=server.connect_string)
        client.start(timeout=20)
        client.create("/probe", b"x")
        assert client.get("/probe")[0] == b"x"
        client.stop()
    finally:
        assert zkserver.stop(tmp_path)
    assert zkserver.four_letter("127.0.0.1", port) == ""
    assert zkserver.running(tmp_path) is None
