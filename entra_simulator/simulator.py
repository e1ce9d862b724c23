"""The simulator: its state (:mod:`.state`) served over HTTPS by its handlers."""

from __future__ import annotations

import ssl
import threading
from pathlib import Path

from entra_simulator.handlers import make_server
from entra_simulator.state import SimulatorState


class Simulator(SimulatorState):
    """The simulator's state and server; use :meth:`start` and :meth:`stop`."""

    def start(self, listen: str = "127.0.0.1:0") -> str:
        """Bind, start serving in a background thread and return the base URL."""
        host, _, port = listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        cert_file = Path(self._workdir.name) / "server.pem"
        cert_file.write_bytes(self.tls.cert_pem + self.tls.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file)
        server = make_server(self, host, int(port))
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        self._server = server
        # A short poll interval: stop() returns within 50 ms instead of socketserver's 0.5 s.
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="simulator", daemon=True
        )
        self._thread.start()
        return self.base_url
