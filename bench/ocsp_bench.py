"""What OCSP adds to a trust decision (issue 10 item 3).

    .venv/bin/python bench/ocsp_bench.py [--samples 50]

A root R issues end-entity certificates whose AIA names a responder on a loopback port
(http.server answering with cryptography's OCSPResponseBuilder, nonce echoed, signed by R's
P-256 key, nextUpdate in an hour). Printed, never asserted, each as the median of --samples:

  no-ocsp   trust.check with no OCSP lookup (soft-fail, no CRL): the baseline of this run
  cold      trust.check with OcspClient.check of a certificate not asked before: request,
            HTTP round trip on loopback, response signature, CertID, nonce and time checks
  warm      trust.check of a certificate answered before (the answer comes from the cache)
            (the three interleaved certificate by certificate)
  client    OcspClient.check alone, cold and warm
  responder the responder's own time per answer (building and signing), part of cold

with each one's ratio to no-ocsp. A real responder adds its network distance to cold; warm is
what the same correspondent costs until the answer's nextUpdate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.x509 import ocsp  # noqa: E402

from smimegate.pki import trust  # noqa: E402
from smimegate.pki.ocsp import OcspCache, OcspClient  # noqa: E402
from tests.unit.pki import pkibuild  # noqa: E402
from tests.unit.pki.ocsp_support import leaf, serve  # noqa: E402

UTC = dt.UTC


class Responder:
    """Answers every request about R's certificates with "good"; times its own work."""

    def __init__(self, root: pkibuild.Issued) -> None:
        self.root = root
        self.seconds: list[float] = []

    def answer(self, body: bytes) -> bytes:
        start = time.perf_counter()
        request = ocsp.load_der_ocsp_request(body)
        now = dt.datetime.now(UTC)
        nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        response = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(request.issuer_name_hash, request.issuer_key_hash,
                                  request.serial_number, request.hash_algorithm,
                                  ocsp.OCSPCertStatus.GOOD, now - dt.timedelta(minutes=1),
                                  now + dt.timedelta(hours=1), None, None)
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.root.cert)
            .add_extension(x509.OCSPNonce(nonce), critical=False)
            .sign(self.root.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.DER)
        )
        self.seconds.append(time.perf_counter() - start)
        return response


def median_ms(run: Callable[[Any], object], items: list[Any]) -> float:
    times = []
    for item in items:
        start = time.perf_counter()
        run(item)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()

    root = pkibuild.root("OCSP Bench Root", not_before=dt.datetime.now(UTC) - dt.timedelta(days=1))
    responder = Responder(root)
    running = serve()  # the tests' loopback responder: runs until the generator is closed
    server = next(running)
    server.respond = responder.answer
    url = server.url
    certs = [leaf(root, url, f"user{i}@example.test").cert for i in range(args.samples)]
    other = [leaf(root, url, f"other{i}@example.test").cert for i in range(args.samples)]

    plain = trust.TrustAnchors(roots=(root.cert,))
    client = OcspClient(timeout=5.0, cache=OcspCache())
    with_ocsp = trust.TrustAnchors(roots=(root.cert,), ocsp=client.check)

    def decide(anchors: trust.TrustAnchors) -> Callable[[x509.Certificate], object]:
        def run(cert: x509.Certificate) -> object:
            result = trust.check(cert, anchors, purpose="sign")
            assert result.trusted, result.reason  # a broken setup would measure nothing
            return result
        return run

    trust.check(certs[0], plain, purpose="sign")  # imports and first-use costs out of the way
    # Interleaved per certificate, so that the load of a shared machine falls on all three alike.
    series: dict[str, list[float]] = {"no-ocsp": [], "cold": [], "warm": []}
    for cert in certs[1:]:
        for label, anchors in (("no-ocsp", plain), ("cold", with_ocsp), ("warm", with_ocsp)):
            series[label].append(median_ms(decide(anchors), [cert]))
    base, cold, warm = (statistics.median(series[k]) for k in ("no-ocsp", "cold", "warm"))
    alone = OcspClient(timeout=5.0, cache=OcspCache())
    client_cold = median_ms(lambda c: alone.check(c, root.cert), other)
    client_warm = median_ms(lambda c: alone.check(c, root.cert), other)
    responder_ms = statistics.median(responder.seconds) * 1000
    running.close()

    print(f"OCSP in trust.check, median of {args.samples} (ms; ratio to no-ocsp)")
    for label, value in (("no-ocsp", base), ("cold", cold), ("warm", warm),
                         ("client cold", client_cold), ("client warm", client_warm),
                         ("responder", responder_ms)):
        print(f"  {label:<12} {value:8.3f}  x{value / base:.2f}")


if __name__ == "__main__":
    main()
