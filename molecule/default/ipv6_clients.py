"""nginx's per-client limits count an IPv6 client by its /64, run on the deployed host (standard library only).

A host usually holds a whole /64 and may send each request from a new address in it. Requests that alternate
between two addresses of one /64 must meet the limits as one client would (429s past the burst), while an address
of another /64 is another client, still let through. Checked for new Socket.IO sessions and for the API.

    ipv6_clients.py --first fd00:6c6c:0:1::a --second fd00:6c6c:0:1::b --other fd00:6c6c:0:2::a
"""

from __future__ import annotations

import argparse
import http.client
import ssl
import sys

REQUESTS = 40  # twice the burst (livelog_nginx_api_burst: 20), sent as fast as one client can


def status(source: str, path: str) -> int:
    """The status of one GET through nginx on [::1]:443, sent from `source`."""
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE  # nginx on loopback, its own certificate
    connection = http.client.HTTPSConnection("::1", 443, context=tls, timeout=10, source_address=(source, 0))
    try:
        connection.request("GET", path, headers={"Host": "localhost"})
        return connection.getresponse().status
    finally:
        connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first", required=True)
    parser.add_argument("--second", required=True, help="an address in the same /64 as --first")
    parser.add_argument("--other", required=True, help="an address in another /64")
    args = parser.parse_args()
    failures = []
    # the API answers 401 without a key, after nginx's limit: a 401 is a request nginx let through
    for what, path, passed in (
        ("new Socket.IO sessions", "/socket.io/?EIO=4&transport=polling", 200),
        ("API requests", "/api/runs", 401),
    ):
        codes = [status(args.first if n % 2 == 0 else args.second, path) for n in range(REQUESTS)]
        other = status(args.other, path)
        print(f"{what}: from one /64, two addresses in turn: {codes}; then from another /64: {other}")
        # as two clients, each would stay within the burst: no 429
        if 429 not in codes:
            failures.append(f"{what}: two addresses of one /64 were not limited as one client")
        if other != passed:
            failures.append(f"{what}: another /64 got {other}, not {passed}")
    for failure in failures:
        print(f"FAILED: {failure}")
    print("ipv6 clients: OK" if not failures else "ipv6 clients: FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
