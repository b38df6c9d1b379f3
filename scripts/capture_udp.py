#!/usr/bin/env python3
"""Captures UDP payloads on the loopback interface into fuzz corpus files until killed.

    capture_udp.py OUT_DIR [--limit N]

Needs root (an AF_PACKET socket). Writes each distinct payload whose first byte is the
fastpay codec version (1) as OUT_DIR/wire_decode/real-<hash> and, wrapped as a one-datagram
batch, as OUT_DIR/pipeline/real-<hash>; at most N (default 300) per message kind."""

import argparse
import hashlib
import os
import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003
CODEC_VERSION = 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--limit", type=int, default=300)
    args = parser.parse_args()
    try:
        sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
        sniffer.bind(("lo", 0))
    except (PermissionError, OSError) as error:
        print(f"capture_udp: cannot capture on lo ({error}); no real traffic captured",
              file=sys.stderr)
        return 1
    for target in ("wire_decode", "pipeline"):
        os.makedirs(os.path.join(args.out_dir, target), exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    per_kind: dict[int, int] = {}
    seen: set[bytes] = set()
    written = 0
    try:
        while True:
            frame, (_, _, packet_type, _, _) = sniffer.recvfrom(65535)
            if packet_type == socket.PACKET_OUTGOING:
                continue  # Loopback shows every packet twice.
            ip = frame[14:]  # Loopback frames carry an Ethernet header.
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP:
                continue
            payload = ip[(ip[0] & 0x0F) * 4 + 8:]
            if len(payload) < 8 or payload[0] != CODEC_VERSION:
                continue
            digest = hashlib.sha256(payload).digest()
            kind = payload[1]
            if digest in seen or per_kind.get(kind, 0) >= args.limit:
                continue
            seen.add(digest)
            per_kind[kind] = per_kind.get(kind, 0) + 1
            name = "real-" + digest[:8].hex()
            with open(os.path.join(args.out_dir, "wire_decode", name), "wb") as f:
                f.write(payload)
            with open(os.path.join(args.out_dir, "pipeline", name), "wb") as f:
                f.write(struct.pack("<H", len(payload)) + payload)
            written += 1
    except (KeyboardInterrupt, SystemExit):
        pass
    print(f"capture_udp: {written} distinct datagrams, by kind {dict(sorted(per_kind.items()))}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
