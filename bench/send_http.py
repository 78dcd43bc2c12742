"""ESP batch adapters against a local HTTP endpoint: messages per second.

    .venv/bin/python bench/send_http.py [--messages 20000] [--threads 4]

The endpoint is a small threaded HTTP server on loopback that reads each
request and answers the way the provider does (SendGrid 202 + X-Message-Id;
Postmark 200 with one entry per message; Mailgun 200 with an id). The
messages are real personalised issue emails (a frozen render of a real
issue, each with its own unsubscribe and preferences links). Target: at
least 5,000 messages a second for a batch adapter.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

from send_common import make_issue, settings_for, throwaway_database


class Endpoint(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v3/mail/send":
            status, headers, data = 202, {"X-Message-Id": "bench"}, b""
        elif self.path == "/email/batch":
            count = body.count(b'"MessageStream"')
            data = json.dumps(
                [{"ErrorCode": 0, "Message": "OK", "MessageID": f"pm-{i}"} for i in range(count)]
            ).encode()
            status, headers = 200, {}
        elif self.path == "/emails/batch":
            count = body.count(b'"subject"')
            data = json.dumps({"data": [{"id": f"re-{i}"} for i in range(count)]}).encode()
            status, headers = 200, {}
        else:
            status, headers, data = (
                200,
                {},
                b'{"id": "<bench@mg.example.org>", "message": "Queued. Thank you."}',
            )
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextmanager
def provider() -> Iterator[str]:
    """``Endpoint`` on a loopback port, its base URL yielded; shut down at the end."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def build_messages(settings, count: int):
    from newsletter.delivery.batch import Renders
    from newsletter.delivery.messages import build_issue_message
    from newsletter.rendering.personalise import personalise

    renders = Renders(settings)
    issue, _ = renders.issue(1)
    render = renders.render(1, "")
    out = []
    for n in range(count):
        row = SimpleNamespace(
            id=n + 1, email=f"reader{n}@example.org", name=f"Reader {n}", issue_number=issue.number
        )
        out.append(
            build_issue_message(
                settings,
                personalise(render, settings, subscriber_id=n + 1, name=row.name),
                delivery=row,
                issue=issue,
            )
        )
    return out


def measure(transport, messages, threads: int) -> float:
    size = transport.max_batch
    batches = [messages[i : i + size] for i in range(0, len(messages), size)]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = [r for batch in pool.map(transport.send, batches) for r in batch]
    elapsed = time.perf_counter() - started
    assert len(results) == len(messages) and all(r.ok for r in results)
    return len(messages) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    from newsletter.delivery.transports import make_transport

    with throwaway_database() as (url, work), provider() as endpoint:
        settings = settings_for(url, work, send_concurrency=args.threads)
        make_issue(settings, 1)
        started = time.perf_counter()
        messages = build_messages(settings, args.messages)
        built = args.messages / (time.perf_counter() - started)
        print(
            f"messages            {args.messages} personalised issue emails ({len(messages[0].html):,} bytes of HTML each), {args.threads} threads"
        )
        print(f"personalise+headers {built:10,.0f} msg/s (not part of the figures below)")
        for name, dsn in (
            ("sendgrid", f"sendgrid://key@default?endpoint={endpoint}"),
            ("mailgun", f"mailgun://key@mg.example.org?endpoint={endpoint}"),
            ("postmark", f"postmark://token@default?endpoint={endpoint}"),
            ("resend", f"resend://key@default?endpoint={endpoint}"),
        ):
            transport = make_transport(dsn, settings)
            rate = measure(transport, messages, args.threads)
            transport.close()
            note = (
                "one body per batch + substitutions"
                if name in ("sendgrid", "mailgun")
                else "full body per message"
            )
            print(f"{name:19} {rate:10,.0f} msg/s  (batches of {transport.max_batch}, {note})")


if __name__ == "__main__":
    main()
