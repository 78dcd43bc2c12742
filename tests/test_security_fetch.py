"""Feed fetching does not reach into the private network (issue 12, item 11):
non-public addresses refused by default (checked on the name and again on
the connected socket), no redirect to another host, no proxy from the
environment, file:// only from the CLI with --allow-file. Real HTTP servers
on loopback addresses play the private network."""

from __future__ import annotations

import pytest

from newsletter.config import ConfigError
from newsletter.content import feeds, fetch
from newsletter.content.fetch import FeedError, Policy, refused_reason
from tests.helpers import RoutedServer

RSS = (
    '<?xml version="1.0"?><rss version="2.0"><channel><title>F</title><link>https://f.example/</link>'
    "<item><title>One</title><link>https://f.example/1</link><guid>g1</guid>"
    "<pubDate>Mon, 02 Mar 2026 06:00:00 GMT</pubDate></item></channel></rss>"
)
FEED = (200, {"Content-Type": "application/rss+xml; charset=utf-8", "ETag": '"v1"'}, RSS)


@pytest.fixture
def servers():
    started = []

    def start(routes, host="127.0.0.1"):
        server = RoutedServer(routes, host=host)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
     "100.100.100.200", "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1%eth0",
     "fc00::1", "fd00:ec2::254", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::1", "2002:a00:1::",
     "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2001:db8::1", "2001:0:4136:e378:8000:63bf:80ff:fffe"],
)  # fmt: skip
def test_non_public_addresses_are_refused(address):
    assert refused_reason(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_are_fetched_from(address):
    assert refused_reason(address) is None


def test_a_loopback_feed_is_refused_unless_the_operator_names_it(content_settings, servers):
    server = servers({"/feed": FEED})
    for url in (server.url + "/feed", f"http://localhost:{server.port}/feed"):
        with pytest.raises(FeedError, match="loopback address .*public addresses only"):
            feeds.poll_feed(content_settings.default, url)
    assert server.requests == []  # refused before connecting
    allowed = content_settings(feed_allow_hosts=("127.0.0.1",))
    assert feeds.poll_feed(allowed, server.url + "/feed").created == 1


def test_the_connected_address_is_checked_again(content_settings, servers, monkeypatch):
    """A name that passes the check and then resolves elsewhere (DNS rebinding)
    is refused when the socket is connected."""
    server = servers({"/feed": FEED})
    monkeypatch.setattr(Policy, "check_name", lambda self, host, port: None)  # the name looked public
    with pytest.raises(FeedError, match="connected to a loopback address"):
        fetch.fetch(server.url + "/feed", content_settings.default)
    assert server.requests == []


def test_redirects_stay_on_the_same_host(content_settings, servers):
    settings = content_settings(feed_allow_hosts=("127.0.0.1", "localhost", "127.0.0.2"))
    other = servers({"/feed": FEED}, host="127.0.0.2")
    server = servers({"/feed": FEED})
    server.routes.update(
        {
            "/moved": (301, {"Location": "/feed"}, ""),
            "/away": (302, {"Location": other.url + "/feed"}, ""),
            "/by-name": (307, {"Location": f"http://localhost:{server.port}/feed"}, ""),
            "/metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, ""),
            "/file": (302, {"Location": "file:///etc/passwd"}, ""),
            "/loop": (302, {"Location": "/loop"}, ""),
        }
    )
    fetched = fetch.fetch(server.url + "/moved", settings)
    assert fetched.url == server.url + "/feed" and fetched.body == RSS.encode()
    assert fetched.headers["content-type"] == "application/rss+xml; charset=utf-8"  # for the parser
    assert fetched.headers["etag"] == '"v1"'
    for path, reason in (("/away", "another host"), ("/by-name", "another host"),
                         ("/metadata", "another host"), ("/file", "file"), ("/loop", "more than")):  # fmt: skip
        with pytest.raises(FeedError, match=reason):
            fetch.fetch(server.url + path, settings)
    assert other.requests == []


def test_no_downgrade_from_https():
    with pytest.raises(FeedError, match="http"):
        fetch._next_url("https://feeds.example/a", "http://feeds.example/b")
    assert fetch._next_url("http://feeds.example/a", "https://feeds.example/b") == "https://feeds.example/b"


def test_a_proxy_from_the_environment_is_not_used(content_settings, servers, monkeypatch):
    settings = content_settings(feed_allow_hosts=("127.0.0.1", "127.0.0.3"))
    proxy = servers({}, host="127.0.0.3")
    server = servers({"/feed": FEED})
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert fetch.fetch(server.url + "/feed", settings).body == RSS.encode()
    assert proxy.requests == [] and len(server.requests) == 1


def test_a_body_over_the_cap_is_refused(content_settings, servers, monkeypatch):
    monkeypatch.setattr(fetch, "MAX_BYTES", 100)
    server = servers({"/feed": FEED})
    with pytest.raises(FeedError, match="larger than"):
        fetch.fetch(server.url + "/feed", content_settings(feed_allow_hosts=("127.0.0.1",)))


def test_file_feeds_only_from_the_cli_with_a_flag(content_settings, make_app, tmp_path, make_settings):
    path = tmp_path / "feed.xml"
    path.write_text(RSS)
    url = path.as_uri()
    with pytest.raises(FeedError, match="--allow-file"):
        feeds.poll_feed(content_settings.default, url)
    runner = make_app().test_cli_runner()
    refused = runner.invoke(args=["articles", "import", "--feed", url])
    assert refused.exit_code == 1 and "--allow-file" in refused.output
    allowed = runner.invoke(args=["articles", "import", "--feed", url, "--allow-file"])
    assert allowed.exit_code == 0 and "1 created" in allowed.output
    with pytest.raises(ConfigError, match="NEWSLETTER_FEEDS"):
        make_settings(feeds=(url,))
